/* The recommend operator's hand-written protobuf encoder, from
 * ScoredItems or from the operator's own items, must give the bytes
 * protobuf-c gives for the same message (the list topic's consumers
 * decode it with protobuf-c or any other library); its batched dot
 * products must give sp_dot's bits. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <hiredis.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/dot.h"
#include "models/model.h"
#include "models/scorer.h"
#include "operators/operator.h"
#include "operators/personal.h"
#include "operators/recommend.h"
#include "state/store.h"
#include "stream/config.h"
#include "stream/error.h"
#include "tests/support/harness.h"

/* "", NULL, 1 to 17 bytes (each way recommend copies a short id),
 * 120/121-byte strings (an item's length, 2 + 121 + 5, passes 127 there)
 * and 127/128/300-byte ones (one and two-byte lengths). */
static char *random_str(uint64_t *rng, char *buf) {
    static const size_t lens[] = {0,  1,  2,  3,  4,  5,   6,   7,   8,   9,  10,
                                  15, 16, 17, 120, 121, 127, 128, 300};
    uint32_t pick = sp_rng_below(rng, 20);
    if (pick == 19) return NULL;
    size_t n = lens[pick];
    for (size_t i = 0; i < n; i++) buf[i] = (char)('a' + sp_rng_below(rng, 26));
    buf[n] = '\0';
    return buf;
}

Test(recommend, pack_is_byte_identical_to_protobuf_c) {
    static const float scores[] = {0.0f, -0.0f, 1.5f, -3.25e-7f, 1e30f};
    static const int64_t stamps[] = {0, 1, 127, 128, 1767225600000, -1, INT64_MIN};
    static const double lat[] = {0.0, -0.0, 0.25, 1e-300, 12345.678};
    uint64_t rng = sp_rng_seed(31);
    for (int trial = 0; trial < 2000; trial++) {
        char s[4][301], ids[130][301];
        Shopstream__V1__ScoredItem items[130], *ptrs[130];
        size_t n = trial % 50 == 0 ? 130 : sp_rng_below(&rng, 12); /* 130: a long items field */
        for (size_t i = 0; i < n; i++) {
            shopstream__v1__scored_item__init(&items[i]);
            items[i].item_id = random_str(&rng, ids[i]);
            items[i].score = sp_rng_below(&rng, 3) ? sp_rng_normal(&rng)
                                                   : scores[sp_rng_below(&rng, 5)];
            ptrs[i] = &items[i];
        }
        Shopstream__V1__Recommendation rec = SHOPSTREAM__V1__RECOMMENDATION__INIT;
        rec.rec_id = random_str(&rng, s[0]);
        rec.user_id = random_str(&rng, s[1]);
        rec.model = random_str(&rng, s[2]);
        rec.trigger_event_id = random_str(&rng, s[3]);
        rec.n_items = n;
        rec.items = ptrs;
        rec.ts_ms = stamps[sp_rng_below(&rng, 7)];
        rec.latency_ms = lat[sp_rng_below(&rng, 5)];
        size_t want_len = shopstream__v1__recommendation__get_packed_size(&rec);
        uint8_t *want = malloc(want_len), *got = malloc(sp_recommend_pack_bound(&rec));
        shopstream__v1__recommendation__pack(&rec, want);
        size_t got_len = sp_recommend_pack(&rec, got);
        cr_assert_leq(got_len, sp_recommend_pack_bound(&rec));
        cr_assert_eq(got_len, want_len, "trial %d: %zu bytes, protobuf-c %zu", trial, got_len,
                     want_len);
        cr_assert_eq(memcmp(got, want, want_len), 0, "trial %d: bytes differ", trial);
        /* the operator's path: the items as ids with their lengths (NULL as
         * "", which proto3 leaves out alike), rec's own items ignored */
        sp_rec_item fast[130];
        for (size_t i = 0; i < n; i++) {
            const char *id = items[i].item_id ? items[i].item_id : "";
            fast[i] = (sp_rec_item){id, strlen(id), items[i].score};
        }
        Shopstream__V1__Recommendation bare = rec;
        bare.n_items = 0;
        bare.items = NULL;
        size_t bound = sp_recommend_pack_items_bound(&bare, fast, n);
        uint8_t *fgot = malloc(bound);
        size_t fgot_len = sp_recommend_pack_items(&bare, fast, n, fgot);
        cr_assert_leq(fgot_len, bound);
        cr_assert_eq(fgot_len, want_len, "trial %d: %zu bytes from items, protobuf-c %zu", trial,
                     fgot_len, want_len);
        cr_assert_eq(memcmp(fgot, want, want_len), 0, "trial %d: bytes from items differ", trial);
        free(fgot);
        free(want);
        free(got);
    }
}

/* sp_dot's documented order, one float add at a time: lane j sums
 * a[k] * b[k] for k = j mod 8 (from 0), lanes j and j + 4 are added, then
 * ((0 + 1) + (2 + 3)). Written out here, apart from dot.h's vector code. */
static float dot32_reference(const float *a, const float *b) {
    float lane[8], t[4];
    for (int j = 0; j < 8; j++) {
        lane[j] = 0.0f;
        for (int k = j; k < 32; k += 8) lane[j] = lane[j] + a[k] * b[k];
    }
    for (int j = 0; j < 4; j++) t[j] = lane[j] + lane[j + 4];
    return (t[0] + t[1]) + (t[2] + t[3]);
}

/* Eight dot products of the fixed vector a (against b[0..8)) through
 * sp_dot32_lanes and sp_dot_sum8, in sp_dot_sum8's order
 * {0, 2, 4, 6, 1, 3, 5, 7}; inlined into each caller below, so built
 * once for the default target and once for AVX, as recommend's clones. */
#define DOT8(a, b, out)                                                                            \
    do {                                                                                           \
        sp_v8sf va[4], acc[8], sum;                                                                \
        memcpy(va, (a), sizeof va);                                                                \
        for (int i = 0; i < 8; i++) sp_dot32_lanes(va, (b)[i], &acc[i]);                          \
        sp_dot_sum8(acc, &sum);                                                                    \
        memcpy((out), &sum, sizeof sum);                                                           \
    } while (0)

static void dot8_default(const float *a, const float *const b[8], float out[8]) {
    DOT8(a, b, out);
}

__attribute__((target("avx"))) static void dot8_avx(const float *a, const float *const b[8],
                                                   float out[8]) {
    DOT8(a, b, out);
}

/* Random floats over many binary orders of magnitude, so that summing in
 * another order almost always changes the last bits. */
static float wide_float(uint64_t *rng) {
    float f = ldexpf((float)sp_rng_below(rng, 1u << 24) / (float)(1u << 24) + 0.5f,
                     (int)sp_rng_below(rng, 40) - 20);
    return sp_rng_below(rng, 2) ? -f : f;
}

Test(recommend, batched_dot_products_equal_the_documented_order_bit_for_bit) {
    static const int lane_of[8] = {0, 4, 1, 5, 2, 6, 3, 7}; /* product i -> out[lane_of[i]] */
    uint64_t rng = 7;
    int avx = __builtin_cpu_supports("avx");
    for (int round = 0; round < 2000; round++) {
        float a[32], rows[8][32], out[8], want[8];
        const float *b[8];
        for (int k = 0; k < 32; k++) a[k] = wide_float(&rng);
        for (int i = 0; i < 8; i++) {
            for (int k = 0; k < 32; k++) rows[i][k] = wide_float(&rng);
            b[i] = rows[i];
            want[i] = dot32_reference(a, rows[i]);
        }
        dot8_default(a, b, out);
        for (int i = 0; i < 8; i++)
            cr_assert(!memcmp(&out[lane_of[i]], &want[i], 4),
                      "round %d product %d (default): %a, the reference %a", round, i,
                      out[lane_of[i]], want[i]);
        if (!avx) continue;
        dot8_avx(a, b, out);
        for (int i = 0; i < 8; i++)
            cr_assert(!memcmp(&out[lane_of[i]], &want[i], 4),
                      "round %d product %d (AVX): %a, the reference %a", round, i,
                      out[lane_of[i]], want[i]);
    }
}

/* Best first, ties to the lower item: the order a top-k list must have. */
static int best_first(const void *pa, const void *pb) {
    const struct sp_scored *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->item > b->item) - (a->item < b->item);
}

/* recommend selects its ten out of its candidates' scores eight at a
 * time into a sorted list (sp_topk_select_finite; past 32 places a heap
 * and its sort): the list must be the k best finite scores, best first,
 * ties to the lower item -- here sorted out of all of them by qsort.
 * Scores repeat often (ties, 0 and -0), and NaN and infinities come in; k
 * runs past 32 (the heap) and past the number of scores. */
Test(recommend, topk_select_in_blocks_equals_a_sorted_reference) {
    static const float common[] = {-1.0f, 0.0f, -0.0f, 0.5f, 2.0f};
    uint64_t rng = sp_rng_seed(17);
    for (int trial = 0; trial < 3000; trial++) {
        size_t count = sp_rng_below(&rng, 300), k = sp_rng_below(&rng, 42), m = 0;
        int32_t items[300];
        float scores[300];
        struct sp_scored h[42], want[300];
        for (size_t j = 0; j < count; j++) {
            items[j] = (int32_t)((j * 7919 + (size_t)trial) % 1000); /* distinct, unordered */
            uint32_t pick = sp_rng_below(&rng, 20);
            scores[j] = pick < 8    ? sp_rng_normal(&rng)
                        : pick < 16 ? common[sp_rng_below(&rng, 5)]
                        : pick < 18 ? NAN
                                    : (pick == 18 ? INFINITY : -INFINITY);
            if (isfinite(scores[j])) want[m++] = (struct sp_scored){items[j], scores[j]};
        }
        qsort(want, m, sizeof *want, best_first);
        size_t got = sp_topk_select_finite(h, k, items, scores, count);
        cr_assert_eq(got, m < k ? m : k, "trial %d: %zu entries", trial, got);
        for (size_t i = 0; i < got; i++)
            cr_assert(h[i].item == want[i].item && !memcmp(&h[i].score, &want[i].score, 4),
                      "trial %d rank %zu: item %d %a, want %d %a", trial, i, h[i].item,
                      h[i].score, want[i].item, want[i].score);
    }
}

/* The rec:<user> score as it was written before the digit pairs: the
 * integer part, then the four decimals one at a time with the zeros at
 * the end dropped (snprintf's %.4g out of range). */
static void json_score_reference(char *out, float score) {
    double v = (double)score;
    if (!(fabs(v) < 1e12)) {
        snprintf(out, 41, "%.4g", isfinite(v) ? v : 0.0);
        return;
    }
    long long q = (long long)(v * 1e4);
    const char *sign = q < 0 ? "-" : "";
    if (q < 0) q = -q;
    int frac = (int)(q % 10000), digits = 4;
    if (!frac) {
        snprintf(out, 41, "%s%lld", sign, q / 10000);
        return;
    }
    while (frac % 10 == 0) {
        frac /= 10;
        digits--;
    }
    snprintf(out, 41, "%s%lld.%0*d", sign, q / 10000, digits, frac);
}

Test(recommend, json_scores_equal_the_digit_by_digit_reference) {
    static const float edges[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 0.0001f, -0.0001f, 0.00009f,
                                  9.9999f, 10.0f, 123456.7f, 1e12f, -1e12f, 9.9e11f, 1e30f,
                                  INFINITY, -INFINITY, NAN};
    uint64_t rng = sp_rng_seed(41);
    for (int i = 0; i < 200000; i++) {
        float s;
        uint32_t pick = sp_rng_below(&rng, 4);
        if (i < (int)(sizeof edges / sizeof *edges))
            s = edges[i];
        else if (pick == 0) /* exact ten-thousandths and neighbours: zeros to drop */
            s = (float)((int)sp_rng_below(&rng, 2000000) - 1000000) / 10000.0f;
        else if (pick == 1)
            s = sp_rng_normal(&rng);
        else
            s = wide_float(&rng);
        char got[64], want[64];
        char *e = sp_recommend_json_score(got, s);
        cr_assert_leq(e - got, 40);
        *e = '\0';
        json_score_reference(want, s);
        cr_assert_str_eq(got, want, "score %a", s);
    }
}

/* ---------------------------------------------------------------- rec:<user> writes */

static sp_t_redis redis;
static void start(void) { cr_assert_eq(sp_t_redis_start(&redis, 0), 0); }
static void stop(void) { sp_t_redis_stop(&redis); }

/* The user id of list i: lengths 2 to 9, some with a quote (escaped in the
 * JSON, not in the key). */
static void user_of(int i, char *user) {
    int n = snprintf(user, 16, "u%d", i);
    for (int j = 0; j < i % 7; j++) user[n++] = i % 10 == 0 && j == 0 ? '"' : 'x';
    user[n] = '\0';
}

/* A view of item by user as event event_id, through the pipeline. */
static void view(sp_pipeline *pl, sp_store *st, int64_t *off, const char *user, const char *item,
                 const char *event_id) {
    Shopstream__V1__Event ev = SHOPSTREAM__V1__EVENT__INIT;
    Shopstream__V1__Click c = SHOPSTREAM__V1__CLICK__INIT;
    c.kind = (Shopstream__V1__ClickKind)(SP_KIND_VIEW + 1);
    c.item_id = (char *)item;
    c.category = "c";
    c.price = 10;
    ev.event_id = (char *)event_id;
    ev.ts_ms = 1767225600000LL + *off;
    ev.user_id = (char *)user;
    ev.body_case = SHOPSTREAM__V1__EVENT__BODY_CLICK;
    ev.click = &c;
    sp_op_event e = {&ev, SP_KIND_VIEW, 0, "t", (*off)++, 0, 0};
    sp_pipeline_prefetch(pl, &e);
    cr_assert_eq(sp_store_prefetch(st), SP_OK);
    cr_assert_eq(sp_pipeline_process(pl, &e, NULL), SP_OK);
}

static void commit(sp_pipeline *pl, sp_store *st, int64_t *off) {
    const char *topics[] = {"t"};
    cr_assert_eq(sp_pipeline_flush(pl, 0), SP_OK);
    cr_assert_eq(sp_pipeline_before_commit(pl), SP_OK);
    cr_assert_eq(sp_store_commit(st, 0, topics, off, 1), SP_OK);
    sp_store_end_batch(st);
}

/* rec:<user> holds exactly one whole JSON object (no byte more, none less),
 * triggered by event_id at ts_ms, with the rec_id "r" and the 16 hex
 * digits of the hash of "user/event_id" (printf's), and expires within
 * (ttl - 60, ttl] seconds. */
static void check_rec(redisContext *rc, const char *user, const char *event_id, int64_t ts_ms,
                      int ttl) {
    redisReply *rep = redisCommand(rc, "GET rec:%s", user);
    cr_assert_eq(rep->type, REDIS_REPLY_STRING, "no rec:%s", user);
    cr_assert_eq(rep->len, strlen(rep->str), "rec:%s: a NUL inside", user);
    cr_assert(rep->len > 2 && rep->str[rep->len - 1] == '}', "rec:%s: cut: %s", user, rep->str);
    cJSON *j = cJSON_Parse(rep->str);
    cr_assert_not_null(j, "rec:%s: not JSON: %s", user, rep->str);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "trigger_event_id")->valuestring, event_id);
    char want[32];
    uint64_t h = sp_personal_hash(event_id, sp_personal_hash("/", sp_personal_hash(user, 0)));
    snprintf(want, sizeof want, "r%016llx", (unsigned long long)h);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "rec_id")->valuestring, want);
    snprintf(want, sizeof want, "\"ts_ms\":%lld,", (long long)ts_ms);
    cr_assert_not_null(strstr(rep->str, want), "rec:%s: no %s in %s", user, want, rep->str);
    cr_assert_gt(cJSON_GetArraySize(cJSON_GetObjectItem(j, "items")), 0);
    cJSON_Delete(j);
    freeReplyObject(rep);
    rep = redisCommand(rc, "TTL rec:%s", user);
    cr_assert_eq(rep->type, REDIS_REPLY_INTEGER);
    cr_assert(rep->integer > ttl - 60 && rep->integer <= ttl, "rec:%s: TTL %lld, want %d", user,
              rep->integer, ttl);
    freeReplyObject(rep);
}

/* mf and recommend on partition 0 of a store on the test's redis-server,
 * lists at every view and rec:<user> kept ttl_s seconds; rc: a connection
 * of the test's own to read them. */
struct flush_rig {
    sp_config cfg;
    sp_store *st;
    sp_pipeline *pl;
    redisContext *rc;
};

static void rig_open(struct flush_rig *g, int ttl_s) {
    sp_config_init(&g->cfg);
    char err[256], ttl[16];
    snprintf(ttl, sizeof ttl, "%d", ttl_s);
    const char *set[][2] = {{"redis.url", redis.url}, {"recommend.rate_limit_ms", "0"},
                            {"recommend.ttl_s", ttl}, {"mf.dim", "8"}};
    for (size_t i = 0; i < sizeof set / sizeof *set; i++)
        cr_assert_eq(sp_config_set(&g->cfg, set[i][0], set[i][1], err, sizeof err), SP_OK, "%s",
                     err);
    sp_store_conf sc = {.url = redis.url, .timeout_ms = 1000, .max_entries = 100000};
    g->st = sp_store_new(&sc, err, sizeof err);
    cr_assert_not_null(g->st, "%s", err);
    sp_op_env env = {g->st, NULL, &g->cfg, NULL};
    g->pl = sp_pipeline_new("mf,recommend", &env, err, sizeof err);
    cr_assert_not_null(g->pl, "%s", err);
    const char *topics[] = {"t"};
    int64_t from;
    cr_assert_eq(sp_store_assign(g->st, 0, topics, 1, &from), SP_OK);
    cr_assert_eq(sp_pipeline_assign(g->pl, 0), SP_OK);
    g->rc = redisConnect("127.0.0.1", redis.port);
    cr_assert(g->rc && !g->rc->err);
}

static void rig_close(struct flush_rig *g) {
    redisFree(g->rc);
    sp_pipeline_destroy(g->pl);
    sp_store_destroy(g->st);
    sp_config_release(&g->cfg);
}

static int rec_exists(redisContext *rc, const char *user) {
    redisReply *rep = redisCommand(rc, "EXISTS rec:%s", user);
    int n = (int)rep->integer;
    freeReplyObject(rep);
    return n;
}

/* rec_flush hands its batch's lists to the store as a job of the next
 * commit: none is in Redis before that commit, and with two flushes before
 * one commit (commit.interval_ms > 0), the jobs run in order, so each
 * user's rec:<user> is the list of the second batch. */
Test(recommend_flush, lists_reach_redis_with_the_commit_in_batch_order, .init = start,
     .fini = stop) {
    enum { USERS = 40, TTL = 600 };
    struct flush_rig g;
    rig_open(&g, TTL);
    const char *topics[] = {"t"};
    int64_t off = 0;

    char user[16], item[16], eid[32];
    for (int batch = 0; batch < 2; batch++) {
        for (int i = 0; i < USERS; i++) {
            user_of(i, user);
            snprintf(item, sizeof item, "i%d", (i + batch) % 30);
            snprintf(eid, sizeof eid, "b%d-%d", batch, i);
            view(g.pl, g.st, &off, user, item, eid);
        }
        cr_assert_eq(sp_pipeline_flush(g.pl, 0), SP_OK);
        sp_store_end_batch(g.st);
        for (int i = 0; i < USERS; i++) {
            user_of(i, user);
            cr_assert_eq(rec_exists(g.rc, user), 0, "rec:%s written before its commit", user);
        }
    }
    cr_assert_eq(sp_pipeline_before_commit(g.pl), SP_OK);
    cr_assert_eq(sp_store_commit(g.st, 0, topics, &off, 1), SP_OK);
    for (int i = 0; i < USERS; i++) {
        user_of(i, user);
        snprintf(eid, sizeof eid, "b1-%d", i);
        check_rec(g.rc, user, eid, 1767225600000LL + USERS + i, TTL);
    }
    rig_close(&g);
}

/* rec_flush sends the batch's lists with the lengths pend_json noted:
 * every list must arrive whole under its own key with its TTL -- for a
 * batch of 300 lists (the arrays grow three times, moving), users written
 * twice in it, then a smaller batch in arrays of the first one's size. */
Test(recommend_flush, every_list_is_written_whole_with_its_ttl, .init = start, .fini = stop) {
    enum { USERS = 150, TTL = 777 };
    struct flush_rig g;
    rig_open(&g, TTL);
    int64_t off = 0;

    char user[16], item[16], eid[32];
    for (int round = 0; round < 2; round++) /* each user's second list is the one kept */
        for (int i = 0; i < USERS; i++) {
            user_of(i, user);
            snprintf(item, sizeof item, "i%d", (i * 7 + round) % 40);
            snprintf(eid, sizeof eid, "e%d-%d", round, i);
            view(g.pl, g.st, &off, user, item, eid);
        }
    commit(g.pl, g.st, &off);
    for (int i = 0; i < USERS; i++) {
        user_of(i, user);
        snprintf(eid, sizeof eid, "e1-%d", i);
        check_rec(g.rc, user, eid, 1767225600000LL + USERS + i, TTL);
    }
    for (int i = 0; i < 3; i++) { /* a smaller batch: the arrays' old entries unused */
        user_of(i * 10, user);
        snprintf(eid, sizeof eid, "e2-%d", i);
        view(g.pl, g.st, &off, user, "i3", eid);
    }
    commit(g.pl, g.st, &off);
    for (int i = 0; i < 3; i++) {
        user_of(i * 10, user);
        snprintf(eid, sizeof eid, "e2-%d", i);
        check_rec(g.rc, user, eid, 1767225600000LL + 2 * USERS + i, TTL);
    }
    rig_close(&g);
}
