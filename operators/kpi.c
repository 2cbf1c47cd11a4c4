/* kpi: event-time tumbling windows of shop KPIs, per partition, in Redis.
 *
 * State (all under the partition's hash tag, so it moves with the offsets in
 * the partition's commit and is exactly-once):
 *   {p<n>}:kpi:<len>:<start>:<dim>  hash of counters of one window; <len> is
 *                                   kpi.window_ms or kpi.rollup_ms, <dim> is
 *                                   "global" or "category=<name>"
 *   {p<n>}:kpi:total                all-time counters (global dimension)
 *   {p<n>}:kpi:<len>:<start>:uu     HyperLogLog of the window's users
 *   {p<n>}:kpi:idx:<len>            sorted set of window starts (for readers)
 *   {p<n>}:kpi:open                 windows with data not yet emitted
 *                                   (member "<len>:<start>:<dim>", score end)
 *   {p<n>}:kpi:wm                   max:<topic> newest event time per input
 *                                   topic, emitted: the emitted watermark
 *   {p<n>}:u:<user>                 kpi_* fields: session and order history
 *
 * Lateness and the watermark. The input topics are fetched independently, so
 * a partition's orders may be consumed far ahead (in event time) of its
 * clicks; what is "late" must not depend on that interleaving, or a crashed
 * and restarted run would count differently from an uninterrupted one. So an
 * event is late when it is older than the newest event of its own
 * topic-partition minus kpi.allowed_lateness_ms -- a fact of that
 * topic-partition's order alone. The partition's watermark, which decides
 * when a window is emitted, is the minimum over all input topics of that
 * bound (as Flink takes the minimum over input channels), so it never
 * overtakes a lagging topic. A late event is counted ("late" in its window)
 * and applied (kpi.late_policy=apply) or only counted ("late_dropped") (drop).
 * A change to a window already emitted -- an applied late event, a bounce
 * that turned out not to be one, an event of a lagging topic -- re-emits it
 * with correction=true, once per batch.
 *
 * Sessions come from clicks only (a user's clicks are in one topic-partition,
 * in order): a click more than kpi.session_gap_ms after the user's previous
 * one starts a session in its window. A session that starts with a view
 * counts as a bounce until its second click, which takes the bounce back
 * from the session's start window (a correction if that was emitted). A late
 * click from before the user's current session changes no session.
 * Conversion rate is orders / sessions. A buyer of a window is a user with
 * an order in it; a repeat buyer had ordered before the window.
 *
 * Unique users: PFADD into the partition's per-window HyperLogLog, sent
 * before the commit outside the transaction (adding a user twice changes
 * nothing, so a replayed batch leaves it as it was). Users are partitioned
 * by user_id, so the partitions' sets are disjoint: the sum of their
 * PFCOUNTs is the count of the union, within HyperLogLog's error, and no
 * reader ever needs a cross-slot PFCOUNT.
 *
 * Outputs: a KpiWindow per window and dimension of this partition when the
 * watermark passes its end, produced in flush(), which the runtime runs
 * before flushing the producer and committing (at-least-once, keyed
 * "<len>:<start>:<dim>:p<n>"). Consumers sum partitions for totals; so does
 * /api/kpi. */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operators/kpi.h"
#include "operators/kpi_anomaly.h"
#include "operators/operator.h"
#include "operators/reviews.h"
#include "proto/shopstream.pb-c.h"
#include "stream/error.h"
#include "stream/kafka.h"
#include "stream/log.h"
#include "stream/metrics.h"
#include "stream/strmap.h"

#define KPI_MAX_TOPICS 8
#define NONE INT64_MIN

const char *const sp_kpi_counters[] = {
    "views",   "clicks",         "add_to_carts",  "remove_from_carts", "searches",
    "rec_clicks", "rec_impressions", "orders",     "units",             "gmv_cents",
    "sessions", "bounces",       "buyers",        "repeat_buyers",     "reviews",
    "rating_sum", "sentiment_sum", "late",        "late_dropped",      NULL};

enum {
    C_VIEWS, C_CLICKS, C_CARTS, C_REMOVES, C_SEARCHES, C_REC_CLICKS, C_REC_IMPR, C_ORDERS,
    C_UNITS, C_GMV, C_SESSIONS, C_BOUNCES, C_BUYERS, C_REPEAT, C_REVIEWS, C_RATING,
    C_SENTIMENT, C_LATE, C_LATE_DROPPED, C__COUNT
};
_Static_assert(C__COUNT == SP_KPI_NCOUNTERS, "sp_kpi_counters and SP_KPI_NCOUNTERS disagree");

struct open_win {
    int64_t end;
    char *member; /* "<len>:<start>:<dim>" */
};

struct kpi_part {
    int active;
    int64_t maxts[KPI_MAX_TOPICS];
    int64_t emitted;          /* watermark up to which windows were emitted */
    sp_strmap *open;          /* member -> end */
    sp_strmap *touched;       /* this batch: members changed */
    sp_strmap *users;         /* this batch: "<hll key suffix>\t<user>" */
};

struct kpi {
    sp_store *store;
    sp_sink *sink;
    sp_metrics *metrics;
    const char *topic;        /* output */
    int64_t lens[2];          /* window, rollup (0 = none) */
    int nlens;
    int64_t lateness, gap;
    int drop_late;
    int categories;           /* per-category windows (kpi.dimensions) */
    char *topics[KPI_MAX_TOPICS];
    int ntopics;
    struct kpi_part *parts;
    size_t nparts;
    sp_kpi_anomaly *anomaly; /* KPI ANOMALIES: detectors over the emitted series */
};

/* The running instance of this thread, for sp_kpi_add_impressions: each
 * worker (workers = N) builds its pipeline on its own thread, so a
 * thread-local pointer finds that worker's kpi operator. */
static __thread struct kpi *active_kpi;

static int64_t floor_to(int64_t ts, int64_t len) {
    int64_t q = ts / len;
    if (ts % len < 0) q--;
    return q * len;
}

static struct kpi_part *part_get(struct kpi *k, int32_t p) {
    if ((size_t)p >= k->nparts) {
        size_t n = k->nparts ? k->nparts : 16;
        while (n <= (size_t)p) n *= 2;
        k->parts = sp_xrealloc(k->parts, n * sizeof *k->parts);
        memset(k->parts + k->nparts, 0, (n - k->nparts) * sizeof *k->parts);
        k->nparts = n;
    }
    return &k->parts[p];
}

static int topic_index(const struct kpi *k, const char *topic) {
    for (int i = 0; i < k->ntopics; i++)
        if (!strcmp(k->topics[i], topic)) return i;
    return -1;
}

int sp_kpi_counter_index(const char *name) {
    for (int i = 0; sp_kpi_counters[i]; i++)
        if (!strcmp(sp_kpi_counters[i], name)) return i;
    return -1;
}

int sp_kpi_derive(const double *c, const char **names, double *values) {
    static const char *const n[] = {"conversion_rate", "ctr",          "rec_ctr",
                                    "bounce_rate",     "aov",          "repeat_buyer_rate",
                                    "avg_rating",      "gmv"};
#define RATIO(a, b) ((b) > 0 ? (a) / (b) : 0.0)
    double v[] = {RATIO(c[C_ORDERS], c[C_SESSIONS]),
                  RATIO(c[C_CLICKS], c[C_VIEWS]),
                  RATIO(c[C_REC_CLICKS], c[C_REC_IMPR]),
                  RATIO(c[C_BOUNCES], c[C_SESSIONS]),
                  RATIO(c[C_GMV] / 100.0, c[C_ORDERS]),
                  RATIO(c[C_REPEAT], c[C_BUYERS]),
                  RATIO(c[C_RATING], c[C_REVIEWS]),
                  c[C_GMV] / 100.0};
#undef RATIO
    for (int i = 0; i < 8; i++) {
        names[i] = n[i];
        values[i] = v[i];
    }
    return 8;
}

/* ------------------------------------------------------------ lifecycle */

static int kpi_init(void **priv, const sp_op_env *env, char *err, size_t errlen) {
    const sp_config *cfg = env->cfg;
    if (strcmp(cfg->kpi_late_policy, "apply") && strcmp(cfg->kpi_late_policy, "drop")) {
        snprintf(err, errlen, "key 'kpi.late_policy': '%s' is not apply|drop",
                 cfg->kpi_late_policy);
        return SP_ERR_FATAL;
    }
    if (cfg->kpi_rollup_ms && (cfg->kpi_rollup_ms <= cfg->kpi_window_ms ||
                               cfg->kpi_rollup_ms % cfg->kpi_window_ms)) {
        snprintf(err, errlen, "key 'kpi.rollup_ms': must be 0 or a multiple (>1) of kpi.window_ms");
        return SP_ERR_FATAL;
    }
    if (strcmp(cfg->kpi_dimensions, "global") && strcmp(cfg->kpi_dimensions, "global,category")) {
        snprintf(err, errlen, "key 'kpi.dimensions': '%s' is not global|global,category",
                 cfg->kpi_dimensions);
        return SP_ERR_FATAL;
    }
    struct kpi *k = sp_xcalloc(1, sizeof *k);
    k->categories = !strcmp(cfg->kpi_dimensions, "global,category");
    k->store = env->store;
    k->sink = env->sink;
    k->metrics = env->metrics;
    k->topic = cfg->kpi_topic;
    k->lens[k->nlens++] = cfg->kpi_window_ms;
    if (cfg->kpi_rollup_ms) k->lens[k->nlens++] = cfg->kpi_rollup_ms;
    k->lateness = cfg->kpi_allowed_lateness_ms;
    k->gap = cfg->kpi_session_gap_ms;
    k->drop_late = !strcmp(cfg->kpi_late_policy, "drop");
    char *list = sp_xstrdup(cfg->input_topics), *save = NULL;
    for (char *t = strtok_r(list, ", ", &save); t && k->ntopics < KPI_MAX_TOPICS;
         t = strtok_r(NULL, ", ", &save))
        k->topics[k->ntopics++] = sp_xstrdup(t);
    free(list);
    k->anomaly = sp_kpi_anomaly_new(env, k->lens[0]); /* KPI ANOMALIES */
    active_kpi = k;
    *priv = k;
    return SP_OK;
}

static void part_release(struct kpi_part *p) {
    sp_strmap_destroy(p->open);
    sp_strmap_destroy(p->touched);
    sp_strmap_destroy(p->users);
    memset(p, 0, sizeof *p);
}

static void kpi_destroy(void *priv) {
    struct kpi *k = priv;
    if (!k) return;
    if (active_kpi == k) active_kpi = NULL;
    for (size_t i = 0; i < k->nparts; i++) part_release(&k->parts[i]);
    for (int i = 0; i < k->ntopics; i++) free(k->topics[i]);
    free(k->parts);
    sp_kpi_anomaly_destroy(k->anomaly); /* KPI ANOMALIES */
    free(k);
}

static void load_open(void *ctx, const char *member, size_t len, double score) {
    sp_strmap_put(ctx, member, len, (int64_t)score);
}

/* Reads the partition's watermarks and open windows as last committed. */
static int kpi_assign(void *priv, int32_t part) {
    struct kpi *k = priv;
    struct kpi_part *p = part_get(k, part);
    part_release(p);
    p->active = 1;
    p->open = sp_strmap_new(256);
    p->touched = sp_strmap_new(256);
    p->users = sp_strmap_new(1024);
    sp_obj *wm;
    int rc = sp_store_get(k->store, part, "kpi:wm", &wm);
    if (rc != SP_OK) return rc;
    for (int t = 0; t < k->ntopics; t++) {
        char f[300];
        snprintf(f, sizeof f, "max:%s", k->topics[t]);
        p->maxts[t] = sp_obj_get_int(wm, f, NONE);
    }
    p->emitted = sp_obj_get_int(wm, "emitted", NONE);
    return sp_store_zscan(k->store, part, "kpi:open", load_open, p->open);
}

static void kpi_revoke(void *priv, int32_t part) {
    struct kpi *k = priv;
    if ((size_t)part < k->nparts) part_release(&k->parts[part]);
}

/* ------------------------------------------------------------- counting */

/* One window-dimension hash, noted as changed in this batch: it joins the
 * open set (to be emitted when the watermark passes its end) or, when that
 * already happened, is re-emitted as a correction at the end of the batch. */
static int window_obj(struct kpi *k, int32_t part, int64_t len, int64_t start, const char *dim,
                      sp_obj **out) {
    struct kpi_part *p = &k->parts[part];
    char member[256], suffix[300];
    int n = snprintf(member, sizeof member, "%" PRId64 ":%" PRId64 ":%s", len, start, dim);
    snprintf(suffix, sizeof suffix, "kpi:%s", member);
    int rc = sp_store_get(k->store, part, suffix, out);
    if (rc != SP_OK) return rc;
    if (sp_strmap_put(p->touched, member, (size_t)n, start + len)) {
        int64_t end = start + len;
        if (!strcmp(dim, "global")) {
            char key[64], s[32];
            snprintf(key, sizeof key, "{p%d}:kpi:idx:%" PRId64, (int)part, len);
            snprintf(s, sizeof s, "%" PRId64, start);
            const char *argv[] = {"ZADD", key, s, s};
            sp_store_tx_cmd(k->store, part, 4, argv);
        }
        if ((p->emitted == NONE || end > p->emitted) &&
            sp_strmap_put(p->open, member, (size_t)n, end)) {
            char key[64], e[32];
            snprintf(key, sizeof key, "{p%d}:kpi:open", (int)part);
            snprintf(e, sizeof e, "%" PRId64, end);
            const char *argv[] = {"ZADD", key, e, member};
            sp_store_tx_cmd(k->store, part, 4, argv);
        }
    }
    return SP_OK;
}

/* Adds `by` to counter c in the global windows of ts (both lengths) and in
 * the all-time totals. */
static int add_global(struct kpi *k, int32_t part, int64_t ts, int c, int64_t by) {
    sp_obj *o;
    for (int l = 0; l < k->nlens; l++) {
        int rc = window_obj(k, part, k->lens[l], floor_to(ts, k->lens[l]), "global", &o);
        if (rc != SP_OK) return rc;
        sp_obj_incr(o, sp_kpi_counters[c], by);
    }
    int rc = sp_store_get(k->store, part, "kpi:total", &o);
    if (rc != SP_OK) return rc;
    sp_obj_incr(o, sp_kpi_counters[c], by);
    return SP_OK;
}

static int add_category(struct kpi *k, int32_t part, int64_t ts, const char *cat, int c,
                        int64_t by) {
    if (!k->categories || !cat || !*cat) return SP_OK;
    char dim[160];
    snprintf(dim, sizeof dim, "category=%s", cat);
    for (int l = 0; l < k->nlens; l++) {
        sp_obj *o;
        int rc = window_obj(k, part, k->lens[l], floor_to(ts, k->lens[l]), dim, &o);
        if (rc != SP_OK) return rc;
        sp_obj_incr(o, sp_kpi_counters[c], by);
    }
    return SP_OK;
}

static void note_user(struct kpi *k, int32_t part, int64_t ts, const char *user) {
    char buf[400];
    for (int l = 0; l < k->nlens; l++) {
        int n = snprintf(buf, sizeof buf, "kpi:%" PRId64 ":%" PRId64 ":uu\t%s", k->lens[l],
                         floor_to(ts, k->lens[l]), user);
        sp_strmap_put(k->parts[part].users, buf, (size_t)n, 0);
    }
}

static void user_key(char *buf, size_t len, const sp_op_event *e) {
    snprintf(buf, len, "u:%s", e->ev->user_id);
}

static void want_windows(struct kpi *k, const sp_op_event *e, const char *dim) {
    char key[300];
    for (int l = 0; l < k->nlens; l++) {
        snprintf(key, sizeof key, "kpi:%" PRId64 ":%" PRId64 ":%s", k->lens[l],
                 floor_to(e->ev->ts_ms, k->lens[l]), dim);
        sp_store_want(k->store, e->partition, key);
    }
}

/* Every hash the event will touch, so the batch loads them in one round
 * trip (a window that does not exist yet costs a lookup all the same). */
static void kpi_prefetch(void *priv, const sp_op_event *e) {
    struct kpi *k = priv;
    char key[256];
    if (e->kind <= SP_KIND_ORDER) {
        user_key(key, sizeof key, e);
        sp_store_want(k->store, e->partition, key);
    }
    sp_store_want(k->store, e->partition, "kpi:total");
    want_windows(k, e, "global");
    if (!k->categories) return;
    if (e->kind < SP_KIND_ORDER && e->ev->click->category && *e->ev->click->category) {
        snprintf(key, sizeof key, "category=%s", e->ev->click->category);
        want_windows(k, e, key);
    } else if (e->kind == SP_KIND_ORDER) {
        for (size_t i = 0; i < e->ev->order->n_items; i++) {
            snprintf(key, sizeof key, "category=%s", e->ev->order->items[i]->category);
            want_windows(k, e, key);
        }
    }
}

/* Sessions and bounces from a click (see the top of the file). */
static int count_session(struct kpi *k, const sp_op_event *e) {
    char key[256];
    user_key(key, sizeof key, e);
    sp_obj *u;
    int rc = sp_store_get(k->store, e->partition, key, &u);
    if (rc != SP_OK) return rc;
    int64_t ts = e->ev->ts_ms, last = sp_obj_get_int(u, "kpi_last_ms", NONE);
    /* A (late) click from before the current session belongs to an earlier
     * one, which is closed: it changes no session. */
    if (last != NONE && ts < sp_obj_get_int(u, "kpi_sess_start_ms", ts)) return SP_OK;
    if (last == NONE || ts - last > k->gap) {
        if ((rc = add_global(k, e->partition, ts, C_SESSIONS, 1)) != SP_OK) return rc;
        int bounce = e->kind == SP_KIND_VIEW;
        if (bounce && (rc = add_global(k, e->partition, ts, C_BOUNCES, 1)) != SP_OK) return rc;
        sp_obj_set_int(u, "kpi_sess_start_ms", ts);
        sp_obj_set_int(u, "kpi_sess_clicks", 1);
        sp_obj_set_int(u, "kpi_sess_bounce", bounce);
    } else {
        int64_t n = sp_obj_get_int(u, "kpi_sess_clicks", 0) + 1;
        sp_obj_set_int(u, "kpi_sess_clicks", n);
        if (sp_obj_get_int(u, "kpi_sess_bounce", 0)) {
            int64_t start = sp_obj_get_int(u, "kpi_sess_start_ms", ts);
            if ((rc = add_global(k, e->partition, start, C_BOUNCES, -1)) != SP_OK) return rc;
            sp_obj_set_int(u, "kpi_sess_bounce", 0);
        }
    }
    if (last == NONE || ts > last) sp_obj_set_int(u, "kpi_last_ms", ts);
    return SP_OK;
}

/* Buyers and repeat buyers from an order. */
static int count_buyer(struct kpi *k, const sp_op_event *e) {
    char key[256];
    user_key(key, sizeof key, e);
    sp_obj *u;
    int rc = sp_store_get(k->store, e->partition, key, &u);
    if (rc != SP_OK) return rc;
    int64_t ts = e->ev->ts_ms;
    int64_t before = sp_obj_get_int(u, "kpi_orders", 0);
    int64_t last = sp_obj_get_int(u, "kpi_last_order_ms", NONE);
    for (int l = 0; l < k->nlens; l++) {
        int64_t len = k->lens[l], start = floor_to(ts, len);
        if (last != NONE && floor_to(last, len) == start) continue; /* already a buyer here */
        sp_obj *o;
        if ((rc = window_obj(k, e->partition, len, start, "global", &o)) != SP_OK) return rc;
        sp_obj_incr(o, sp_kpi_counters[C_BUYERS], 1);
        if (before > 0) sp_obj_incr(o, sp_kpi_counters[C_REPEAT], 1);
    }
    sp_obj *tot;
    if ((rc = sp_store_get(k->store, e->partition, "kpi:total", &tot)) != SP_OK) return rc;
    if (before == 0) sp_obj_incr(tot, sp_kpi_counters[C_BUYERS], 1);
    if (before == 1) sp_obj_incr(tot, sp_kpi_counters[C_REPEAT], 1);
    sp_obj_set_int(u, "kpi_orders", before + 1);
    if (last == NONE || ts > last) sp_obj_set_int(u, "kpi_last_order_ms", ts);
    return SP_OK;
}

static int count_event(struct kpi *k, const sp_op_event *e) {
    const sp_event *ev = e->ev;
    int32_t part = e->partition;
    int64_t ts = ev->ts_ms;
    int rc = SP_OK;
    note_user(k, part, ts, ev->user_id);
    switch (e->kind) {
    case SP_KIND_VIEW:
    case SP_KIND_CLICK:
    case SP_KIND_ADD_TO_CART:
    case SP_KIND_REMOVE_FROM_CART:
    case SP_KIND_SEARCH: {
        static const int by_kind[] = {C_VIEWS, C_CLICKS, C_CARTS, C_REMOVES, C_SEARCHES};
        int c = by_kind[e->kind];
        if ((rc = add_global(k, part, ts, c, 1)) != SP_OK) return rc;
        if ((rc = add_category(k, part, ts, ev->click->category, c, 1)) != SP_OK) return rc;
        if (ev->click->rec_id && *ev->click->rec_id) {
            if ((rc = add_global(k, part, ts, C_REC_CLICKS, 1)) != SP_OK) return rc;
            rc = add_category(k, part, ts, ev->click->category, C_REC_CLICKS, 1);
            if (rc != SP_OK) return rc;
        }
        return count_session(k, e);
    }
    case SP_KIND_ORDER: {
        const Shopstream__V1__Order *o = ev->order;
        int64_t units = 0;
        for (size_t i = 0; i < o->n_items; i++) units += o->items[i]->quantity;
        if ((rc = add_global(k, part, ts, C_ORDERS, 1)) != SP_OK ||
            (rc = add_global(k, part, ts, C_UNITS, units)) != SP_OK ||
            (rc = add_global(k, part, ts, C_GMV, llround(o->total * 100))) != SP_OK)
            return rc;
        /* Per category: the order counts once in each category it touches;
         * units and GMV are the lines of that category. */
        for (size_t i = 0; i < o->n_items; i++) {
            const char *cat = o->items[i]->category;
            int first = 1;
            for (size_t j = 0; j < i; j++)
                if (!strcmp(o->items[j]->category, cat)) first = 0;
            if (first && (rc = add_category(k, part, ts, cat, C_ORDERS, 1)) != SP_OK) return rc;
            if ((rc = add_category(k, part, ts, cat, C_UNITS, o->items[i]->quantity)) != SP_OK)
                return rc;
            rc = add_category(k, part, ts, cat, C_GMV,
                              llround(o->items[i]->unit_price * o->items[i]->quantity * 100));
            if (rc != SP_OK) return rc;
        }
        return count_buyer(k, e);
    }
    case SP_KIND_REVIEW: {
        if ((rc = add_global(k, part, ts, C_REVIEWS, 1)) != SP_OK ||
            (rc = add_global(k, part, ts, C_RATING, ev->review->rating)) != SP_OK)
            return rc;
        double s = sp_reviews_sentiment(ev->review->text);
        sp_obj *o;
        for (int l = 0; l < k->nlens; l++) {
            rc = window_obj(k, part, k->lens[l], floor_to(ts, k->lens[l]), "global", &o);
            if (rc != SP_OK) return rc;
            sp_obj_incrf(o, sp_kpi_counters[C_SENTIMENT], s);
        }
        if ((rc = sp_store_get(k->store, part, "kpi:total", &o)) != SP_OK) return rc;
        sp_obj_incrf(o, sp_kpi_counters[C_SENTIMENT], s);
        return SP_OK;
    }
    default:
        return SP_OK;
    }
}

static int kpi_process(void *priv, const sp_op_event *e) {
    struct kpi *k = priv;
    struct kpi_part *p = part_get(k, e->partition);
    if (!p->active) return SP_ERR_FATAL;
    int t = topic_index(k, e->topic);
    if (t < 0) return SP_OK;
    int64_t ts = e->ev->ts_ms;
    int late = p->maxts[t] != NONE && ts < p->maxts[t] - k->lateness;
    if (p->maxts[t] == NONE || ts > p->maxts[t]) p->maxts[t] = ts;
    if (late && k->drop_late) {
        /* Counted in the window it missed and in the totals, quietly: no
         * correction is emitted for an event that changes nothing else. */
        k->metrics->kpi_late_dropped++;
        char suffix[128];
        snprintf(suffix, sizeof suffix, "kpi:%" PRId64 ":%" PRId64 ":global", k->lens[0],
                 floor_to(ts, k->lens[0]));
        sp_obj *o;
        int rc = sp_store_get(k->store, e->partition, suffix, &o);
        if (rc != SP_OK) return rc;
        sp_obj_incr(o, sp_kpi_counters[C_LATE_DROPPED], 1);
        if ((rc = sp_store_get(k->store, e->partition, "kpi:total", &o)) != SP_OK) return rc;
        sp_obj_incr(o, sp_kpi_counters[C_LATE_DROPPED], 1);
        return SP_OK;
    }
    if (late) {
        k->metrics->kpi_late++;
        int rc = add_global(k, e->partition, ts, C_LATE, 1);
        if (rc != SP_OK) return rc;
    }
    return count_event(k, e);
}

int sp_kpi_add_impressions(int32_t part, int64_t ts_ms, int64_t n) {
    struct kpi *k = active_kpi;
    if (!k || (size_t)part >= k->nparts || !k->parts[part].active) return SP_ERR_NOTFOUND;
    k->metrics->rec_impressions += (uint64_t)n;
    return add_global(k, part, ts_ms, C_REC_IMPR, n);
}

/* ------------------------------------------------------------- emission */

/* Produces the KpiWindow of one member "<len>:<start>:<dim>"; uu is its
 * unique users (global dimension) or -1. */
static int emit(struct kpi *k, int32_t part, const char *member, int correction, long long uu) {
    int64_t len, start;
    int off = 0;
    if (sscanf(member, "%" SCNd64 ":%" SCNd64 ":%n", &len, &start, &off) != 2 || !off)
        return SP_OK;
    const char *dim = member + off;
    char suffix[300];
    snprintf(suffix, sizeof suffix, "kpi:%s", member);
    sp_obj *o;
    int rc = sp_store_get(k->store, part, suffix, &o);
    if (rc != SP_OK) return rc;

    double c[C__COUNT];
    for (int i = 0; i < C__COUNT; i++) c[i] = sp_obj_get_double(o, sp_kpi_counters[i], 0);
    Shopstream__V1__Metric ms[C__COUNT + 9], *mp[C__COUNT + 9];
    size_t nm = 0;
    for (int i = 0; i < C__COUNT; i++) {
        shopstream__v1__metric__init(&ms[nm]);
        ms[nm].name = (char *)sp_kpi_counters[i];
        ms[nm].value = c[i];
        mp[nm] = &ms[nm];
        nm++;
    }
    const char *dn[8];
    double dv[8];
    int nd = sp_kpi_derive(c, dn, dv);
    for (int i = 0; i < nd; i++) {
        shopstream__v1__metric__init(&ms[nm]);
        ms[nm].name = (char *)dn[i];
        ms[nm].value = dv[i];
        mp[nm] = &ms[nm];
        nm++;
    }
    if (uu >= 0) {
        shopstream__v1__metric__init(&ms[nm]);
        ms[nm].name = "unique_users";
        ms[nm].value = (double)uu;
        mp[nm] = &ms[nm];
        nm++;
    }
    Shopstream__V1__KpiWindow w = SHOPSTREAM__V1__KPI_WINDOW__INIT;
    w.window_start_ms = start;
    w.window_end_ms = start + len;
    w.dimension = (char *)dim;
    w.metrics = mp;
    w.n_metrics = nm;
    w.correction = correction;
    w.partition = part;
    size_t size = shopstream__v1__kpi_window__get_packed_size(&w);
    uint8_t *buf = sp_xmalloc(size ? size : 1);
    shopstream__v1__kpi_window__pack(&w, buf);
    char key[320];
    int kl = snprintf(key, sizeof key, "%s:p%d", member, (int)part);
    sp_header h = {"content-type", "application/x-protobuf", 22};
    rc = sp_sink_produce(k->sink, k->topic, key, (size_t)kl, buf, size, &h, 1);
    free(buf);
    k->metrics->kpi_windows++;
    if (correction) k->metrics->kpi_corrections++;
    /* KPI ANOMALIES: the first emission of each base window of the global
     * dimension extends this partition's series (operators/kpi_anomaly.h). */
    if (rc == SP_OK && !correction && len == k->lens[0] && !strcmp(dim, "global"))
        rc = sp_kpi_anomaly_observe(k->anomaly, part, start, c[C_ORDERS], c[C_GMV] / 100.0, dv[0],
                                    c[C_SESSIONS]);
    return rc;
}

struct due {
    int64_t end;
    const char *member;
};

static int due_cmp(const void *a, const void *b) {
    const struct due *x = a, *y = b;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->member, y->member);
}

static int str_ptr_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sends the batch's HyperLogLog additions: one PFADD per window. */
static int flush_users(struct kpi *k, int32_t part) {
    struct kpi_part *p = &k->parts[part];
    size_t n = sp_strmap_size(p->users);
    if (!n) return SP_OK;
    /* Sorted "suffix\tuser" entries group by window. */
    const char **ents = sp_xmalloc(n * sizeof *ents);
    size_t idx = 0, m = 0, len;
    const char *key;
    int64_t v;
    while (sp_strmap_next(p->users, &idx, &key, &len, &v)) ents[m++] = key;
    qsort(ents, m, sizeof *ents, str_ptr_cmp);
    /* One PFADD per window, all in one round trip. */
    int *argcs = sp_xmalloc(m * sizeof *argcs);
    const char ***argvs = sp_xmalloc(m * sizeof *argvs);
    char (*hkeys)[160] = sp_xmalloc(m * sizeof *hkeys);
    size_t ncmd = 0, i = 0;
    while (i < m) {
        const char *tab = strchr(ents[i], '\t');
        size_t plen = (size_t)(tab - ents[i]);
        size_t j = i;
        while (j < m && !strncmp(ents[j], ents[i], plen) && ents[j][plen] == '\t') j++;
        snprintf(hkeys[ncmd], sizeof hkeys[ncmd], "{p%d}:%.*s", (int)part, (int)plen, ents[i]);
        const char **argv = sp_xmalloc((j - i + 2) * sizeof *argv);
        argv[0] = "PFADD";
        argv[1] = hkeys[ncmd];
        for (size_t q = i; q < j; q++) argv[2 + q - i] = strchr(ents[q], '\t') + 1;
        argcs[ncmd] = (int)(j - i) + 2;
        argvs[ncmd++] = argv;
        i = j;
    }
    int rc = sp_store_side(k->store, ncmd, argcs, (const char *const *const *)argvs, NULL);
    for (size_t c = 0; c < ncmd; c++) free(argvs[c]);
    free(argcs);
    free(argvs);
    free(hkeys);
    free(ents);
    sp_strmap_destroy(p->users);
    p->users = sp_strmap_new(1024);
    return rc;
}

/* Emits n windows: their unique users (global dimension) first, with one
 * pipelined PFCOUNT per window. */
static int emit_all(struct kpi *k, int32_t part, const struct due *dues, size_t n,
                    int correction) {
    if (!n) return SP_OK;
    long long *uu = sp_xmalloc(n * sizeof *uu);
    int *argcs = sp_xmalloc(n * sizeof *argcs);
    const char **flat = sp_xmalloc(2 * n * sizeof *flat);
    const char *const **argvs = sp_xmalloc(n * sizeof *argvs);
    char (*keys)[160] = sp_xmalloc(n * sizeof *keys);
    size_t *which = sp_xmalloc(n * sizeof *which), ng = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t len, start;
        int off = 0;
        uu[i] = -1;
        if (sscanf(dues[i].member, "%" SCNd64 ":%" SCNd64 ":%n", &len, &start, &off) != 2 ||
            strcmp(dues[i].member + off, "global"))
            continue;
        snprintf(keys[ng], sizeof keys[ng], "{p%d}:kpi:%" PRId64 ":%" PRId64 ":uu", (int)part,
                 len, start);
        flat[2 * ng] = "PFCOUNT";
        flat[2 * ng + 1] = keys[ng];
        argcs[ng] = 2;
        argvs[ng] = &flat[2 * ng];
        which[ng++] = i;
    }
    long long *counts = sp_xmalloc((ng ? ng : 1) * sizeof *counts);
    int rc = sp_store_side(k->store, ng, argcs, argvs, counts);
    for (size_t g = 0; g < ng; g++) uu[which[g]] = counts[g] > 0 ? counts[g] : 0;
    for (size_t i = 0; i < n && rc == SP_OK; i++)
        rc = emit(k, part, dues[i].member, correction, uu[i]);
    free(counts);
    free(which);
    free(keys);
    free(argvs);
    free(flat);
    free(argcs);
    free(uu);
    return rc;
}

/* End of a partition's batch: unique users, the watermark into the commit,
 * windows the watermark passed, and corrections of windows emitted before. */
static int kpi_flush(void *priv, int32_t part) {
    struct kpi *k = priv;
    struct kpi_part *p = part_get(k, part);
    if (!p->active) return SP_OK;
    int rc = flush_users(k, part);
    if (rc != SP_OK) return rc;

    /* The watermark: the lowest bound over all input topics; none until
     * every topic has shown an event in this partition. */
    int64_t wm = INT64_MAX;
    for (int t = 0; t < k->ntopics && wm != NONE; t++)
        if (p->maxts[t] == NONE)
            wm = NONE;
        else if (p->maxts[t] - k->lateness < wm)
            wm = p->maxts[t] - k->lateness;

    /* Corrections: windows changed in this batch that were emitted before it. */
    size_t idx = 0, len;
    const char *member;
    int64_t end;
    size_t nt = sp_strmap_size(p->touched), nc = 0;
    struct due *dues = sp_xmalloc((nt + sp_strmap_size(p->open) + 1) * sizeof *dues);
    while (sp_strmap_next(p->touched, &idx, &member, &len, &end))
        if (p->emitted != NONE && end <= p->emitted) dues[nc++] = (struct due){end, member};
    qsort(dues, nc, sizeof *dues, due_cmp);
    rc = emit_all(k, part, dues, nc, 1);

    /* Windows the watermark passed. */
    size_t nd = 0;
    if (rc == SP_OK && wm != NONE && (p->emitted == NONE || wm > p->emitted)) {
        idx = 0;
        while (sp_strmap_next(p->open, &idx, &member, &len, &end))
            if (end <= wm) dues[nd++] = (struct due){end, member};
        qsort(dues, nd, sizeof *dues, due_cmp);
        rc = emit_all(k, part, dues, nd, 0);
        if (rc == SP_OK) {
            char key[64], w[32];
            snprintf(key, sizeof key, "{p%d}:kpi:open", (int)part);
            snprintf(w, sizeof w, "%" PRId64, wm);
            const char *argv[] = {"ZREMRANGEBYSCORE", key, "-inf", w};
            sp_store_tx_cmd(k->store, part, 4, argv);
            /* Deleting while iterating is not allowed: collect, then delete. */
            char **gone = sp_xmalloc((nd ? nd : 1) * sizeof *gone);
            for (size_t i = 0; i < nd; i++) gone[i] = sp_xstrdup(dues[i].member);
            for (size_t i = 0; i < nd; i++) {
                sp_strmap_del(p->open, gone[i], strlen(gone[i]));
                free(gone[i]);
            }
            free(gone);
            p->emitted = wm;
        }
    }
    free(dues);
    sp_strmap_destroy(p->touched);
    p->touched = sp_strmap_new(256);
    if (rc != SP_OK) return rc;

    sp_obj *o;
    if ((rc = sp_store_get(k->store, part, "kpi:wm", &o)) != SP_OK) return rc;
    for (int t = 0; t < k->ntopics; t++) {
        char f[300];
        snprintf(f, sizeof f, "max:%s", k->topics[t]);
        if (p->maxts[t] != NONE && sp_obj_get_int(o, f, NONE) != p->maxts[t])
            sp_obj_set_int(o, f, p->maxts[t]);
    }
    if (p->emitted != NONE && sp_obj_get_int(o, "emitted", NONE) != p->emitted)
        sp_obj_set_int(o, "emitted", p->emitted);
    return SP_OK;
}

const sp_op sp_op_kpi = {
    .name = "kpi",
    .help = "event-time KPI windows per partition (views, orders, GMV, sessions, ...) -> topics.kpi",
    .init = kpi_init,
    .prefetch = kpi_prefetch,
    .process = kpi_process,
    .flush = kpi_flush,
    .assign = kpi_assign,
    .revoke = kpi_revoke,
    .destroy = kpi_destroy,
};
