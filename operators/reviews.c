/* reviews: per-item review aggregates -- count, rating sum and average,
 * sentiment sum -- in the global hash "item:<item_id>".
 *
 * Items cannot be partitioned by user, so their keys are global (any slot)
 * and are written outside the partition's commit, just before it. Each
 * review is applied by a small script that also remembers, per source
 * topic-partition, the highest offset applied to that item
 * ("off:<topic>:p<n>") and skips anything at or below it: a batch replayed
 * after a crash (whatever its new boundaries) changes nothing it already
 * changed, so the aggregates are exactly-once, not just at-least-once,
 * without a cross-slot transaction.
 *
 * The sentiment score comes from sp_reviews_sentiment(), the hook below:
 * the AFINN-165 lexicon scorer of models/sentiment.h (compound score in
 * (-1, 1)).
 *
 * Review bursts (the block "REVIEW BURSTS" below) are detected here too. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/fraud_review.h"
#include "models/sentiment.h"
#include "operators/operator.h"
#include "operators/reviews.h"
#include "stream/error.h"
#include "stream/kafka.h"
#include "stream/log.h"
#include "stream/metrics.h"

/* SENTIMENT HOOK: the lexicon scorer (shared with the kpi operator's
 * sentiment_sum counter). */
double sp_reviews_sentiment(const char *text) { return text ? sp_sentiment_score(text, NULL) : 0.0; }

/* ============================================================ REVIEW BURSTS
 * Many reviews of one item in a window (reviews.burst_window_ms) from
 * accounts younger than reviews.young_days, or with near-identical text
 * (SimHash within 10 bits): a FraudAlert (kind "review_burst") to
 * topics.fraud_alerts with the reasons, keyed by the reviewer, alert_id
 * "rb:<event_id>".
 *
 * Account age: the user's first event seen by this processor, kept per user
 * in the partition's commit ({p<n>}:acct:<user>, field first: the minimum
 * event time over every event of the user, so exactly-once and independent
 * of the order in which the three topics arrive).
 *
 * The item's recent reviews are item-level state shared by every partition:
 * the sorted set "rb:<item>" (global key, any slot) of members
 * "<simhash hex>:<young 0|1>:<event_id>" scored by event time. One Lua
 * script per review counts the members in (ts - window, ts] other than
 * itself -- all, young, near-identical -- then adds itself and trims what
 * is older than four windows or beyond the newest 256. Scripts run outside
 * the partition's commit, before it: at-least-once. A batch re-run after a
 * crash adds members that are already there (ZADD of the same member changes
 * nothing) and excludes itself from its own count, so a repeat sees the same
 * counts -- except for reviews of other partitions that landed in between,
 * which is the price of counting across partitions without a cross-slot
 * transaction. */
#define DAY_MS 86400000.0

struct burst {
    int32_t part;
    char key[160];    /* rb:<item> */
    char member[200]; /* <simhash>:<young>:<event_id> */
    char ts[24], hi[16], lo[16];
    char event_id[SP_EVENT_MAX_ID + 1], user_id[SP_EVENT_MAX_ID + 1], item_id[SP_EVENT_MAX_ID + 1];
    int64_t ts_ms;
    int young, has_text;
};

struct bursts {
    struct sp_review_burst_config cfg;
    char window[24], near[8];
    const char *topic;
    struct burst *b;
    size_t n, cap;
};

static const char burst_lua[] =
    "local ts, win, hi, lo = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), "
    "tonumber(ARGV[4])\n"
    "local near, me = tonumber(ARGV[5]), ARGV[6]\n"
    "local function pop(x) local c = 0 for i = 0, 31 do "
    "if bit.band(bit.rshift(x, i), 1) == 1 then c = c + 1 end end return c end\n"
    "local all, young, dup = 0, 0, 0\n"
    "for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (ts - win), ts)) do\n"
    "  if m ~= me then\n"
    "    all = all + 1\n"
    "    if string.sub(m, 18, 18) == '1' then young = young + 1 end\n"
    "    local mh, ml = tonumber(string.sub(m, 1, 8), 16), tonumber(string.sub(m, 9, 16), 16)\n"
    "    if (hi ~= 0 or lo ~= 0) and (mh ~= 0 or ml ~= 0) and "
    "pop(bit.bxor(hi, mh)) + pop(bit.bxor(lo, ml)) <= near then dup = dup + 1 end\n"
    "  end\n"
    "end\n"
    "redis.call('ZADD', KEYS[1], ts, me)\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (ts - 4 * win))\n"
    "redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -257)\n"
    "return math.min(all, 999) * 1000000 + math.min(young, 999) * 1000 + math.min(dup, 999)\n";

static void bursts_init(struct bursts *bs, const sp_config *cfg) {
    sp_review_burst_config_default(&bs->cfg);
    bs->cfg.window_ms = cfg->review_burst_window_ms;
    bs->cfg.young_days = cfg->review_young_days;
    bs->cfg.min_young = (uint32_t)cfg->review_burst_min_young;
    bs->cfg.min_dupes = (uint32_t)cfg->review_burst_min_dupes;
    snprintf(bs->window, sizeof bs->window, "%" PRId64, bs->cfg.window_ms);
    snprintf(bs->near, sizeof bs->near, "%d", bs->cfg.near_bits);
    bs->topic = cfg->fraud_alerts_topic;
}

static void acct_suffix(char *buf, size_t len, const sp_op_event *e) {
    snprintf(buf, len, "acct:%s", e->ev->user_id);
}

/* Every event: the account's first-seen time. A review: queued for the
 * partition's flush. */
static int bursts_process(struct bursts *bs, sp_store *store, const sp_op_event *e) {
    char key[256];
    acct_suffix(key, sizeof key, e);
    sp_obj *o;
    int rc = sp_store_get(store, e->partition, key, &o);
    if (rc != SP_OK) return rc;
    const sp_event *ev = e->ev;
    int64_t first = sp_obj_get_int(o, "first", 0);
    if (!first || ev->ts_ms < first) sp_obj_set_int(o, "first", first = ev->ts_ms);
    if (e->kind != SP_KIND_REVIEW) return SP_OK;
    if (bs->n == bs->cap) {
        bs->cap = bs->cap ? bs->cap * 2 : 64;
        bs->b = sp_xrealloc(bs->b, bs->cap * sizeof *bs->b);
    }
    struct burst *b = &bs->b[bs->n++];
    const Shopstream__V1__Review *rv = ev->review;
    double age = (double)(ev->ts_ms - first) / DAY_MS;
    uint64_t sh = rv->text && *rv->text ? sp_simhash(rv->text) : 0;
    b->part = e->partition;
    b->ts_ms = ev->ts_ms;
    b->young = age < bs->cfg.young_days;
    b->has_text = sh != 0;
    snprintf(b->key, sizeof b->key, "rb:%s", rv->item_id);
    snprintf(b->member, sizeof b->member, "%016" PRIx64 ":%d:%s", sh, b->young, ev->event_id);
    snprintf(b->ts, sizeof b->ts, "%" PRId64, ev->ts_ms);
    snprintf(b->hi, sizeof b->hi, "%" PRIu64, sh >> 32);
    snprintf(b->lo, sizeof b->lo, "%" PRIu64, sh & 0xffffffffu);
    snprintf(b->event_id, sizeof b->event_id, "%s", ev->event_id);
    snprintf(b->user_id, sizeof b->user_id, "%s", ev->user_id);
    snprintf(b->item_id, sizeof b->item_id, "%s", rv->item_id);
    return SP_OK;
}

static int burst_alert(struct bursts *bs, sp_sink *sink, sp_metrics *m, const struct burst *b,
                       const struct sp_review_burst_result *r) {
    char alert_id[SP_EVENT_MAX_ID + 8];
    snprintf(alert_id, sizeof alert_id, "rb:%s", b->event_id);
    char *reasons[2] = {(char *)r->reasons[0], (char *)r->reasons[1]};
    Shopstream__V1__FraudAlert a = SHOPSTREAM__V1__FRAUD_ALERT__INIT;
    a.alert_id = alert_id;
    a.user_id = (char *)b->user_id;
    a.score = r->score;
    a.reasons = reasons;
    a.n_reasons = (size_t)r->nreasons;
    a.trigger_event_id = (char *)b->event_id;
    a.ts_ms = b->ts_ms;
    a.kind = "review_burst";
    a.item_id = (char *)b->item_id;
    uint8_t buf[1024];
    size_t size = shopstream__v1__fraud_alert__get_packed_size(&a);
    if (size > sizeof buf) return SP_ERR_FATAL;
    shopstream__v1__fraud_alert__pack(&a, buf);
    sp_header h = {"content-type", "application/x-protobuf", 22};
    m->review_burst_alerts++;
    sp_info("review burst alert %s item=%s score=%.3f reasons: %s%s%s", alert_id, b->item_id,
            r->score, r->reasons[0], r->nreasons > 1 ? "; " : "", r->nreasons > 1 ? r->reasons[1] : "");
    return sp_sink_produce(sink, bs->topic, b->user_id, strlen(b->user_id), buf, size, &h, 1);
}

/* Counts this partition's queued reviews against the items' recent reviews
 * (one pipelined round trip; scripts run in order, so reviews of one batch
 * see each other) and alerts. */
static int bursts_flush(struct bursts *bs, sp_store *store, sp_sink *sink, sp_metrics *m,
                        int32_t part) {
    size_t n = 0;
    for (size_t i = 0; i < bs->n; i++) n += bs->b[i].part == part;
    if (!n) return SP_OK;
    int *argcs = sp_xmalloc(n * sizeof *argcs);
    const char ***argvs = sp_xmalloc(n * sizeof *argvs);
    const char **argv = sp_xmalloc(n * 10 * sizeof *argv);
    struct burst **which = sp_xmalloc(n * sizeof *which);
    long long *counts = sp_xmalloc(n * sizeof *counts);
    size_t k = 0;
    for (size_t i = 0; i < bs->n; i++) {
        struct burst *b = &bs->b[i];
        if (b->part != part) continue;
        const char **a = &argv[10 * k];
        a[0] = "EVAL", a[1] = burst_lua, a[2] = "1", a[3] = b->key, a[4] = b->ts;
        a[5] = bs->window, a[6] = b->hi, a[7] = b->lo, a[8] = bs->near, a[9] = b->member;
        argcs[k] = 10;
        which[k] = b;
        argvs[k++] = a;
    }
    int rc = sp_store_side(store, n, argcs, (const char *const *const *)argvs, counts);
    for (size_t i = 0; i < n && rc == SP_OK; i++) {
        if (counts[i] < 0) continue;
        const struct burst *b = which[i];
        struct sp_review_burst_result r;
        sp_review_burst_from_counts(&bs->cfg, (uint32_t)(counts[i] / 1000000) + 1,
                                    (uint32_t)(counts[i] / 1000 % 1000) + (uint32_t)b->young,
                                    (uint32_t)(counts[i] % 1000) + (uint32_t)b->has_text, &r);
        if (r.alert) rc = burst_alert(bs, sink, m, b, &r);
    }
    free(argcs);
    free(argvs);
    free(argv);
    free(which);
    free(counts);
    size_t w = 0;
    for (size_t i = 0; i < bs->n; i++)
        if (bs->b[i].part != part) bs->b[w++] = bs->b[i];
    bs->n = w;
    return rc;
}

static void bursts_revoke(struct bursts *bs, int32_t part) {
    size_t w = 0;
    for (size_t i = 0; i < bs->n; i++)
        if (bs->b[i].part != part) bs->b[w++] = bs->b[i];
    bs->n = w;
}
/* ======================================================= end REVIEW BURSTS */

struct pending {
    char key[160];    /* item:<id> */
    char field[200];  /* off:<topic>:p<n> */
    char off[24], rating[8], sentiment[40];
};

struct reviews {
    sp_store *store;
    sp_sink *sink;
    sp_metrics *metrics;
    struct bursts bursts; /* REVIEW BURSTS */
    struct pending *pend; /* this batch's reviews, all partitions */
    size_t npend, cappend;
    int32_t *pend_part;
};

static const char apply_lua[] =
    "local last = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')\n"
    "if tonumber(ARGV[2]) <= last then return 0 end\n"
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
    "local n = redis.call('HINCRBY', KEYS[1], 'count', 1)\n"
    "local s = redis.call('HINCRBY', KEYS[1], 'rating_sum', ARGV[3])\n"
    "redis.call('HSET', KEYS[1], 'rating_avg', string.format('%.4f', s / n))\n"
    "redis.call('HINCRBYFLOAT', KEYS[1], 'sentiment_sum', ARGV[4])\n"
    "return 1\n";

static int reviews_init(void **priv, const sp_op_env *env, char *err, size_t errlen) {
    (void)err;
    (void)errlen;
    struct reviews *r = sp_xcalloc(1, sizeof *r);
    r->store = env->store;
    r->sink = env->sink;
    r->metrics = env->metrics;
    bursts_init(&r->bursts, env->cfg); /* REVIEW BURSTS */
    *priv = r;
    return SP_OK;
}

/* REVIEW BURSTS: the account's first-seen key, for every event. */
static void reviews_prefetch(void *priv, const sp_op_event *e) {
    struct reviews *r = priv;
    char key[256];
    acct_suffix(key, sizeof key, e);
    sp_store_want(r->store, e->partition, key);
}

static int reviews_process(void *priv, const sp_op_event *e) {
    struct reviews *r = priv;
    int brc = bursts_process(&r->bursts, r->store, e); /* REVIEW BURSTS */
    if (brc != SP_OK) return brc;
    if (e->kind != SP_KIND_REVIEW) return SP_OK;
    if (r->npend == r->cappend) {
        r->cappend = r->cappend ? r->cappend * 2 : 64;
        r->pend = sp_xrealloc(r->pend, r->cappend * sizeof *r->pend);
        r->pend_part = sp_xrealloc(r->pend_part, r->cappend * sizeof *r->pend_part);
    }
    struct pending *p = &r->pend[r->npend];
    r->pend_part[r->npend++] = e->partition;
    const Shopstream__V1__Review *rv = e->ev->review;
    snprintf(p->key, sizeof p->key, "item:%s", rv->item_id);
    snprintf(p->field, sizeof p->field, "off:%s:p%d", e->topic, (int)e->partition);
    snprintf(p->off, sizeof p->off, "%" PRId64, e->offset);
    snprintf(p->rating, sizeof p->rating, "%u", rv->rating);
    snprintf(p->sentiment, sizeof p->sentiment, "%.6f", sp_reviews_sentiment(rv->text));
    return SP_OK;
}

/* Applies this partition's reviews of the batch, in one pipelined round
 * trip, before the partition's commit. */
static int reviews_flush(void *priv, int32_t part) {
    struct reviews *r = priv;
    int brc = bursts_flush(&r->bursts, r->store, r->sink, r->metrics, part); /* REVIEW BURSTS */
    if (brc != SP_OK) return brc;
    size_t n = 0;
    for (size_t i = 0; i < r->npend; i++) n += r->pend_part[i] == part;
    if (!n) return SP_OK;
    int *argcs = sp_xmalloc(n * sizeof *argcs);
    const char ***argvs = sp_xmalloc(n * sizeof *argvs);
    const char **argv = sp_xmalloc(n * 8 * sizeof *argv);
    size_t k = 0;
    for (size_t i = 0; i < r->npend; i++) {
        if (r->pend_part[i] != part) continue;
        const char **a = &argv[8 * k];
        struct pending *p = &r->pend[i];
        a[0] = "EVAL";
        a[1] = apply_lua;
        a[2] = "1";
        a[3] = p->key;
        a[4] = p->field;
        a[5] = p->off;
        a[6] = p->rating;
        a[7] = p->sentiment;
        argcs[k] = 8;
        argvs[k++] = a;
    }
    int rc = sp_store_side(r->store, n, argcs, (const char *const *const *)argvs, NULL);
    free(argcs);
    free(argvs);
    free(argv);
    /* Keep the other partitions' entries. */
    size_t w = 0;
    for (size_t i = 0; i < r->npend; i++)
        if (r->pend_part[i] != part) {
            r->pend[w] = r->pend[i];
            r->pend_part[w++] = r->pend_part[i];
        }
    r->npend = w;
    return rc;
}

/* A revoked partition's unflushed reviews are dropped: its batch was not
 * committed, and the next owner processes them again. */
static void reviews_revoke(void *priv, int32_t part) {
    struct reviews *r = priv;
    bursts_revoke(&r->bursts, part); /* REVIEW BURSTS */
    size_t w = 0;
    for (size_t i = 0; i < r->npend; i++)
        if (r->pend_part[i] != part) {
            r->pend[w] = r->pend[i];
            r->pend_part[w++] = r->pend_part[i];
        }
    r->npend = w;
}

static void reviews_destroy(void *priv) {
    struct reviews *r = priv;
    if (!r) return;
    free(r->pend);
    free(r->pend_part);
    free(r->bursts.b); /* REVIEW BURSTS */
    free(r);
}

const sp_op sp_op_reviews = {
    .name = "reviews",
    .help = "per-item review count, average rating and sentiment (item:<id>); review bursts",
    .init = reviews_init,
    .prefetch = reviews_prefetch,
    .process = reviews_process,
    .flush = reviews_flush,
    .revoke = reviews_revoke,
    .destroy = reviews_destroy,
};
