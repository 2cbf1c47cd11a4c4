/* The personalization operators (profile, mf, recommend) through the
 * pipeline with a real Redis store and a GRU model trained by the binary on
 * a planted pattern: each user's sessions walk one chain a<k> -> b<k> -> c<k>,
 * so after a<k> the model must put b<k> in the top-K. Then: purchases are
 * never recommended, unknown users and items are served, the rate limit is
 * in event time, SIGHUP's reload keeps the old model on a bad file, the
 * profile decays its affinity, and item deltas reach the shared table. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <hiredis.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/model.h"
#include "operators/operator.h"
#include "operators/personal.h"
#include "operators/profile.h"
#include "state/store.h"
#include "stream/error.h"
#include "tests/support/harness.h"

#define CHAINS 10
#define NOISE 40
#define T0 1767225600000LL

static sp_t_redis redis;
static char model_path[300];
static char data_path[300]; /* the planted history model_path was trained on */

/* A GRU of dimension dim trained on the JSONL history data into out. */
static void train_gru(const char *data, const char *dim, const char *out) {
    char *argv[] = {(char *)sp_t_bin(), "train", "--data",  (char *)data, "--format", "events",
                    "--model",          "gru",   "--dim",   (char *)dim, "--epochs", "20",
                    "--batch",          "16",    "--lr",    "0.01",      "--seed",   "3",
                    "--quiet",          "--out", (char *)out, NULL};
    int st;
    free(sp_t_capture(argv, &st));
    cr_assert_eq(st, 0, "train failed");
}

/* A JSONL history with the planted chains, trained into a small GRU. */
static void train_planted(void) {
    char *data = data_path;
    snprintf(data_path, sizeof data_path, "%s/planted.jsonl", sp_t_tmpdir());
    snprintf(model_path, sizeof model_path, "%s/planted.gru", sp_t_tmpdir());
    FILE *f = fopen(data, "w");
    cr_assert_not_null(f);
    unsigned seed = 11;
    long n = 0;
    for (int u = 0; u < 300; u++) {
        int64_t ts = T0 + u * 1000000LL;
        for (int s = 0; s < 4; s++) {
            int k = (int)(rand_r(&seed) % CHAINS);
            const char *step[] = {"a", "b", "c"};
            for (int i = 0; i < 3; i++)
                fprintf(f,
                        "{\"event_id\":\"h%ld\",\"ts_ms\":%lld,\"user_id\":\"hu%d\","
                        "\"click\":{\"kind\":\"view\",\"item_id\":\"%s%d\","
                        "\"category\":\"c%d\"}}\n",
                        n++, (long long)(ts += 1000), u, step[i], k, k);
            fprintf(f,
                    "{\"event_id\":\"h%ld\",\"ts_ms\":%lld,\"user_id\":\"hu%d\","
                    "\"click\":{\"kind\":\"view\",\"item_id\":\"n%u\",\"category\":\"cn\"}}\n",
                    n++, (long long)(ts += 1000), u, rand_r(&seed) % NOISE);
        }
    }
    fclose(f);
    train_gru(data, "16", model_path);
}

static void start(void) {
    cr_assert_eq(sp_t_redis_start(&redis, 0), 0);
    static int trained;
    if (!trained) train_planted();
    trained = 1;
}
static void stop(void) { sp_t_redis_stop(&redis); }

struct rig {
    sp_config cfg;
    sp_store *store;
    sp_pipeline *pl;
    int64_t off;
};

static void setkey(struct rig *r, const char *key, const char *value) {
    char err[256];
    cr_assert_eq(sp_config_set(&r->cfg, key, value, err, sizeof err), SP_OK, "%s", err);
}

/* Opens the three operators on partition 0; extra is "key=value" pairs. */
static void rig_open(struct rig *r, const char *model, const char *const *extra) {
    sp_config_init(&r->cfg);
    setkey(r, "redis.url", redis.url);
    if (model) setkey(r, "recommend.model", model);
    setkey(r, "recommend.rate_limit_ms", "0");
    for (int i = 0; extra && extra[i]; i += 2) setkey(r, extra[i], extra[i + 1]);
    sp_store_conf sc = {.url = redis.url, .timeout_ms = 1000, .max_entries = 100000};
    char err[256];
    r->store = sp_store_new(&sc, err, sizeof err);
    cr_assert_not_null(r->store, "%s", err);
    sp_op_env env = {r->store, NULL, &r->cfg, NULL};
    r->pl = sp_pipeline_new("profile,mf,recommend", &env, err, sizeof err);
    cr_assert_not_null(r->pl, "%s", err);
    const char *topics[] = {"t"};
    int64_t off;
    cr_assert_eq(sp_store_assign(r->store, 0, topics, 1, &off), SP_OK);
    cr_assert_eq(sp_pipeline_assign(r->pl, 0), SP_OK);
    r->off = 0;
}

/* The rig's personalization context (sp_personal_put it when done). */
static sp_personal *rig_personal(struct rig *r) {
    sp_op_env env = {r->store, NULL, &r->cfg, NULL};
    char err[256];
    sp_personal *p = sp_personal_get(&env, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    return p;
}

static void rig_close(struct rig *r) {
    sp_pipeline_destroy(r->pl);
    sp_store_destroy(r->store);
    sp_config_release(&r->cfg);
}

static void run_event(struct rig *r, Shopstream__V1__Event *ev, enum sp_event_kind kind) {
    sp_op_event e = {ev, kind, 0, "t", r->off++, 0, 0};
    sp_pipeline_prefetch(r->pl, &e);
    cr_assert_eq(sp_store_prefetch(r->store), SP_OK);
    cr_assert_eq(sp_pipeline_process(r->pl, &e, NULL), SP_OK);
}

/* A click of `kind` with its own session, device and ip (NULL: none),
 * its price and the recommendation it came from (NULL: none). */
static void click_full(struct rig *r, const char *user, const char *sess, const char *dev,
                       const char *ip, const char *item, const char *cat,
                       enum sp_event_kind kind, double price, const char *rec, int64_t ts) {
    static long id;
    char eid[32];
    snprintf(eid, sizeof eid, "e%ld", id++);
    Shopstream__V1__Event ev = SHOPSTREAM__V1__EVENT__INIT;
    Shopstream__V1__Click c = SHOPSTREAM__V1__CLICK__INIT;
    Shopstream__V1__Context ctx = SHOPSTREAM__V1__CONTEXT__INIT;
    c.kind = (Shopstream__V1__ClickKind)(kind + 1);
    c.item_id = (char *)item;
    c.category = (char *)cat;
    c.price = price;
    c.rec_id = (char *)rec;
    ctx.device_id = (char *)dev;
    ctx.ip = (char *)ip;
    ev.event_id = eid;
    ev.ts_ms = ts;
    ev.user_id = (char *)user;
    ev.session_id = (char *)sess;
    ev.context = dev || ip ? &ctx : NULL;
    ev.body_case = SHOPSTREAM__V1__EVENT__BODY_CLICK;
    ev.click = &c;
    run_event(r, &ev, kind);
}

/* The same at price 10, not from a recommendation. */
static void click_with(struct rig *r, const char *user, const char *sess, const char *dev,
                       const char *ip, const char *item, const char *cat,
                       enum sp_event_kind kind, int64_t ts) {
    click_full(r, user, sess, dev, ip, item, cat, kind, 10, NULL, ts);
}

/* A click in session "s1", without device or ip. */
static void click(struct rig *r, const char *user, const char *item, const char *cat,
                  enum sp_event_kind kind, int64_t ts) {
    click_with(r, user, "s1", NULL, NULL, item, cat, kind, ts);
}

static void order(struct rig *r, const char *user, const char *item, int64_t ts) {
    static long id;
    char eid[32];
    snprintf(eid, sizeof eid, "o%ld", id++);
    Shopstream__V1__Event ev = SHOPSTREAM__V1__EVENT__INIT;
    Shopstream__V1__Order o = SHOPSTREAM__V1__ORDER__INIT;
    Shopstream__V1__LineItem li = SHOPSTREAM__V1__LINE_ITEM__INIT, *lis[] = {&li};
    li.item_id = (char *)item;
    li.category = "c0";
    li.quantity = 1;
    li.unit_price = 25;
    o.order_id = eid;
    o.items = lis;
    o.n_items = 1;
    o.total = 25;
    ev.event_id = eid;
    ev.ts_ms = ts;
    ev.user_id = (char *)user;
    ev.body_case = SHOPSTREAM__V1__EVENT__BODY_ORDER;
    ev.order = &o;
    run_event(r, &ev, SP_KIND_ORDER);
}

static void commit(struct rig *r) {
    const char *topics[] = {"t"};
    cr_assert_eq(sp_pipeline_flush(r->pl, 0), SP_OK);
    cr_assert_eq(sp_pipeline_before_commit(r->pl), SP_OK);
    cr_assert_eq(sp_store_commit(r->store, 0, topics, &r->off, 1), SP_OK);
    sp_store_end_batch(r->store);
}

static redisReply *cmd(const char *fmt, const char *arg) {
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    cr_assert(c && !c->err);
    redisReply *rep = redisCommand(c, fmt, arg);
    redisFree(c);
    return rep;
}

/* The items of rec:<user> (NULL-terminated, malloc'd), or NULL if absent. */
static char **rec_items(const char *user) {
    char key[128];
    snprintf(key, sizeof key, "rec:%s", user);
    redisReply *rep = cmd("GET %s", key);
    if (rep->type != REDIS_REPLY_STRING) {
        freeReplyObject(rep);
        return NULL;
    }
    cJSON *j = cJSON_Parse(rep->str);
    freeReplyObject(rep);
    cr_assert_not_null(j);
    cJSON *items = cJSON_GetObjectItem(j, "items"), *it;
    char **out = calloc((size_t)cJSON_GetArraySize(items) + 1, sizeof *out);
    int n = 0;
    cJSON_ArrayForEach(it, items) {
        out[n++] = strdup(cJSON_GetObjectItem(it, "item_id")->valuestring);
    }
    cJSON_Delete(j);
    return out;
}

static int has(char **items, const char *item) {
    for (int i = 0; items && items[i]; i++)
        if (!strcmp(items[i], item)) return 1;
    return 0;
}

static int count(char **items) {
    int n = 0;
    while (items && items[n]) n++;
    return n;
}

static void free_items(char **items) {
    for (int i = 0; items && items[i]; i++) free(items[i]);
    free(items);
}

static char *hget(const char *key, const char *field) {
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    redisReply *rep = redisCommand(c, "HGET %s %s", key, field);
    char *s = rep->type == REDIS_REPLY_STRING ? strdup(rep->str) : NULL;
    freeReplyObject(rep);
    redisFree(c);
    return s;
}

TestSuite(personalize, .init = start, .fini = stop, .timeout = 120);

Test(personalize, planted_chain_puts_the_next_item_in_the_top_k) {
    struct rig r;
    rig_open(&r, model_path, NULL);
    int hits = 0;
    for (int k = 0; k < CHAINS; k++) {
        char user[32], a[16], b[16];
        snprintf(user, sizeof user, "new%d", k);
        snprintf(a, sizeof a, "a%d", k);
        snprintf(b, sizeof b, "b%d", k);
        click(&r, user, a, "c", SP_KIND_VIEW, T0 + k);
        commit(&r);
        char **items = rec_items(user);
        cr_assert_eq(count(items), 10, "user %s: %d items, want recommend.k=10", user,
                     count(items));
        cr_assert(!has(items, a), "the item being viewed was recommended");
        hits += has(items, b);
        free_items(items);
    }
    cr_assert_eq(hits, CHAINS, "b<k> in the top 10 after a<k> for %d of %d chains", hits,
                  CHAINS);
    rig_close(&r);
}

/* The personalization context of a rig, to check which scoring it does. */
static sp_personal *ctx_of(struct rig *r) {
    sp_op_env env = {r->store, NULL, &r->cfg, NULL};
    char err[256];
    sp_personal *p = sp_personal_get(&env, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    sp_personal_put(p); /* the pipeline keeps its reference */
    return p;
}

/* A budget of 20 candidates out of 70 items, pure sequence model: for a
 * user's first event the exhaustive top 10 are the model's top items after
 * that item alone, which the candidate set holds (the next list), so both
 * modes must give the same list, in the same order. Later events rank among
 * candidates only, and must still find the planted next item. */
Test(personalize, candidate_mode_agrees_with_exhaustive_when_the_top_items_are_candidates) {
    struct rig r;
    const char *exhaustive[] = {"recommend.blend", "1,0,0", "recommend.candidates", "0", NULL};
    const char *extra[] = {"recommend.blend", "1,0,0", "recommend.candidates", "20", NULL};
    char **want[CHAINS];
    /* one rig after the other: both own partition 0 */
    rig_open(&r, model_path, exhaustive);
    cr_assert_null(ctx_of(&r)->cands, "exhaustive mode has no candidate generator");
    for (int k = 0; k < CHAINS; k++) {
        char user[32], a[16];
        snprintf(user, sizeof user, "ex%d", k);
        snprintf(a, sizeof a, "a%d", k);
        click(&r, user, a, "c", SP_KIND_VIEW, T0 + k);
        commit(&r);
        want[k] = rec_items(user);
        cr_assert_eq(count(want[k]), 10);
    }
    rig_close(&r);
    rig_open(&r, model_path, extra);
    cr_assert_not_null(ctx_of(&r)->cands);
    cr_assert_eq(ctx_of(&r)->n_cands, 20);
    int later_hits = 0;
    for (int k = 0; k < CHAINS; k++) {
        char user[32], a[16], b[16], c[16];
        snprintf(user, sizeof user, "ca%d", k);
        snprintf(a, sizeof a, "a%d", k);
        snprintf(b, sizeof b, "b%d", k);
        snprintf(c, sizeof c, "c%d", k);
        click(&r, user, a, "c", SP_KIND_VIEW, T0 + k);
        commit(&r);
        char **got = rec_items(user);
        cr_assert_eq(count(got), 10, "user %s: %d items", user, count(got));
        for (int i = 0; i < 10; i++)
            cr_assert_str_eq(got[i], want[k][i], "chain %d rank %d: candidates %s, exhaustive %s",
                             k, i, got[i], want[k][i]);
        free_items(got);
        free_items(want[k]);
        click(&r, user, b, "c", SP_KIND_VIEW, T0 + 100 + k);
        commit(&r);
        got = rec_items(user);
        later_hits += has(got, c);
        free_items(got);
    }
    cr_assert_eq(later_hits, CHAINS, "c<k> after a<k> b<k> in %d of %d candidate lists",
                 later_hits, CHAINS);
    rig_close(&r);
}

/* The items and scores of rec:<user> into ids (malloc'd) and score;
 * returns how many. */
static int rec_scored(const char *user, char *ids[], double score[], int max) {
    char key[128];
    snprintf(key, sizeof key, "rec:%s", user);
    redisReply *rep = cmd("GET %s", key);
    cr_assert_eq(rep->type, REDIS_REPLY_STRING, "no %s", key);
    cJSON *j = cJSON_Parse(rep->str), *it;
    freeReplyObject(rep);
    cr_assert_not_null(j);
    int n = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "items")) {
        cr_assert_lt(n, max);
        ids[n] = strdup(cJSON_GetObjectItem(it, "item_id")->valuestring);
        score[n++] = cJSON_GetObjectItem(it, "score")->valuedouble;
    }
    cJSON_Delete(j);
    return n;
}

/* The first n floats of a hex vector field (operators/personal.h's codec:
 * little-endian float32s), decoded here with sscanf. */
static void hex_field(const char *key, const char *field, float *v, size_t n) {
    char *hex = hget(key, field);
    cr_assert_not_null(hex, "no %s %s", key, field);
    cr_assert_eq(strlen(hex), 8 * n);
    for (size_t i = 0; i < n; i++) {
        unsigned char b[4];
        for (int k = 0; k < 4; k++) {
            unsigned x;
            cr_assert_eq(sscanf(hex + 8 * i + 2 * k, "%2x", &x), 1);
            b[k] = (unsigned char)x;
        }
        memcpy(&v[i], b, 4);
    }
    free(hex);
}

/* Dimension 32 has its own candidate scoring loop in recommend (four
 * candidates at a time, both dot products finished together). Each listed
 * score must be the default blend (1, 0.5, 0.2) of that very item,
 * recomputed here in double from what the list was made of: the GRU state
 * and MF vector the event left, the model's embedding and bias, the item's
 * MF row and its popularity (below POP_FLOOR = 100 events, so scaled by
 * 1 / log(101)). A score that went to another candidate, or a product of
 * the wrong vectors, is off by far more than the JSON's 4 decimals. */
Test(personalize, candidate_scores_at_dimension_32_are_the_blend_of_their_own_item) {
    char model32[300], err[256];
    snprintf(model32, sizeof model32, "%s/planted32.gru", sp_t_tmpdir());
    train_gru(data_path, "32", model32);
    sp_model *m = sp_model_load(model32, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    const float *E = m->params + m->lay.emb, *eb = m->params + m->lay.bias;
    const char *extra[] = {"mf.refresh_ms", "0", NULL}; /* the local rows stay put */
    struct rig r;
    rig_open(&r, model32, extra);
    sp_personal *p = ctx_of(&r);
    cr_assert_eq(p->dim, 32);
    cr_assert_not_null(p->cands);
    int checked = 0;
    for (int k = 0; k < CHAINS; k++)
        for (int e = 0; e < 3; e++) {
            char user[32], item[16], key[64];
            snprintf(user, sizeof user, "d32u%d", k);
            snprintf(item, sizeof item, "%c%d", "abc"[e], k);
            click(&r, user, item, "c", SP_KIND_VIEW, T0 + 100 * e + k);
            commit(&r);
            float h[32], mfu[32];
            snprintf(key, sizeof key, "{p0}:rs:%s", user);
            hex_field(key, "h", h, 32);
            snprintf(key, sizeof key, "{p0}:mfu:%s", user);
            hex_field(key, "v", mfu, 32);
            char *ids[10];
            double got[10];
            int n = rec_scored(user, ids, got, 10);
            cr_assert_eq(n, 10, "user %s: %d items", user, n);
            for (int i = 0; i < n; i++) {
                int32_t row = sp_vocab_find(p->items, ids[i], strlen(ids[i]));
                cr_assert_geq(row, 0);
                int32_t mi = p->mf2model[row];
                cr_assert_geq(mi, 0);
                double seq = eb[mi], mf = p->bias[row];
                for (int d = 0; d < 32; d++) {
                    seq += (double)h[d] * E[(size_t)mi * 32 + d];
                    mf += (double)mfu[d] * p->vec[(size_t)row * 32 + d];
                }
                double want = seq + 0.5 * mf + 0.2 * log1p(p->pop[row]) / log1p(100.0);
                cr_assert(fabs(got[i] - want) < 2e-4, "%s rank %d (%s): score %.4f, the blend %.6f",
                          user, i, ids[i], got[i], want);
                if (i) cr_assert_geq(got[i - 1], got[i], "%s: not best first", user);
                free(ids[i]);
                checked++;
            }
        }
    cr_assert_eq(checked, CHAINS * 3 * 10);
    rig_close(&r);
    sp_model_destroy(m);
}

/* Without a model, a budget below the number of popular items: an item
 * that only ever followed x (co-visitation) must still be a candidate, and
 * the list never exceeds the budget. */
Test(personalize, a_covisited_item_is_a_candidate_beyond_the_popular_ones) {
    struct rig r;
    const char *extra[] = {"mf.dim", "8", "recommend.k", "100", "recommend.candidates", "12", NULL};
    rig_open(&r, NULL, extra);
    char user[32], item[32];
    for (int i = 0; i < 60; i++) /* 60 items seen 4 times each */
        for (int j = 0; j < 4; j++) {
            snprintf(user, sizeof user, "pop%d", j);
            snprintf(item, sizeof item, "p%d", i);
            click(&r, user, item, "c", SP_KIND_VIEW, T0 + i * 10 + j);
        }
    for (int j = 0; j < 3; j++) { /* x then y, by three users */
        snprintf(user, sizeof user, "pair%d", j);
        click(&r, user, "x", "c", SP_KIND_VIEW, T0 + 1000 + j);
        click(&r, user, "y", "c", SP_KIND_VIEW, T0 + 1010 + j);
    }
    click(&r, "newcomer", "x", "c", SP_KIND_VIEW, T0 + 2000);
    commit(&r);
    char **items = rec_items("newcomer");
    cr_assert(has(items, "y"), "the co-visited item is missing from the list");
    cr_assert_leq(count(items), 11, "a list of %d items from 12 candidates (x excluded)",
                  count(items));
    free_items(items);
    rig_close(&r);
}

Test(personalize, purchased_items_are_never_recommended) {
    struct rig r;
    rig_open(&r, model_path, NULL);
    /* b3 is what the model wants after a3; the user bought it */
    order(&r, "buyer", "b3", T0);
    click(&r, "buyer", "a3", "c", SP_KIND_VIEW, T0 + 10);
    commit(&r);
    char **items = rec_items("buyer");
    cr_assert_eq(count(items), 10);
    cr_assert(!has(items, "b3"), "a purchased item was recommended");
    free_items(items);
    /* and stays excluded through many more events and purchases */
    unsigned seed = 5;
    char bought[20][16];
    int nb = 0;
    for (int i = 0; i < 200; i++) {
        char item[16];
        if (i % 10 == 9 && nb < 20) {
            snprintf(bought[nb], sizeof bought[nb], "%c%u", "abc"[rand_r(&seed) % 3],
                     rand_r(&seed) % CHAINS);
            order(&r, "buyer", bought[nb++], T0 + 100 + i);
            continue;
        }
        snprintf(item, sizeof item, "%c%u", "abcn"[rand_r(&seed) % 4], rand_r(&seed) % CHAINS);
        click(&r, "buyer", item, "c", SP_KIND_VIEW, T0 + 100 + i);
        commit(&r);
        items = rec_items("buyer");
        cr_assert(!has(items, "b3"));
        for (int b = 0; b < nb; b++)
            cr_assert(!has(items, bought[b]), "bought %s recommended at event %d", bought[b], i);
        free_items(items);
    }
    rig_close(&r);
}

Test(personalize, unknown_users_and_items_are_served) {
    struct rig r;
    rig_open(&r, model_path, NULL);
    /* an item the model never saw, by a user nobody saw */
    click(&r, "stranger", "zz-unknown", "cz", SP_KIND_VIEW, T0);
    click(&r, "stranger", "zz-unknown", "cz", SP_KIND_CLICK, T0 + 5);
    commit(&r);
    char **items = rec_items("stranger");
    cr_assert_eq(count(items), 10, "an unknown user on an unknown item gets a full list");
    cr_assert(!has(items, "zz-unknown"));
    free_items(items);
    char *n = hget("{p0}:mfu:stranger", "n");
    cr_assert_str_eq(n, "2", "both events updated the user vector");
    free(n);
    char *v = hget("{p0}:mfu:stranger", "v");
    float vec[16];
    cr_assert_eq(sp_personal_hex_decode(v, vec, 16), 16, "user vector is 16 float32s in hex");
    free(v);
    char *events = hget("{p0}:prof:stranger", "events");
    cr_assert_str_eq(events, "2");
    free(events);
    rig_close(&r);

    /* no model at all: MF and popularity alone (the 16-float rows the model
     * left in mf:items are of another dimension and are ignored) */
    const char *extra[] = {"mf.dim", "8", NULL};
    rig_open(&r, NULL, extra);
    click(&r, "u1", "x1", "c", SP_KIND_VIEW, T0);
    click(&r, "u1", "x2", "c", SP_KIND_VIEW, T0 + 1);
    click(&r, "u2", "x3", "c", SP_KIND_VIEW, T0 + 2);
    commit(&r);
    items = rec_items("u2");
    cr_assert_eq(count(items), 2, "without a model the candidates are the items seen (%d)",
                 count(items));
    cr_assert(has(items, "x1") && has(items, "x2"));
    free_items(items);
    rig_close(&r);
}

/* rec:<user>'s JSON is written by hand (operators/recommend.c): item ids
 * with quotes, backslashes and control bytes must come back out of a JSON
 * parser as they went in. */
Test(personalize, rec_json_escapes_quotes_backslashes_and_control_bytes) {
    struct rig r;
    const char *extra[] = {"mf.dim", "8", NULL};
    rig_open(&r, NULL, extra);
    const char *odd[] = {"q\"1", "q\\2", "q\x01\x1f" "3", "\"\"", "plain-4"};
    for (int i = 0; i < 5; i++) click(&r, "w1", odd[i], "c", SP_KIND_VIEW, T0 + i);
    click(&r, "w2", "x9", "c", SP_KIND_VIEW, T0 + 10);
    commit(&r);
    char **items = rec_items("w2");
    cr_assert_eq(count(items), 5, "the items seen (%d)", count(items));
    for (int i = 0; i < 5; i++) cr_assert(has(items, odd[i]), "item %d lost or mangled", i);
    free_items(items);
    rig_close(&r);
}

/* recommend keeps the user's last SEEDS (3) distinct items in rs "seen",
 * newest first, read back by length at each view: an item seen again moves
 * to the front, the oldest drops out, and an id with a space is not kept. */
Test(personalize, seen_keeps_the_last_three_distinct_items_newest_first) {
    struct rig r;
    const char *extra[] = {"mf.dim", "8", NULL};
    rig_open(&r, NULL, extra);
    const char *views[] = {"a", "bb", "a", "ccc", "dddd", "x y", "ccc", "eeeee-long-id"};
    const char *want[] = {"a",          "bb a",       "a bb",       "ccc a bb",
                          "dddd ccc a", "dddd ccc a", "ccc dddd a", "eeeee-long-id ccc dddd"};
    for (int i = 0; i < 8; i++) {
        click(&r, "sv", views[i], "c", SP_KIND_VIEW, T0 + i);
        commit(&r);
        char *seen = hget("{p0}:rs:sv", "seen");
        cr_assert_str_eq(seen, want[i], "after %s", views[i]);
        free(seen);
    }
    rig_close(&r);
}

Test(personalize, rate_limit_is_per_user_in_event_time) {
    struct rig r;
    const char *extra[] = {"recommend.rate_limit_ms", "1000", NULL};
    rig_open(&r, model_path, extra);
    click(&r, "rl", "a1", "c", SP_KIND_VIEW, T0);
    commit(&r);
    char *first = hget("{p0}:rs:rl", "last_ms");
    click(&r, "rl", "a2", "c", SP_KIND_VIEW, T0 + 999);  /* inside: no list */
    commit(&r);
    char *second = hget("{p0}:rs:rl", "last_ms");
    cr_assert_str_eq(first, second);
    click(&r, "rl", "a3", "c", SP_KIND_VIEW, T0 + 1000); /* outside: a list */
    commit(&r);
    char *third = hget("{p0}:rs:rl", "last_ms");
    cr_assert_eq(atoll(third), T0 + 1000);
    free(first);
    free(second);
    free(third);
    rig_close(&r);
}

Test(personalize, reload_keeps_the_old_model_on_a_bad_file_and_swaps_on_a_good_one) {
    char path[300];
    snprintf(path, sizeof path, "%s/live.gru", sp_t_tmpdir());
    char *bytes;
    size_t len;
    bytes = sp_t_read_file(model_path, &len);
    FILE *f = fopen(path, "wb");
    fwrite(bytes, 1, len, f);
    fclose(f);
    struct rig r;
    rig_open(&r, path, NULL);
    f = fopen(path, "wb"); /* truncated: half the file */
    fwrite(bytes, 1, len / 2, f);
    fclose(f);
    cr_assert_eq(sp_pipeline_reload(r.pl), SP_ERR_BADINPUT);
    click(&r, "rel", "a4", "c", SP_KIND_VIEW, T0);
    commit(&r);
    char **items = rec_items("rel");
    cr_assert(has(items, "b4"), "the old model still serves after a bad reload");
    free_items(items);
    f = fopen(path, "wb");
    fwrite(bytes, 1, len, f);
    fclose(f);
    cr_assert_eq(sp_pipeline_reload(r.pl), SP_OK);
    click(&r, "rel", "a5", "c", SP_KIND_VIEW, T0 + 10);
    commit(&r);
    items = rec_items("rel");
    cr_assert_eq(count(items), 10);
    free_items(items);
    free(bytes);
    rig_close(&r);
}

Test(personalize, profile_counts_spend_and_decays_category_affinity) {
    struct rig r;
    const char *extra[] = {"profile.half_life_s", "100", NULL};
    rig_open(&r, model_path, extra);
    click(&r, "p", "a1", "shoes", SP_KIND_VIEW, T0);            /* weight 1 */
    click(&r, "p", "b1", "hats", SP_KIND_CLICK, T0 + 100000);   /* one half-life later, 2 */
    order(&r, "p", "b1", T0 + 100000);
    commit(&r);
    char *aff = hget("{p0}:prof:p", "aff");
    /* shoes: 1 decayed by one half-life = 0.5; hats: 2; c0 (the order): 8 */
    cr_assert_str_eq(aff, "c0:8,hats:2,shoes:0.5");
    free(aff);
    char *s = hget("{p0}:prof:p", "orders"), *aov = hget("{p0}:prof:p", "aov"),
         *recent = hget("{p0}:prof:p", "recent");
    cr_assert_str_eq(s, "1");
    cr_assert_float_eq(atof(aov), 25.0, 1e-9);
    cr_assert(!strncmp(recent, "b1:order:", 9), "newest first: %s", recent);
    free(s);
    free(aov);
    free(recent);
    rig_close(&r);
}

Test(personalize, item_deltas_reach_the_shared_table_once_per_apply) {
    struct rig r;
    rig_open(&r, model_path, NULL);
    cr_assert_null(hget("mf:items", "a7"));
    click(&r, "it", "a7", "c", SP_KIND_CLICK, T0);
    commit(&r);
    redisReply *row = cmd("HGET mf:items %s", "a7");
    cr_assert_eq(row->type, REDIS_REPLY_STRING, "the batch's delta for a7 was not applied");
    cr_assert_eq(row->len, 4 * 17, "bias and 16 factors as float32s");
    float before[17], after[17];
    memcpy(before, row->str, sizeof before);
    freeReplyObject(row);
    /* a second click moves the row in Redis again: deltas add up */
    click(&r, "it", "a7", "c", SP_KIND_CLICK, T0 + 1);
    commit(&r);
    row = cmd("HGET mf:items %s", "a7");
    memcpy(after, row->str, sizeof after);
    freeReplyObject(row);
    cr_assert(memcmp(before, after, sizeof before), "the second delta was not applied");
    rig_close(&r);
}

/* Item rows as Redis holds them: little-endian float32s, bias then the
 * model's 16 factors. */
#define ROW_FLOATS 17

static void set_row(const char *item, float bias) {
    float row[ROW_FLOATS] = {bias};
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    redisReply *rep = redisCommand(c, "HSET mf:items %s %b", item, (const char *)row, sizeof row);
    cr_assert(rep && rep->type == REDIS_REPLY_INTEGER);
    freeReplyObject(rep);
    redisFree(c);
}

static void get_row(const char *item, float *row) {
    redisReply *rep = cmd("HGET mf:items %s", item);
    cr_assert_eq(rep->type, REDIS_REPLY_STRING, "mf:items %s missing", item);
    cr_assert_eq(rep->len, sizeof(float) * ROW_FLOATS);
    memcpy(row, rep->str, rep->len);
    freeReplyObject(rep);
}

/* Adds +1 to the bias of `item` (factors unchanged) and applies it with a
 * commit of nothing: the queued item job runs on the store's connection. */
static int bump(sp_personal *p, sp_store *st, int32_t row) {
    float zero[ROW_FLOATS - 1] = {0};
    sp_personal_delta(p, row, 1.0f, zero);
    int rc = sp_personal_apply(p);
    return rc != SP_OK ? rc : sp_store_commit_many(st, NULL, 0);
}

struct bumper {
    struct rig *rig;
    sp_personal *p;
    int32_t row;
    int n, rc;
};

static void *bump_many(void *arg) {
    struct bumper *b = arg;
    for (int i = 0; i < b->n && b->rc == SP_OK; i++) b->rc = bump(b->p, b->rig->store, b->row);
    return NULL;
}

/* Two instances add to the same row at the same time, each reading it and
 * writing it back only if unchanged: every delta must land exactly once. */
Test(personalize, concurrent_instances_add_every_item_delta_exactly_once) {
    struct rig r[2];
    struct bumper b[2];
    set_row("hot", 0.5f);
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        rig_open(&r[i], model_path, NULL);
        b[i] = (struct bumper){&r[i], rig_personal(&r[i]), 0, 300, SP_OK};
        b[i].row = sp_personal_item(b[i].p, "hot", NULL);
    }
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, bump_many, &b[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    float row[ROW_FLOATS];
    get_row("hot", row);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(b[i].rc, SP_OK);
        sp_personal_put(b[i].p);
        rig_close(&r[i]);
    }
    cr_assert_eq(row[0], 600.5f, "bias %.1f after 2 x 300 increments of 1 from 0.5", row[0]);
    for (int k = 1; k < ROW_FLOATS; k++) cr_assert_eq(row[k], 0.0f, "factor %d moved", k);
}

/* Calls of a command Redis counted since the last CONFIG RESETSTAT
 * (commands run by scripts count too), from INFO commandstats. */
static long long calls_of(const char *name) {
    redisReply *rep = cmd("INFO %s", "commandstats");
    char key[64];
    snprintf(key, sizeof key, "cmdstat_%s:calls=", name);
    const char *at = strstr(rep->str, key);
    long long n = at ? atoll(at + strlen(key)) : 0;
    freeReplyObject(rep);
    return n;
}

/* The instance remembers each row as it last wrote it: while nobody else
 * writes the row it is set without a read first; once someone else has,
 * the write is refused, the row read again, and the delta added to what
 * the other writer left. */
Test(personalize, item_rows_are_read_only_when_another_writer_moved_them) {
    struct rig r;
    rig_open(&r, model_path, NULL);
    sp_personal *p = rig_personal(&r);
    int32_t row = sp_personal_item(p, "hot", NULL);
    set_row("hot", 0.5f);
    cr_assert_eq(bump(p, r.store, row), SP_OK); /* unknown yet: read, then set */
    float v[ROW_FLOATS];
    get_row("hot", v);
    cr_assert_eq(v[0], 1.5f);
    redisReply *rep = cmd("CONFIG %s", "RESETSTAT");
    freeReplyObject(rep);
    for (int i = 1; i <= 3; i++) { /* each write's value must be the next one's known row */
        cr_assert_eq(bump(p, r.store, row), SP_OK);
        get_row("hot", v);
        cr_assert_eq(v[0], 1.5f + (float)i);
        cr_assert_eq(calls_of("hmget"), i, "one HMGET a write (the script's own) for a row we wrote last");
    }
    set_row("hot", 10.0f); /* another writer */
    cr_assert_eq(bump(p, r.store, row), SP_OK);
    get_row("hot", v);
    cr_assert_eq(v[0], 11.0f, "bias %.1f: the delta must land on the other writer's 10", v[0]);
    sp_personal_put(p);
    rig_close(&r);
}

/* mf.apply_rows bounds the rows of one script: a batch of more rows goes
 * in several, every row once, with full chunks and a partial last one. */
Test(personalize, item_deltas_go_in_chunks_of_apply_rows_each_row_once) {
    struct rig r;
    const char *extra[] = {"mf.apply_rows", "2", NULL};
    rig_open(&r, model_path, extra);
    sp_personal *p = rig_personal(&r);
    float zero[ROW_FLOATS - 1] = {0};
    char id[16];
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "k%d", i);
        set_row(id, 0.5f);
        sp_personal_delta(p, sp_personal_item(p, id, NULL), 1.0f + (float)i, zero);
    }
    cr_assert_eq(sp_personal_apply(p), SP_OK);
    cr_assert_eq(sp_store_commit_many(r.store, NULL, 0), SP_OK);
    for (int i = 0; i < 5; i++) {
        float row[ROW_FLOATS];
        snprintf(id, sizeof id, "k%d", i);
        get_row(id, row);
        cr_assert_eq(row[0], 1.5f + (float)i, "%s: bias %.2f", id, row[0]);
    }
    sp_personal_put(p);
    rig_close(&r);
}

/* Each apply hands over the factor deltas since the last one and starts
 * the next batch from zero: three applies of different deltas on a row
 * Redis holds must leave it at its value plus the three, added in order,
 * and a row Redis lacks at our local row (bias and factors) each time.
 * At d 16 (the model's) and d 13 (the copies' tails). */
static void factor_deltas_land_once(const char *model, const char *dim) {
    struct rig r;
    const char *extra[] = {"mf.dim", dim, "mf.refresh_ms", "0", NULL};
    rig_open(&r, model, extra);
    sp_personal *p = rig_personal(&r);
    size_t d = p->dim;
    int32_t held = sp_personal_item(p, "held", NULL), fresh = sp_personal_item(p, "fresh", NULL);
    float want[SP_PERSONAL_MAX_DIM + 1] = {0.5f}, got[SP_PERSONAL_MAX_DIM + 1];
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    freeReplyObject(redisCommand(c, "DEL mf:items"));
    freeReplyObject(redisCommand(c, "HSET mf:items held %b", (const char *)want, 4 * (d + 1)));
    for (int round = 0; round < 3; round++) {
        float dv[SP_PERSONAL_MAX_DIM];
        for (size_t k = 0; k < d; k++) dv[k] = 0.125f * (float)(k + 1) * (float)(round + 1) - 0.3f;
        sp_personal_delta(p, held, 0.25f, dv);
        sp_personal_delta(p, fresh, -0.5f, dv);
        want[0] += 0.25f;
        for (size_t k = 0; k < d; k++) want[1 + k] += dv[k];
        cr_assert_eq(sp_personal_apply(p), SP_OK);
        cr_assert_eq(sp_store_commit_many(r.store, NULL, 0), SP_OK);
        redisReply *row = redisCommand(c, "HGET mf:items held");
        cr_assert_eq(row->len, 4 * (d + 1));
        cr_assert_eq(memcmp(row->str, want, 4 * (d + 1)), 0, "d %zu round %d: held", d, round);
        freeReplyObject(row);
        row = redisCommand(c, "HGET mf:items fresh"); /* Redis had none: our row as it is */
        cr_assert_eq(row->len, 4 * (d + 1));
        memcpy(got, row->str, 4 * (d + 1));
        freeReplyObject(row);
        cr_assert_eq(got[0], p->bias[fresh], "d %zu round %d: fresh bias", d, round);
        cr_assert_eq(memcmp(got + 1, p->vec + (size_t)fresh * d, 4 * d), 0, "d %zu round %d: fresh", d,
                     round);
        freeReplyObject(redisCommand(c, "HDEL mf:items fresh")); /* and none again next time */
    }
    redisFree(c);
    sp_personal_put(p);
    rig_close(&r);
}

Test(personalize, item_factor_deltas_land_once_per_apply) {
    factor_deltas_land_once(model_path, "16");
    factor_deltas_land_once(NULL, "13");
}

/* The item job sends each id with the length sp_personal_apply measured:
 * ids of every length from 1 to 40 (half of them already in Redis, so
 * read first; the rest new), in chunks of 3, twice (the second time from
 * the rows as written), must land under their own names and nowhere else.
 * A wrong length makes the compare-and-set miss for ever: the timeout. */
Test(personalize, item_ids_of_every_length_land_under_their_own_names, .timeout = 20) {
    struct rig r;
    const char *extra[] = {"mf.apply_rows", "3", NULL};
    rig_open(&r, model_path, extra);
    sp_personal *p = rig_personal(&r);
    freeReplyObject(cmd("DEL %s", "mf:items"));
    float zero[ROW_FLOATS - 1] = {0};
    char ids[40][48];
    int32_t rows[40];
    for (int i = 0; i < 40; i++) {
        for (int k = 0; k <= i; k++) ids[i][k] = (char)('a' + (i * 7 + k * 3) % 26);
        ids[i][i + 1] = '\0';
        rows[i] = sp_personal_item(p, ids[i], NULL);
        if (i % 2) set_row(ids[i], 0.5f);
    }
    for (int round = 1; round <= 2; round++) {
        for (int i = 0; i < 40; i++) sp_personal_delta(p, rows[i], 1.0f, zero);
        cr_assert_eq(sp_personal_apply(p), SP_OK);
        cr_assert_eq(sp_store_commit_many(r.store, NULL, 0), SP_OK);
        for (int i = 0; i < 40; i++) {
            float row[ROW_FLOATS];
            get_row(ids[i], row);
            cr_assert_eq(row[0], i % 2 ? 0.5f + (float)round : p->bias[rows[i]], "round %d, %s: %.2f",
                         round, ids[i], row[0]);
        }
        redisReply *n = cmd("HLEN %s", "mf:items");
        cr_assert_eq(n->integer, 40, "round %d: %lld fields, not one an id", round, n->integer);
        freeReplyObject(n);
    }
    sp_personal_put(p);
    rig_close(&r);
}

Test(personalize, hex_vectors_round_trip_exactly_and_reject_garbage) {
    float v[3] = {1.5f, -0.0001234f, 3.4e38f}, back[3];
    char hex[8 * 3 + 1];
    sp_personal_hex_encode(v, 3, hex);
    cr_assert_eq(strlen(hex), 24);
    cr_assert_eq(sp_personal_hex_decode(hex, back, 3), 3);
    cr_assert_eq(memcmp(v, back, sizeof v), 0);
    cr_assert_eq(sp_personal_hex_decode(hex, back, 2), 0, "wrong length");
    hex[3] = 'x';
    cr_assert_eq(sp_personal_hex_decode(hex, back, 3), 0, "not hex");
    cr_assert_eq(sp_personal_hex_decode(NULL, back, 3), 0);
}

/* A float's hex as the documentation gives it, byte at a time. */
static void hex_reference(const float *v, size_t n, char *out) {
    const unsigned char *b = (const unsigned char *)v;
    for (size_t i = 0; i < 4 * n; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
    out[8 * n] = '\0';
}

/* The codec against a byte-at-a-time one: every length up to 9
 * floats (odd ones end in half a step), random bits (non-finite values
 * refused), and each position replaced by each kind of non-digit. */
Test(personalize, hex_codec_matches_a_printf_reference_and_refuses_each_bad_digit) {
    uint64_t rng = sp_rng_seed(21);
    for (size_t n = 0; n <= 9; n++)
        for (int trial = 0; trial < 40; trial++) {
            float v[9], back[9];
            for (size_t k = 0; k < n; k++) {
                uint32_t bits = (uint32_t)sp_rng_next(&rng);
                memcpy(&v[k], &bits, 4);
            }
            char hex[8 * 9 + 1], want[8 * 9 + 1];
            hex_reference(v, n, want);
            sp_personal_hex_encode(v, n, hex);
            cr_assert_str_eq(hex, want);
            int finite = 1;
            for (size_t k = 0; k < n; k++) finite &= isfinite(v[k]) != 0;
            size_t got = sp_personal_hex_decode(hex, back, n);
            cr_assert_eq(got, finite ? n : 0, "n %zu", n);
            if (finite) cr_assert_eq(memcmp(v, back, 4 * n), 0);
            if (!finite || !n) continue;
            static const char bad[] = "/:`gGA F\x80\xff";
            size_t at = sp_rng_below(&rng, (uint32_t)(8 * n));
            hex[at] = bad[trial % (sizeof bad - 1)];
            cr_assert_eq(sp_personal_hex_decode(hex, back, n), 0, "'%c' at %zu", hex[at], at);
        }
}

/* decoden as decode on the same text, given its length: the text
 * copied to a buffer of exactly that size (no NUL: nothing past it is
 * read) and then followed by garbage that len leaves out, and refused
 * when len is one short or one long of 8 * n. */
static void check_decoden(const char *hex, const float *v, size_t n, int finite) {
    size_t len = 8 * n;
    char *exact = malloc(len ? len : 1), tail[8 * 70 + 3];
    memcpy(exact, hex, len);
    float back[70];
    cr_assert_eq(sp_personal_hex_decoden(exact, len, back, n), finite ? n : 0, "decoden n %zu", n);
    if (finite) cr_assert_eq(memcmp(v, back, 4 * n), 0, "decoden n %zu", n);
    memcpy(tail, hex, len);
    memcpy(tail + len, "zz", 3);
    cr_assert_eq(sp_personal_hex_decoden(tail, len, back, n), finite ? n : 0, "garbage after, n %zu", n);
    if (finite) cr_assert_eq(memcmp(v, back, 4 * n), 0, "garbage after, n %zu", n);
    if (n) cr_assert_eq(sp_personal_hex_decoden(exact, len - 1, back, n), 0, "short, n %zu", n);
    cr_assert_eq(sp_personal_hex_decoden(tail, len + 1, back, n), 0, "long, n %zu", n);
    cr_assert_eq(sp_personal_hex_decoden(NULL, len, back, n), 0);
    free(exact);
}

/* Both codec paths (AVX2, sixteen bytes a step with a padded tail, and
 * SSE2) against the reference, at every length up to 70 floats (d = 32 and
 * 64 and every tail of 4, 8 and 12 bytes): random bits with the edge
 * values sown in (+-0, denormals, +-inf, quiet and signalling NaNs, all
 * ones), decoded bit for bit or refused when a value is not finite; then
 * each kind of bad text refused: a non-digit (upper case, neighbours of
 * the ranges, high bytes) at a random place, the text cut short by a NUL,
 * one digit too many. */
Test(personalize, hex_codec_paths_agree_with_the_reference_on_edges_and_bad_text) {
    static const uint32_t edge[] = {0x00000000, 0x80000000, 0x00000001, 0x807fffff, 0x00800000,
                                    0x7f7fffff, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001,
                                    0xffffffff, 0x3f800000};
    static const char bad[] = "/:`gGABCDEF@\x80\xff\x7f ";
    for (int sse2 = 0; sse2 <= 1; sse2++) {
        sp_personal_hex_sse2_only(sse2);
        uint64_t rng = sp_rng_seed(77);
        for (size_t n = 0; n <= 70; n++)
            for (int trial = 0; trial < 30; trial++) {
                float v[70], back[70];
                for (size_t k = 0; k < n; k++) {
                    uint32_t bits = (uint32_t)sp_rng_next(&rng);
                    if (trial % 3 == 0 || sp_rng_below(&rng, 8) == 0)
                        bits = edge[sp_rng_below(&rng, sizeof edge / sizeof *edge)];
                    if (trial % 3 == 1) bits &= 0xbfffffff; /* finite: no all-ones exponent */
                    memcpy(&v[k], &bits, 4);
                }
                char hex[8 * 70 + 2], want[8 * 70 + 1];
                hex_reference(v, n, want);
                memset(hex, '#', sizeof hex);
                sp_personal_hex_encode(v, n, hex);
                cr_assert_str_eq(hex, want, "sse2 %d n %zu", sse2, n);
                int finite = 1;
                for (size_t k = 0; k < n; k++) finite &= isfinite(v[k]) != 0;
                size_t got = sp_personal_hex_decode(hex, back, n);
                cr_assert_eq(got, finite ? n : 0, "sse2 %d n %zu", sse2, n);
                if (finite) cr_assert_eq(memcmp(v, back, 4 * n), 0, "sse2 %d n %zu", sse2, n);
                check_decoden(hex, v, n, finite);
                if (!finite || !n) continue;
                char keep = hex[8 * n - 1];
                hex[8 * n - 1] = '\0';
                cr_assert_eq(sp_personal_hex_decode(hex, back, n), 0, "short, n %zu", n);
                hex[8 * n - 1] = keep;
                hex[8 * n] = '0';
                hex[8 * n + 1] = '\0';
                cr_assert_eq(sp_personal_hex_decode(hex, back, n), 0, "long, n %zu", n);
                hex[8 * n] = '\0';
                size_t at = sp_rng_below(&rng, (uint32_t)(8 * n));
                hex[at] = bad[trial % (sizeof bad - 1)];
                cr_assert_eq(sp_personal_hex_decode(hex, back, n), 0, "sse2 %d '%c' at %zu of %zu",
                             sse2, hex[at], at, 8 * n);
            }
    }
    sp_personal_hex_sse2_only(0);
}

/* mf's score against the plain loop it stands for, bit for bit: every d
 * up to 70 (the four-wide steps and each tail), factors of magnitudes from
 * 1e-3 to 1e3 so that the order of the double adds shows in the last bits
 * (a sum in another order, or a term widened before its product, differs
 * there on most inputs). */
Test(personalize, bpr_score_equals_a_plain_ordered_sum) {
    uint64_t rng = sp_rng_seed(5);
    for (size_t d = 0; d <= 70; d++)
        for (int trial = 0; trial < 50; trial++) {
            float u[70], qi[70], qj[70];
            for (size_t k = 0; k < d; k++) {
                float scale = powf(10.0f, (float)sp_rng_below(&rng, 7) - 3.0f);
                u[k] = scale * sp_rng_normal(&rng);
                qi[k] = scale * sp_rng_normal(&rng);
                qj[k] = sp_rng_normal(&rng);
            }
            float b = sp_rng_normal(&rng);
            double want = b;
            for (size_t k = 0; k < d; k++) {
                float t = u[k] * (qi[k] - qj[k]);
                want += t;
            }
            double got = sp_personal_bpr_score(u, qi, qj, b, d);
            cr_assert_eq(memcmp(&got, &want, sizeof got), 0, "d %zu trial %d: %.17g, not %.17g", d,
                         trial, got, want);
        }
}

/* online_mf.c's step written plainly, one element at a time and the item
 * deltas added at once: the operator's 4-wide loops must give these bits. */
static void mf_reference_step(const sp_personal *c, float *u, float *vec, float *bias, int32_t i,
                              float w, uint64_t *rng) {
    size_t d = c->dim;
    float du[SP_PERSONAL_MAX_DIM] = {0};
    for (int s = 0; s < c->mf_neg; s++) {
        int32_t j = c->model && sp_model_n_items(c->model) > 1
                        ? c->model2mf[sp_rng_below(rng, (uint32_t)sp_model_n_items(c->model))]
                        : (int32_t)sp_rng_below(rng, (uint32_t)sp_vocab_size(c->items));
        if (j == i) continue;
        float *qi = vec + (size_t)i * d, *qj = vec + (size_t)j * d;
        double x = bias[i] - bias[j];
        for (size_t k = 0; k < d; k++) x += u[k] * (qi[k] - qj[k]);
        float g = (float)(-w / (1.0 + exp(x)));
        for (size_t k = 0; k < d; k++) du[k] += g * (qi[k] - qj[k]) + 0.001f * u[k];
        if (c->mf_item_lr > 0) {
            float lr = c->mf_item_lr;
            float dbi = -lr * (g + 0.001f * bias[i]);
            for (size_t k = 0; k < d; k++) qi[k] += -lr * (g * u[k] + 0.001f * qi[k]);
            bias[i] += dbi;
            float dbj = -lr * (-g + 0.001f * bias[j]);
            for (size_t k = 0; k < d; k++) qj[k] += -lr * (-g * u[k] + 0.001f * qj[k]);
            bias[j] += dbj;
        }
    }
    for (size_t k = 0; k < d; k++) u[k] -= c->mf_lr * du[k];
}

/* commit(), checking the item job's writes: each dirty row of "mf:items"
 * must become what Redis held plus the batch's delta, float by float
 * (the row as we have it when Redis had none). */
static void commit_checking_item_rows(struct rig *r, sp_personal *c) {
    size_t d = c->dim, nd = c->ndirty;
    float(*want)[SP_PERSONAL_MAX_DIM + 1] = malloc((nd ? nd : 1) * sizeof *want);
    int32_t *rows = malloc((nd ? nd : 1) * sizeof *rows);
    for (size_t x = 0; x < nd; x++) {
        int32_t row = rows[x] = c->dirty_list[x];
        redisReply *was = cmd("HGET mf:items %s", sp_vocab_id(c->items, row));
        if (was->type == REDIS_REPLY_STRING && was->len == 4 * (d + 1)) {
            memcpy(want[x], was->str, 4 * (d + 1));
            want[x][0] += c->dbias[row];
            for (size_t k = 0; k < d; k++) want[x][1 + k] += c->dvec[(size_t)row * d + k];
        } else {
            want[x][0] = c->bias[row];
            memcpy(want[x] + 1, c->vec + (size_t)row * d, 4 * d);
        }
        freeReplyObject(was);
    }
    commit(r);
    for (size_t x = 0; x < nd; x++) {
        redisReply *now = cmd("HGET mf:items %s", sp_vocab_id(c->items, rows[x]));
        cr_assert_eq(now->type, REDIS_REPLY_STRING);
        cr_assert_eq(now->len, 4 * (d + 1));
        cr_assert_eq(memcmp(now->str, want[x], 4 * (d + 1)), 0, "d %zu: mf:items %s", d,
                     sp_vocab_id(c->items, rows[x]));
        freeReplyObject(now);
    }
    free(want);
    free(rows);
}

/* Random views, clicks and cart adds of five users on the table's rows
 * through the pipeline, each checked against mf_reference_step: the user
 * vector read back from mfu:<user> and every item row and bias, bit for
 * bit, with commits between whose rows in "mf:items" are checked too. */
static void mf_equals_reference(const char *model, const char *dim) {
    struct rig r;
    const char *extra[] = {"mf.dim", dim, "mf.refresh_ms", "0", NULL};
    rig_open(&r, model, extra);
    sp_personal *c = rig_personal(&r);
    char id[32];
    for (int k = 0; k < 20; k++) {
        snprintf(id, sizeof id, "mr%d", k);
        sp_personal_item(c, id, NULL);
    }
    size_t d = c->dim, rows = sp_vocab_size(c->items);
    float *vec = malloc(rows * d * sizeof *vec), *bias = malloc(rows * sizeof *bias);
    memcpy(vec, c->vec, rows * d * sizeof *vec);
    memcpy(bias, c->bias, rows * sizeof *bias);
    float users[5][SP_PERSONAL_MAX_DIM];
    int known[5] = {0};
    uint64_t rng = sp_rng_seed(9);
    for (int n = 0; n < 240; n++) {
        int who = (int)sp_rng_below(&rng, 5);
        int32_t row = (int32_t)sp_rng_below(&rng, (uint32_t)rows);
        enum sp_event_kind kind = (enum sp_event_kind)sp_rng_below(&rng, 3);
        char user[16], eid[32], key[32];
        snprintf(user, sizeof user, "mu%d", who);
        snprintf(eid, sizeof eid, "mfe%d", n);
        float *u = users[who];
        if (!known[who]++) {
            uint64_t seed = sp_rng_seed(sp_personal_hash(user, 0));
            for (size_t k = 0; k < d; k++) u[k] = 0.01f * sp_rng_normal(&seed);
        }
        uint64_t erng = sp_rng_seed(sp_personal_hash(eid, sp_personal_hash(user, 0)));
        mf_reference_step(c, u, vec, bias, row, c->mf_weights[kind], &erng);

        Shopstream__V1__Event ev = SHOPSTREAM__V1__EVENT__INIT;
        Shopstream__V1__Click cl = SHOPSTREAM__V1__CLICK__INIT;
        cl.kind = (Shopstream__V1__ClickKind)(kind + 1);
        cl.item_id = (char *)sp_vocab_id(c->items, row);
        ev.event_id = eid;
        ev.ts_ms = T0 + n;
        ev.user_id = user;
        ev.body_case = SHOPSTREAM__V1__EVENT__BODY_CLICK;
        ev.click = &cl;
        run_event(&r, &ev, kind);

        cr_assert_eq(memcmp(c->vec, vec, rows * d * sizeof *vec), 0, "d %zu: rows after event %d", d, n);
        cr_assert_eq(memcmp(c->bias, bias, rows * sizeof *bias), 0, "d %zu: biases after event %d", d, n);
        snprintf(key, sizeof key, "mfu:%s", user);
        sp_obj *o;
        cr_assert_eq(sp_store_get(r.store, 0, key, &o), SP_OK);
        char want[8 * SP_PERSONAL_MAX_DIM + 1];
        hex_reference(u, d, want);
        cr_assert_str_eq(sp_obj_get_str(o, "v"), want, "d %zu: %s after event %d", d, user, n);
        if (n % 60 == 59) commit_checking_item_rows(&r, c);
    }
    free(vec);
    free(bias);
    sp_personal_put(c);
    rig_close(&r);
}

Test(personalize, mf_steps_equal_a_plain_reference_bit_for_bit) {
    mf_equals_reference(model_path, "16"); /* the model's items, d 16 */
    freeReplyObject(cmd("FLUSHALL", ""));
    mf_equals_reference(NULL, "13"); /* no model; d 13: the loops' tails */
}

/* A new item starts at the mean of its category's rows, summed in row
 * order: the per-category lists must give the numbers of a scan over the
 * whole table, also for rows whose category became known after they were
 * added (linked in the middle of a list). */
Test(personalize, new_item_starts_at_its_categorys_mean_as_a_full_scan_gives) {
    sp_config cfg;
    sp_config_init(&cfg);
    char err[256];
    cr_assert_eq(sp_config_set(&cfg, "mf.dim", "5", err, sizeof err), SP_OK);
    sp_op_env env = {.cfg = &cfg};
    sp_personal *p = sp_personal_get(&env, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    uint64_t rng = sp_rng_seed(41);
    char id[32], cat[8];
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof id, "it%d", i);
        snprintf(cat, sizeof cat, "c%u", sp_rng_below(&rng, 4));
        int late = sp_rng_below(&rng, 5) == 0; /* category learned on a later event */
        int32_t row = sp_personal_item(p, id, late ? NULL : cat);
        for (size_t k = 0; k < 5; k++) p->vec[(size_t)row * 5 + k] = sp_rng_normal(&rng);
        p->bias[row] = sp_rng_normal(&rng);
        if (late && i > 0) { /* an earlier row learns its category now */
            snprintf(id, sizeof id, "it%u", sp_rng_below(&rng, (uint32_t)i));
            sp_personal_item(p, id, cat);
        }
        if (i % 7) continue;
        snprintf(id, sizeof id, "new%d", i);
        int32_t c = sp_vocab_find(p->cats, cat, strlen(cat));
        float want[5] = {0}, wantb = 0;
        size_t n = 0;
        for (int32_t r = 0; r < (int32_t)sp_vocab_size(p->items); r++)
            if (p->cat[r] == c) {
                for (size_t k = 0; k < 5; k++) want[k] += p->vec[(size_t)r * 5 + k];
                wantb += p->bias[r];
                n++;
            }
        row = sp_personal_item(p, id, cat);
        for (size_t k = 0; k < 5; k++)
            cr_assert_eq(p->vec[(size_t)row * 5 + k], want[k] / (float)n, "item %d k %zu", i, k);
        cr_assert_eq(p->bias[row], wantb / (float)n);
    }
    sp_personal_put(p);
    sp_config_release(&cfg);
}

/* The profile's parsers must be libc's, bit for bit: scores as the
 * profile prints them (%.6g and longer), ties to every digit count, and
 * text that is not a plain number (which goes to libc), and scores
 * followed by more of the affinity text or by other bytes. */
Test(personalize, profile_parsers_equal_strtod_and_strtoll) {
    uint64_t rng = sp_rng_seed(51);
    static const char *odd[] = {"", "-", ".", "-0", "0.", ".5", "1e-05", "inf", "nan", "+3",
                                " 7", "12x", "1.2.3", "1234567890123456", "0.000100000",
                                "99999999999999999999", "-9223372036854775808", "1 2", "12,5",
                                "0.5\xfa\xfa\xfa\xfa\xfa\xfa\xfa", "0.1234\xff" "7,a:1,b:2",
                                "0.1234567,a:1", "0.12345678,a:1", "1.9/,a:1,b:2", "2.:,a:1,b:2",
                                "0.00012,c:1", "-0.5,abcdefgh", "3.25e1,c:1,d:2"};
    char buf[64];
    for (int i = 0; i < 20000 + (int)(sizeof odd / sizeof *odd); i++) {
        const char *s = buf;
        if (i >= 20000) {
            s = odd[i - 20000];
        } else {
            double v = sp_rng_normal(&rng) * pow(10, (double)sp_rng_below(&rng, 16) - 6);
            static const char *fmt[] = {"%.6g", "%.9g", "%.17g", "%.3f", "%.0f"};
            snprintf(buf, sizeof buf, fmt[i % 5], v);
            if (i % 7 == 0) strcat(buf, ",c1:2");
            if (i % 7 == 1) strcat(buf, ",c10:0.125,x:1");
        }
        double want = strtod(s, NULL), got = sp_profile_parse_score(s);
        cr_assert(memcmp(&want, &got, sizeof want) == 0 || (isnan(want) && isnan(got)),
                  "'%s': %.17g, strtod %.17g", s, got, want);
        char *e1, *e2;
        long long wi = strtoll(s, &e1, 10);
        int64_t gi = sp_profile_parse_i64(s, &e2);
        cr_assert_eq(gi, wi, "'%s'", s);
        cr_assert_eq(e2, e1, "'%s': end", s);
    }
}

/* sp_profile_parse_time is strtoll, value and end, on words of every
 * length 0 to 21 (around 8 and 16, between which it reads two words of
 * eight digits, and 18, past which strtoll takes over): all digits,
 * leading zeros, all nines, and a byte next to the digits ('/', ':', '-',
 * 0x80...) at every place, each word ended by a space and more text or by
 * the NUL. */
Test(profile_parse, time_equals_strtoll_on_every_word) {
    static const char odd[] = {'/', ':', '-', '+', '.', 'a', 'x', (char)0x80, (char)0xff, '\t'};
    uint64_t rng = sp_rng_seed(61);
    char buf[64];
    for (int trial = 0; trial < 200000; trial++) {
        size_t len = trial < 22 ? (size_t)trial : sp_rng_below(&rng, 22);
        for (size_t i = 0; i < len; i++) {
            uint32_t r = sp_rng_below(&rng, 10);
            buf[i] = trial % 5 == 1 ? '9' : trial % 5 == 2 && i < 3 ? '0' : (char)('0' + r);
        }
        if (trial % 3 == 0 && len) /* one byte that is not a digit */
            buf[sp_rng_below(&rng, (uint32_t)len)] = odd[sp_rng_below(&rng, sizeof odd)];
        strcpy(buf + len, trial % 2 ? " 17 x" : "");
        char *want_end, *got_end;
        long long want = strtoll(buf, &want_end, 10);
        int64_t got = sp_profile_parse_time(buf, len, &got_end);
        cr_assert_eq(got, want, "'%s' (%zu bytes)", buf, len);
        cr_assert_eq(got_end, want_end, "'%s': end", buf);
    }
}

/* sp_profile_fmt_time is sp_i64toa byte for byte and length: on both
 * sides of each bound of its 13-digit path (10^12 and 10^13), at 0, the
 * extremes and negatives (sp_i64toa's), and on random 13-digit times and
 * any int64 at all. */
Test(profile_parse, time_text_equals_i64toa_on_both_sides_of_each_bound) {
    static const int64_t edge[] = {0, 1, -1, 999999999999, 1000000000000, 1000000000001,
                                   1733356800000, 1999999999999, 9999999999999, 10000000000000,
                                   10000000000001, -1000000000000, -9999999999999,
                                   INT64_MAX, INT64_MIN, 1000099990000, 1234500006789};
    uint64_t rng = sp_rng_seed(67);
    for (int trial = 0; trial < 200000; trial++) {
        int64_t v = trial < (int)(sizeof edge / sizeof edge[0]) ? edge[trial]
                    : trial % 2 ? 1000000000000 + (int64_t)(sp_rng_next(&rng) % 9000000000000ULL)
                                : (int64_t)sp_rng_next(&rng) >> sp_rng_below(&rng, 64);
        char want[32], got[32];
        memset(got, 'x', sizeof got);
        size_t wl = sp_i64toa(v, want), gl = sp_profile_fmt_time(v, got);
        cr_assert_eq(gl, wl, "%lld: length", (long long)v);
        cr_assert_str_eq(got, want, "%lld", (long long)v);
    }
}

/* sp_personal_hash is a plain FNV-1a byte loop's value, seeded or not, on
 * ids of every length 0 to 40: mf's seeds, and so its numbers, hang on it.
 * Its start (seed 0) is 1469598103934665603, not FNV's published
 * 14695981039346656037 (a digit short): stored vectors were drawn with it,
 * so it stays, pinned here. */
Test(personalize, hash_is_fnv1a_on_ids_of_every_length) {
    cr_assert_eq(sp_personal_hash("", 0), 1469598103934665603ULL);
    cr_assert_eq(sp_personal_hash("a", 0), (1469598103934665603ULL ^ 'a') * 1099511628211ULL);
    uint64_t rng = sp_rng_seed(71);
    char id[48];
    for (int trial = 0; trial < 4000; trial++) {
        size_t len = (size_t)trial % 41;
        for (size_t i = 0; i < len; i++) id[i] = (char)(1 + sp_rng_below(&rng, 255));
        id[len] = '\0';
        uint64_t seed = trial % 2 ? sp_rng_next(&rng) | 1 : 0;
        uint64_t want = seed ? seed : 1469598103934665603ULL;
        for (size_t i = 0; i < len; i++) want = (want ^ (unsigned char)id[i]) * 1099511628211ULL;
        cr_assert_eq(sp_personal_hash(id, seed), want, "length %zu", len);
    }
}

Test(personalize, bad_settings_name_the_key) {
    sp_config cfg;
    sp_config_init(&cfg);
    char err[256];
    cr_assert_eq(sp_config_set(&cfg, "recommend.blend", "1,2", err, sizeof err), SP_OK);
    sp_store_conf sc = {.url = redis.url, .timeout_ms = 1000, .max_entries = 1000};
    sp_store *st = sp_store_new(&sc, err, sizeof err);
    sp_op_env env = {st, NULL, &cfg, NULL};
    cr_assert_null(sp_pipeline_new("recommend", &env, err, sizeof err));
    cr_assert(strstr(err, "recommend.blend"), "%s", err);
    sp_config_set(&cfg, "recommend.blend", "1,1,1", err, sizeof err);
    sp_config_set(&cfg, "recommend.model", "/nonexistent/model", err, sizeof err);
    cr_assert_null(sp_pipeline_new("recommend", &env, err, sizeof err));
    cr_assert(strstr(err, "recommend.model"), "%s", err);
    /* the candidate budget is a config key like any other */
    cr_assert_neq(sp_config_set(&cfg, "recommend.candidates", "-1", err, sizeof err), SP_OK);
    cr_assert(strstr(err, "recommend.candidates"), "%s", err);
    cr_assert_eq(sp_config_set(&cfg, "recommend.candidates", "0", err, sizeof err), SP_OK);
    cr_assert_eq(cfg.recommend_candidates, 0);
    setenv("SHOPSTREAM_RECOMMEND_CANDIDATES", "77", 1);
    cr_assert_eq(sp_config_load_env(&cfg, err, sizeof err), SP_OK, "%s", err);
    unsetenv("SHOPSTREAM_RECOMMEND_CANDIDATES");
    cr_assert_eq(cfg.recommend_candidates, 77);
    sp_store_destroy(st);
    sp_config_release(&cfg);
}

/* A view with its own session, device and ip. */
static void seen_with(struct rig *r, const char *user, int i, int64_t ts) {
    char sess[16], dev[16], ip[32];
    snprintf(sess, sizeof sess, "s%d", i);
    snprintf(dev, sizeof dev, "d%d", i);
    snprintf(ip, sizeof ip, "10.0.0.%d", i);
    click_with(r, user, sess, dev, ip, "a1", "shoes", SP_KIND_VIEW, ts);
}

/* The same session, device and ip as the user's newest event again (most
 * events): the lists keep their words and order, and the head's time moves
 * to the later of the two -- never back. */
Test(personalize, profile_lists_move_only_the_head_time_for_the_newest_word_again) {
    struct rig r;
    rig_open(&r, model_path, NULL);
    seen_with(&r, "uc", 0, T0);
    seen_with(&r, "uc", 1, T0 + 1000);
    seen_with(&r, "uc", 1, T0 + 5000); /* newer: the head's time moves */
    seen_with(&r, "uc", 1, T0 + 2000); /* older: nothing changes */
    commit(&r);
    char want_ts[64];
    snprintf(want_ts, sizeof want_ts, "%lld %lld", (long long)(T0 + 5000), (long long)T0);
    static const char *lists[][3] = {{"devices", "devices_ts", "d1 d0"},
                                     {"ips", "ips_ts", "10.0.0.1 10.0.0.0"},
                                     {"recent_sessions", "recent_sessions_ts", "s1 s0"}};
    for (size_t i = 0; i < 3; i++) {
        char *w = hget("{p0}:prof:uc", lists[i][0]), *t = hget("{p0}:prof:uc", lists[i][1]);
        cr_assert_str_eq(w, lists[i][2], "%s", lists[i][0]);
        cr_assert_str_eq(t, want_ts, "%s", lists[i][1]);
        free(w);
        free(t);
    }
    rig_close(&r);
}

/* The three input topics are fetched independently, so one user's events
 * arrive in different orders in different runs: the profile's lists of
 * sessions, devices and ips must come out the same (make soak found
 * recent_sessions in arrival order differing after kill -9). */
Test(personalize, profile_lists_do_not_depend_on_arrival_order) {
    struct rig r;
    rig_open(&r, model_path, NULL);
    static const int order_b[] = {5, 11, 0, 7, 3, 9, 1, 10, 2, 8, 4, 6};
    for (int i = 0; i < 12; i++) seen_with(&r, "ua", i, T0 + 1000 * i);
    for (int i = 0; i < 12; i++) seen_with(&r, "ub", order_b[i], T0 + 1000 * order_b[i]);
    seen_with(&r, "ua", 3, T0 + 50000); /* device d3 again, newest now */
    seen_with(&r, "ub", 3, T0 + 50000);
    commit(&r);
    static const char *fields[] = {"devices", "devices_ts", "ips", "ips_ts", "recent_sessions",
                                   "recent_sessions_ts", "sessions"};
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
        char *a = hget("{p0}:prof:ua", fields[f]), *b = hget("{p0}:prof:ub", fields[f]);
        cr_assert_not_null(a, "%s missing", fields[f]);
        cr_assert_str_eq(a, b, "%s depends on arrival order", fields[f]);
        free(a);
        free(b);
    }
    char *dev = hget("{p0}:prof:ua", "devices");
    cr_assert_str_eq(dev, "d3 d11 d10 d9 d8 d7 d6 d5", "the 8 newest by event time");
    free(dev);
    char *sess = hget("{p0}:prof:ua", "sessions");
    cr_assert_str_eq(sess, "12");
    free(sess);
    rig_close(&r);
}

/* ------------------------------------------------------------------------
 * The profile's text fields against slow, obvious models of what they hold
 * (parse the text, change it, sort with qsort, print with snprintf): the
 * operator edits the text in place and sorts by insertion, and these fail
 * if such a shortcut ever writes other bytes. */

/* A profile field's text as the cache holds it now (what the next commit
 * writes), or "" if absent. */
static const char *prof_field(struct rig *r, const char *user, const char *field) {
    char key[64];
    snprintf(key, sizeof key, "prof:%s", user);
    sp_obj *o;
    cr_assert_eq(sp_store_get(r->store, 0, key, &o), SP_OK);
    const char *s = sp_obj_get_str(o, field);
    return s ? s : "";
}

struct model_aff {
    char cat[32];
    double score;
};

static int model_aff_cmp(const void *a, const void *b) {
    const struct model_aff *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return strcmp(x->cat, y->cat);
}

/* The affinity text after adding w to cat at ts, from the text before:
 * parsed with strtod, decayed, sorted by qsort, cut to k, printed %.6g. */
static void model_aff_add(char *text, int64_t *at, int *has_at, const char *cat, double w,
                          int64_t ts, int k, double half_life_ms) {
    struct model_aff a[32];
    int n = 0;
    char copy[512];
    snprintf(copy, sizeof copy, "%s", text);
    for (char *save, *tok = strtok_r(copy, ",", &save); tok && n < k;
         tok = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(tok, ':');
        *colon = '\0';
        snprintf(a[n].cat, sizeof a[n].cat, "%s", tok);
        a[n++].score = strtod(colon + 1, NULL);
    }
    int64_t t = *has_at ? *at : ts;
    if (ts > t) {
        for (int i = 0; i < n; i++) a[i].score *= pow(0.5, (double)(ts - t) / half_life_ms);
        t = ts;
    } else {
        w *= pow(0.5, (double)(t - ts) / half_life_ms);
    }
    int i = 0;
    while (i < n && strcmp(a[i].cat, cat)) i++;
    if (i == n) {
        snprintf(a[n].cat, sizeof a[n].cat, "%s", cat);
        a[n++].score = 0;
    }
    a[i].score += w;
    qsort(a, (size_t)n, sizeof a[0], model_aff_cmp);
    if (n > k) n = k;
    size_t len = 0;
    text[0] = '\0';
    for (i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, 512 - len, "%s%s:%.6g", i ? "," : "", a[i].cat,
                                a[i].score);
    *at = t;
    *has_at = 1;
}

/* The ring of recent items after "item:kind:ts": newest first, at equal
 * times the greater text first, an event already there not again, cut to
 * max. */
static void model_ring_push(char ring[][64], int *n, int max, const char *item, const char *kind,
                            int64_t ts) {
    char mine[64];
    snprintf(mine, sizeof mine, "%s:%s:%lld", item, kind, (long long)ts);
    for (int i = 0; i < *n; i++)
        if (!strcmp(ring[i], mine)) return;
    int at = 0;
    while (at < *n) {
        long long t = atoll(strrchr(ring[at], ':') + 1);
        if (t < ts || (t == ts && strcmp(ring[at], mine) < 0)) break;
        at++;
    }
    if (at >= max) return;
    int last = *n < max ? *n : max - 1;
    for (int i = last; i > at; i--) memcpy(ring[i], ring[i - 1], 64);
    memcpy(ring[at], mine, sizeof mine);
    if (*n < max) (*n)++;
}

struct model_word {
    char w[24];
    int64_t ts;
};

static int model_word_cmp(const void *a, const void *b) {
    const struct model_word *x = a, *y = b;
    if (x->ts != y->ts) return x->ts > y->ts ? -1 : 1;
    return strcmp(x->w, y->w);
}

/* A words list after `word` at ts: each word with its latest time, newest
 * first, then by bytes, cut to max. Returns whether the word was there. */
static int model_list_push(struct model_word *l, int *n, int max, const char *word, int64_t ts) {
    int i = 0;
    while (i < *n && strcmp(l[i].w, word)) i++;
    int known = i < *n;
    if (!known) {
        snprintf(l[i].w, sizeof l[i].w, "%s", word);
        l[i].ts = ts;
        (*n)++;
    } else if (ts > l[i].ts) {
        l[i].ts = ts;
    }
    qsort(l, (size_t)*n, sizeof *l, model_word_cmp);
    if (*n > max) *n = max;
    return known;
}

/* The list's two texts, into buffers of `size` bytes. */
static void model_list_text(const struct model_word *l, int n, char *words, char *times,
                            size_t size) {
    size_t a = 0, b = 0;
    words[0] = times[0] = '\0';
    for (int i = 0; i < n; i++) {
        a += (size_t)snprintf(words + a, size - a, "%s%s", i ? " " : "", l[i].w);
        b += (size_t)snprintf(times + b, size - b, "%s%lld", i ? " " : "", (long long)l[i].ts);
    }
}

/* Equal weights at one time tie, and ties go by name ("c1" before "c10");
 * the top 3 cut the rest, a dropped category comes back from nothing, and
 * a late event's weight is decayed to the profile's time. Expected texts
 * worked out by hand (view 1, click 2; half-life 100 s). */
Test(personalize, profile_affinity_ties_go_by_name_and_the_top_k_cuts) {
    struct rig r;
    const char *extra[] = {"profile.half_life_s", "100", "profile.top_categories", "3", NULL};
    rig_open(&r, model_path, extra);
    static const struct {
        const char *cat;
        enum sp_event_kind kind;
        int64_t dt;
        const char *want;
    } steps[] = {
        {"b", SP_KIND_VIEW, 0, "b:1"},
        {"a", SP_KIND_VIEW, 0, "a:1,b:1"},
        {"c", SP_KIND_VIEW, 0, "a:1,b:1,c:1"},
        {"d", SP_KIND_VIEW, 0, "a:1,b:1,c:1"},            /* a fourth tie: cut */
        {"c10", SP_KIND_CLICK, 0, "c10:2,a:1,b:1"},
        {"c1", SP_KIND_VIEW, 0, "c10:2,a:1,b:1"},         /* ties a and b, loses on name */
        {"c1", SP_KIND_VIEW, 100000, "c1:1,c10:1,a:0.5"}, /* all halved, then c1 added */
        {"b", SP_KIND_CLICK, 0, "b:1,c1:1,c10:1"},        /* late: 2 halved to 1 */
        {"b", SP_KIND_VIEW, 100000, "b:2,c1:1,c10:1"},    /* the profile's time again */
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        click_with(&r, "ut", NULL, NULL, NULL, "x1", steps[i].cat, steps[i].kind,
                   T0 + steps[i].dt);
        cr_assert_str_eq(prof_field(&r, "ut", "aff"), steps[i].want, "step %zu", i);
    }
    commit(&r);
    char *aff = hget("{p0}:prof:ut", "aff"), *at = hget("{p0}:prof:ut", "aff_ms");
    cr_assert_str_eq(aff, "b:2,c1:1,c10:1");
    cr_assert_eq(atoll(at), T0 + 100000);
    free(aff);
    free(at);
    rig_close(&r);
}

/* The ring of recent items with three places: a newer event at the head,
 * an older one deeper, the oldest cut, the same event twice kept once, an
 * event older than a full ring left out, and at equal times the greater
 * text first. Expected texts worked out by hand. */
Test(personalize, profile_recent_ring_places_each_event_by_time_at_the_head_and_deeper) {
    struct rig r;
    const char *extra[] = {"profile.recent_items", "3", NULL};
    rig_open(&r, model_path, extra);
    struct entry {
        const char *text; /* "item:kind:" */
        int64_t dt;       /* its time is T0 + dt */
    };
    static const struct {
        const char *item;
        enum sp_event_kind kind;
        int64_t dt;
        struct entry want[3];
    } steps[] = {
        {"i1", SP_KIND_VIEW, 0, {{"i1:view:", 0}}},
        {"i2", SP_KIND_VIEW, 1000, {{"i2:view:", 1000}, {"i1:view:", 0}}},
        {"i3", SP_KIND_VIEW, 500, {{"i2:view:", 1000}, {"i3:view:", 500}, {"i1:view:", 0}}},
        {"i4", SP_KIND_VIEW, 2000, {{"i4:view:", 2000}, {"i2:view:", 1000}, {"i3:view:", 500}}},
        /* the same event again */
        {"i4", SP_KIND_VIEW, 2000, {{"i4:view:", 2000}, {"i2:view:", 1000}, {"i3:view:", 500}}},
        /* the head's time: "i4:view:" is the greater text */
        {"i4", SP_KIND_CLICK, 2000,
         {{"i4:view:", 2000}, {"i4:click:", 2000}, {"i2:view:", 1000}}},
        /* older than a full ring */
        {"i0", SP_KIND_VIEW, 0, {{"i4:view:", 2000}, {"i4:click:", 2000}, {"i2:view:", 1000}}},
        {"i9", SP_KIND_VIEW, 2000,
         {{"i9:view:", 2000}, {"i4:view:", 2000}, {"i4:click:", 2000}}},
        {"i5", SP_KIND_VIEW, 3000, {{"i5:view:", 3000}, {"i9:view:", 2000}, {"i4:view:", 2000}}},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        click_with(&r, "ur", NULL, NULL, NULL, steps[i].item, "c", steps[i].kind,
                   T0 + steps[i].dt);
        char want[256] = "";
        for (int k = 0; k < 3 && steps[i].want[k].text; k++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s%lld", k ? " " : "",
                     steps[i].want[k].text, (long long)(T0 + steps[i].want[k].dt));
        cr_assert_str_eq(prof_field(&r, "ur", "recent"), want, "step %zu", i);
    }
    rig_close(&r);
}

/* id padded with 'x' to width bytes, on the left or the right: ids that
 * differ only in a byte or two among many the same, at the start or the
 * end (the operator compares ids eight and four bytes at a time). */
static const char *padded(char *out, const char *id, int width, int left) {
    static const char x[] = "xxxxxxxxxxxxxxxxxxxxxxxx";
    int n = (int)strlen(id);
    if (left)
        snprintf(out, 32, "%s%.*s", id, width - n, x);
    else
        snprintf(out, 32, "%.*s%s", width - n, x, id);
    return out;
}

/* Random events of one user -- repeated and new sessions, devices and ips,
 * at the head of their lists and deeper, equal times, late events, the same
 * event twice, more words than the lists hold -- and after each, every
 * text field equals the slow model's. With `pad`, every id and category
 * padded (padded) to lengths 5 to 17. */
static void random_profile_events(int pad) {
    struct rig r;
    const char *extra[] = {"profile.half_life_s", "60", "profile.top_categories", "3",
                           "profile.recent_items", "4", NULL};
    rig_open(&r, model_path, extra);
    sp_personal *ctx = rig_personal(&r);
    static const char *cats[] = {"c1", "c10", "c2", "a", "b"};
    static const enum sp_event_kind kinds[] = {SP_KIND_VIEW, SP_KIND_CLICK, SP_KIND_ADD_TO_CART,
                                               SP_KIND_REMOVE_FROM_CART};
    char aff[512] = "", ring[8][64], want[1024], want_ts[1024], name[24];
    int64_t aff_ms = 0, ts = T0;
    int has_aff_ms = 0, nring = 0, nl[3] = {0, 0, 0};
    struct model_word lists[3][40];
    static const int max[3] = {16, 8, 8};
    static const char *fields[3][2] = {{"recent_sessions", "recent_sessions_ts"},
                                       {"devices", "devices_ts"},
                                       {"ips", "ips_ts"}};
    long sessions = 0;
    uint64_t rng = sp_rng_seed(77);
    char item[8] = "i1", sess[8] = "s1", dev[8] = "d1", ip[16] = "10.0.0.1";
    enum sp_event_kind kind = SP_KIND_VIEW;
    const char *cat = "a";
    for (int i = 0; i < 600; i++) {
        int64_t evts = ts;
        if (sp_rng_below(&rng, 8)) { /* else: the same event again */
            uint32_t dt = sp_rng_below(&rng, 10);
            ts += dt < 3 ? 0 : dt < 9 ? 1000 * dt : 60000; /* equal times, steps, a half-life */
            evts = sp_rng_below(&rng, 6) ? ts : ts - 1000 * sp_rng_below(&rng, 90); /* late */
            snprintf(item, sizeof item, "i%u", sp_rng_below(&rng, 7));
            snprintf(sess, sizeof sess, "s%u", sp_rng_below(&rng, 3) ? 1 : sp_rng_below(&rng, 20));
            snprintf(dev, sizeof dev, "d%u", sp_rng_below(&rng, 2) ? 1 : sp_rng_below(&rng, 12));
            snprintf(ip, sizeof ip, "10.0.0.%u", sp_rng_below(&rng, 4));
            kind = kinds[sp_rng_below(&rng, 4)];
            cat = cats[sp_rng_below(&rng, 5)];
        }
        char ps[32], pd[32], pi[32], pc[32];
        const char *words[3] = {sess, dev, ip}, *ecat = cat;
        if (pad) {
            words[0] = padded(ps, sess, 17, 0);
            words[1] = padded(pd, dev, 13, 1);
            words[2] = padded(pi, ip, 12, 1);
            ecat = padded(pc, cat, 5, 0);
        }
        click_with(&r, "um", words[0], words[1], words[2], item, ecat, kind, evts);
        for (int l = 0; l < 3; l++)
            if (!model_list_push(lists[l], &nl[l], max[l], words[l], evts) && !l) sessions++;
        model_ring_push(ring, &nring, 4, item, sp_event_kind_name(kind), evts);
        if (ctx->mf_weights[kind] > 0)
            model_aff_add(aff, &aff_ms, &has_aff_ms, ecat, ctx->mf_weights[kind], evts, 3,
                          ctx->half_life_ms);

        cr_assert_str_eq(prof_field(&r, "um", "aff"), aff, "event %d", i);
        snprintf(name, sizeof name, "%lld", (long long)aff_ms);
        cr_assert_str_eq(prof_field(&r, "um", "aff_ms"), has_aff_ms ? name : "", "event %d", i);
        want[0] = '\0';
        for (int k = 0; k < nring; k++) {
            if (k) strcat(want, " ");
            strcat(want, ring[k]);
        }
        cr_assert_str_eq(prof_field(&r, "um", "recent"), want, "event %d", i);
        for (int l = 0; l < 3; l++) {
            model_list_text(lists[l], nl[l], want, want_ts, sizeof want);
            cr_assert_str_eq(prof_field(&r, "um", fields[l][0]), want, "event %d", i);
            cr_assert_str_eq(prof_field(&r, "um", fields[l][1]), want_ts, "event %d", i);
        }
        snprintf(name, sizeof name, "%ld", sessions);
        cr_assert_str_eq(prof_field(&r, "um", "sessions"), name, "event %d", i);
    }
    commit(&r);
    char *got = hget("{p0}:prof:um", "aff");
    cr_assert_str_eq(got, aff);
    free(got);
    sp_personal_put(ctx);
    rig_close(&r);
}

Test(personalize, profile_text_fields_equal_a_slow_model_after_random_events) {
    random_profile_events(0);
}

Test(personalize, profile_ids_that_differ_in_a_byte_or_two_are_told_apart) {
    random_profile_events(1);
}

/* The devices list after `word` at ts, from its two texts as they stand,
 * read the plain way: words at spaces, their times one after another by
 * strtoll (0 past the last), the word at its latest time put before the
 * first entry that is older (or as old and greater), cut to 8, every time
 * printed "%lld" -- but a word already at the head, older there than ts,
 * only changes the first time, the rest of the times text kept as it was. */
static void model_list_texts(const char *words, const char *times, const char *word, int64_t ts,
                             char *ow, char *ot, size_t size) {
    size_t wl = strlen(word);
    char *tp = (char *)times;
    snprintf(ow, size, "%s", words);
    snprintf(ot, size, "%s", times);
    if (!strncmp(words, word, wl) && (!words[wl] || words[wl] == ' ') && *times) {
        char *rest;
        long long head = strtoll(times, &rest, 10);
        if (head < ts) snprintf(ot, size, "%lld%s", (long long)ts, rest);
        return;
    }
    struct {
        char w[32];
        long long t;
    } e[40];
    int n = 0;
    for (const char *s = words; *s && n < 32;) {
        size_t len = strcspn(s, " ");
        long long t = *tp ? strtoll(tp, &tp, 10) : 0;
        if (len == wl && !strncmp(s, word, len)) {
            if (t > ts) ts = t;
        } else if (len) {
            snprintf(e[n].w, sizeof e[n].w, "%.*s", (int)len, s);
            e[n++].t = t;
        }
        s += len;
        s += strspn(s, " ");
    }
    int at = 0;
    while (at < n && (e[at].t > ts || (e[at].t == ts && strcmp(e[at].w, word) < 0))) at++;
    memmove(&e[at + 1], &e[at], (size_t)(n - at) * sizeof e[0]);
    snprintf(e[at].w, sizeof e[at].w, "%s", word);
    e[at].t = ts;
    if (++n > 8) n = 8;
    size_t a = 0, b = 0;
    for (int i = 0; i < n; i++) {
        a += (size_t)snprintf(ow + a, size - a, "%s%s", i ? " " : "", e[i].w);
        b += (size_t)snprintf(ot + b, size - b, "%s%lld", i ? " " : "", e[i].t);
    }
}

/* A list rebuilt copies each time's text instead of printing its number
 * again, when the text is what "%lld" prints. Lists whose times were
 * written otherwise (by hand, by an older build: leading zeros, signs,
 * tabs, "-0", 19 and 20 digits past INT64_MAX, junk, too few times,
 * doubled and leading spaces) must come out as if every time were
 * printed, and the head's fast path keep the rest as it was: random such
 * lists, put in the cache as the profile's texts, then one event. Times
 * of 9 to 16 digits too, next to the event's and across a power of ten
 * from it (the head's time is compared with the event's as text when the
 * two are as long). */
Test(personalize, profile_lists_rebuilt_from_any_time_text_print_strtolls_value) {
    struct rig r;
    rig_open(&r, model_path, NULL);
    static const char *odd[] = {"0",   "00",   "007", "+5",  "-0",  "-12", "\t42", "\n 9",
                                "9223372036854775807", "9999999999999999999",
                                "99999999999999999999", "-9223372036854775808", "x1", "12x",
                                "123456789012345678", "0123456789012345678", "+0", "-"};
    uint64_t rng = sp_rng_seed(91);
    char words[512], times[512], want_w[512], want_t[512], word[8], user[16];
    for (int i = 0; i < 3000; i++) {
        size_t a = 0, b = 0;
        long long base = T0; /* 13 digits, or 9 to 16 around a power of ten */
        if (sp_rng_below(&rng, 3) == 0) {
            base = 1;
            for (uint32_t d = 8 + sp_rng_below(&rng, 8); d--;) base *= 10;
            base += (long long)sp_rng_below(&rng, 20000) - 10000;
        }
        int nw = (int)sp_rng_below(&rng, 11);
        words[0] = times[0] = '\0';
        if (nw && !sp_rng_below(&rng, 20)) words[a++] = ' '; /* a leading space */
        for (int k = 0; k < nw; k++) {
            const char *sep = !k ? "" : sp_rng_below(&rng, 10) ? " " : "  ";
            a += (size_t)snprintf(words + a, sizeof words - a, "%sd%u", sep,
                                  sp_rng_below(&rng, 12));
            if (sp_rng_below(&rng, 12) == 0) continue; /* fewer times than words */
            uint32_t form = sp_rng_below(&rng, 4);
            if (form < 2)
                b += (size_t)snprintf(times + b, sizeof times - b, "%s%lld", k ? " " : "",
                                      base - (long long)sp_rng_below(&rng, 20000));
            else if (form == 2)
                b += (size_t)snprintf(times + b, sizeof times - b, "%s%u", k ? " " : "",
                                      sp_rng_below(&rng, 1000));
            else
                b += (size_t)snprintf(times + b, sizeof times - b, "%s%s", k ? " " : "",
                                      odd[sp_rng_below(&rng, sizeof odd / sizeof *odd)]);
        }
        words[a] = '\0';
        snprintf(user, sizeof user, "ul%d", i);
        snprintf(word, sizeof word, "d%u", sp_rng_below(&rng, 12));
        int64_t ts = base - 10000 + (int64_t)sp_rng_below(&rng, 20000);
        char key[32];
        snprintf(key, sizeof key, "prof:%s", user);
        sp_obj *o;
        cr_assert_eq(sp_store_get(r.store, 0, key, &o), SP_OK);
        sp_obj_set_str(o, "devices", words);
        sp_obj_set_str(o, "devices_ts", times);
        model_list_texts(words, times, word, ts, want_w, want_t, sizeof want_w);
        click_with(&r, user, NULL, word, NULL, "i1", "c", SP_KIND_VIEW, ts);
        cr_assert_str_eq(prof_field(&r, user, "devices"), want_w, "'%s' / '%s' + %s at %lld",
                         words, times, word, (long long)ts);
        cr_assert_str_eq(prof_field(&r, user, "devices_ts"), want_t, "'%s' / '%s' + %s at %lld",
                         words, times, word, (long long)ts);
    }
    rig_close(&r);
}

/* A list takes a word: an id that is empty, or two words (a space at its
 * start, middle or end), leaves the sessions, devices and ips as they were
 * and counts no session. */
Test(personalize, profile_lists_take_no_empty_id_and_no_id_with_a_space) {
    struct rig r;
    rig_open(&r, model_path, NULL);
    click_with(&r, "uw", "s1", "d1", "10.0.0.1", "i1", "c", SP_KIND_VIEW, T0);
    static const char *bad[] = {"", " ", "s 2", " s2", "s2 "};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        click_with(&r, "uw", bad[i], bad[i], bad[i], "i1", "c", SP_KIND_VIEW, T0 + 1000);
    static const char *const want[][2] = {{"recent_sessions", "s1"}, {"devices", "d1"},
                                          {"ips", "10.0.0.1"},        {"sessions", "1"},
                                          {"devices_ts", "1767225600000"}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        cr_assert_str_eq(prof_field(&r, "uw", want[i][0]), want[i][1], "%s", want[i][0]);
    rig_close(&r);
}

/* The ring of recent items read by its length, not to its NUL: rings with
 * a trailing space, doubled or leading spaces, more entries than it
 * holds, nothing, or a newer head, put in the cache as the profile's text,
 * then one event i9 at T0 (three places). What each becomes is what the
 * ring read up to its NUL gave (the build before reading by length). */
Test(personalize, profile_recent_ring_of_any_spacing_becomes_what_it_did) {
    struct rig r;
    const char *extra[] = {"profile.recent_items", "3", NULL};
    rig_open(&r, model_path, extra);
#define I9 "i9:view:1767225600000" /* the event's entry (T0) */
#define ZN "z:view:1767225600001"  /* newer */
    static const struct {
        const char *ring, *want;
    } cases[] = {
        {"a:view:1 b:view:2 ", I9 " a:view:1 b:view:2"},                  /* trailing space */
        {"a:view:1  b:view:2", I9 " a:view:1 b:view:2"},                  /* doubled */
        {" a:view:1", I9 "  a:view:1"},                                   /* leading: kept */
        {"a:view:1 b:view:2 c:view:3 d:view:4", I9 " a:view:1 b:view:2"}, /* cut */
        {"", I9},
        {"a:view:1", I9 " a:view:1"},
        {"a:view:1  ", I9 " a:view:1"},
        {ZN " a:view:1 ", ZN " " I9 " a:view:1"}, /* a newer head */
        {ZN, ZN " " I9},
    };
#undef I9
#undef ZN
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char user[16], key[32];
        snprintf(user, sizeof user, "ur%zu", i);
        snprintf(key, sizeof key, "prof:%s", user);
        sp_obj *o;
        cr_assert_eq(sp_store_get(r.store, 0, key, &o), SP_OK);
        sp_obj_set_str(o, "recent", cases[i].ring);
        click_with(&r, user, NULL, NULL, NULL, "i9", "c", SP_KIND_VIEW, T0);
        cr_assert_str_eq(prof_field(&r, user, "recent"), cases[i].want, "case %zu: '%s'", i,
                         cases[i].ring);
    }
    rig_close(&r);
}

/* sp_profile_fmt_g6 is snprintf's "%.6g" byte for byte: random doubles of
 * every magnitude, values next to each power of ten and next to each
 * six-digit tie (where the scaling's rounding decides), values that round
 * up to the next power (9.999996 -> "10", 999999.5 -> "1e+06"), and the
 * ones it leaves to snprintf (tiny, huge, inf, nan). Except -0, which it
 * writes "0" (as the profile always has; printf writes "-0"). */
Test(personalize, profile_formatter_equals_printf) {
    char z[32];
    cr_assert_eq(sp_profile_fmt_g6(-0.0, z), 1);
    cr_assert_str_eq(z, "0");
    uint64_t rng = sp_rng_seed(52);
    static const double odd[] = {0.0, 1e-4, 9.99999e-5, 9.999995e-5, 1e6, 999999.5,
                                 999999.4, 9.999996, 99999.95, 0.5, 1e-300, 1e300,
                                 INFINITY, -INFINITY, NAN, 0.1, 0.01, 0.001, 0.0001, 123456.5,
                                 2.5e-5, 1.0000005, 0.30000000000000004};
    int n = (int)(sizeof odd / sizeof *odd);
    for (int i = 0; i < 400000 + n; i++) {
        double v;
        if (i >= 400000) {
            v = odd[i - 400000];
        } else if (i % 4 == 0) { /* any finite bits */
            uint64_t b = sp_rng_next(&rng);
            memcpy(&v, &b, sizeof v);
            if (isnan(v)) continue;
        } else if (i % 4 == 1) { /* next to a power of ten */
            v = pow(10, (double)sp_rng_below(&rng, 12) - 5);
            for (uint32_t k = sp_rng_below(&rng, 4); k--;)
                v = nextafter(v, sp_rng_below(&rng, 2) ? INFINITY : 0);
        } else if (i % 4 == 2) { /* next to a six-digit tie */
            v = (100000 + sp_rng_below(&rng, 900000) + 0.5) *
                pow(10, (double)sp_rng_below(&rng, 11) - 10);
            for (uint32_t k = sp_rng_below(&rng, 3); k--;)
                v = nextafter(v, sp_rng_below(&rng, 2) ? INFINITY : 0);
        } else { /* the scores and means the profile writes */
            v = sp_rng_uniform(&rng) * pow(10, (double)sp_rng_below(&rng, 10) - 4);
        }
        if (sp_rng_below(&rng, 4) == 0) v = -v;
        if (v == 0) v = 0.0; /* not -0: see above */
        char want[64], got[64];
        snprintf(want, sizeof want, "%.6g", v);
        size_t len = sp_profile_fmt_g6(v, got);
        cr_assert_str_eq(got, want, "%.17g", v);
        cr_assert_eq(len, strlen(want), "%.17g", v);
    }
}

/* Every field of one profile, names and bytes, after a view, a click from
 * a recommendation, an order and a review, as committed to Redis: worked
 * out by hand (view 1, click 2, order 8; half-life 100 s), so a field
 * written under another name, twice, or with other bytes fails here. */
Test(personalize, profile_fields_after_four_kinds_of_event_are_exactly_these) {
    struct rig r;
    const char *extra[] = {"profile.half_life_s", "100", NULL};
    rig_open(&r, model_path, extra);
    click_full(&r, "uf", "s1", "d1", "10.0.0.1", "i1", "shoes", SP_KIND_VIEW, 10, NULL, T0);
    click_full(&r, "uf", "s2", "d1", "10.0.0.1", "i2", "hats", SP_KIND_CLICK, 30, "r1",
               T0 + 100000);
    order(&r, "uf", "i2", T0 + 100000);
    Shopstream__V1__Event ev = SHOPSTREAM__V1__EVENT__INIT;
    Shopstream__V1__Review rv = SHOPSTREAM__V1__REVIEW__INIT;
    rv.item_id = "i1";
    rv.rating = 4;
    ev.event_id = "rv1";
    ev.ts_ms = T0 + 200000;
    ev.user_id = "uf";
    ev.session_id = "s2";
    ev.body_case = SHOPSTREAM__V1__EVENT__BODY_REVIEW;
    ev.review = &rv;
    run_event(&r, &ev, SP_KIND_REVIEW);
    commit(&r);
    static const char *const want[][2] = {
        {"first_ms", "1767225600000"},
        {"last_ms", "1767225800000"},
        {"events", "4"},
        {"n_view", "1"},
        {"n_click", "1"},
        {"n_order", "1"},
        {"n_review", "1"},
        {"sessions", "2"},
        {"recent_sessions", "s2 s1"},
        {"recent_sessions_ts", "1767225800000 1767225600000"},
        {"devices", "d1"},
        {"devices_ts", "1767225700000"},
        {"ips", "10.0.0.1"},
        {"ips_ts", "1767225700000"},
        {"recent", "i1:review:1767225800000 i2:order:1767225700000 i2:click:1767225700000 "
                   "i1:view:1767225600000"},
        {"price_n", "2"},
        {"price_sum", "40"},
        {"price_min", "10"},
        {"price_max", "30"},
        {"price_mean", "20"},
        {"aff", "c0:8,hats:2,shoes:0.5"},
        {"aff_ms", "1767225700000"},
        {"rec_clicks", "1"},
        {"orders", "1"},
        {"spend", "25"},
        {"aov", "25"},
        {"ratings_n", "1"},
        {"ratings_sum", "4"},
        {"ratings_mean", "4"},
    };
    size_t n = sizeof want / sizeof *want;
    for (size_t i = 0; i < n; i++) {
        char *got = hget("{p0}:prof:uf", want[i][0]);
        cr_assert_not_null(got, "%s missing", want[i][0]);
        cr_assert_str_eq(got, want[i][1], "%s", want[i][0]);
        free(got);
    }
    redisReply *all = cmd("HLEN %s", "{p0}:prof:uf");
    cr_assert_eq(all->integer, (long long)n, "fields beyond these");
    freeReplyObject(all);
    rig_close(&r);
}

/* The vocabulary against a plain list searched in order: ids of every
 * length from 0 to 12 that share prefixes ("7", "72", "720") and hash
 * buckets, added and found interleaved through several doublings of the
 * table, with lookups of absent ids and of ids that differ only in length
 * (the slot's stored hash half and length must never stand in for the
 * bytes, nor hide an id that is there). */
Test(vocab, finds_what_a_linear_search_finds_through_growth) {
    enum { N = 3000 };
    static char ref[N][16];
    int nref = 0;
    sp_vocab *v = sp_vocab_new();
    uint64_t rng = sp_rng_seed(88);
    char id[16];
    for (int step = 0; step < 4 * N; step++) {
        size_t len = (size_t)snprintf(id, sizeof id, "%u", sp_rng_below(&rng, 3 * N));
        len -= sp_rng_below(&rng, (uint32_t)len + 1); /* a prefix, down to "" */
        id[len] = '\0';
        int want = -1;
        for (int i = 0; i < nref && want < 0; i++)
            if (!strcmp(ref[i], id)) want = i;
        if (sp_rng_below(&rng, 2) && nref < N) {
            int32_t got = sp_vocab_add(v, id, len);
            if (want < 0) {
                want = nref;
                memcpy(ref[nref++], id, len + 1);
            }
            cr_assert_eq(got, want, "add '%s'", id);
        } else {
            cr_assert_eq(sp_vocab_find(v, id, len), want, "find '%s'", id);
        }
        cr_assert_eq(sp_vocab_size(v), (size_t)nref);
    }
    for (int i = 0; i < nref; i++) {
        cr_assert_str_eq(sp_vocab_id(v, i), ref[i]);
        cr_assert_eq(sp_vocab_find(v, ref[i], strlen(ref[i])), i, "'%s'", ref[i]);
        snprintf(id, sizeof id, "%sx", ref[i]); /* longer by one: never there */
        cr_assert_eq(sp_vocab_find(v, id, strlen(id)), -1, "'%s'", id);
    }
    sp_vocab_destroy(v);
}
