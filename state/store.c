/* The Redis state store: connection with retry, read-through cache of hashes,
 * and the fenced per-partition commit. See state/store.h for the contract. */
#include <errno.h>
#include <hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "state/cluster.h"
#include "state/numtext.h"
#include "state/resp.h"
#include "state/store.h"
#include "stream/error.h"
#include "stream/log.h"

/* One field of a cached hash, typed. A value keeps the form it was given
 * in: an int64 or a double stays binary through set, incr and get, and its
 * text -- the bytes Redis holds, "%lld" or "%.17g" -- is written into the
 * field's own buffer only when someone needs it: the commit of a dirty
 * field, or a reader of the text (sp_obj_get_str, sp_obj_field_value). A
 * value loaded from Redis arrives as text and is parsed the first time it is
 * read as a number, then kept binary beside its text. The buffer is reused
 * from one value to the next and always has room for a number's text, so
 * set, incr and their commits allocate nothing once the field exists.
 *
 * Names and texts live outside the field array, so adding fields never
 * moves a name or a text a caller holds. A name is the store's (struct
 * iname), shared by every cached object with a field of that name: the
 * objects of one kind repeat the same thirty names thousands of times. A
 * text buffer is carved from the object's arena (struct chunk) or, when
 * long, has an allocation of its own ("apart"). So a field costs no malloc
 * of its own: a malloc per field was most of an object's memory and of the
 * allocator's time. */
enum { F_STR, F_INT, F_DBL };

/* A field name, interned in the store (st->names) while fields use it. */
struct iname {
    uint32_t refs;        /* fields of cached objects with this name */
    uint32_t hash, len;   /* name_hash of s, strlen of s */
    uint64_t head;        /* name_head of s: field_is compares it first */
    char s[];             /* NUL-terminated */
};

struct field {
    struct iname *name;
    char *text;           /* the value's text when text_ok; NUL-terminated */
    union {
        int64_t i;        /* F_INT */
        double d;         /* F_DBL */
    } num;
    uint32_t hash;        /* name->hash, here for field_probe to compare first */
    uint32_t tlen, cap;   /* text length; bytes of its buffer */
    uint8_t kind;         /* F_STR: text is the value; else num is */
    uint8_t text_ok;      /* text holds the current value (always, for F_STR) */
    uint8_t dirty;
    uint8_t text_apart;   /* text has an allocation of its own: freed when replaced */
};

/* A piece of an object's arena. Chunks are never moved or reallocated and
 * are freed only with their object; what is carved out of them is never
 * given back, which is why a text that outgrows its buffer takes a new one
 * from the arena only while it is short (TEXT_APART). */
struct chunk {
    struct chunk *next;   /* the chunk allocated before */
    uint32_t used, size;  /* bytes of data carved out; bytes of data */
    char data[];
};

struct sp_obj {
    char *key;            /* full key, "{p7}:u:u000123", right after the struct */
    uint32_t klen;
    int32_t part;
    uint64_t hash;
    struct field *fields; /* one allocation with index after it */
    uint16_t *index;      /* open addressing over fields by name hash: i + 1, 0 empty;
                           * the first INDEX_MAX fields only */
    uint32_t nfields, cap;
    uint32_t icap;        /* a power of two, at least twice cap (or INDEX_MAX) */
    uint32_t ndirty;      /* how many fields changed since the last commit */
    struct chunk *arena;  /* the chunk carved from now; older ones behind it */
    uint8_t dirty;        /* some field changed since the last commit */
    uint8_t loaded;       /* read from Redis (or known absent) */
    uint8_t queued;       /* in st->want, waiting for sp_store_prefetch */
    uint64_t pending;     /* the transaction carrying its last changes (not evicted
                           * before that one is applied) */
    sp_obj *next;         /* hash chain */
    sp_obj *dirty_next;   /* partition's dirty list */
    sp_store *st;
};

struct cmd {
    int argc;
    char **argv;          /* one block (sp_store_tx_cmd): argv, lens, the arguments */
    size_t *lens;         /* into argv's block */
};

struct part {
    int owned;
    long long epoch;
    long long cseq;       /* sequence number of the last commit built (see fence_lua) */
    sp_obj *dirty;        /* objects changed in this batch */
    struct cmd *cmds;
    size_t ncmds, capcmds;
};

struct sp_store {
    sp_store_conf conf;
    sp_redis_url url;
    redisContext *c;
    sp_cluster *cl;       /* Redis Cluster mode: routes every command; c unused */
    sp_obj **buckets;
    size_t nbuckets, nobjs;
    struct part *parts;
    size_t nparts;
    /* The field names of cached objects, interned (open addressing by
     * hash, at most half full); names no field uses any more (refs 0) are
     * freed when the table is next rebuilt (names_rebuild). */
    struct iname **names;
    uint32_t capnames, nnames, nunused;
    sp_obj **want;        /* queued by sp_store_want, not yet loaded */
    size_t nwant, capwant;
    uint64_t batch;       /* sp_store_batch */
    uint64_t reconnects;
    uint64_t wait_retries;
    /* The committer (sp_store_submit): a thread with a connection of its own
     * (cst, a store used for nothing else), sending transactions in order. */
    sp_store *cst;
    int quiet;            /* the committer's: its counters go into its owner's line */
    pthread_t thread;
    int thread_started, stopping;
    pthread_mutex_t mu;
    pthread_cond_t cv;    /* queue grew, or a transaction finished */
    sp_txn *queue, *queue_tail, *done, *done_tail;
    uint64_t next_seq;    /* last transaction prepared */
    uint64_t applied;     /* last transaction reaped */
    /* sp_store_tx_job: jobs for the next transaction, run before its
     * commits */
    struct job *jobs;
    size_t njobs, capjobs;
};

struct job {
    int (*run)(sp_store *conn, void *ctx);
    void (*free_ctx)(void *ctx);
    void *ctx;
};

struct sp_txn_priv {
    uint64_t seq;
    struct built *built;  /* each commit's commands, copied */
    struct job *jobs;     /* sp_store_tx_job's, run first */
    size_t njobs;
    sp_txn *next;
};

static void txn_free(sp_txn *t);
static void jobs_clear(struct job *jobs, size_t *n);

static void txn_free_list(sp_txn *t) {
    for (sp_txn *next; t; t = next) {
        next = t->priv->next;
        txn_free(t);
    }
}

/* ---------------------------------------------------------------- URL */

int sp_redis_url_parse(const char *url, sp_redis_url *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->port = 6379;
    snprintf(out->host, sizeof out->host, "127.0.0.1");
    if (!strncmp(url, "unix://", 7)) {
        const char *p = url + 7, *q = strchr(p, '?');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 0 || n >= sizeof out->unix_path) {
            snprintf(err, errlen, "key 'redis.url': bad unix socket path");
            return SP_ERR_FATAL;
        }
        memcpy(out->unix_path, p, n);
        /* Query parameters: db=N, user=U, password=P (a socket path has no
         * room for user info). */
        for (const char *kv = q ? q + 1 : NULL; kv && *kv;) {
            const char *amp = strchr(kv, '&'), *end = amp ? amp : kv + strlen(kv);
            int len = (int)(end - kv);
            if (!strncmp(kv, "db=", 3))
                out->db = atoi(kv + 3);
            else if (!strncmp(kv, "user=", 5))
                snprintf(out->user, sizeof out->user, "%.*s", len - 5, kv + 5);
            else if (!strncmp(kv, "password=", 9))
                snprintf(out->password, sizeof out->password, "%.*s", len - 9, kv + 9);
            else {
                snprintf(err, errlen, "key 'redis.url': unknown parameter in unix:// URL");
                return SP_ERR_FATAL;
            }
            kv = amp ? amp + 1 : NULL;
        }
        return SP_OK;
    }
    if (strncmp(url, "redis://", 8)) {
        snprintf(err, errlen, "key 'redis.url': must start with redis:// or unix://");
        return SP_ERR_FATAL;
    }
    const char *p = url + 8;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            snprintf(out->user, sizeof out->user, "%.*s", (int)(colon - p), p);
            snprintf(out->password, sizeof out->password, "%.*s", (int)(at - colon - 1),
                     colon + 1);
        } else {
            snprintf(out->password, sizeof out->password, "%.*s", (int)(at - p), p);
        }
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    size_t hp = slash ? (size_t)(slash - p) : strlen(p);
    const char *colon = memchr(p, ':', hp);
    if (colon) {
        if (colon > p) snprintf(out->host, sizeof out->host, "%.*s", (int)(colon - p), p);
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (end != p + hp || port <= 0 || port > 65535) {
            snprintf(err, errlen, "key 'redis.url': bad port");
            return SP_ERR_FATAL;
        }
        out->port = (int)port;
    } else if (hp > 0) {
        snprintf(out->host, sizeof out->host, "%.*s", (int)hp, p);
    }
    if (slash && slash[1]) {
        char *end;
        long db = strtol(slash + 1, &end, 10);
        if (*end || db < 0) {
            snprintf(err, errlen, "key 'redis.url': bad database number");
            return SP_ERR_FATAL;
        }
        out->db = (int)db;
    }
    return SP_OK;
}

/* ---------------------------------------------------------- connection */

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int aborted(const sp_store *st) {
    return st->conf.abort_flag && *st->conf.abort_flag;
}

static void disconnect(sp_store *st) {
    if (st->c) redisFree(st->c);
    st->c = NULL;
}

/* One attempt to connect, authenticate and select the database. The reason
 * for a failure goes to err; the password never does. */
static int connect_once(sp_store *st, char *err, size_t errlen) {
    struct timeval tv = {st->conf.timeout_ms / 1000, (st->conf.timeout_ms % 1000) * 1000};
    redisContext *c = st->url.unix_path[0]
                          ? redisConnectUnixWithTimeout(st->url.unix_path, tv)
                          : redisConnectWithTimeout(st->url.host, st->url.port, tv);
    if (!c || c->err) {
        snprintf(err, errlen, "%s", c ? c->errstr : "cannot allocate redis context");
        if (c) redisFree(c);
        return SP_ERR_RETRY;
    }
    redisSetTimeout(c, tv);
    redisReply *r = NULL;
    if (st->url.password[0]) {
        r = st->url.user[0] ? redisCommand(c, "AUTH %s %s", st->url.user, st->url.password)
                            : redisCommand(c, "AUTH %s", st->url.password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "AUTH failed: %s",
                     r ? r->str : (c->err ? c->errstr : "no reply"));
            int fatal = r != NULL;
            if (r) freeReplyObject(r);
            redisFree(c);
            return fatal ? SP_ERR_FATAL : SP_ERR_RETRY;
        }
        freeReplyObject(r);
    }
    if (st->url.db) {
        r = redisCommand(c, "SELECT %d", st->url.db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "SELECT %d failed", st->url.db);
            if (r) freeReplyObject(r);
            redisFree(c);
            return SP_ERR_FATAL;
        }
        freeReplyObject(r);
    }
    st->c = c;
    return SP_OK;
}

/* Connects, retrying with backoff while Redis is unreachable. */
static int ensure_connected(sp_store *st) {
    int backoff = 50, warned = 0;
    char err[256];
    while (!st->c) {
        int rc = connect_once(st, err, sizeof err);
        if (rc == SP_OK) {
            if (warned) sp_info("redis: reconnected");
            st->reconnects++;
            return SP_OK;
        }
        if (rc == SP_ERR_FATAL) {
            sp_error("redis: %s", err);
            return SP_ERR_FATAL;
        }
        if (!warned++ || backoff >= 2000) sp_warn("redis: unavailable (%s); retrying", err);
        if (aborted(st)) return SP_ERR_RETRY;
        sleep_ms(backoff);
        backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
    }
    return SP_OK;
}

/* Sends `n` pipelined commands and reads their replies into replies[]. On a
 * connection error all replies are freed, the connection dropped, and
 * SP_ERR_RETRY returned: the caller retries the whole pipeline, which is why
 * every pipeline the store sends must be safe to send twice (reads, SET-like
 * writes, and commits, which carry a sequence number: see fence_lua). */
static int pipeline_once(sp_store *st, size_t n, int *argcs, const char ***argvs,
                         size_t **lens, redisReply **replies) {
    sp_resp_append_all(st->c, n, argcs, (const char *const *const *)argvs,
                       (const size_t *const *)lens);
    for (size_t i = 0; i < n; i++) {
        void *r = NULL;
        if (redisGetReply(st->c, &r) != REDIS_OK) {
            sp_warn("redis: %s", st->c->errstr[0] ? st->c->errstr : "connection lost");
            for (size_t j = 0; j < i; j++) freeReplyObject(replies[j]);
            disconnect(st);
            return SP_ERR_RETRY;
        }
        replies[i] = r;
    }
    return SP_OK;
}

/* Sends a pipeline with retry. In cluster mode the cluster client routes and
 * retries (and a SCRIPT command, whose effect is per node, goes to every
 * master); nodes (may be NULL) then receives the node that ran each command,
 * for WAIT. */
static int pipeline_at(sp_store *st, size_t n, int *argcs, const char ***argvs, size_t **lens,
                       redisReply **replies, int *nodes) {
    if (st->cl) {
        if (n == 1 && !strcasecmp(argvs[0][0], "SCRIPT")) {
            if (nodes) nodes[0] = -1;
            return sp_cluster_broadcast(st->cl, argcs[0], argvs[0], lens[0], replies);
        }
        return sp_cluster_pipeline(st->cl, n, argcs, argvs, lens, replies, nodes);
    }
    int backoff = 50;
    for (;;) {
        int rc = ensure_connected(st);
        if (rc != SP_OK) return rc;
        if (pipeline_once(st, n, argcs, argvs, lens, replies) == SP_OK) {
            for (size_t i = 0; nodes && i < n; i++) nodes[i] = -1;
            return SP_OK;
        }
        if (aborted(st)) return SP_ERR_RETRY;
        sleep_ms(backoff);
        backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
    }
}

static int pipeline(sp_store *st, size_t n, int *argcs, const char ***argvs, size_t **lens,
                    redisReply **replies) {
    return pipeline_at(st, n, argcs, argvs, lens, replies, NULL);
}

/* Waits until conf.wait_replicas replicas hold every write this store sent
 * on the connection to `node` (-1: the single-node connection). SP_OK;
 * SP_ERR_NOTFOUND when the connection was lost, so the writes may be lost
 * too and must be resent; SP_ERR_RETRY when aborted. While too few replicas
 * answer, it waits on: the stream pauses rather than count a batch that one
 * failover could undo. */
static int wait_replicas(sp_store *st, int node, const char *what) {
    int n = st->conf.wait_replicas, warned = 0;
    int per = st->conf.timeout_ms / 2 > 10 ? st->conf.timeout_ms / 2 : 10;
    for (;;) {
        long long acked = -1;
        if (st->cl) {
            if (sp_cluster_wait(st->cl, node, n, per, &acked) != SP_OK) return SP_ERR_NOTFOUND;
        } else {
            if (!st->c) return SP_ERR_NOTFOUND;
            redisReply *r = redisCommand(st->c, "WAIT %d %d", n, per);
            if (!r || r->type != REDIS_REPLY_INTEGER) {
                sp_warn("redis: WAIT: %s", r && r->type == REDIS_REPLY_ERROR ? r->str : "no reply");
                if (r) freeReplyObject(r);
                disconnect(st);
                return SP_ERR_NOTFOUND;
            }
            acked = r->integer;
            freeReplyObject(r);
        }
        if (acked >= n) {
            if (warned) sp_info("redis: %s: %lld replicas acknowledged; going on", what, acked);
            return SP_OK;
        }
        if (!warned++)
            sp_warn("redis: %s: %lld of %d replicas acknowledged within %d ms; waiting", what,
                    acked, n, per);
        if (aborted(st)) return SP_ERR_RETRY;
    }
}

/* A pipeline of writes that, with conf.wait_replicas > 0, returns only once
 * that many replicas of every node it wrote to hold them: one WAIT per node
 * after the pipeline. If a node is lost before its replicas acknowledged, the
 * writes may have died with it (asynchronous replication), so the whole
 * pipeline is sent again -- to whichever node owns the slots by then. Only
 * pipelines that are safe to send twice may come here (the store's are). */
static int pipeline_durable(sp_store *st, size_t n, int *argcs, const char ***argvs,
                            size_t **lens, redisReply **replies, const char *what) {
    if (st->conf.wait_replicas <= 0) return pipeline(st, n, argcs, argvs, lens, replies);
    int *nodes = sp_xmalloc((n ? n : 1) * sizeof *nodes);
    int rc;
    for (;;) {
        if ((rc = pipeline_at(st, n, argcs, argvs, lens, replies, nodes)) != SP_OK) break;
        for (size_t i = 0; i < n && rc == SP_OK; i++) {
            int seen = 0;
            for (size_t j = 0; j < i && !seen; j++) seen = nodes[j] == nodes[i];
            if (!seen) rc = wait_replicas(st, nodes[i], what);
        }
        if (rc == SP_OK) break;
        for (size_t i = 0; i < n; i++) {
            freeReplyObject(replies[i]);
            replies[i] = NULL;
        }
        if (rc == SP_ERR_RETRY) break;
        st->wait_retries++;
    }
    free(nodes);
    return rc;
}

/* One command with retry. */
static int command(sp_store *st, redisReply **out, int argc, const char **argv) {
    size_t lens[64];
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    size_t *lp = lens;
    return pipeline(st, 1, &argc, &argv, &lp, out);
}

/* -------------------------------------------------------------- cache */

static struct part *part_get(sp_store *st, int32_t p) {
    if ((size_t)p >= st->nparts) {
        size_t n = st->nparts ? st->nparts : 16;
        while (n <= (size_t)p) n *= 2;
        st->parts = sp_xrealloc(st->parts, n * sizeof *st->parts);
        memset(st->parts + st->nparts, 0, (n - st->nparts) * sizeof *st->parts);
        st->nparts = n;
    }
    return &st->parts[p];
}

static void name_release(sp_store *st, struct iname *n);

static void obj_free(sp_obj *o) {
    for (uint32_t i = 0; i < o->nfields; i++) {
        name_release(o->st, o->fields[i].name);
        if (o->fields[i].text_apart) free(o->fields[i].text);
    }
    for (struct chunk *c = o->arena, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(o->fields); /* and the index after it */
    free(o); /* and its key, allocated with it */
}

static void rehash(sp_store *st) {
    size_t n = st->nbuckets * 2;
    sp_obj **b = sp_xcalloc(n, sizeof *b);
    for (size_t i = 0; i < st->nbuckets; i++)
        for (sp_obj *o = st->buckets[i], *next; o; o = next) {
            next = o->next;
            o->next = b[o->hash & (n - 1)];
            b[o->hash & (n - 1)] = o;
        }
    free(st->buckets);
    st->buckets = b;
    st->nbuckets = n;
}

/* Finds or creates (unloaded) the cache entry for a full key of klen bytes. */
static sp_obj *cache_lookup(sp_store *st, int32_t part, const char *key, size_t klen,
                            int create) {
    uint64_t h = sp_hash_bytes(key, klen);
    for (sp_obj *o = st->buckets[h & (st->nbuckets - 1)]; o; o = o->next)
        if (o->hash == h && o->klen == klen && sp_bytes_eq(o->key, key, klen)) return o;
    if (!create) return NULL;
    /* One allocation for the entry and its key: a batch meets thousands of
     * new users, and calloc plus strndup of each was most of creating one. */
    sp_obj *o = sp_xmalloc(sizeof *o + klen + 1);
    *o = (sp_obj){0};
    o->key = (char *)(o + 1);
    memcpy(o->key, key, klen);
    o->key[klen] = '\0';
    o->klen = klen;
    o->part = part;
    o->hash = h;
    o->st = st;
    o->next = st->buckets[h & (st->nbuckets - 1)];
    st->buckets[h & (st->nbuckets - 1)] = o;
    if (++st->nobjs > st->nbuckets) rehash(st);
    return o;
}

static void cache_remove_if(sp_store *st, int (*pred)(const sp_obj *, const void *),
                            const void *arg) {
    for (size_t i = 0; i < st->nbuckets; i++) {
        sp_obj **pp = &st->buckets[i];
        while (*pp) {
            sp_obj *o = *pp;
            if (pred(o, arg)) {
                *pp = o->next;
                obj_free(o);
                st->nobjs--;
            } else {
                pp = &o->next;
            }
        }
    }
}

/* "{p<part>}:<suffix>", cut to len - 1 bytes (keys are far shorter).
 * Returns its length. Every cache lookup makes a key, several an event: a
 * partition number under a hundred -- nearly all of them -- is written
 * directly, as sp_i64toa's general case cost about 60 instructions. */
static size_t make_key(char *buf, size_t len, int32_t part, const char *suffix) {
    char num[24];
    size_t n, s = strlen(suffix);
    if (part >= 0 && part < 10) {
        num[0] = (char)('0' + part);
        n = 1;
    } else if (part >= 10 && part < 100) {
        memcpy(num, sp_digit_pairs + 2 * part, 2);
        n = 2;
    } else {
        n = sp_i64toa(part, num);
    }
    num[n] = '\0'; /* for snprintf below */
    if (4 + n + s >= len) {
        snprintf(buf, len, "{p%s}:%s", num, suffix);
        return strlen(buf);
    }
    buf[0] = '{';
    buf[1] = 'p';
    if (n <= 2) /* a fixed two-byte move, not a call: the byte past n is overwritten below */
        memcpy(buf + 2, num, 2);
    else
        memcpy(buf + 2, num, n);
    buf[2 + n] = '}';
    buf[3 + n] = ':';
    memcpy(buf + 4 + n, suffix, s + 1);
    return 4 + n + s;
}

/* FNV-1a of a field name, and its length, in one pass over it. */
static uint32_t name_hash(const char *name, uint32_t *len) {
    uint32_t h = 2166136261u;
    const char *p = name;
    while (*p) h = (h ^ (unsigned char)*p++) * 16777619u;
    *len = (uint32_t)(p - name);
    return h;
}

/* The index holds 16-bit positions: half the room of 32-bit ones (a
 * profile's index was an eighth of its memory), for the fields of any
 * object anyone caches. Fields past the first INDEX_MAX are found by a scan
 * (field_scan). */
#define INDEX_MAX UINT16_MAX

static void index_put(sp_obj *o, uint32_t h, uint32_t i) {
    if (i >= INDEX_MAX) return;
    uint32_t mask = o->icap - 1, j = h & mask;
    while (o->index[j]) j = (j + 1) & mask;
    o->index[j] = (uint16_t)(i + 1);
}

/* Room for n fields, and an index at most half full for them, in one
 * allocation: the array may move, the names and texts do not. */
static void fields_reserve(sp_obj *o, uint32_t n) {
    if (n <= o->cap) return;
    uint32_t icap = o->icap ? o->icap : 8;
    while (icap < 2 * (n < INDEX_MAX ? n : INDEX_MAX)) icap *= 2;
    struct field *fields = sp_xmalloc(n * sizeof *fields + icap * sizeof *o->index);
    if (o->nfields) memcpy(fields, o->fields, o->nfields * sizeof *fields);
    free(o->fields);
    o->fields = fields;
    o->cap = n;
    o->icap = icap;
    o->index = (uint16_t *)(void *)(fields + n);
    memset(o->index, 0, icap * sizeof *o->index);
    for (uint32_t i = 0; i < o->nfields; i++) index_put(o, o->fields[i].hash, i);
}

/* A text buffer above this many bytes is allocated apart, and freed when
 * it is outgrown; below, it is carved from the arena, where an outgrown one
 * stays unused until the object goes. The bound keeps that waste to a few
 * hundred bytes for a field that grows (profile's recent ring). */
#define TEXT_APART 128

/* The size of an object's first chunk (four numbers' texts: most objects
 * have a handful of fields), and of the chunks after it (eight). Doubling
 * sizes, tried first, left some 800 bytes unused in a profile of thirty
 * fields; fixed sizes leave at most a text's room unused per chunk. */
#define CHUNK_FIRST (4 * SP_G17_MAX)
#define CHUNK_NEXT (8 * SP_G17_MAX)

/* Lengths and counts in an object are 32-bit: a name or text of 2 GiB or
 * more (Redis holds at most 512 MB), or a billion fields, abort as an
 * allocation failure does. */
static void too_long(size_t n) {
    sp_error("state cache: %zu is over the cache's 32-bit sizes", n);
    abort();
}

/* Makes sure the arena's current chunk has n bytes free: a new chunk if
 * not (of n bytes if more than the usual size), the rest of the last one
 * left unused. */
static void arena_reserve(sp_obj *o, size_t n) {
    struct chunk *c = o->arena;
    if (c && c->size - c->used >= n) return;
    size_t size = c ? CHUNK_NEXT : CHUNK_FIRST;
    if (size < n) size = n;
    if (size > UINT32_MAX) too_long(size);
    struct chunk *nc = sp_xmalloc(sizeof *nc + size);
    nc->next = c;
    nc->used = 0;
    nc->size = (uint32_t)size;
    o->arena = nc;
}

/* n bytes from the arena, never moved, freed with the object. */
static char *arena_alloc(sp_obj *o, size_t n) {
    arena_reserve(o, n);
    char *p = o->arena->data + o->arena->used;
    o->arena->used += (uint32_t)n;
    return p;
}

/* Grows the piece p of old bytes to n bytes where it is, if it is the last
 * one carved from the current chunk and the chunk has the room: a text
 * that grows event after event, with no field added in between, then
 * leaves no outgrown buffers behind. */
static int arena_extend(sp_obj *o, char *p, uint32_t old, uint32_t n) {
    struct chunk *c = o->arena;
    if (!c || p + old != c->data + c->used || c->size - c->used < n - old) return 0;
    c->used += n - old;
    return 1;
}

/* A text buffer of n bytes, or of a number's longest text if more. */
static uint32_t text_cap(size_t n) {
    if (n >= UINT32_MAX / 2) too_long(n);
    return n < SP_G17_MAX ? SP_G17_MAX : (uint32_t)n;
}

/* The arena bytes a first text buffer of cap bytes takes. */
static size_t arena_room(uint32_t cap) { return cap > TEXT_APART ? 0 : cap; }

/* Rebuilds the name table with room for its names in use, and frees the
 * ones no field uses any more. */
static void names_rebuild(sp_store *st) {
    uint32_t live = st->nnames - st->nunused, cap = 64;
    while (cap < 4 * (live + 1)) cap *= 2;
    struct iname **names = sp_xcalloc(cap, sizeof *names);
    for (uint32_t i = 0; i < st->capnames; i++) {
        struct iname *n = st->names[i];
        if (!n) continue;
        if (!n->refs) {
            free(n);
            continue;
        }
        uint32_t j = n->hash & (cap - 1);
        while (names[j]) j = (j + 1) & (cap - 1);
        names[j] = n;
    }
    free(st->names);
    st->names = names;
    st->capnames = cap;
    st->nnames = live;
    st->nunused = 0;
}

/* The store's copy of a field name, with one more reference: the one
 * there, or a new one. A rebuild when the table would be over half full
 * (after one, it is at most a quarter full) is also when names no longer
 * used are freed, so they never outnumber the table's room. */
static struct iname *name_intern(sp_store *st, const sp_fname *f) {
    const char *s = f->name;
    uint32_t h = f->hash, len = f->len;
    if (2 * (st->nnames + 1) > st->capnames) names_rebuild(st);
    uint32_t mask = st->capnames - 1, j = h & mask;
    for (struct iname *n; (n = st->names[j]); j = (j + 1) & mask)
        if (n->hash == h && n->len == len && sp_bytes_eq(n->s, s, len)) {
            st->nunused -= !n->refs;
            n->refs++;
            return n;
        }
    struct iname *n = sp_xmalloc(sizeof *n + len + 1);
    n->refs = 1;
    n->hash = h;
    n->len = len;
    n->head = f->head;
    memcpy(n->s, s, len);
    n->s[len] = '\0';
    st->names[j] = n;
    st->nnames++;
    return n;
}

static void name_release(sp_store *st, struct iname *n) { st->nunused += !--n->refs; }

/* Whether field f is called n: the hash, then the first eight bytes at
 * once, then the rest. Most names are shorter than eight bytes ("aff",
 * "events", "n_click"), which a byte-by-byte compare went through one at a
 * time, at nearly every lookup (the hash matching means the name does). */
static inline int field_is(const struct field *f, const sp_fname *n) {
    const struct iname *in = f->name;
    return f->hash == n->hash && in->head == n->head && in->len == n->len &&
           (n->len <= 8 || sp_bytes_eq(in->s + 8, n->name + 8, n->len - 8));
}

/* The fields past the index's first INDEX_MAX, one by one. */
static __attribute__((noinline)) struct field *field_scan(const sp_obj *o, const sp_fname *n) {
    for (uint32_t i = INDEX_MAX; i < o->nfields; i++)
        if (field_is(&o->fields[i], n)) return &o->fields[i];
    return NULL;
}

/* The field called `name` (hash h, length len), or NULL. With the index at
 * most half full, about one probe: operators touch some twenty fields of a
 * profile per event, and a strcmp scan over a few dozen names was the
 * store's largest cost. Inline, apart from field_add, so that a lookup of
 * a field that is there pays for no more than the probe. */
static inline __attribute__((always_inline)) struct field *field_probe(const sp_obj *o,
                                                                        const sp_fname *n) {
    if (!o->icap) return NULL;
    uint32_t mask = o->icap - 1;
    for (uint32_t j = n->hash & mask; o->index[j]; j = (j + 1) & mask) {
        struct field *f = &o->fields[o->index[j] - 1];
        if (field_is(f, n)) return f;
    }
    return o->nfields > INDEX_MAX ? field_scan(o, n) : NULL;
}

/* A new field called `name` (not there yet), without a value, which the
 * caller gives it, with a text buffer of `create` bytes (at least a
 * number's), carved from the arena unless it is long. The field array may
 * move when it grows; names and texts live apart, so the pointers callers
 * hold do not. */
static __attribute__((noinline)) struct field *field_add(sp_obj *o, const sp_fname *n,
                                                         size_t create) {
    if (o->nfields == o->cap) fields_reserve(o, o->cap ? 2 * o->cap : 4);
    struct field *f = &o->fields[o->nfields];
    memset(f, 0, sizeof *f);
    f->name = name_intern(o->st, n);
    f->hash = n->hash;
    f->cap = text_cap(create);
    f->text_apart = f->cap > TEXT_APART;
    f->text = f->text_apart ? sp_xmalloc(f->cap) : arena_alloc(o, f->cap);
    index_put(o, n->hash, o->nfields++);
    return f;
}

/* The field called `name`, or NULL; if absent and `create` > 0, a new one
 * (field_add). Inline in every caller, as field_probe is: left to itself
 * the compiler made it a call of its own (the head compare made field_is
 * larger), some ten instructions a lookup. */
static inline __attribute__((always_inline)) struct field *field_lookup(sp_obj *o,
                                                                        const sp_fname *n,
                                                                        size_t create) {
    struct field *f = field_probe(o, n);
    return f || !create ? f : field_add(o, n, create);
}

/* Room for a text of len bytes. Every field starts with room for a
 * number's longest text, so no numeric value ever moves it. What it held
 * is lost when it has to grow: the caller is replacing it. It grows with
 * half again as much room: a list that gains an item per event (profile's
 * recent ring, until full) would otherwise move at nearly every event.
 * Apart from text_set's check, which is inline: nearly every set fits in
 * the room the text has, and the call alone cost as much as that check. */
static __attribute__((noinline)) void text_grow(sp_obj *o, struct field *f, size_t len) {
    uint32_t cap = text_cap(len + 1 + len / 2);
    if (f->text_apart)
        free(f->text);
    else if (cap <= TEXT_APART && arena_extend(o, f->text, f->cap, cap)) {
        f->cap = cap;
        return;
    }
    f->text_apart = cap > TEXT_APART;
    f->text = f->text_apart ? sp_xmalloc(cap) : arena_alloc(o, cap);
    f->cap = cap;
}

/* Makes the field the string v (len bytes). */
static inline void text_set(sp_obj *o, struct field *f, const char *v, size_t len) {
    if (len + 1 > f->cap) text_grow(o, f, len);
    memmove(f->text, v, len); /* v may be the field's own text */
    f->text[len] = '\0';
    f->tlen = (uint32_t)len;
    f->kind = F_STR;
    f->text_ok = 1;
}

/* The field's text, written now if its number changed since it was last
 * written: "%lld" by hand, "%.17g" by sp_g17 -- the bytes snprintf gave
 * before the cache was typed, which dumps of runs compare. */
static const char *field_text(struct field *f) {
    if (!f->text_ok) {
        f->tlen = f->kind == F_INT ? sp_i64toa(f->num.i, f->text) : sp_g17(f->num.d, f->text);
        f->text_ok = 1;
    }
    return f->text;
}

/* The field read as an integer, which is always strtoll of its text. A
 * text in the form "%lld" writes (as loaded from Redis) is parsed once and
 * the field becomes F_INT; a double goes through its text, since reading
 * "1e+20" or "2.5" as strtoll does is not a binary conversion. */
static int64_t field_int(struct field *f) {
    if (f->kind == F_INT) return f->num.i;
    const char *t = field_text(f);
    int64_t v = strtoll(t, NULL, 10);
    if (f->kind == F_STR) {
        char canon[24];
        size_t n = sp_i64toa(v, canon);
        if (n == f->tlen && !memcmp(canon, t, n)) {
            f->kind = F_INT;
            f->num.i = v;
        }
    }
    return v;
}

/* The field read as a double, which is always strtod of its text: an int64
 * converts as strtod reads its "%lld" (both round to nearest), a double
 * round-trips through "%.17g", and a text that strtod reads whole is parsed
 * once and kept beside it (F_DBL; the text stays the value's). */
static double field_double(struct field *f) {
    if (f->kind == F_DBL) return f->num.d;
    if (f->kind == F_INT) return (double)f->num.i;
    char *end;
    double v = strtod(f->text, &end);
    if (end != f->text && end == f->text + f->tlen) {
        f->kind = F_DBL;
        f->num.d = v;
    }
    return v;
}

/* Fills an entry from an HGETALL reply: texts, parsed when first read as
 * numbers. */
static void obj_load(sp_obj *o, const redisReply *r) {
    if (r->type != REDIS_REPLY_ARRAY) {
        o->loaded = 1;
        return;
    }
    /* Sized once, not field by field: the array, and a chunk that holds
     * every text. */
    size_t nf = o->nfields + r->elements / 2;
    if (nf >= UINT32_MAX / 4) too_long(nf);
    fields_reserve(o, (uint32_t)nf);
    size_t room = 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        room += arena_room(text_cap(r->element[i + 1]->len + 1));
    if (room) arena_reserve(o, room);
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        sp_fname n = sp_fname_of(r->element[i]->str);
        const redisReply *v = r->element[i + 1];
        struct field *f = field_lookup(o, &n, v->len + 1);
        text_set(o, f, v->str, v->len);
    }
    o->loaded = 1;
}

/* --------------------------------------------------------- public API */

sp_store *sp_store_new(const sp_store_conf *conf, char *err, size_t errlen) {
    sp_store *st = sp_xcalloc(1, sizeof *st);
    st->conf = *conf;
    if (st->conf.timeout_ms <= 0) st->conf.timeout_ms = 2000;
    if (st->conf.max_entries <= 0) st->conf.max_entries = 200000;
    st->nbuckets = 1024;
    st->buckets = sp_xcalloc(st->nbuckets, sizeof *st->buckets);
    if (conf->cluster && *conf->cluster) {
        sp_cluster_conf cc = {conf->cluster, conf->user, conf->password, st->conf.timeout_ms,
                              conf->abort_flag};
        if (!(st->cl = sp_cluster_new(&cc, err, errlen))) goto fail;
        return st;
    }
    if (sp_redis_url_parse(conf->url, &st->url, err, errlen) != SP_OK) goto fail;
    if (!st->url.password[0] && conf->password && *conf->password) {
        snprintf(st->url.password, sizeof st->url.password, "%s", conf->password);
        if (!st->url.user[0] && conf->user)
            snprintf(st->url.user, sizeof st->url.user, "%s", conf->user);
    }
    int rc = ensure_connected(st);
    if (rc != SP_OK) {
        snprintf(err, errlen, rc == SP_ERR_FATAL ? "redis: cannot connect (see log)"
                                                 : "redis: gave up connecting (stopping)");
        goto fail;
    }
    st->reconnects = 0;
    return st;
fail:
    sp_store_destroy(st);
    return NULL;
}

static void part_clear_cmds(struct part *p) {
    for (size_t i = 0; i < p->ncmds; i++) free(p->cmds[i].argv);
    p->ncmds = 0;
}

void sp_store_destroy(sp_store *st) {
    if (!st) return;
    if (st->thread_started) {
        pthread_mutex_lock(&st->mu);
        st->stopping = 1;
        pthread_cond_broadcast(&st->cv);
        pthread_mutex_unlock(&st->mu);
        pthread_join(st->thread, NULL);
        txn_free_list(st->queue); /* empty: the thread sends all before it ends */
        txn_free_list(st->done);  /* applied, never reaped */
        pthread_mutex_destroy(&st->mu);
        pthread_cond_destroy(&st->cv);
    }
    disconnect(st);
    if (st->cl && !st->quiet) {
        /* One line for the process's view of the cluster: this store's
         * connections and its committer's together. */
        sp_cluster_stats cs, cc = {0};
        sp_cluster_get_stats(st->cl, &cs);
        if (st->cst && st->cst->cl) sp_cluster_get_stats(st->cst->cl, &cc);
        cs.moved += cc.moved;
        cs.ask += cc.ask;
        cs.tryagain += cc.tryagain;
        cs.clusterdown += cc.clusterdown;
        cs.refreshes += cc.refreshes;
        cs.conn_errors += cc.conn_errors;
        sp_info("redis cluster: moved=%llu ask=%llu tryagain=%llu clusterdown=%llu "
                "map_refreshes=%llu connection_errors=%llu wait_retries=%llu",
                (unsigned long long)cs.moved, (unsigned long long)cs.ask,
                (unsigned long long)cs.tryagain, (unsigned long long)cs.clusterdown,
                (unsigned long long)cs.refreshes, (unsigned long long)cs.conn_errors,
                (unsigned long long)(st->wait_retries + (st->cst ? st->cst->wait_retries : 0)));
    }
    if (st->cst) st->cst->quiet = 1;
    sp_store_destroy(st->cst);
    if (st->cl) sp_cluster_destroy(st->cl);
    for (size_t i = 0; i < st->nbuckets; i++)
        for (sp_obj *o = st->buckets[i], *next; o; o = next) {
            next = o->next;
            obj_free(o);
        }
    free(st->buckets);
    for (uint32_t i = 0; i < st->capnames; i++) free(st->names[i]);
    free(st->names);
    for (size_t i = 0; i < st->nparts; i++) {
        part_clear_cmds(&st->parts[i]);
        free(st->parts[i].cmds);
    }
    jobs_clear(st->jobs, &st->njobs); /* never prepared: their batch is replayed */
    free(st->jobs);
    free(st->parts);
    free(st->want);
    free(st);
}

int sp_store_assign(sp_store *st, int32_t part, const char *const *topics, int ntopics,
                    int64_t *offsets) {
    char meta[64];
    make_key(meta, sizeof meta, part, "meta");
    redisReply *r = NULL;
    const char *incr[] = {"HINCRBY", meta, "epoch", "1"};
    size_t incr_lens[] = {7, strlen(meta), 5, 1};
    int incr_argc = 4;
    const char **incr_argv = incr;
    size_t *incr_lp = incr_lens;
    /* Durable with wait_replicas: the new epoch must survive a failover, or
     * the promoted replica would hold the old one and fence us out. */
    int rc = pipeline_durable(st, 1, &incr_argc, &incr_argv, &incr_lp, &r, "partition assignment");
    if (rc != SP_OK) return rc;
    if (r->type != REDIS_REPLY_INTEGER) {
        sp_error("redis: HINCRBY %s epoch: %s", meta, r->type == REDIS_REPLY_ERROR ? r->str : "?");
        freeReplyObject(r);
        return SP_ERR_FATAL;
    }
    struct part *p = part_get(st, part);
    p->epoch = r->integer;
    p->owned = 1;
    p->dirty = NULL;
    part_clear_cmds(p);
    freeReplyObject(r);
    /* The next offsets and the last commit's number (commits go on numbering
     * from the last one applied, by whichever instance) in one round trip,
     * after the epoch bump, so no other commit lands in between. */
    if (ntopics > 60) { /* command() takes at most 64 arguments */
        sp_error("redis: %d input topics, at most 60", ntopics);
        return SP_ERR_FATAL;
    }
    int argc = 3 + ntopics;
    const char **argv = sp_xmalloc((size_t)argc * sizeof *argv);
    char (*fields)[300] = sp_xmalloc((size_t)(ntopics ? ntopics : 1) * sizeof *fields);
    argv[0] = "HMGET";
    argv[1] = meta;
    for (int i = 0; i < ntopics; i++) {
        snprintf(fields[i], sizeof fields[i], "off:%s", topics[i]);
        argv[2 + i] = fields[i];
    }
    argv[2 + ntopics] = "cseq";
    rc = command(st, &r, argc, argv);
    free(argv);
    free(fields);
    if (rc != SP_OK) return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)ntopics + 1) {
        sp_error("redis: HMGET %s: %s", meta, r->type == REDIS_REPLY_ERROR ? r->str : "?");
        freeReplyObject(r);
        return SP_ERR_FATAL;
    }
    for (int i = 0; i <= ntopics; i++) {
        const redisReply *e = r->element[i];
        long long v = e->type == REDIS_REPLY_STRING ? strtoll(e->str, NULL, 10) : -1;
        if (i < ntopics)
            offsets[i] = v;
        else
            p->cseq = v < 0 ? 0 : v;
    }
    freeReplyObject(r);
    return SP_OK;
}

/* Forgets the queued objects (they are loaded on demand instead). */
static void want_clear(sp_store *st) {
    for (size_t i = 0; i < st->nwant; i++) st->want[i]->queued = 0;
    st->nwant = 0;
}

static int in_part(const sp_obj *o, const void *arg) {
    return o->part == *(const int32_t *)arg;
}

void sp_store_revoke(sp_store *st, int32_t part) {
    struct part *p = part_get(st, part);
    p->owned = 0;
    p->dirty = NULL;
    part_clear_cmds(p);
    want_clear(st);
    st->batch++;
    cache_remove_if(st, in_part, &part);
}

int sp_store_owns(const sp_store *st, int32_t part) {
    return (size_t)part < st->nparts && st->parts[part].owned;
}

sp_obj *sp_store_want(sp_store *st, int32_t part, const char *suffix) {
    char key[512];
    size_t klen = make_key(key, sizeof key, part, suffix);
    sp_obj *o = cache_lookup(st, part, key, klen, 1);
    if (o->loaded || o->queued) return o;
    o->queued = 1;
    if (st->nwant == st->capwant) {
        st->capwant = st->capwant ? st->capwant * 2 : 256;
        st->want = sp_xrealloc(st->want, st->capwant * sizeof *st->want);
    }
    st->want[st->nwant++] = o;
    return o;
}

int sp_store_prefetch(sp_store *st) {
    size_t n = st->nwant;
    if (!n) return SP_OK;
    int *argcs = sp_xmalloc(n * sizeof *argcs);
    const char ***argvs = sp_xmalloc(n * sizeof *argvs);
    size_t **lens = sp_xmalloc(n * sizeof *lens);
    const char **argv = sp_xmalloc(2 * n * sizeof *argv);
    size_t *lv = sp_xmalloc(2 * n * sizeof *lv);
    redisReply **replies = sp_xmalloc(n * sizeof *replies);
    for (size_t i = 0; i < n; i++) {
        argcs[i] = 2;
        argv[2 * i] = "HGETALL";
        argv[2 * i + 1] = st->want[i]->key;
        lv[2 * i] = 7;
        lv[2 * i + 1] = st->want[i]->klen;
        argvs[i] = &argv[2 * i];
        lens[i] = &lv[2 * i];
    }
    int rc = pipeline(st, n, argcs, argvs, lens, replies);
    if (rc == SP_OK) {
        for (size_t i = 0; i < n; i++) {
            st->want[i]->queued = 0;
            if (!st->want[i]->loaded) obj_load(st->want[i], replies[i]);
            freeReplyObject(replies[i]);
        }
        st->nwant = 0;
    }
    free(argcs);
    free(argvs);
    free(lens);
    free(argv);
    free(lv);
    free(replies);
    return rc;
}

int sp_store_load(sp_store *st, sp_obj *o) {
    if (o->loaded) return SP_OK;
    redisReply *r = NULL;
    const char *argv[] = {"HGETALL", o->key};
    int rc = command(st, &r, 2, argv);
    if (rc != SP_OK) return rc;
    obj_load(o, r);
    freeReplyObject(r);
    return SP_OK;
}

int sp_store_get(sp_store *st, int32_t part, const char *suffix, sp_obj **out) {
    char key[512];
    size_t klen = make_key(key, sizeof key, part, suffix);
    sp_obj *o = cache_lookup(st, part, key, klen, 1);
    int rc = sp_store_load(st, o);
    if (rc == SP_OK) *out = o;
    return rc;
}

uint64_t sp_store_batch(const sp_store *st) { return st->batch; }

/* Marks a field changed: the object joins its partition's dirty list once. */
static void obj_mark(sp_obj *o, struct field *f) {
    o->ndirty += !f->dirty;
    f->dirty = 1;
    if (o->dirty) return;
    o->dirty = 1;
    struct part *p = part_get(o->st, o->part);
    o->dirty_next = p->dirty;
    p->dirty = o;
}

sp_fname sp_fname_of(const char *name) {
    sp_fname n = {name, 0, 0, 0};
    n.hash = name_hash(name, &n.len);
    memcpy(&n.head, name, n.len < 8 ? n.len : 8);
    return n;
}

/* The field calls of store.h with the name's hash and length worked out
 * once (sp_fname_of): an operator that touches the same fields at every
 * event hashes none of their names. The store's objects are never const
 * underneath; the readers' `const` promises no change of value, while they
 * may still parse or format into the cache. */
int64_t sp_obj_get_int_f(const sp_obj *o, const sp_fname *n, int64_t def) {
    struct field *f = field_lookup((sp_obj *)o, n, 0);
    return f ? field_int(f) : def;
}

double sp_obj_get_double_f(const sp_obj *o, const sp_fname *n, double def) {
    struct field *f = field_lookup((sp_obj *)o, n, 0);
    return f ? field_double(f) : def;
}

const char *sp_obj_get_str_f(const sp_obj *o, const sp_fname *n) {
    struct field *f = field_lookup((sp_obj *)o, n, 0);
    return f ? field_text(f) : NULL;
}

const char *sp_obj_get_strn_f(const sp_obj *o, const sp_fname *n, size_t *len) {
    struct field *f = field_lookup((sp_obj *)o, n, 0);
    if (!f) {
        *len = 0;
        return NULL;
    }
    const char *t = field_text(f);
    *len = f->tlen;
    return t;
}

void sp_obj_set_int_f(sp_obj *o, const sp_fname *n, int64_t v) {
    struct field *f = field_lookup(o, n, SP_G17_MAX);
    f->kind = F_INT;
    f->num.i = v;
    f->text_ok = 0;
    obj_mark(o, f);
}

void sp_obj_set_double_f(sp_obj *o, const sp_fname *n, double v) {
    struct field *f = field_lookup(o, n, SP_G17_MAX);
    f->kind = F_DBL;
    f->num.d = v;
    f->text_ok = 0;
    obj_mark(o, f);
}

void sp_obj_set_str_f(sp_obj *o, const sp_fname *n, const char *v, size_t len) {
    struct field *f = field_lookup(o, n, len + 1);
    text_set(o, f, v, len);
    obj_mark(o, f);
}

/* The calls by name: the name hashed at each call. */
int64_t sp_obj_get_int(const sp_obj *o, const char *field, int64_t def) {
    sp_fname n = sp_fname_of(field);
    return sp_obj_get_int_f(o, &n, def);
}

double sp_obj_get_double(const sp_obj *o, const char *field, double def) {
    sp_fname n = sp_fname_of(field);
    return sp_obj_get_double_f(o, &n, def);
}

const char *sp_obj_get_str(const sp_obj *o, const char *field) {
    sp_fname n = sp_fname_of(field);
    return sp_obj_get_str_f(o, &n);
}

void sp_obj_set_str(sp_obj *o, const char *field, const char *v) {
    sp_fname n = sp_fname_of(field);
    sp_obj_set_str_f(o, &n, v, strlen(v));
}

void sp_obj_set_int(sp_obj *o, const char *field, int64_t v) {
    sp_fname n = sp_fname_of(field);
    sp_obj_set_int_f(o, &n, v);
}

void sp_obj_set_double(sp_obj *o, const char *field, double v) {
    sp_fname n = sp_fname_of(field);
    sp_obj_set_double_f(o, &n, v);
}

/* One lookup for the read and the write; an absent field counts from 0. */
void sp_obj_incr_f(sp_obj *o, const sp_fname *n, int64_t by) {
    struct field *f = field_lookup(o, n, 0);
    int64_t v = f ? field_int(f) : 0;
    if (!f) f = field_add(o, n, SP_G17_MAX); /* known absent */
    f->kind = F_INT;
    f->num.i = v + by;
    f->text_ok = 0;
    obj_mark(o, f);
}

void sp_obj_incr(sp_obj *o, const char *field, int64_t by) {
    sp_fname n = sp_fname_of(field);
    sp_obj_incr_f(o, &n, by);
}

void sp_obj_incrf(sp_obj *o, const char *field, double by) {
    sp_fname n = sp_fname_of(field);
    struct field *f = field_lookup(o, &n, 0);
    double v = f ? field_double(f) : 0;
    if (!f) f = field_add(o, &n, SP_G17_MAX); /* known absent */
    f->kind = F_DBL;
    f->num.d = v + by;
    f->text_ok = 0;
    obj_mark(o, f);
}

size_t sp_obj_nfields(const sp_obj *o) { return o->nfields; }

/* A new object's texts get one piece of arena for the fields reserved:
 * the twenty-odd numbers' texts of a new profile's first event took three
 * chunks (and their mallocs and frees) one after the other. */
void sp_obj_reserve(sp_obj *o, size_t n) {
    if (n >= UINT32_MAX / 4) too_long(n);
    if (!o->arena && n > o->nfields) arena_reserve(o, (n - o->nfields) * SP_G17_MAX);
    fields_reserve(o, (uint32_t)n);
}

const char *sp_obj_field_name(const sp_obj *o, size_t i) { return o->fields[i].name->s; }
const char *sp_obj_field_value(const sp_obj *o, size_t i) {
    return field_text(&((sp_obj *)o)->fields[i]);
}

/* A command is one block -- its argv, then its lens, then every argument's
 * bytes -- so that queueing it costs one malloc: dedupe queues a few per
 * topic-partition per batch. The lengths are measured before the block
 * exists, into `first` for the handful of arguments commands have (an
 * APPEND's text can be kilobytes: measured once). */
void sp_store_tx_cmd(sp_store *st, int32_t part, int argc, const char *const *argv) {
    struct part *p = part_get(st, part);
    if (p->ncmds == p->capcmds) {
        p->capcmds = p->capcmds ? p->capcmds * 2 : 16;
        p->cmds = sp_xrealloc(p->cmds, p->capcmds * sizeof *p->cmds);
    }
    struct cmd *c = &p->cmds[p->ncmds++];
    size_t first[8], nfirst = sizeof first / sizeof first[0];
    size_t head = (size_t)argc * (sizeof *c->argv + sizeof *c->lens), total = head;
    for (int i = 0; i < argc; i++) {
        size_t len = strlen(argv[i]);
        if ((size_t)i < nfirst) first[i] = len;
        total += len + 1;
    }
    char *block = sp_xmalloc(total);
    c->argc = argc;
    c->argv = (char **)(void *)block;
    c->lens = (size_t *)(void *)(block + (size_t)argc * sizeof *c->argv);
    char *w = block + head;
    for (int i = 0; i < argc; i++) {
        c->lens[i] = (size_t)i < nfirst ? first[i] : strlen(argv[i]);
        memcpy(w, argv[i], c->lens[i] + 1);
        c->argv[i] = w;
        w += c->lens[i] + 1;
    }
}

void sp_store_tx_job(sp_store *st, int (*run)(sp_store *conn, void *ctx), void (*free_ctx)(void *ctx),
                     void *ctx) {
    if (st->njobs == st->capjobs) {
        st->capjobs = st->capjobs ? st->capjobs * 2 : 4;
        st->jobs = sp_xrealloc(st->jobs, st->capjobs * sizeof *st->jobs);
    }
    st->jobs[st->njobs++] = (struct job){run, free_ctx, ctx};
}

static void jobs_clear(struct job *jobs, size_t *n) {
    for (size_t i = 0; i < *n; i++)
        if (jobs[i].free_ctx) jobs[i].free_ctx(jobs[i].ctx);
    *n = 0;
}

/* Runs jobs in order on conn; the first that fails stops the rest. */
static int jobs_run(sp_store *conn, const struct job *jobs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int rc = jobs[i].run(conn, jobs[i].ctx);
        if (rc != SP_OK) return rc;
    }
    return SP_OK;
}

/* A partition's commit is one MULTI/EXEC transaction on the connection,
 * sent in the same pipeline as its fence check:
 *
 *   WATCH meta
 *   EVAL fence_lua 1 meta <epoch> <seq>
 *   MULTI
 *   HSET meta cseq <seq> off:<topic> <next offset> ...
 *   HSET <dirty object> <field> <value> ...     (one per dirty object)
 *   <the operators' commands>
 *   EXEC
 *
 * EXEC applies the transaction only if nothing wrote the meta hash since
 * WATCH. The fence script reads the epoch and the last commit's sequence
 * number; when the commit must not apply it rewrites the epoch with its
 * own value, which touches the watched key, so EXEC discards everything:
 *   - another instance owns the partition now (the epoch is not ours):
 *     FENCED, and a fenced instance writes nothing;
 *   - the commit is there already (seq <= cseq): 2. A commit whose reply was
 *     lost with its connection (a master killed after it applied and
 *     replicated it, a connection dropped after the write) is sent again,
 *     and operators queue commands that are not idempotent (dedupe's APPEND,
 *     HINCRBYs), so it must apply once;
 *   - an earlier commit of the partition is missing (seq > cseq + 1): GAP,
 *     a failed commit. Commits of a partition apply in sequence, never one
 *     over a hole (a pipeline carries at most one commit of a partition, and
 *     a discarded one is sent again before the next).
 * A new owner's epoch bump between WATCH and EXEC discards it too. EVAL, not
 * EVALSHA: a script Redis does not know would fail without touching the key
 * and let EXEC through unchecked; Redis caches the compiled script by the
 * SHA1 of its text, so the text costs a hash a commit.
 *
 * Why not one Lua script carrying the whole commit, the first design: every
 * argument of EVAL is made a Lua string and back, and a script's
 * redis.call costs more than the same command in MULTI. Redis spent about
 * twice the CPU on the same writes that way (bench/RESULTS.md). */
static const char fence_lua[] =
    "local e = redis.call('HGET', KEYS[1], 'epoch')\n"
    "local function discard(v)\n"
    "  redis.call('HSET', KEYS[1], 'epoch', e or '0')\n"
    "  return v\n"
    "end\n"
    "if e ~= ARGV[1] then\n"
    "  return discard(redis.error_reply('FENCED epoch is ' .. tostring(e) .. ', ours ' .. ARGV[1]))\n"
    "end\n"
    "local s = tonumber(redis.call('HGET', KEYS[1], 'cseq') or '0')\n"
    "local n = tonumber(ARGV[2])\n"
    "if s >= n then return discard(2) end\n"
    "if s ~= n - 1 then\n"
    "  return discard(redis.error_reply('GAP commit ' .. n .. ' after ' .. s))\n"
    "end\n"
    "return 1\n";

/* A built commit: its arguments copied into one buffer, NUL-terminated, the
 * batch goes on changing the objects while it waits to be sent. */
struct built {
    const char **v;
    size_t *l;
    size_t *cmd;      /* command k: v + cmd[k], cmd[k + 1] - cmd[k] arguments */
    size_t ncmd;      /* cmd has ncmd + 1 entries */
    char *buf;
    long long epoch;  /* the partition's epoch it was built with */
};

/* The text of an integer argument: at most 20 digits, a sign, a NUL. */
#define ARG_INT_MAX 24

static void built_free(struct built *b) {
    free(b->v);
    free(b->l);
    free(b->cmd);
    free(b->buf);
}

/* Filling a built whose arrays and buffer were sized beforehand: `at` is
 * where the next argument's bytes go. */
struct filler {
    struct built *b;
    size_t n;         /* arguments so far */
    char *at;
};

static void fill_cmd(struct filler *f) { f->b->cmd[f->b->ncmd++] = f->n; }

/* Ends the argument of len bytes written at f->at. */
static inline __attribute__((always_inline)) void fill_end(struct filler *f, size_t len) {
    f->at[len] = '\0';
    f->b->v[f->n] = f->at;
    f->b->l[f->n++] = len;
    f->at += len + 1;
}

/* One argument: s (len bytes). Inline: a commit fills two arguments per
 * dirty field, and the call and an empty prefix's copy cost more than the
 * copy of a short name or number. */
static inline __attribute__((always_inline)) void fill(struct filler *f, const char *s,
                                                       size_t len) {
    memcpy(f->at, s, len);
    fill_end(f, len);
}

/* One argument: prefix (plen bytes) then s (len bytes). */
static void fill2(struct filler *f, const char *prefix, size_t plen, const char *s, size_t len) {
    memcpy(f->at, prefix, plen);
    memcpy(f->at + plen, s, len);
    fill_end(f, plen + len);
}

static void fill_int(struct filler *f, long long v) {
    fill_end(f, sp_i64toa(v, f->at)); /* which writes the NUL too */
}

/* Builds the transaction of one partition's commit (see fence_lua) into b.
 * A first pass counts the commands and arguments and sizes their bytes (and
 * writes the text of every dirty number, which the second needs anyway);
 * the second copies each argument once, straight into b's buffer. Building
 * a list of pointers to the arguments first and copying them after, the
 * previous way, cost a third pass and five more allocations a commit. */
static void build_commit(struct part *p, int32_t part, const sp_commit *c, struct built *b) {
    char meta[64];
    size_t mlen = make_key(meta, sizeof meta, part, "meta");
    /* WATCH, EVAL (7), MULTI, HSET of the meta hash (4), EXEC */
    size_t ncmd = 5 + p->ncmds, nargs = 14 + 2 * (size_t)c->n;
    size_t bytes = 3 * (mlen + 1) + sizeof fence_lua + 3 * ARG_INT_MAX + 64;
    for (int i = 0; i < c->n; i++) bytes += 4 + strlen(c->topics[i]) + 1 + ARG_INT_MAX;
    for (sp_obj *o = p->dirty; o; o = o->dirty_next) {
        ncmd++;
        nargs += 2 + 2 * o->ndirty;
        bytes += 5 + o->klen + 1;
        for (size_t i = 0; i < o->nfields; i++) {
            struct field *fd = &o->fields[i];
            if (!fd->dirty) continue;
            field_text(fd); /* sets tlen */
            bytes += fd->name->len + 1 + fd->tlen + 1;
        }
    }
    for (size_t i = 0; i < p->ncmds; i++) {
        nargs += (size_t)p->cmds[i].argc;
        for (int j = 0; j < p->cmds[i].argc; j++) bytes += p->cmds[i].lens[j] + 1;
    }
    b->v = sp_xmalloc(nargs * sizeof *b->v);
    b->l = sp_xmalloc(nargs * sizeof *b->l);
    b->cmd = sp_xmalloc((ncmd + 1) * sizeof *b->cmd);
    b->buf = sp_xmalloc(bytes);
    b->ncmd = 0;
    b->epoch = p->epoch;
    struct filler f = {.b = b, .at = b->buf};
    long long seq = ++p->cseq;
    fill_cmd(&f);
    fill(&f, "WATCH", 5);
    fill(&f, meta, mlen);
    fill_cmd(&f);
    fill(&f, "EVAL", 4);
    fill(&f, fence_lua, sizeof fence_lua - 1);
    fill(&f, "1", 1);
    fill(&f, meta, mlen);
    fill_int(&f, p->epoch);
    fill_int(&f, seq);
    fill_cmd(&f);
    fill(&f, "MULTI", 5);
    fill_cmd(&f);
    fill(&f, "HSET", 4);
    fill(&f, meta, mlen);
    fill(&f, "cseq", 4);
    fill_int(&f, seq);
    for (int i = 0; i < c->n; i++) {
        fill2(&f, "off:", 4, c->topics[i], strlen(c->topics[i]));
        fill_int(&f, (long long)c->offsets[i]);
    }
    for (sp_obj *o = p->dirty; o; o = o->dirty_next) {
        fill_cmd(&f);
        fill(&f, "HSET", 4);
        fill(&f, o->key, o->klen);
        for (size_t i = 0; i < o->nfields; i++) {
            const struct field *fd = &o->fields[i];
            if (!fd->dirty) continue;
            fill(&f, fd->name->s, fd->name->len);
            fill(&f, fd->text, fd->tlen); /* written by the first pass */
        }
    }
    for (size_t i = 0; i < p->ncmds; i++) {
        fill_cmd(&f);
        for (int j = 0; j < p->cmds[i].argc; j++)
            fill(&f, p->cmds[i].argv[j], p->cmds[i].lens[j]);
    }
    fill_cmd(&f);
    fill(&f, "EXEC", 4);
    b->cmd[b->ncmd] = f.n;
}

/* The partition's changes have left the batch (committed, or copied into
 * transaction `seq`, which keeps its objects cached until applied). */
static void mark_clean(struct part *p, uint64_t seq) {
    for (sp_obj *o = p->dirty, *next; o; o = next) {
        next = o->dirty_next;
        o->dirty = 0;
        o->ndirty = 0;
        if (seq) o->pending = seq;
        o->dirty_next = NULL;
        for (size_t i = 0; i < o->nfields; i++) o->fields[i].dirty = 0;
    }
    p->dirty = NULL;
    part_clear_cmds(p);
}

/* What one commit's replies say. */
enum { CM_APPLIED, CM_THERE, CM_FENCED, CM_RESEND, CM_FAILED };

static int commit_outcome(redisReply **r, size_t ncmd, char *why, size_t whylen) {
    const redisReply *fence = r[1], *exec = r[ncmd - 1];
    why[0] = '\0';
    if (fence->type == REDIS_REPLY_ERROR) {
        if (exec->type == REDIS_REPLY_ARRAY) {
            /* Cannot happen: every refusal of fence_lua touches the key. */
            snprintf(why, whylen, "applied although its fence check failed (%s)", fence->str);
            return CM_FAILED;
        }
        if (!strncmp(fence->str, "FENCED", 6)) {
            snprintf(why, whylen, "%s", fence->str);
            return CM_FENCED;
        }
        snprintf(why, whylen, "fence check: %s", fence->str);
        return CM_FAILED;
    }
    if (fence->type != REDIS_REPLY_INTEGER) {
        snprintf(why, whylen, "fence check: unexpected reply");
        return CM_FAILED;
    }
    if (fence->integer == 2) {
        if (exec->type != REDIS_REPLY_ARRAY) return CM_THERE;
        snprintf(why, whylen, "applied again although its fence check found it applied");
        return CM_FAILED;
    }
    if (exec->type == REDIS_REPLY_NIL) {
        /* Something wrote the meta hash between WATCH and EXEC: a new owner
         * (the resend meets FENCED), or a fenced instance's check. */
        snprintf(why, whylen, "discarded: the partition's meta hash changed during the commit");
        return CM_RESEND;
    }
    if (exec->type == REDIS_REPLY_ERROR) {
        /* EXECABORT: a command was refused when queued; say which. */
        for (size_t k = 3; k + 1 < ncmd; k++)
            if (r[k]->type == REDIS_REPLY_ERROR) {
                snprintf(why, whylen, "%s (%s)", exec->str, r[k]->str);
                return CM_FAILED;
            }
        snprintf(why, whylen, "%s", exec->str);
        return CM_FAILED;
    }
    if (exec->type != REDIS_REPLY_ARRAY) {
        snprintf(why, whylen, "EXEC: unexpected reply");
        return CM_FAILED;
    }
    for (size_t k = 0; k < exec->elements; k++)
        if (exec->element[k]->type == REDIS_REPLY_ERROR) {
            snprintf(why, whylen, "command %zu of the transaction: %s", k + 1,
                     exec->element[k]->str);
            return CM_FAILED;
        }
    return CM_APPLIED;
}

/* Sends built commits in one pipeline on st's connection. SP_OK once Redis
 * answered them all, each one's outcome in results[]: SP_OK (applied, or
 * there already), SP_ERR_FENCED or SP_ERR_FATAL; otherwise the pipeline's
 * error (SP_ERR_RETRY when aborted), results[] unset. A commit applies once
 * however often it is sent (see fence_lua), so after a lost connection the
 * whole pipeline is simply sent again, and so it is when a transaction was
 * discarded because the meta hash changed under it; with wait_replicas it returns once the
 * replicas of every node written to hold it. */
#define COMMIT_RESENDS 8

static int send_commits(sp_store *st, const struct built *bs, const int32_t *parts, size_t n,
                        int *results) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += bs[i].ncmd;
    size_t m = total ? total : 1;
    int *argcs = sp_xmalloc(m * sizeof *argcs);
    const char ***argvs = sp_xmalloc(m * sizeof *argvs);
    size_t **lens = sp_xmalloc(m * sizeof *lens);
    redisReply **rs = sp_xcalloc(m, sizeof *rs);
    for (size_t i = 0, k = 0; i < n; i++)
        for (size_t c = 0; c < bs[i].ncmd; c++, k++) {
            argcs[k] = (int)(bs[i].cmd[c + 1] - bs[i].cmd[c]);
            argvs[k] = bs[i].v + bs[i].cmd[c];
            lens[k] = bs[i].l + bs[i].cmd[c];
        }
    int rc;
    for (int attempt = 1;; attempt++) {
        if ((rc = pipeline_durable(st, total, argcs, argvs, lens, rs, "commit")) != SP_OK) break;
        int resend = 0;
        char why[512], last[600] = "";
        for (size_t i = 0, k = 0; i < n; k += bs[i].ncmd, i++) {
            int out = commit_outcome(rs + k, bs[i].ncmd, why, sizeof why);
            results[i] = SP_OK;
            if (out == CM_FENCED) {
                sp_warn("partition %d: fenced (%s); dropping its state", (int)parts[i], why);
                results[i] = SP_ERR_FENCED;
            } else if (out == CM_RESEND && attempt < COMMIT_RESENDS) {
                resend = 1;
                snprintf(last, sizeof last, "partition %d: %s", (int)parts[i], why);
            } else if (out == CM_RESEND || out == CM_FAILED) {
                sp_error("partition %d: commit failed: %s%s", (int)parts[i], why,
                         out == CM_RESEND ? " (the last of several sendings)" : "");
                results[i] = SP_ERR_FATAL;
            }
        }
        for (size_t k = 0; k < total; k++) {
            freeReplyObject(rs[k]);
            rs[k] = NULL;
        }
        if (!resend) break;
        sp_warn("%s; sending the pipeline again", last);
    }
    free(argcs);
    free(argvs);
    free(lens);
    free(rs);
    return rc;
}

int sp_store_commit_many(sp_store *st, sp_commit *cs, size_t n) {
    if (st->njobs) {
        int rc = jobs_run(st, st->jobs, st->njobs);
        jobs_clear(st->jobs, &st->njobs);
        if (rc != SP_OK) return rc;
    }
    if (!n) return SP_OK;
    struct built *bs = sp_xcalloc(n, sizeof *bs);
    int32_t *parts = sp_xmalloc(n * sizeof *parts);
    int *results = sp_xmalloc(n * sizeof *results);
    for (size_t i = 0; i < n; i++) {
        struct part *p = part_get(st, cs[i].part);
        cs[i].result = p->owned ? SP_OK : SP_ERR_FENCED;
        parts[i] = cs[i].part;
        build_commit(p, cs[i].part, &cs[i], &bs[i]);
    }
    int rc = send_commits(st, bs, parts, n, results), answered = rc == SP_OK;
    for (size_t i = 0; i < n && answered; i++) {
        if (results[i] != SP_OK) {
            sp_store_revoke(st, cs[i].part);
            cs[i].result = results[i];
            if (results[i] == SP_ERR_FATAL) rc = SP_ERR_FATAL;
        } else if (cs[i].result == SP_OK) {
            mark_clean(part_get(st, cs[i].part), 0);
        }
    }
    for (size_t i = 0; i < n; i++) built_free(&bs[i]);
    free(bs);
    free(parts);
    free(results);
    return rc;
}

/* ------------------------------------------------- asynchronous commits */


sp_txn *sp_store_prepare(sp_store *st, const sp_commit *cs, size_t n) {
    sp_txn *t = sp_xcalloc(1, sizeof *t);
    struct sp_txn_priv *q = t->priv = sp_xcalloc(1, sizeof *q);
    size_t m = n ? n : 1;
    t->n = n;
    t->commits = sp_xmalloc(m * sizeof *t->commits);
    q->seq = ++st->next_seq;
    q->built = sp_xcalloc(m, sizeof *q->built);
    q->jobs = st->jobs;
    q->njobs = st->njobs;
    st->jobs = NULL;
    st->njobs = st->capjobs = 0;
    for (size_t i = 0; i < n; i++) {
        struct part *p = part_get(st, cs[i].part);
        t->commits[i] = cs[i];
        t->commits[i].topics = NULL;
        t->commits[i].offsets = NULL;
        t->commits[i].result = p->owned ? SP_OK : SP_ERR_FENCED;
        build_commit(p, cs[i].part, &cs[i], &q->built[i]);
        mark_clean(p, q->seq);
    }
    return t;
}

static void txn_free(sp_txn *t) {
    if (!t) return;
    struct sp_txn_priv *q = t->priv;
    for (size_t i = 0; i < t->n; i++) built_free(&q->built[i]);
    free(q->built);
    jobs_clear(q->jobs, &q->njobs);
    free(q->jobs);
    free(q);
    free(t->commits);
    free(t);
}

void sp_txn_free(sp_txn *t) { txn_free(t); }

/* On the committer thread: sends one transaction on the committer's
 * connection, opened on first use. */
static void txn_run(sp_store *st, sp_txn *t) {
    struct sp_txn_priv *q = t->priv;
    double t0 = sp_now_us();
    if (!st->cst) {
        char err[256];
        sp_store_conf conf = st->conf;
        if (!(st->cst = sp_store_new(&conf, err, sizeof err))) {
            sp_error("committer: %s", err);
            t->rc = aborted(st) ? SP_ERR_RETRY : SP_ERR_FATAL;
            return;
        }
    }
    if (q->njobs && (t->rc = jobs_run(st->cst, q->jobs, q->njobs)) != SP_OK) {
        t->latency_us = sp_now_us() - t0;
        return;
    }
    if (!t->n) return;
    int32_t *parts = sp_xmalloc(t->n * sizeof *parts);
    int *results = sp_xmalloc(t->n * sizeof *results);
    for (size_t i = 0; i < t->n; i++) parts[i] = t->commits[i].part;
    t->rc = send_commits(st->cst, q->built, parts, t->n, results);
    for (size_t i = 0; i < t->n && t->rc == SP_OK; i++) {
        if (t->commits[i].result == SP_OK) t->commits[i].result = results[i];
        if (results[i] == SP_ERR_FATAL) t->rc = SP_ERR_FATAL;
    }
    free(parts);
    free(results);
    t->latency_us = sp_now_us() - t0;
}


static void *committer_main(void *arg) {
    sp_store *st = arg;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (!st->queue && !st->stopping) pthread_cond_wait(&st->cv, &st->mu);
        if (!st->queue) break;
        sp_txn *t = st->queue;
        pthread_mutex_unlock(&st->mu);
        txn_run(st, t);
        pthread_mutex_lock(&st->mu);
        st->queue = t->priv->next;
        if (!st->queue) st->queue_tail = NULL;
        t->priv->next = NULL;
        if (st->done_tail)
            st->done_tail->priv->next = t;
        else
            st->done = t;
        st->done_tail = t;
        pthread_cond_broadcast(&st->cv);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

void sp_store_submit(sp_store *st, sp_txn *t) {
    if (!st->thread_started) {
        pthread_mutex_init(&st->mu, NULL);
        pthread_cond_init(&st->cv, NULL);
        if (pthread_create(&st->thread, NULL, committer_main, st)) {
            sp_error("committer: cannot start a thread");
            abort();
        }
        st->thread_started = 1;
    }
    pthread_mutex_lock(&st->mu);
    if (st->queue_tail)
        st->queue_tail->priv->next = t;
    else
        st->queue = t;
    st->queue_tail = t;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

sp_txn *sp_store_reap(sp_store *st, int wait_ms) {
    if (!st->thread_started) return NULL;
    pthread_mutex_lock(&st->mu);
    if (!st->done && wait_ms > 0 && st->queue) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)wait_ms * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        while (!st->done && st->queue &&
               pthread_cond_timedwait(&st->cv, &st->mu, &ts) != ETIMEDOUT) {
        }
    }
    sp_txn *t = st->done;
    if (t) {
        st->done = t->priv->next;
        if (!st->done) st->done_tail = NULL;
        t->priv->next = NULL;
    }
    pthread_mutex_unlock(&st->mu);
    if (!t) return NULL;
    st->applied = t->priv->seq;
    /* A refused commit gives the partition up -- unless it has been
     * assigned to us again since (a new epoch), which that stale refusal
     * must not undo. */
    for (size_t i = 0; i < t->n; i++) {
        struct part *p = part_get(st, t->commits[i].part);
        if (t->commits[i].result != SP_OK && p->epoch == t->priv->built[i].epoch)
            sp_store_revoke(st, t->commits[i].part);
    }
    return t;
}

int sp_store_commit(sp_store *st, int32_t part, const char *const *topics,
                    const int64_t *offsets, int n) {
    if (!sp_store_owns(st, part)) return SP_ERR_FENCED;
    sp_commit c = {part, topics, offsets, n, SP_OK};
    int rc = sp_store_commit_many(st, &c, 1);
    return rc != SP_OK ? rc : c.result;
}

int sp_store_call(sp_store *st, size_t n, const int *argcs, const char *const *const *argvs,
                  const size_t *const *argvlens, struct redisReply **replies) {
    if (!n) return SP_OK;
    return pipeline_durable(st, n, (int *)argcs, (const char ***)argvs, (size_t **)argvlens,
                            replies, "side writes");
}

int sp_store_side(sp_store *st, size_t n, const int *argcs, const char *const *const *argvs,
                  long long *ints) {
    return sp_store_side_bin(st, n, argcs, argvs, NULL, ints);
}

int sp_store_side_bin(sp_store *st, size_t n, const int *argcs, const char *const *const *argvs,
                      const size_t *const *argvlens, long long *ints) {
    if (!n) return SP_OK;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += (size_t)argcs[i];
    size_t *lv = sp_xmalloc(total * sizeof *lv);
    size_t **lens = sp_xmalloc(n * sizeof *lens);
    redisReply **replies = sp_xmalloc(n * sizeof *replies);
    for (size_t i = 0, k = 0; i < n; i++) {
        lens[i] = &lv[k];
        for (int j = 0; j < argcs[i]; j++, k++)
            lv[k] = argvlens ? argvlens[i][j] : strlen(argvs[i][j]);
    }
    int rc = pipeline_durable(st, n, (int *)argcs, (const char ***)argvs, lens, replies,
                              "side writes");
    if (rc == SP_OK) {
        for (size_t i = 0; i < n; i++) {
            if (replies[i]->type == REDIS_REPLY_ERROR) {
                sp_error("redis: %s: %s", argvs[i][0], replies[i]->str);
                rc = SP_ERR_FATAL;
            }
            if (ints) ints[i] = replies[i]->type == REDIS_REPLY_INTEGER ? replies[i]->integer : -1;
            freeReplyObject(replies[i]);
        }
    }
    free(lv);
    free(lens);
    free(replies);
    return rc;
}

static int is_clean(const sp_obj *o, const void *arg) {
    return !o->dirty && o->pending <= *(const uint64_t *)arg;
}

void sp_store_end_batch(sp_store *st) {
    want_clear(st);
    st->batch++;
    if ((int64_t)st->nobjs > st->conf.max_entries) {
        size_t before = st->nobjs;
        cache_remove_if(st, is_clean, &st->applied);
        sp_debug("state cache: evicted %zu clean entries", before - st->nobjs);
    }
}

/* Runs "<cmd> {p<part>}:<suffix> [args...]" with retry (argv[1] is filled
 * in here). */
static int key_command(sp_store *st, int32_t part, const char *suffix, int argc,
                       const char **argv, redisReply **out) {
    char key[512];
    make_key(key, sizeof key, part, suffix);
    argv[1] = key;
    return command(st, out, argc, argv);
}

int sp_store_zscan(sp_store *st, int32_t part, const char *suffix,
                   void (*fn)(void *ctx, const char *member, size_t len, double score),
                   void *ctx) {
    redisReply *r = NULL;
    const char *argv[] = {"ZRANGE", NULL, "0", "-1", "WITHSCORES"};
    int rc = key_command(st, part, suffix, 5, argv, &r);
    if (rc != SP_OK) return rc;
    if (r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i + 1 < r->elements; i += 2)
            fn(ctx, r->element[i]->str, r->element[i]->len, strtod(r->element[i + 1]->str, NULL));
    freeReplyObject(r);
    return SP_OK;
}

int sp_store_hscan(sp_store *st, int32_t part, const char *suffix,
                   void (*fn)(void *ctx, const char *field, size_t flen, const char *value,
                              size_t vlen),
                   void *ctx) {
    redisReply *r = NULL;
    const char *argv[] = {"HGETALL", NULL};
    int rc = key_command(st, part, suffix, 2, argv, &r);
    if (rc != SP_OK) return rc;
    if (r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i + 1 < r->elements; i += 2)
            fn(ctx, r->element[i]->str, r->element[i]->len, r->element[i + 1]->str,
               r->element[i + 1]->len);
    freeReplyObject(r);
    return SP_OK;
}

int sp_store_read_string(sp_store *st, int32_t part, const char *suffix,
                         void (*fn)(void *ctx, const char *data, size_t len), void *ctx) {
    redisReply *r = NULL;
    const char *argv[] = {"GET", NULL};
    int rc = key_command(st, part, suffix, 2, argv, &r);
    if (rc != SP_OK) return rc;
    if (r->type == REDIS_REPLY_STRING) fn(ctx, r->str, r->len);
    freeReplyObject(r);
    return SP_OK;
}

size_t sp_store_cached(const sp_store *st) { return st->nobjs; }
uint64_t sp_store_reconnects(const sp_store *st) { return st->reconnects; }
uint64_t sp_store_wait_retries(const sp_store *st) { return st->wait_retries; }
