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
 * The sentiment score comes from sp_reviews_sentiment(), the hook below. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operators/operator.h"
#include "operators/reviews.h"
#include "stream/error.h"

/* SENTIMENT HOOK -- the lead wires the lexicon scorer of models/sentiment.*
 * here when merging (e.g. `return sp_sentiment_score(text);`). Until then
 * every review scores 0: per-item sentiment_sum and the KPI sentiment_sum
 * stay 0. */
double sp_reviews_sentiment(const char *text) {
    (void)text;
    return 0.0;
}

struct pending {
    char key[160];    /* item:<id> */
    char field[200];  /* off:<topic>:p<n> */
    char off[24], rating[8], sentiment[40];
};

struct reviews {
    sp_store *store;
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
    *priv = r;
    return SP_OK;
}

static int reviews_process(void *priv, const sp_op_event *e) {
    struct reviews *r = priv;
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
    free(r);
}

const sp_op sp_op_reviews = {
    .name = "reviews",
    .help = "per-item review count, average rating and sentiment (item:<id>)",
    .init = reviews_init,
    .process = reviews_process,
    .flush = reviews_flush,
    .revoke = reviews_revoke,
    .destroy = reviews_destroy,
};
