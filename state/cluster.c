/* Redis Cluster routing for hiredis 0.14. See state/cluster.h for the
 * contract; the comments here say why it works the way it does. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "state/cluster.h"
#include "state/resp.h"
#include "stream/error.h"
#include "stream/log.h"

/* A node the client has heard of: a seed, or a master named by CLUSTER SLOTS
 * or by a redirection. The array only grows, so a node's index stays valid
 * for the client's lifetime (sp_cluster_wait relies on it). */
struct node {
    char host[256];
    int port;
    redisContext *c;
};

struct sp_cluster {
    char *user, *password;
    int timeout_ms;
    volatile int *abort_flag;
    struct node *nodes;
    size_t nnodes, capnodes;
    size_t nseeds;               /* nodes[0 .. nseeds) are the seeds */
    int slots[SP_CLUSTER_SLOTS]; /* owning node index, -1 unknown */
    int need_refresh;
    sp_cluster_stats stats;
};

/* ------------------------------------------------------------ hashing */

/* The table of the specification (CRC16-CCITT, polynomial 0x1021, XModem),
 * built once for all threads (each worker has its own store and client). */
static uint16_t crc16_table[256];
static pthread_once_t crc16_once = PTHREAD_ONCE_INIT;

static void crc16_init(void) {
    for (int i = 0; i < 256; i++) {
        uint16_t crc = (uint16_t)(i << 8);
        for (int b = 0; b < 8; b++) crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
        crc16_table[i] = crc;
    }
}

uint16_t sp_cluster_crc16(const char *buf, size_t len) {
    pthread_once(&crc16_once, crc16_init);
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++)
        crc = (uint16_t)((crc << 8) ^ crc16_table[((crc >> 8) ^ (unsigned char)buf[i]) & 0xff]);
    return crc;
}

unsigned sp_cluster_keyslot(const char *key, size_t len) {
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1) {
            key = open + 1;
            len = (size_t)(close - open - 1);
        }
    }
    return sp_cluster_crc16(key, len) & (SP_CLUSTER_SLOTS - 1);
}

/* ---------------------------------------------------------- helpers */

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int aborted(const sp_cluster *cl) { return cl->abort_flag && *cl->abort_flag; }

static void backoff_sleep(int *backoff) {
    sleep_ms(*backoff);
    *backoff = *backoff * 2 > 2000 ? 2000 : *backoff * 2;
}

static int node_find(sp_cluster *cl, const char *host, int port) {
    for (size_t i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i].port == port && !strcmp(cl->nodes[i].host, host)) return (int)i;
    if (cl->nnodes == cl->capnodes) {
        cl->capnodes = cl->capnodes ? cl->capnodes * 2 : 16;
        cl->nodes = sp_xrealloc(cl->nodes, cl->capnodes * sizeof *cl->nodes);
    }
    struct node *n = &cl->nodes[cl->nnodes];
    memset(n, 0, sizeof *n);
    snprintf(n->host, sizeof n->host, "%s", host);
    n->port = port;
    return (int)cl->nnodes++;
}

static void node_disconnect(struct node *n) {
    if (n->c) redisFree(n->c);
    n->c = NULL;
}

/* Connects and authenticates. SP_ERR_FATAL only for a refused AUTH: a wrong
 * password does not get better by retrying. */
static int node_connect(sp_cluster *cl, struct node *n, char *err, size_t errlen) {
    if (n->c) return SP_OK;
    struct timeval tv = {cl->timeout_ms / 1000, (cl->timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(n->host, n->port, tv);
    if (!c || c->err) {
        snprintf(err, errlen, "%s:%d: %s", n->host, n->port, c ? c->errstr : "no memory");
        if (c) redisFree(c);
        return SP_ERR_RETRY;
    }
    redisSetTimeout(c, tv);
    if (cl->password) {
        redisReply *r = cl->user ? redisCommand(c, "AUTH %s %s", cl->user, cl->password)
                                 : redisCommand(c, "AUTH %s", cl->password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "%s:%d: AUTH failed: %s", n->host, n->port,
                     r ? r->str : (c->err ? c->errstr : "no reply"));
            int fatal = r != NULL;
            if (r) freeReplyObject(r);
            redisFree(c);
            return fatal ? SP_ERR_FATAL : SP_ERR_RETRY;
        }
        freeReplyObject(r);
    }
    n->c = c;
    return SP_OK;
}

/* Loads the slot map from node i. CLUSTER SLOTS replies with one entry per
 * slot range: start, end, then the master as [ip, port, id, ...] and its
 * replicas. Only masters are routed to (reads go to masters too: the store
 * reads what it is about to write). An empty ip means "the address you asked". */
static int refresh_from(sp_cluster *cl, int i, char *err, size_t errlen) {
    int rc = node_connect(cl, &cl->nodes[i], err, errlen);
    if (rc != SP_OK) return rc;
    redisReply *r = redisCommand(cl->nodes[i].c, "CLUSTER SLOTS");
    if (!r) {
        snprintf(err, errlen, "%s:%d: %s", cl->nodes[i].host, cl->nodes[i].port,
                 cl->nodes[i].c->errstr);
        node_disconnect(&cl->nodes[i]);
        return SP_ERR_RETRY;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        snprintf(err, errlen, "%s:%d: CLUSTER SLOTS: %s", cl->nodes[i].host, cl->nodes[i].port,
                 r->type == REDIS_REPLY_ERROR ? r->str : "no slots assigned");
        int fatal = r->type == REDIS_REPLY_ERROR && strstr(r->str, "cluster support disabled");
        freeReplyObject(r);
        return fatal ? SP_ERR_FATAL : SP_ERR_RETRY;
    }
    /* Copy the asked node's host: node_find may move cl->nodes. */
    char asked[256];
    snprintf(asked, sizeof asked, "%s", cl->nodes[i].host);
    int map[SP_CLUSTER_SLOTS];
    for (int s = 0; s < SP_CLUSTER_SLOTS; s++) map[s] = -1;
    for (size_t k = 0; k < r->elements; k++) {
        redisReply *e = r->element[k];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3) continue;
        redisReply *m = e->element[2];
        if (m->type != REDIS_REPLY_ARRAY || m->elements < 2) continue;
        const char *host = m->element[0]->type == REDIS_REPLY_STRING && m->element[0]->len
                               ? m->element[0]->str
                               : asked;
        int node = node_find(cl, host, (int)m->element[1]->integer);
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        for (long long s = lo; s <= hi && s < SP_CLUSTER_SLOTS; s++)
            if (s >= 0) map[s] = node;
    }
    freeReplyObject(r);
    memcpy(cl->slots, map, sizeof map);
    cl->need_refresh = 0;
    cl->stats.refreshes++;
    return SP_OK;
}

/* Refreshes the map from the first node that answers: connected nodes first
 * (cheapest), then every other node heard of, the seeds included. */
static int refresh(sp_cluster *cl, char *err, size_t errlen) {
    int rc = SP_ERR_RETRY;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < cl->nnodes; i++) {
            if ((pass == 0) != (cl->nodes[i].c != NULL)) continue;
            rc = refresh_from(cl, (int)i, err, errlen);
            if (rc == SP_OK || rc == SP_ERR_FATAL) return rc;
        }
    return rc;
}

static int parse_seeds(sp_cluster *cl, const char *seeds, char *err, size_t errlen) {
    const char *p = seeds;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char one[300];
        snprintf(one, sizeof one, "%.*s", (int)(len < sizeof one ? len : sizeof one - 1), p);
        char *s = one;
        while (*s == ' ') s++;
        if (!strncmp(s, "redis://", 8)) s += 8;
        char *colon = strrchr(s, ':');
        char *pend = NULL;
        long port = colon ? strtol(colon + 1, &pend, 10) : 0;
        if (!colon || colon == s || port <= 0 || port > 65535 || (*pend && *pend != ' ')) {
            snprintf(err, errlen, "key 'redis.cluster': '%s' is not host:port", s);
            return SP_ERR_FATAL;
        }
        *colon = '\0';
        node_find(cl, s, (int)port);
        p += len;
        if (*p == ',') p++;
    }
    if (!cl->nnodes) {
        snprintf(err, errlen, "key 'redis.cluster': no seed nodes");
        return SP_ERR_FATAL;
    }
    cl->nseeds = cl->nnodes;
    return SP_OK;
}

/* --------------------------------------------------------- public API */

sp_cluster *sp_cluster_new(const sp_cluster_conf *conf, char *err, size_t errlen) {
    sp_cluster *cl = sp_xcalloc(1, sizeof *cl);
    cl->timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : 2000;
    cl->abort_flag = conf->abort_flag;
    if (conf->user && *conf->user) cl->user = sp_xstrdup(conf->user);
    if (conf->password && *conf->password) cl->password = sp_xstrdup(conf->password);
    for (int s = 0; s < SP_CLUSTER_SLOTS; s++) cl->slots[s] = -1;
    if (parse_seeds(cl, conf->seeds ? conf->seeds : "", err, errlen) != SP_OK) goto fail;
    int backoff = 50, warned = 0;
    char why[512];
    for (;;) {
        int rc = refresh(cl, why, sizeof why);
        if (rc == SP_OK) break;
        if (rc == SP_ERR_FATAL) {
            snprintf(err, errlen, "redis cluster: %s", why);
            goto fail;
        }
        if (!warned++ || backoff >= 2000) sp_warn("redis cluster: unavailable (%s); retrying", why);
        if (aborted(cl)) {
            snprintf(err, errlen, "redis cluster: gave up connecting (stopping)");
            goto fail;
        }
        backoff_sleep(&backoff);
    }
    cl->stats.refreshes = 0;
    return cl;
fail:
    sp_cluster_destroy(cl);
    return NULL;
}

void sp_cluster_destroy(sp_cluster *cl) {
    if (!cl) return;
    for (size_t i = 0; i < cl->nnodes; i++) node_disconnect(&cl->nodes[i]);
    free(cl->nodes);
    free(cl->user);
    free(cl->password);
    free(cl);
}

/* The routing key of a command (see the header). NULL for keyless ones,
 * which go wherever slot 0 lives. */
static const char *command_key(int argc, const char **argv, const size_t *lens, size_t *klen) {
    if (argc >= 4 && (!strcasecmp(argv[0], "EVAL") || !strcasecmp(argv[0], "EVALSHA")) &&
        atoi(argv[2]) > 0) {
        *klen = lens ? lens[3] : strlen(argv[3]);
        return argv[3];
    }
    if (argc >= 2) {
        *klen = lens ? lens[1] : strlen(argv[1]);
        return argv[1];
    }
    *klen = 0;
    return NULL;
}

/* Parses "MOVED 3999 127.0.0.1:6381" / "ASK ..." into slot and node. An
 * empty host (":6381") means the host of the node that replied, `from`. */
static int parse_redirect(sp_cluster *cl, int from, const char *msg, int *slot, int *node) {
    const char *sp1 = strchr(msg, ' ');
    if (!sp1) return -1;
    *slot = atoi(sp1 + 1);
    const char *sp2 = strchr(sp1 + 1, ' ');
    if (!sp2) return -1;
    char addr[300];
    snprintf(addr, sizeof addr, "%s", sp2 + 1);
    char *colon = strrchr(addr, ':');
    if (!colon || *slot < 0 || *slot >= SP_CLUSTER_SLOTS) return -1;
    *colon = '\0';
    if (!addr[0]) snprintf(addr, sizeof addr, "%s", cl->nodes[from].host);
    *node = node_find(cl, addr, atoi(colon + 1));
    return 0;
}

/* Per-command bookkeeping of one sp_cluster_pipeline call. */
struct pcmd {
    int slot;
    int node;   /* where it goes this round */
    int ask;    /* node named by ASK: send ASKING first, once */
    int done;
    int grp;    /* the first command of its WATCH ... EXEC group, or -1 */
};

/* WATCH ... EXEC: a transaction and its checks (the store's commits) travel
 * as one group, to the node of the WATCHed key, and are sent again whole
 * when any of them was not answered there: its parts are meaningless on
 * another connection. Each group's end, or n when it has none. */
static size_t group_end(const struct pcmd *pc, size_t n, size_t first) {
    size_t j = first;
    while (j < n && pc[j].grp == (int)first) j++;
    return j;
}

static void mark_groups(struct pcmd *pc, size_t n, const char ***argvs) {
    for (size_t i = 0; i < n; i++) pc[i].grp = -1;
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(argvs[i][0], "WATCH")) continue;
        size_t j = i;
        while (j < n && strcasecmp(argvs[j][0], "EXEC")) j++;
        if (j == n) return;
        for (size_t k = i; k <= j; k++) {
            pc[k].grp = (int)i;
            pc[k].slot = pc[i].slot;
        }
        i = j;
    }
}

static int flush_node(struct node *n) {
    int done = 0;
    while (!done)
        if (redisBufferWrite(n->c, &done) != REDIS_OK) return -1;
    return 0;
}

int sp_cluster_pipeline(sp_cluster *cl, size_t n, int *argcs, const char ***argvs,
                        size_t **lens, redisReply **replies, int *nodes_out) {
    struct pcmd *pc = sp_xcalloc(n ? n : 1, sizeof *pc);
    for (size_t i = 0; i < n; i++) {
        size_t klen;
        const char *k = command_key(argcs[i], argvs[i], lens ? lens[i] : NULL, &klen);
        pc[i].slot = k ? (int)sp_cluster_keyslot(k, klen) : 0;
        pc[i].ask = -1;
    }
    mark_groups(pc, n, argvs);
    size_t left = n;
    int backoff = 50, rounds = 0, rc = SP_OK, warned = 0;
    char why[512] = "";
    while (left) {
        int failed = 0;   /* a node was unreachable or the cluster not ready: back off */
        if (cl->need_refresh) {
            int r = refresh(cl, why, sizeof why);
            if (r == SP_ERR_FATAL) {
                sp_error("redis cluster: %s", why);
                rc = SP_ERR_FATAL;
                goto out;
            }
            if (r != SP_OK) failed = 1;
        }
        for (size_t i = 0; i < n; i++)
            if (!pc[i].done) pc[i].node = pc[i].ask >= 0 ? pc[i].ask : cl->slots[pc[i].slot];
        /* Write every node's share, then read: the round trips overlap. */
        size_t nn = cl->nnodes;
        char *used = sp_xcalloc(nn, 1);
        for (size_t i = 0; i < n; i++) {
            if (pc[i].done) continue;
            if (pc[i].node < 0) {
                cl->need_refresh = failed = 1;
                snprintf(why, sizeof why, "slot %d is not served", pc[i].slot);
                continue;
            }
            struct node *nd = &cl->nodes[pc[i].node];
            if (!used[pc[i].node]) {
                int r = node_connect(cl, nd, why, sizeof why);
                if (r == SP_ERR_FATAL) {
                    sp_error("redis cluster: %s", why);
                    free(used);
                    rc = SP_ERR_FATAL;
                    goto out;
                }
                used[pc[i].node] = r == SP_OK ? 1 : 2;
                if (r != SP_OK) {
                    cl->stats.conn_errors++;
                    cl->need_refresh = failed = 1;
                }
            }
            if (used[pc[i].node] != 1) continue;
            if (pc[i].ask >= 0) redisAppendCommand(nd->c, "ASKING");
            sp_resp_append(nd->c, argcs[i], argvs[i], lens ? lens[i] : NULL);
        }
        for (size_t k = 0; k < nn; k++)
            if (used[k] == 1 && flush_node(&cl->nodes[k])) {
                snprintf(why, sizeof why, "%s:%d: %s", cl->nodes[k].host, cl->nodes[k].port,
                         cl->nodes[k].c->errstr);
                node_disconnect(&cl->nodes[k]);
                cl->stats.conn_errors++;
                used[k] = 2;
                cl->need_refresh = failed = 1;
            }
        int redirected = 0;
        for (size_t i = 0; i < n; i++) {
            if (pc[i].done || pc[i].node < 0 || used[pc[i].node] != 1) continue;
            struct node *nd = &cl->nodes[pc[i].node];
            void *rv = NULL;
            int asking = pc[i].ask >= 0;
            if (asking) {
                if (redisGetReply(nd->c, &rv) != REDIS_OK) goto conn_lost;
                freeReplyObject(rv);
                rv = NULL;
            }
            if (redisGetReply(nd->c, &rv) != REDIS_OK) goto conn_lost;
            redisReply *r = rv;
            pc[i].ask = -1;
            if (r->type == REDIS_REPLY_ERROR) {
                int slot, node;
                if (!strncmp(r->str, "MOVED ", 6) &&
                    !parse_redirect(cl, pc[i].node, r->str, &slot, &node)) {
                    /* The map is stale: fix this slot now, reload it all next round. */
                    cl->stats.moved++;
                    cl->slots[slot] = node;
                    cl->need_refresh = redirected = 1;
                    freeReplyObject(r);
                    continue;
                }
                if (!strncmp(r->str, "ASK ", 4) && pc[i].grp >= 0) {
                    /* A key of a transaction has moved, the slot has not:
                     * only a whole transaction would do on the importing
                     * node, and it lacks the keys still to come (the
                     * fence's meta hash, say). Wait for the migration. */
                    cl->stats.ask++;
                    snprintf(why, sizeof why, "slot %d is migrating", pc[i].slot);
                    failed = 1;
                    freeReplyObject(r);
                    continue;
                }
                if (!strncmp(r->str, "ASK ", 4) &&
                    !parse_redirect(cl, pc[i].node, r->str, &slot, &node)) {
                    /* A migration in progress: this command only, map unchanged. */
                    cl->stats.ask++;
                    pc[i].ask = node;
                    redirected = 1;
                    freeReplyObject(r);
                    continue;
                }
                if (!strncmp(r->str, "TRYAGAIN", 8) || !strncmp(r->str, "CLUSTERDOWN", 11)) {
                    if (r->str[0] == 'T')
                        cl->stats.tryagain++;
                    else
                        cl->stats.clusterdown++, cl->need_refresh = 1;
                    snprintf(why, sizeof why, "%s", r->str);
                    failed = 1;
                    freeReplyObject(r);
                    continue;
                }
            }
            replies[i] = r;
            if (nodes_out) nodes_out[i] = pc[i].node;
            pc[i].done = 1;
            left--;
            continue;
        conn_lost:
            /* This node's remaining replies are lost with its connection; its
             * commands are resent after the map is reloaded. */
            snprintf(why, sizeof why, "%s:%d: %s", nd->host, nd->port,
                     nd->c->errstr[0] ? nd->c->errstr : "connection lost");
            node_disconnect(nd);
            cl->stats.conn_errors++;
            used[pc[i].node] = 2;
            cl->need_refresh = failed = 1;
        }
        free(used);
        /* A group goes again whole unless every part of it was answered. */
        for (size_t i = 0; i < n; i++) {
            if (pc[i].grp != (int)i) continue;
            size_t end = group_end(pc, n, i), k;
            for (k = i; k < end && pc[k].done; k++) {}
            if (k == end) continue;
            for (k = i; k < end; k++)
                if (pc[k].done) {
                    freeReplyObject(replies[k]);
                    replies[k] = NULL;
                    pc[k].done = 0;
                    left++;
                }
            i = end - 1;
        }
        if (!left) break;
        /* Redirections are followed at once, a few times; anything else (and
         * endless ping-pong during a migration) waits with backoff. */
        if (redirected && !failed && ++rounds < 8) continue;
        if (!warned++ || backoff >= 2000) sp_warn("redis cluster: %s; retrying", why);
        if (aborted(cl)) {
            rc = SP_ERR_RETRY;
            goto out;
        }
        backoff_sleep(&backoff);
        rounds = 0;
    }
    if (warned) sp_info("redis cluster: recovered");
out:
    if (rc != SP_OK)
        for (size_t i = 0; i < n; i++)
            if (pc[i].done) {
                freeReplyObject(replies[i]);
                replies[i] = NULL;
            }
    free(pc);
    return rc;
}

int sp_cluster_wait(sp_cluster *cl, int node, int numreplicas, int timeout_ms, long long *acked) {
    if (node < 0 || (size_t)node >= cl->nnodes || !cl->nodes[node].c) return SP_ERR_RETRY;
    struct node *nd = &cl->nodes[node];
    /* A fresh connection has written nothing, and WAIT would ack nothing:
     * hence no reconnect here. */
    redisReply *r = redisCommand(nd->c, "WAIT %d %d", numreplicas, timeout_ms);
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        sp_warn("redis cluster: WAIT on %s:%d: %s", nd->host, nd->port,
                r ? (r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply") : nd->c->errstr);
        if (r) freeReplyObject(r);
        node_disconnect(nd);
        cl->need_refresh = 1;
        return SP_ERR_RETRY;
    }
    *acked = r->integer;
    freeReplyObject(r);
    return SP_OK;
}

int sp_cluster_broadcast(sp_cluster *cl, int argc, const char **argv, const size_t *lens,
                         redisReply **reply) {
    int backoff = 50, warned = 0;
    char why[512] = "";
    for (;;) {
        redisReply *keep = NULL;
        int failed = cl->need_refresh && refresh(cl, why, sizeof why) != SP_OK;
        char *seen = sp_xcalloc(cl->nnodes + 1, 1);
        for (int s = 0; s < SP_CLUSTER_SLOTS && !failed; s++) {
            int k = cl->slots[s];
            if (k < 0) {
                snprintf(why, sizeof why, "slot %d is not served", s);
                cl->need_refresh = failed = 1;
                break;
            }
            if (seen[k]) continue;
            seen[k] = 1;
            struct node *nd = &cl->nodes[k];
            int rc = node_connect(cl, nd, why, sizeof why);
            if (rc == SP_ERR_FATAL) {
                sp_error("redis cluster: %s", why);
                free(seen);
                if (keep) freeReplyObject(keep);
                return SP_ERR_FATAL;
            }
            redisReply *r = rc == SP_OK ? redisCommandArgv(nd->c, argc, argv, lens) : NULL;
            if (!r) {
                if (nd->c) {
                    snprintf(why, sizeof why, "%s:%d: %s", nd->host, nd->port, nd->c->errstr);
                    node_disconnect(nd);
                }
                cl->stats.conn_errors++;
                cl->need_refresh = failed = 1;
                break;
            }
            /* Keep the first error reply if there is one, else the last reply. */
            if (keep && keep->type == REDIS_REPLY_ERROR) {
                freeReplyObject(r);
            } else {
                if (keep) freeReplyObject(keep);
                keep = r;
            }
        }
        free(seen);
        if (!failed) {
            *reply = keep;
            return SP_OK;
        }
        if (keep) freeReplyObject(keep);
        if (!warned++ || backoff >= 2000) sp_warn("redis cluster: %s; retrying", why);
        if (aborted(cl)) return SP_ERR_RETRY;
        backoff_sleep(&backoff);
    }
}

int sp_cluster_each_master(sp_cluster *cl, int (*fn)(void *ctx, redisContext *c, const char *addr),
                           void *ctx) {
    char why[512];
    if (cl->need_refresh && refresh(cl, why, sizeof why) != SP_OK) return SP_ERR_RETRY;
    char *seen = sp_xcalloc(cl->nnodes + 1, 1);
    int rc = SP_OK;
    for (int s = 0; s < SP_CLUSTER_SLOTS && rc == SP_OK; s++) {
        int k = cl->slots[s];
        if (k < 0 || seen[k]) continue;
        seen[k] = 1;
        if (node_connect(cl, &cl->nodes[k], why, sizeof why) != SP_OK) {
            sp_error("redis cluster: %s", why);
            rc = SP_ERR_RETRY;
            break;
        }
        char addr[300];
        snprintf(addr, sizeof addr, "%s:%d", cl->nodes[k].host, cl->nodes[k].port);
        rc = fn(ctx, cl->nodes[k].c, addr);
    }
    free(seen);
    return rc;
}

void sp_cluster_get_stats(const sp_cluster *cl, sp_cluster_stats *out) { *out = cl->stats; }
