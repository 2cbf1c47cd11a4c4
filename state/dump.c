/* `shopstream dump-state`: every key in the store, one line per key, keys
 * sorted and each key's contents sorted, so two runs can be compared with
 * diff. The partition epochs ({p<n>}:meta epoch) count restarts and the
 * commit sequence numbers (cseq) commits, not state: both are left out unless
 * --all is given. */
#include <hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/cluster.h"
#include "state/store.h"
#include "stream/cli.h"
#include "stream/error.h"

struct kv {
    char *k, *v;
};

static int kv_cmp(const void *a, const void *b) {
    return strcmp(((const struct kv *)a)->k, ((const struct kv *)b)->k);
}

static int str_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The dump under construction: one line per key, from one or more servers
 * (every master of a cluster), sorted by key at the end. */
struct dump {
    const char *match;
    int all;
    struct kv *lines; /* k: key, v: the whole line */
    size_t n, cap;
    char *buf;        /* the line being built */
    size_t len, bufcap;
};

static void out(struct dump *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out(struct dump *d, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(d->buf + d->len, d->bufcap - d->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && d->len + (size_t)n < d->bufcap) {
            d->len += (size_t)n;
            return;
        }
        d->bufcap = (d->bufcap + (size_t)(n > 0 ? n : 0)) * 2 + 256;
        d->buf = sp_xrealloc(d->buf, d->bufcap);
    }
}

static void print_pairs(struct dump *d, const redisReply *r, int skip_epoch, int is_meta) {
    size_t n = r->elements / 2, m = 0;
    struct kv *kvs = sp_xcalloc(n ? n : 1, sizeof *kvs);
    for (size_t i = 0; i < n; i++) {
        if (skip_epoch && is_meta &&
            (!strcmp(r->element[2 * i]->str, "epoch") || !strcmp(r->element[2 * i]->str, "cseq")))
            continue;
        kvs[m].k = r->element[2 * i]->str;
        kvs[m++].v = r->element[2 * i + 1]->str;
    }
    qsort(kvs, m, sizeof *kvs, kv_cmp);
    for (size_t i = 0; i < m; i++) out(d, " %s=%s", kvs[i].k, kvs[i].v);
    free(kvs);
}

/* Appends one line per key of one server. Keys come from SCAN, so a key may
 * be seen twice; sp_cmd_dump_state prints each once. */
static int dump_server(void *ctx, redisContext *c, const char *addr) {
    struct dump *d = ctx;
    redisReply *r;
    char **keys = NULL;
    size_t nkeys = 0, cap = 0;
    char cursor[32] = "0";
    do {
        r = redisCommand(c, "SCAN %s MATCH %s COUNT 1000", cursor, d->match);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            fprintf(stderr, "shopstream dump-state: SCAN failed on %s\n", addr);
            if (r) freeReplyObject(r);
            for (size_t i = 0; i < nkeys; i++) free(keys[i]);
            free(keys);
            return 1;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            if (nkeys == cap) keys = sp_xrealloc(keys, (cap = cap ? cap * 2 : 1024) * sizeof *keys);
            keys[nkeys++] = sp_xstrdup(r->element[1]->element[i]->str);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0"));
    for (size_t i = 0; i < nkeys; i++) {
        r = redisCommand(c, "TYPE %s", keys[i]);
        char type[32];
        snprintf(type, sizeof type, "%s", r && r->str ? r->str : "?");
        if (r) freeReplyObject(r);
        d->len = 0;
        out(d, "%s %s", keys[i], type);
        int is_meta = strlen(keys[i]) > 5 && !strcmp(keys[i] + strlen(keys[i]) - 5, ":meta");
        if (!strcmp(type, "hash")) {
            r = redisCommand(c, "HGETALL %s", keys[i]);
            if (r) print_pairs(d, r, !d->all, is_meta);
        } else if (!strcmp(type, "zset")) {
            r = redisCommand(c, "ZRANGE %s 0 -1 WITHSCORES", keys[i]);
            if (r) print_pairs(d, r, 0, 0);
        } else if (!strcmp(type, "string")) {
            r = redisCommand(c, "GET %s", keys[i]);
            /* A HyperLogLog's bytes depend on the order of its PFADDs and
             * on whether PFCOUNT cached a count: print the count instead. */
            if (r && r->str && r->len >= 4 && !memcmp(r->str, "HYLL", 4)) {
                freeReplyObject(r);
                r = redisCommand(c, "PFCOUNT %s", keys[i]);
                if (r && r->type == REDIS_REPLY_INTEGER) out(d, " pfcount=%lld", r->integer);
            } else if (r && r->str) {
                out(d, " %s", r->str);
            }
        } else if (!strcmp(type, "set")) {
            r = redisCommand(c, "SMEMBERS %s", keys[i]);
            if (r) {
                char **m = sp_xmalloc((r->elements + 1) * sizeof *m);
                for (size_t j = 0; j < r->elements; j++) m[j] = r->element[j]->str;
                qsort(m, r->elements, sizeof *m, str_cmp);
                for (size_t j = 0; j < r->elements; j++) out(d, " %s", m[j]);
                free(m);
            }
        } else {
            r = NULL;
        }
        if (r) freeReplyObject(r);
        if (d->n == d->cap)
            d->lines = sp_xrealloc(d->lines, (d->cap = d->cap ? d->cap * 2 : 1024) * sizeof *d->lines);
        d->lines[d->n].k = keys[i];
        d->lines[d->n++].v = sp_xstrndup(d->buf, d->len);
    }
    free(keys);
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: shopstream dump-state [--redis-url URL | --redis-cluster HOST:PORT,...]\n"
               "                             [--match PATTERN] [--all]\n\n"
               "Prints every key (or those matching PATTERN) as 'key type contents', sorted.\n"
               "The URL defaults to $SHOPSTREAM_REDIS_URL, then redis://127.0.0.1:6379/0.\n"
               "With a cluster ($SHOPSTREAM_REDIS_CLUSTER), every master is scanned and the\n"
               "keys merged; $SHOPSTREAM_REDIS_USER/_PASSWORD give its credentials.\n");
}

static redisContext *connect_single(const char *url) {
    char err[256];
    sp_redis_url u;
    if (sp_redis_url_parse(url, &u, err, sizeof err) != SP_OK) {
        fprintf(stderr, "shopstream dump-state: %s\n", err);
        return NULL;
    }
    const char *pw = getenv("SHOPSTREAM_REDIS_PASSWORD"), *user = getenv("SHOPSTREAM_REDIS_USER");
    if (!u.password[0] && pw && *pw) {
        snprintf(u.password, sizeof u.password, "%s", pw);
        if (!u.user[0] && user) snprintf(u.user, sizeof u.user, "%s", user);
    }
    redisContext *c = u.unix_path[0] ? redisConnectUnix(u.unix_path) : redisConnect(u.host, u.port);
    if (!c || c->err) {
        fprintf(stderr, "shopstream dump-state: cannot connect to redis: %s\n",
                c ? c->errstr : "?");
        if (c) redisFree(c);
        return NULL;
    }
    redisReply *r;
    if (u.password[0]) {
        r = u.user[0] ? redisCommand(c, "AUTH %s %s", u.user, u.password)
                      : redisCommand(c, "AUTH %s", u.password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "shopstream dump-state: AUTH failed\n");
            if (r) freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    if (u.db) freeReplyObject(redisCommand(c, "SELECT %d", u.db));
    return c;
}

int sp_cmd_dump_state(int argc, char **argv) {
    const char *url = getenv("SHOPSTREAM_REDIS_URL"), *seeds = getenv("SHOPSTREAM_REDIS_CLUSTER");
    struct dump d = {.match = "*"};
    if (!url) url = "redis://127.0.0.1:6379/0";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(argv[i], "--redis-url") || !strcmp(argv[i], "--redis.url")) &&
                   i + 1 < argc) {
            url = argv[++i];
            seeds = NULL;
        } else if (!strncmp(argv[i], "--redis.url=", 12)) {
            url = argv[i] + 12;
            seeds = NULL;
        } else if ((!strcmp(argv[i], "--redis-cluster") || !strcmp(argv[i], "--redis.cluster")) &&
                   i + 1 < argc) {
            seeds = argv[++i];
        } else if (!strncmp(argv[i], "--redis.cluster=", 16)) {
            seeds = argv[i] + 16;
        } else if (!strcmp(argv[i], "--match") && i + 1 < argc) {
            d.match = argv[++i];
        } else if (!strcmp(argv[i], "--all")) {
            d.all = 1;
        } else {
            fprintf(stderr, "shopstream dump-state: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    int rc;
    if (seeds && *seeds) {
        /* Once: a dump is for comparing, so an unreachable cluster is an error. */
        volatile int no_retry = 1;
        char err[256];
        sp_cluster_conf cc = {seeds, getenv("SHOPSTREAM_REDIS_USER"),
                              getenv("SHOPSTREAM_REDIS_PASSWORD"), 5000, &no_retry};
        sp_cluster *cl = sp_cluster_new(&cc, err, sizeof err);
        if (!cl) {
            fprintf(stderr, "shopstream dump-state: %s\n", err);
            return 1;
        }
        rc = sp_cluster_each_master(cl, dump_server, &d);
        sp_cluster_destroy(cl);
    } else {
        redisContext *c = connect_single(url);
        if (!c) return 1;
        rc = dump_server(&d, c, url);
        redisFree(c);
    }
    qsort(d.lines, d.n, sizeof *d.lines, kv_cmp);
    for (size_t i = 0; i < d.n && !rc; i++)
        if (!i || strcmp(d.lines[i].k, d.lines[i - 1].k)) printf("%s\n", d.lines[i].v);
    for (size_t i = 0; i < d.n; i++) {
        free(d.lines[i].k);
        free(d.lines[i].v);
    }
    free(d.lines);
    free(d.buf);
    return rc ? 1 : 0;
}
