/* `shopstream inspect user ID | item ID`: one user's profile (with the
 * counts hash, the MF update count and the latest recommendation list), or
 * one item's shared MF factors, as JSON.
 *
 * A user's keys are under their partition's hash tag, and the partition
 * count is not known here (it is Kafka's), so the keys are found with
 * SCAN MATCH "{p*}:prof:<id>" -- a full keyspace walk, fine for an operator
 * tool, not for a request path (the web tier reads rec:<id> directly). */
#include <cjson/cJSON.h>
#include <hiredis.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/store.h"
#include "stream/cli.h"
#include "stream/error.h"

static void usage(FILE *f) {
    fprintf(f, "usage: shopstream inspect user ID | item ID [--redis-url URL]\n\n"
               "Prints a user's profile, counts, MF updates and latest recommendations,\n"
               "or an item's shared MF factors, as JSON. The URL defaults to\n"
               "$SHOPSTREAM_REDIS_URL, then redis://127.0.0.1:6379/0.\n");
}

static redisContext *connect_url(const char *url) {
    sp_redis_url u;
    char err[256];
    if (sp_redis_url_parse(url, &u, err, sizeof err)) {
        fprintf(stderr, "shopstream inspect: %s\n", err);
        return NULL;
    }
    struct timeval tv = {5, 0};
    redisContext *c = u.unix_path[0] ? redisConnectUnixWithTimeout(u.unix_path, tv)
                                     : redisConnectWithTimeout(u.host, u.port, tv);
    if (!c || c->err) {
        fprintf(stderr, "shopstream inspect: cannot connect to Redis%s%s\n", c ? ": " : "",
                c ? c->errstr : "");
        if (c) redisFree(c);
        return NULL;
    }
    redisReply *r = NULL;
    if (u.password[0]) {
        r = u.user[0] ? redisCommand(c, "AUTH %s %s", u.user, u.password)
                      : redisCommand(c, "AUTH %s", u.password);
        if (r) freeReplyObject(r);
    }
    if (u.db) {
        r = redisCommand(c, "SELECT %d", u.db);
        if (r) freeReplyObject(r);
    }
    return c;
}

/* The first key matching pattern, or NULL (malloc'd). */
static char *find_key(redisContext *c, const char *pattern) {
    char cursor[32] = "0", *found = NULL;
    do {
        redisReply *r = redisCommand(c, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            if (r) freeReplyObject(r);
            return NULL;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        if (r->element[1]->elements) found = sp_xstrdup(r->element[1]->element[0]->str);
        freeReplyObject(r);
    } while (!found && strcmp(cursor, "0"));
    return found;
}

/* A number when the whole text is one, else a string. */
static cJSON *value(const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (*s && !*end && end != s) return cJSON_CreateNumber(v);
    return cJSON_CreateString(s);
}

static cJSON *words(const char *s) {
    cJSON *a = cJSON_CreateArray();
    char *copy = sp_xstrdup(s), *save = NULL;
    for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save))
        cJSON_AddItemToArray(a, cJSON_CreateString(t));
    free(copy);
    return a;
}

/* "item:kind:ts ..." into [{item, kind, ts}, ...]. */
static cJSON *recent(const char *s) {
    cJSON *a = cJSON_CreateArray();
    char *copy = sp_xstrdup(s), *save = NULL;
    for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        char *k = strrchr(t, ':');
        if (!k) continue;
        *k = '\0';
        char *kind = strrchr(t, ':');
        if (!kind) continue;
        *kind = '\0';
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "item", t);
        cJSON_AddStringToObject(o, "kind", kind + 1);
        cJSON_AddNumberToObject(o, "ts_ms", strtod(k + 1, NULL));
        cJSON_AddItemToArray(a, o);
    }
    free(copy);
    return a;
}

/* "cat:score,..." into {cat: score, ...}. */
static cJSON *affinity(const char *s) {
    cJSON *o = cJSON_CreateObject();
    char *copy = sp_xstrdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *c = strrchr(t, ':');
        if (!c) continue;
        *c = '\0';
        cJSON_AddNumberToObject(o, t, strtod(c + 1, NULL));
    }
    free(copy);
    return o;
}

static cJSON *hash_json(redisContext *c, const char *key, int profile) {
    redisReply *r = redisCommand(c, "HGETALL %s", key);
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const char *f = r->element[i]->str, *v = r->element[i + 1]->str;
        cJSON *val;
        if (profile && !strcmp(f, "recent"))
            val = recent(v);
        else if (profile && !strcmp(f, "aff"))
            val = affinity(v);
        else if (profile && (!strcmp(f, "devices") || !strcmp(f, "ips")))
            val = words(v);
        else
            val = value(v);
        cJSON_AddItemToObject(o, f, val);
    }
    if (r) freeReplyObject(r);
    return o;
}

/* Adds the hash "{p*}:<prefix><id>" as member `name`, if it exists. */
static int add_hash(redisContext *c, cJSON *out, const char *name, const char *prefix,
                    const char *id, int profile) {
    char pattern[512];
    snprintf(pattern, sizeof pattern, "{p*}:%s%s", prefix, id);
    char *key = find_key(c, pattern);
    if (!key) return 0;
    cJSON_AddItemToObject(out, name, hash_json(c, key, profile));
    free(key);
    return 1;
}

static int inspect_user(redisContext *c, const char *id) {
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "user_id", id);
    int found = add_hash(c, out, "profile", "prof:", id, 1);
    found |= add_hash(c, out, "counts", "u:", id, 0);
    char pattern[512];
    snprintf(pattern, sizeof pattern, "{p*}:mfu:%s", id);
    char *key = find_key(c, pattern);
    if (key) {
        redisReply *r = redisCommand(c, "HGET %s n", key);
        if (r && r->type == REDIS_REPLY_STRING)
            cJSON_AddNumberToObject(out, "mf_updates", strtod(r->str, NULL));
        if (r) freeReplyObject(r);
        free(key);
        found = 1;
    }
    redisReply *r = redisCommand(c, "GET rec:%s", id);
    if (r && r->type == REDIS_REPLY_STRING) {
        cJSON *rec = cJSON_Parse(r->str);
        if (rec) cJSON_AddItemToObject(out, "recommendations", rec);
        found = 1;
    }
    if (r) freeReplyObject(r);
    char *text = cJSON_Print(out);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(out);
    if (!found) fprintf(stderr, "shopstream inspect: no state for user '%s'\n", id);
    return found ? 0 : 1;
}

static int inspect_item(redisContext *c, const char *id) {
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "item_id", id);
    redisReply *r = redisCommand(c, "HGET mf:items %s", id);
    int found = r && r->type == REDIS_REPLY_STRING;
    /* little-endian float32s: bias, then the factors (operators/personal.h) */
    if (found && r->len >= 4 && r->len % 4 == 0) {
        cJSON *vec = cJSON_CreateArray();
        float b, v;
        double norm = 0;
        memcpy(&b, r->str, 4);
        for (size_t k = 4; k < r->len; k += 4) {
            memcpy(&v, r->str + k, 4);
            norm += (double)v * v;
            cJSON_AddItemToArray(vec, cJSON_CreateNumber(v));
        }
        cJSON_AddNumberToObject(out, "mf_bias", b);
        cJSON_AddNumberToObject(out, "mf_norm", sqrt(norm));
        cJSON_AddItemToObject(out, "mf_factors", vec);
    }
    if (r) freeReplyObject(r);
    char *text = cJSON_Print(out);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(out);
    if (!found) fprintf(stderr, "shopstream inspect: item '%s' has no shared factors\n", id);
    return found ? 0 : 1;
}

int sp_cmd_inspect(int argc, char **argv) {
    const char *url = getenv("SHOPSTREAM_REDIS_URL"), *what = NULL, *id = NULL;
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
        } else if (!what) {
            what = argv[i];
        } else if (!id) {
            id = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!what || !id || (strcmp(what, "user") && strcmp(what, "item"))) {
        usage(stderr);
        return 2;
    }
    redisContext *c = connect_url(url);
    if (!c) return 1;
    int rc = !strcmp(what, "user") ? inspect_user(c, id) : inspect_item(c, id);
    redisFree(c);
    return rc;
}
