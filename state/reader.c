/* The read-side Redis connection; see state/reader.h. */
#include <hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/cluster.h"
#include "state/reader.h"
#include "state/resp.h"
#include "state/store.h"
#include "stream/error.h"
#include "stream/log.h"

struct sp_reader {
    sp_redis_url url;
    int timeout_ms;
    redisContext *c;
    char err[256];
    /* Redis Cluster mode (c unused): the client is made on first use; its
     * abort flag is always set, so each call tries once, as documented. */
    char *seeds;
    sp_cluster *cl;
    volatile int once;
};

sp_reader *sp_reader_new(const char *url, int timeout_ms, char *err, size_t errlen) {
    return sp_reader_new_conf(url, NULL, NULL, NULL, timeout_ms, err, errlen);
}

sp_reader *sp_reader_new_conf(const char *url, const char *cluster, const char *user,
                              const char *password, int timeout_ms, char *err, size_t errlen) {
    sp_reader *r = sp_xcalloc(1, sizeof *r);
    r->timeout_ms = timeout_ms > 0 ? timeout_ms : 1000;
    r->once = 1;
    if (cluster && *cluster) {
        r->seeds = sp_xstrdup(cluster);
    } else if (sp_redis_url_parse(url, &r->url, err, errlen) != SP_OK) {
        free(r);
        return NULL;
    }
    if (user && *user) snprintf(r->url.user, sizeof r->url.user, "%s", user);
    if (password && *password && (r->seeds || !r->url.password[0]))
        snprintf(r->url.password, sizeof r->url.password, "%s", password);
    return r;
}

void sp_reader_destroy(sp_reader *r) {
    if (!r) return;
    if (r->c) redisFree(r->c);
    sp_cluster_destroy(r->cl);
    free(r->seeds);
    free(r);
}

/* Cluster mode: makes the client if need be. */
static int ensure_cluster(sp_reader *r) {
    if (r->cl) return SP_OK;
    sp_cluster_conf cc = {r->seeds, r->url.user, r->url.password, r->timeout_ms, &r->once};
    if (!(r->cl = sp_cluster_new(&cc, r->err, sizeof r->err))) return SP_ERR_RETRY;
    return SP_OK;
}

static void drop(sp_reader *r) {
    if (r->c) {
        snprintf(r->err, sizeof r->err, "%s", r->c->errstr[0] ? r->c->errstr : "connection lost");
        redisFree(r->c);
    }
    r->c = NULL;
}

/* Connects, authenticates and selects the database if not connected. */
static int ensure(sp_reader *r) {
    if (r->c) return SP_OK;
    struct timeval tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};
    redisContext *c = r->url.unix_path[0] ? redisConnectUnixWithTimeout(r->url.unix_path, tv)
                                          : redisConnectWithTimeout(r->url.host, r->url.port, tv);
    if (!c || c->err) {
        snprintf(r->err, sizeof r->err, "%s", c ? c->errstr : "cannot allocate context");
        if (c) redisFree(c);
        return SP_ERR_RETRY;
    }
    redisSetTimeout(c, tv);
    redisReply *rep = NULL;
    if (r->url.password[0]) {
        rep = r->url.user[0] ? redisCommand(c, "AUTH %s %s", r->url.user, r->url.password)
                             : redisCommand(c, "AUTH %s", r->url.password);
        int bad = !rep || rep->type == REDIS_REPLY_ERROR;
        if (rep) freeReplyObject(rep);
        if (bad) {
            snprintf(r->err, sizeof r->err, "AUTH failed");
            redisFree(c);
            return SP_ERR_RETRY;
        }
    }
    if (r->url.db) {
        rep = redisCommand(c, "SELECT %d", r->url.db);
        if (rep) freeReplyObject(rep);
    }
    r->c = c;
    return SP_OK;
}

/* Sends n commands pipelined; replies[] must be freed by the caller. */
static int send_all(sp_reader *r, size_t n, const int *argcs, const char *const *const *argvs,
                    redisReply **replies) {
    if (r->seeds) {
        if (ensure_cluster(r) != SP_OK) return SP_ERR_RETRY;
        int rc = sp_cluster_pipeline(r->cl, n, (int *)argcs, (const char ***)argvs, NULL, replies,
                                     NULL);
        if (rc != SP_OK) snprintf(r->err, sizeof r->err, "redis cluster unavailable");
        return rc == SP_ERR_FATAL ? SP_ERR_RETRY : rc;
    }
    if (ensure(r) != SP_OK) return SP_ERR_RETRY;
    sp_resp_append_all(r->c, n, argcs, argvs, NULL);
    for (size_t i = 0; i < n; i++) {
        void *rep = NULL;
        if (redisGetReply(r->c, &rep) != REDIS_OK) {
            for (size_t j = 0; j < i; j++) freeReplyObject(replies[j]);
            drop(r);
            return SP_ERR_RETRY;
        }
        replies[i] = rep;
    }
    return SP_OK;
}

static int one(sp_reader *r, int argc, const char *const *argv, redisReply **out) {
    return send_all(r, 1, &argc, &argv, out);
}

int sp_reader_ping(sp_reader *r, char *err, size_t errlen) {
    const char *argv[] = {"PING"};
    redisReply *rep;
    int rc = one(r, 1, argv, &rep);
    if (rc != SP_OK) {
        snprintf(err, errlen, "%s", r->err);
        return rc;
    }
    int ok = rep->type == REDIS_REPLY_STATUS;
    if (!ok) snprintf(err, errlen, "%s", rep->type == REDIS_REPLY_ERROR ? rep->str : "bad reply");
    freeReplyObject(rep);
    return ok ? SP_OK : SP_ERR_RETRY;
}

int sp_reader_hgetall(sp_reader *r, size_t n, const char *const *keys,
                      void (*fn)(void *ctx, size_t i, const char *field, const char *value),
                      void *ctx) {
    if (!n) return SP_OK;
    int *argcs = sp_xmalloc(n * sizeof *argcs);
    const char **flat = sp_xmalloc(2 * n * sizeof *flat);
    const char *const **argvs = sp_xmalloc(n * sizeof *argvs);
    redisReply **reps = sp_xmalloc(n * sizeof *reps);
    for (size_t i = 0; i < n; i++) {
        argcs[i] = 2;
        flat[2 * i] = "HGETALL";
        flat[2 * i + 1] = keys[i];
        argvs[i] = &flat[2 * i];
    }
    int rc = send_all(r, n, argcs, argvs, reps);
    if (rc == SP_OK)
        for (size_t i = 0; i < n; i++) {
            if (reps[i]->type == REDIS_REPLY_ARRAY)
                for (size_t j = 0; j + 1 < reps[i]->elements; j += 2)
                    fn(ctx, i, reps[i]->element[j]->str, reps[i]->element[j + 1]->str);
            freeReplyObject(reps[i]);
        }
    free(argcs);
    free(flat);
    free(argvs);
    free(reps);
    return rc;
}

int sp_reader_zrange_score(sp_reader *r, const char *key, int64_t lo, int64_t hi,
                           void (*fn)(void *ctx, const char *member, double score), void *ctx) {
    char a[32], b[32];
    snprintf(a, sizeof a, "%" PRId64, lo);
    snprintf(b, sizeof b, "%" PRId64, hi);
    const char *argv[] = {"ZRANGEBYSCORE", key, a, b, "WITHSCORES"};
    redisReply *rep;
    int rc = one(r, 5, argv, &rep);
    if (rc != SP_OK) return rc;
    if (rep->type == REDIS_REPLY_ARRAY)
        for (size_t j = 0; j + 1 < rep->elements; j += 2)
            fn(ctx, rep->element[j]->str, strtod(rep->element[j + 1]->str, NULL));
    freeReplyObject(rep);
    return SP_OK;
}

int sp_reader_pfcount(sp_reader *r, size_t n, const char *const *keys, long long *out) {
    *out = 0;
    if (!n) return SP_OK;
    const char **argv = sp_xmalloc((n + 1) * sizeof *argv);
    argv[0] = "PFCOUNT";
    memcpy(argv + 1, keys, n * sizeof *keys);
    redisReply *rep;
    int rc = one(r, (int)n + 1, argv, &rep);
    free(argv);
    if (rc != SP_OK) return rc;
    if (rep->type == REDIS_REPLY_INTEGER) *out = rep->integer;
    freeReplyObject(rep);
    return SP_OK;
}

int sp_reader_pfcount_each(sp_reader *r, size_t n, const char *const *keys, long long *outs) {
    if (!n) return SP_OK;
    int *argcs = sp_xmalloc(n * sizeof *argcs);
    const char **flat = sp_xmalloc(2 * n * sizeof *flat);
    const char *const **argvs = sp_xmalloc(n * sizeof *argvs);
    redisReply **reps = sp_xmalloc(n * sizeof *reps);
    for (size_t i = 0; i < n; i++) {
        argcs[i] = 2;
        flat[2 * i] = "PFCOUNT";
        flat[2 * i + 1] = keys[i];
        argvs[i] = &flat[2 * i];
    }
    int rc = send_all(r, n, argcs, argvs, reps);
    if (rc == SP_OK)
        for (size_t i = 0; i < n; i++) {
            outs[i] = reps[i]->type == REDIS_REPLY_INTEGER ? reps[i]->integer : 0;
            freeReplyObject(reps[i]);
        }
    free(argcs);
    free(flat);
    free(argvs);
    free(reps);
    return rc;
}

struct scan_ctx {
    const char *pattern;
    void (*fn)(void *ctx, const char *key);
    void *ctx;
};

/* SCAN of one server (every master, in cluster mode). */
static int scan_server(void *arg, redisContext *c, const char *addr) {
    struct scan_ctx *s = arg;
    (void)addr;
    char cursor[32] = "0";
    do {
        redisReply *rep = redisCommand(c, "SCAN %s MATCH %s COUNT 1000", cursor, s->pattern);
        if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
            if (rep) freeReplyObject(rep);
            return SP_ERR_RETRY;
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
        for (size_t i = 0; i < rep->element[1]->elements; i++)
            s->fn(s->ctx, rep->element[1]->element[i]->str);
        freeReplyObject(rep);
    } while (strcmp(cursor, "0"));
    return SP_OK;
}

int sp_reader_scan(sp_reader *r, const char *pattern, void (*fn)(void *ctx, const char *key),
                   void *ctx) {
    if (r->seeds) {
        if (ensure_cluster(r) != SP_OK) return SP_ERR_RETRY;
        struct scan_ctx s = {pattern, fn, ctx};
        return sp_cluster_each_master(r->cl, scan_server, &s);
    }
    char cursor[32] = "0";
    do {
        const char *argv[] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
        redisReply *rep;
        int rc = one(r, 6, argv, &rep);
        if (rc != SP_OK) return rc;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
            freeReplyObject(rep);
            return SP_ERR_FATAL;
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
        for (size_t i = 0; i < rep->element[1]->elements; i++) fn(ctx, rep->element[1]->element[i]->str);
        freeReplyObject(rep);
    } while (strcmp(cursor, "0"));
    return SP_OK;
}

int sp_reader_lrange(sp_reader *r, const char *key, long start, long stop,
                     void (*fn)(void *ctx, const char *value, size_t len), void *ctx) {
    char a[24], b[24];
    snprintf(a, sizeof a, "%ld", start);
    snprintf(b, sizeof b, "%ld", stop);
    const char *argv[] = {"LRANGE", key, a, b};
    redisReply *rep;
    int rc = one(r, 4, argv, &rep);
    if (rc != SP_OK) return rc;
    if (rep->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < rep->elements; i++) fn(ctx, rep->element[i]->str, rep->element[i]->len);
    freeReplyObject(rep);
    return SP_OK;
}
