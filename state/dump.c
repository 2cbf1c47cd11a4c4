/* `shopstream dump-state`: every key in the store, one line per key, keys
 * sorted and each key's contents sorted, so two runs can be compared with
 * diff. The partition epochs ({p<n>}:meta epoch) count restarts, not state,
 * and are left out unless --all is given. */
#include <hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void print_pairs(const redisReply *r, int skip_epoch, int is_meta) {
    size_t n = r->elements / 2, m = 0;
    struct kv *kvs = sp_xcalloc(n ? n : 1, sizeof *kvs);
    for (size_t i = 0; i < n; i++) {
        if (skip_epoch && is_meta && !strcmp(r->element[2 * i]->str, "epoch")) continue;
        kvs[m].k = r->element[2 * i]->str;
        kvs[m++].v = r->element[2 * i + 1]->str;
    }
    qsort(kvs, m, sizeof *kvs, kv_cmp);
    for (size_t i = 0; i < m; i++) printf(" %s=%s", kvs[i].k, kvs[i].v);
    free(kvs);
}

static void usage(FILE *f) {
    fprintf(f, "usage: shopstream dump-state [--redis-url URL] [--match PATTERN] [--all]\n\n"
               "Prints every key (or those matching PATTERN) as 'key type contents', sorted.\n"
               "The URL defaults to $SHOPSTREAM_REDIS_URL, then redis://127.0.0.1:6379/0.\n");
}

int sp_cmd_dump_state(int argc, char **argv) {
    const char *url = getenv("SHOPSTREAM_REDIS_URL"), *match = "*";
    int all = 0;
    if (!url) url = "redis://127.0.0.1:6379/0";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(argv[i], "--redis-url") || !strcmp(argv[i], "--redis.url")) &&
                   i + 1 < argc) {
            url = argv[++i];
        } else if (!strncmp(argv[i], "--redis.url=", 12)) {
            url = argv[i] + 12;
        } else if (!strcmp(argv[i], "--match") && i + 1 < argc) {
            match = argv[++i];
        } else if (!strcmp(argv[i], "--all")) {
            all = 1;
        } else {
            fprintf(stderr, "shopstream dump-state: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    char err[256];
    sp_redis_url u;
    if (sp_redis_url_parse(url, &u, err, sizeof err) != SP_OK) {
        fprintf(stderr, "shopstream dump-state: %s\n", err);
        return 2;
    }
    redisContext *c = u.unix_path[0] ? redisConnectUnix(u.unix_path) : redisConnect(u.host, u.port);
    if (!c || c->err) {
        fprintf(stderr, "shopstream dump-state: cannot connect to redis: %s\n",
                c ? c->errstr : "?");
        if (c) redisFree(c);
        return 1;
    }
    redisReply *r;
    if (u.password[0]) {
        r = u.user[0] ? redisCommand(c, "AUTH %s %s", u.user, u.password)
                      : redisCommand(c, "AUTH %s", u.password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "shopstream dump-state: AUTH failed\n");
            if (r) freeReplyObject(r);
            redisFree(c);
            return 1;
        }
        freeReplyObject(r);
    }
    if (u.db) freeReplyObject(redisCommand(c, "SELECT %d", u.db));

    char **keys = NULL;
    size_t nkeys = 0, cap = 0;
    char cursor[32] = "0";
    do {
        r = redisCommand(c, "SCAN %s MATCH %s COUNT 1000", cursor, match);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            fprintf(stderr, "shopstream dump-state: SCAN failed\n");
            if (r) freeReplyObject(r);
            redisFree(c);
            return 1;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            if (nkeys == cap) keys = sp_xrealloc(keys, (cap = cap ? cap * 2 : 1024) * sizeof *keys);
            keys[nkeys++] = sp_xstrdup(r->element[1]->element[i]->str);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0"));
    qsort(keys, nkeys, sizeof *keys, str_cmp);
    /* SCAN may return a key twice; print each once. */
    for (size_t i = 0; i < nkeys; i++) {
        if (i && !strcmp(keys[i], keys[i - 1])) continue;
        r = redisCommand(c, "TYPE %s", keys[i]);
        char type[32];
        snprintf(type, sizeof type, "%s", r ? r->str : "?");
        if (r) freeReplyObject(r);
        printf("%s %s", keys[i], type);
        int is_meta = strlen(keys[i]) > 5 && !strcmp(keys[i] + strlen(keys[i]) - 5, ":meta");
        if (!strcmp(type, "hash")) {
            r = redisCommand(c, "HGETALL %s", keys[i]);
            if (r) print_pairs(r, !all, is_meta);
        } else if (!strcmp(type, "zset")) {
            r = redisCommand(c, "ZRANGE %s 0 -1 WITHSCORES", keys[i]);
            if (r) print_pairs(r, 0, 0);
        } else if (!strcmp(type, "string")) {
            r = redisCommand(c, "GET %s", keys[i]);
            /* A HyperLogLog's bytes depend on the order of its PFADDs and
             * on whether PFCOUNT cached a count: print the count instead. */
            if (r && r->str && r->len >= 4 && !memcmp(r->str, "HYLL", 4)) {
                freeReplyObject(r);
                r = redisCommand(c, "PFCOUNT %s", keys[i]);
                if (r && r->type == REDIS_REPLY_INTEGER) printf(" pfcount=%lld", r->integer);
            } else if (r && r->str) {
                printf(" %s", r->str);
            }
        } else if (!strcmp(type, "set")) {
            r = redisCommand(c, "SMEMBERS %s", keys[i]);
            if (r) {
                char **m = sp_xmalloc((r->elements + 1) * sizeof *m);
                for (size_t j = 0; j < r->elements; j++) m[j] = r->element[j]->str;
                qsort(m, r->elements, sizeof *m, str_cmp);
                for (size_t j = 0; j < r->elements; j++) printf(" %s", m[j]);
                free(m);
            }
        } else {
            r = NULL;
        }
        if (r) freeReplyObject(r);
        printf("\n");
    }
    for (size_t i = 0; i < nkeys; i++) free(keys[i]);
    free(keys);
    redisFree(c);
    return 0;
}
