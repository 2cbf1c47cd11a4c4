/* fraud: scores every order as it streams, with the detector of
 * models/fraud.h, and emits a FraudAlert (score and reasons in words) to
 * topics.fraud_alerts when the combined score is above fraud.threshold or
 * the small-then-large rule fires.
 *
 * Each order is scored against the state as it was BEFORE the order, then
 * the state learns it -- the order of the offline evaluation, so a fraud
 * cannot hide in its own statistics.
 *
 * State, and the guarantee each piece gets:
 *
 *   {p<n>}:fraud:<user>   hash, exactly-once (in the partition's commit):
 *     u       struct sp_fraud_user (EWMA amount and quantity, velocity
 *             windows 10 min / 1 h / 1 day / 30 days, recent cards, devices
 *             and IPs, first order, the clean amount baseline and the 14-day
 *             inflated-amount windows; 4128 bytes), as a state/blob.h blob.
 *             A blob of another size (a build with another struct) does
 *             not decode and the user starts afresh
 *     cards   the user's cards: SP_FRAUD_RECENT slots of (card hash, struct
 *             sp_fraud_card), least recently used replaced; one blob
 *     first   event time of the user's earliest event seen (any kind): the
 *             account age, where the data has no account creation time
 *     sv      page views of the user's latest 4 sessions ("<session hash>:
 *             <views>,...", newest first): "orders with no views in the
 *             session". The input topics are
 *             consumed independently, so a partition's orders can run ahead
 *             of its clicks: an order is only said to have no views when the
 *             partition's clicks have been processed past the order's event
 *             time (tracked in memory); before that its views are unknown.
 *
 *   Cards are not partitioned by user. We keep a per-user view of each card
 *   (the card as this account used it), which is what Apache Flink's
 *   fraud-detection walkthrough does too (its FraudDetector is keyed by
 *   account), and it keeps the rule exactly-once. What it cannot see is one
 *   card used by several accounts (the model's card_users_1d feature stays
 *   1 here); that would need global card keys with at-least-once deltas.
 *
 *   Item prices (unit price against the item's recent price) are item-level
 *   and shared: each instance keeps its own in-memory EWMA per item, learned
 *   from the orders it sees, not persisted -- after a restart or on an
 *   instance that sees few of an item's orders the feature is simply absent
 *   (the detector needs a few prices before it compares).
 *
 *   {p<n>}:fraudhst  hash, field hst: the partition's Half-Space Trees. The
 *   trees are 200 KB, too big to write with every batch, so the checkpoint is
 *   written in the partition's commit each time a tree window completes
 *   (every 1000 orders of the partition). After a crash the trees resume from
 *   that checkpoint, missing at most one window's observations: the HST
 *   score is approximate by nature, and nothing per user depends on it.
 *
 *   Alerts are outputs: at-least-once, keyed by user_id, with alert_id
 *   "fa:<order event_id>" so a consumer recognizes a repeat after a crash.
 *
 * Terminal (merchant) risk needs a label stream, which the live input does
 * not carry: the terminal features are zero here (they are used by
 * `shopstream eval-fraud` on labelled data). */
#include <inttypes.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/fraud.h"
#include "models/logreg.h"
#include "operators/operator.h"
#include "state/blob.h"
#include "stream/error.h"
#include "stream/kafka.h"
#include "stream/log.h"
#include "stream/metrics.h"
#include "stream/strmap.h"

#define MAX_ITEMS (1 << 20) /* in-memory item price states per instance */

struct fraud_cards {
    uint64_t key[SP_FRAUD_RECENT]; /* card hash; 0 = empty slot */
    int64_t used_ms[SP_FRAUD_RECENT];
    struct sp_fraud_card card[SP_FRAUD_RECENT];
};

struct fraud_part {
    int active;
    sp_fraud_scorer *scorer;
    uint32_t hst_windows; /* HST windows completed at the last checkpoint */
    int64_t click_maxts;  /* newest click event time processed (in memory) */
    struct sp_ewma_z shop_amount; /* log(1 + amount) of the partition's orders (in memory) */
};

struct fraud {
    sp_store *store;
    sp_sink *sink;
    sp_metrics *metrics;
    const char *topic;
    const char *model_path; /* NULL: unsupervised only */
    int log_alerts;
    struct sp_fraud_config fc;
    struct fraud_part *parts;
    size_t nparts;
    sp_strmap *item_index; /* item_id -> index into items */
    struct sp_fraud_item *items;
    size_t nitems, capitems;
    char *enc; /* encoding buffer, big enough for the largest struct */
    size_t enclen;
};

static struct fraud_part *part_get(struct fraud *f, int32_t part) {
    if ((size_t)part >= f->nparts) {
        size_t n = f->nparts ? f->nparts : 16;
        while (n <= (size_t)part) n *= 2;
        f->parts = sp_xrealloc(f->parts, n * sizeof *f->parts);
        memset(f->parts + f->nparts, 0, (n - f->nparts) * sizeof *f->parts);
        f->nparts = n;
    }
    return &f->parts[part];
}

static uint64_t hash_or_zero(const char *s) { return s && *s ? sp_fraud_hash(s) : 0; }

static sp_logreg *load_model(const struct fraud *f, char *err, size_t errlen) {
    if (!f->model_path) return NULL;
    return sp_logreg_load(f->model_path, err, errlen);
}

static void fraud_destroy(void *priv);

static int fraud_init(void **priv, const sp_op_env *env, char *err, size_t errlen) {
    const sp_config *cfg = env->cfg;
    struct fraud *f = sp_xcalloc(1, sizeof *f);
    f->store = env->store;
    f->sink = env->sink;
    f->metrics = env->metrics;
    f->topic = cfg->fraud_alerts_topic;
    f->model_path = cfg->fraud_model && *cfg->fraud_model ? cfg->fraud_model : NULL;
    f->log_alerts = cfg->fraud_log_alerts;
    sp_fraud_config_default(&f->fc);
    f->fc.alert_threshold = cfg->fraud_threshold;
    f->fc.rule_small_amount = cfg->fraud_rule_small;
    f->fc.rule_large_amount = cfg->fraud_rule_large;
    f->fc.rule_window_ms = cfg->fraud_rule_window_ms;
    f->item_index = sp_strmap_new(4096);
    f->enclen = sp_blob_encoded_max(sizeof(struct sp_hst));
    f->enc = sp_xmalloc(f->enclen);
    /* Fail at startup, not at the first assignment, on a bad model file. */
    char sub[256];
    sp_logreg *m = load_model(f, sub, sizeof sub);
    if (f->model_path && !m) {
        snprintf(err, errlen, "key 'fraud.model': %s", sub);
        fraud_destroy(f);
        return SP_ERR_FATAL;
    }
    sp_fraud_scorer *probe = sp_fraud_scorer_new(&f->fc, m, sub, sizeof sub);
    if (!probe) {
        snprintf(err, errlen, "key 'fraud.model': %s", sub);
        fraud_destroy(f);
        return SP_ERR_FATAL;
    }
    sp_fraud_scorer_destroy(probe);
    *priv = f;
    return SP_OK;
}

static void fraud_destroy(void *priv) {
    struct fraud *f = priv;
    if (!f) return;
    for (size_t i = 0; i < f->nparts; i++) sp_fraud_scorer_destroy(f->parts[i].scorer);
    free(f->parts);
    sp_strmap_destroy(f->item_index);
    free(f->items);
    free(f->enc);
    free(f);
}

/* A new scorer for the partition, its Half-Space Trees restored from the
 * last checkpoint if there is one. */
static int fraud_assign(void *priv, int32_t part) {
    struct fraud *f = priv;
    struct fraud_part *p = part_get(f, part);
    sp_fraud_scorer_destroy(p->scorer);
    char err[256];
    p->scorer = sp_fraud_scorer_new(&f->fc, load_model(f, err, sizeof err), err, sizeof err);
    if (!p->scorer) {
        sp_error("fraud: partition %d: %s", (int)part, err);
        return SP_ERR_FATAL;
    }
    p->active = 1;
    sp_obj *o;
    int rc = sp_store_get(f->store, part, "fraudhst", &o);
    if (rc != SP_OK) return rc;
    struct sp_hst *h = sp_fraud_scorer_hst(p->scorer);
    const char *s = sp_obj_get_str(o, "hst");
    if (s) {
        struct sp_hst *tmp = sp_xmalloc(sizeof *tmp);
        if (sp_blob_decode(s, tmp, sizeof *tmp) == SP_OK)
            *h = *tmp;
        else
            sp_warn("fraud: partition %d: Half-Space Trees checkpoint unreadable, starting afresh",
                    (int)part);
        free(tmp);
    }
    p->hst_windows = h->windows;
    return SP_OK;
}

static void fraud_revoke(void *priv, int32_t part) {
    struct fraud *f = priv;
    struct fraud_part *p = part_get(f, part);
    sp_fraud_scorer_destroy(p->scorer);
    p->scorer = NULL;
    p->active = 0;
}

static void user_suffix(char *buf, size_t len, const sp_op_event *e) {
    snprintf(buf, len, "fraud:%s", e->ev->user_id);
}

static void fraud_prefetch(void *priv, const sp_op_event *e) {
    struct fraud *f = priv;
    char key[256];
    user_suffix(key, sizeof key, e);
    sp_store_want(f->store, e->partition, key);
}

static struct sp_fraud_item *item_state(struct fraud *f, const char *item_id) {
    if (!item_id || !*item_id) return NULL;
    size_t len = strlen(item_id);
    int64_t idx;
    if (sp_strmap_get(f->item_index, item_id, len, &idx)) return &f->items[idx];
    if (f->nitems >= MAX_ITEMS) return NULL;
    if (f->nitems == f->capitems) {
        f->capitems = f->capitems ? f->capitems * 2 : 1024;
        f->items = sp_xrealloc(f->items, f->capitems * sizeof *f->items);
    }
    sp_fraud_item_init(&f->items[f->nitems]);
    sp_strmap_put(f->item_index, item_id, len, (int64_t)f->nitems);
    return &f->items[f->nitems++];
}

/* The slot of card `key` in the user's cards: its own, else an empty one,
 * else the least recently used (whose state is forgotten). */
static struct sp_fraud_card *card_slot(struct fraud_cards *c, uint64_t key, int64_t ts) {
    int best = 0;
    for (int i = 0; i < SP_FRAUD_RECENT; i++) {
        if (c->key[i] == key) {
            best = i;
            goto found;
        }
        if (c->key[best] && (!c->key[i] || c->used_ms[i] < c->used_ms[best])) best = i;
    }
    c->key[best] = key;
    sp_fraud_card_init(&c->card[best]);
found:
    if (ts > c->used_ms[best]) c->used_ms[best] = ts;
    return &c->card[best];
}

/* New accounts have no amount history of their own, so the user-relative
 * signals say nothing about a first order of 2,000 in a shop whose orders
 * are 50. For users with fewer than SHOP_PRIOR_ORDERS orders the amount is
 * also compared with the partition's orders (robust EWMA of log amounts):
 * one more signal, noisy-OR'ed into the score (the unsupervised one, or the
 * model's probability when fraud.model is set), with its sentence among the
 * reasons. In memory only: it is relearned within a few hundred orders. */
#define SHOP_PRIOR_ORDERS 3
static const struct sp_ewma_z_opts shop_opts = {
    .alpha = 0.01, .clip = 3, .min_std = 0.25, .rel_std = 0, .warmup = 20};

static void shop_prior(struct fraud_part *p, const struct sp_fraud_user *u, double amount,
                       struct sp_fraud_result *r) {
    double x = log1p(amount > 0 ? amount : 0);
    double z = sp_ewma_z_score(&p->shop_amount, x, &shop_opts);
    sp_ewma_z_update(&p->shop_amount, x, &shop_opts);
    if (u->orders >= SHOP_PRIOR_ORDERS || z <= 0) return;
    double s = sp_anomaly_z_to_score(z), before = r->score;
    r->score = 1.0 - (1.0 - r->score) * (1.0 - s);
    if (s < 0.3) return;
    char why[SP_FRAUD_REASON_LEN];
    snprintf(why, sizeof why, "amount %.2f is %.1f\xcf\x83 above this shop's usual order (little history)",
             amount, z);
    if (r->nreasons < SP_FRAUD_MAX_REASONS) r->nreasons++;
    /* Reasons are strongest first. The combined score is at least its
     * strongest signal, so a signal above it is stronger than all: first;
     * otherwise last (its exact rank among the others is not known here). */
    int at = r->nreasons - 1;
    while (at > 0 && s > before) {
        memcpy(r->reasons[at], r->reasons[at - 1], SP_FRAUD_REASON_LEN);
        at--;
    }
    memcpy(r->reasons[at], why, SP_FRAUD_REASON_LEN);
}

/* Page views of the user's latest SESSIONS sessions, in the field sv as
 * "<session hash>:<views>,..." newest first. Several sessions, not one,
 * because a partition's clicks can run ahead of its orders: by the time an
 * order is scored, the user's next session may have started. add = 1 counts
 * a view; add = 0 just reads. Returns the session's views. */
#define SESSIONS 4
static int session_views(sp_obj *o, const char *session_id, int add) {
    char want[17], rest[SESSIONS * 32] = "";
    snprintf(want, sizeof want, "%016" PRIx64, sp_fraud_hash(session_id));
    long found = 0;
    int kept = 0;
    size_t n = 0;
    for (const char *p = sp_obj_get_str(o, "sv"); p && *p;) {
        char h[17];
        long v;
        int used = 0;
        if (sscanf(p, "%16[0-9a-f]:%ld%n", h, &v, &used) != 2) break;
        p += used + (p[used] == ',');
        if (!strcmp(h, want))
            found = v;
        else if (kept < SESSIONS - 1 && n < sizeof rest) {
            n += (size_t)snprintf(rest + n, sizeof rest - n, ",%s:%ld", h, v);
            kept++;
        }
    }
    if (!add) return (int)found;
    char sv[sizeof rest + 40];
    snprintf(sv, sizeof sv, "%s:%ld%s", want, found + 1, rest);
    sp_obj_set_str(o, "sv", sv);
    return (int)(found + 1);
}

static void copy_code(char *dst, const char *src) {
    snprintf(dst, 4, "%s", src ? src : "");
}

static int64_t now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* Keeps the alert, as JSON, at the head of the Redis list alerts:recent (the
 * latest ALERTS_KEPT), which the dashboard and /api/alerts read. Like the
 * Kafka output it is at-least-once: a batch replayed after a crash can push
 * an alert again, so readers drop repeats by alert_id. */
#define ALERTS_KEPT "99"
static int remember_alert(struct fraud *f, const char *alert_id, const sp_op_event *e,
                          const struct sp_fraud_result *r) {
    const sp_event *ev = e->ev;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "alert_id", alert_id);
    cJSON_AddStringToObject(j, "kind", "order");
    cJSON_AddStringToObject(j, "user_id", ev->user_id);
    cJSON_AddStringToObject(j, "order_id", ev->order->order_id);
    cJSON_AddNumberToObject(j, "score", r->score);
    cJSON_AddNumberToObject(j, "ts_ms", (double)ev->ts_ms);
    cJSON *why = cJSON_AddArrayToObject(j, "reasons");
    for (int i = 0; i < r->nreasons; i++) cJSON_AddItemToArray(why, cJSON_CreateString(r->reasons[i]));
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    const char *push[] = {"LPUSH", "alerts:recent", text};
    const char *trim[] = {"LTRIM", "alerts:recent", "0", ALERTS_KEPT};
    const int argcs[] = {3, 4};
    const char *const *argvs[] = {push, trim};
    int rc = sp_store_side(f->store, 2, argcs, argvs, NULL);
    free(text);
    return rc;
}

static int emit_alert(struct fraud *f, const sp_op_event *e, const struct sp_fraud_result *r) {
    const sp_event *ev = e->ev;
    char alert_id[160];
    snprintf(alert_id, sizeof alert_id, "fa:%s", ev->event_id);
    char *reasons[SP_FRAUD_MAX_REASONS];
    for (int i = 0; i < r->nreasons; i++) reasons[i] = (char *)r->reasons[i];
    Shopstream__V1__FraudAlert a = SHOPSTREAM__V1__FRAUD_ALERT__INIT;
    a.alert_id = alert_id;
    a.user_id = ev->user_id;
    a.order_id = ev->order->order_id;
    a.score = r->score;
    a.reasons = reasons;
    a.n_reasons = (size_t)r->nreasons;
    a.trigger_event_id = ev->event_id;
    a.ts_ms = ev->ts_ms;
    a.kind = "order";
    uint8_t buf[2048];
    size_t size = shopstream__v1__fraud_alert__get_packed_size(&a);
    if (size > sizeof buf) return SP_ERR_FATAL; /* reasons are bounded: cannot happen */
    shopstream__v1__fraud_alert__pack(&a, buf);
    sp_header h = {"content-type", "application/x-protobuf", 22};
    int rc = sp_sink_produce(f->sink, f->topic, ev->user_id, strlen(ev->user_id), buf, size, &h, 1);
    f->metrics->fraud_alerts++;
    if (rc == SP_OK) rc = remember_alert(f, alert_id, e, r);
    if (f->log_alerts) {
        char why[SP_FRAUD_MAX_REASONS * (SP_FRAUD_REASON_LEN + 2)] = "";
        size_t n = 0;
        for (int i = 0; i < r->nreasons && n < sizeof why; i++)
            n += (size_t)snprintf(why + n, sizeof why - n, "%s%s", i ? "; " : "", r->reasons[i]);
        sp_info("fraud alert %s user=%s order=%s score=%.3f reasons: %s", alert_id, ev->user_id,
                ev->order->order_id, r->score, why);
    }
    return rc;
}

static int process_order(struct fraud *f, const sp_op_event *e, sp_obj *o) {
    const sp_event *ev = e->ev;
    const Shopstream__V1__Order *ord = ev->order;
    struct fraud_part *p = part_get(f, e->partition);
    if (!p->scorer) return SP_ERR_FATAL; /* an order of a partition never assigned */

    struct sp_fraud_user user;
    struct fraud_cards cards;
    if (sp_blob_decode(sp_obj_get_str(o, "u"), &user, sizeof user) != SP_OK)
        sp_fraud_user_init(&user);
    if (sp_blob_decode(sp_obj_get_str(o, "cards"), &cards, sizeof cards) != SP_OK)
        memset(&cards, 0, sizeof cards);

    struct sp_fraud_order fo;
    memset(&fo, 0, sizeof fo);
    fo.ts_ms = ev->ts_ms;
    fo.amount = ord->total;
    for (size_t i = 0; i < ord->n_items; i++) fo.quantity += ord->items[i]->quantity;
    fo.unit_price = ord->n_items ? ord->items[0]->unit_price : 0;
    fo.user = hash_or_zero(ev->user_id);
    fo.card = hash_or_zero(ord->card_fingerprint);
    const Shopstream__V1__Context *ctx = ev->context;
    if (ctx) {
        fo.device = hash_or_zero(ctx->device_id);
        fo.ip = hash_or_zero(ctx->ip);
        copy_code(fo.ip_country, ctx->country);
    }
    copy_code(fo.ship_country, ord->shipping_country);
    fo.account_created_ms = sp_obj_get_int(o, "first", 0);
    if (ev->session_id && *ev->session_id && p->click_maxts >= fo.ts_ms)
        fo.session_views = session_views(o, ev->session_id, 0);
    else
        fo.session_views = -1; /* unknown: the clicks have not caught up with the order */

    struct sp_fraud_state st = {
        .user = &user,
        .card = fo.card ? card_slot(&cards, fo.card, fo.ts_ms) : NULL,
        .terminal = NULL,
        .item = item_state(f, ord->n_items ? ord->items[0]->item_id : NULL),
    };
    struct sp_fraud_features feat;
    struct sp_fraud_result res;
    int64_t t0 = now_us();
    sp_fraud_extract(&f->fc, &st, &fo, &feat);
    sp_fraud_score(p->scorer, &feat, &res);
    shop_prior(p, &user, fo.amount, &res);
    res.alert = res.alert || res.score > f->fc.alert_threshold;
    sp_hist_add(&f->metrics->fraud_score_latency, (double)(now_us() - t0));
    f->metrics->fraud_orders++;

    /* Only now does the state learn the order. */
    sp_fraud_update(&f->fc, &st, &fo);
    sp_fraud_scorer_learn(p->scorer, &feat);
    sp_blob_encode(&user, sizeof user, f->enc);
    sp_obj_set_str(o, "u", f->enc);
    sp_blob_encode(&cards, sizeof cards, f->enc);
    sp_obj_set_str(o, "cards", f->enc);

    sp_debug("fraud score %s user=%s amount=%.2f score=%.3f reasons=%d%s%s", ev->event_id,
             ev->user_id, fo.amount, res.score, res.nreasons, res.nreasons ? ": " : "",
             res.nreasons ? res.reasons[0] : "");
    return res.alert ? emit_alert(f, e, &res) : SP_OK;
}

static int fraud_process(void *priv, const sp_op_event *e) {
    struct fraud *f = priv;
    char key[256];
    user_suffix(key, sizeof key, e);
    sp_obj *o;
    int rc = sp_store_get(f->store, e->partition, key, &o);
    if (rc != SP_OK) return rc;
    const sp_event *ev = e->ev;
    /* The earliest event time, whatever the order the topics arrive in. */
    int64_t first = sp_obj_get_int(o, "first", 0);
    if (!first || ev->ts_ms < first) sp_obj_set_int(o, "first", ev->ts_ms);

    if (e->kind <= SP_KIND_SEARCH) {
        struct fraud_part *p = part_get(f, e->partition);
        if (ev->ts_ms > p->click_maxts) p->click_maxts = ev->ts_ms;
    }
    if (e->kind == SP_KIND_VIEW && ev->session_id && *ev->session_id) {
        session_views(o, ev->session_id, 1);
        return SP_OK;
    }
    if (e->kind == SP_KIND_ORDER) return process_order(f, e, o);
    return SP_OK;
}

/* Checkpoints the partition's Half-Space Trees into its commit when a tree
 * window completed since the last checkpoint. */
static int fraud_flush(void *priv, int32_t part) {
    struct fraud *f = priv;
    struct fraud_part *p = part_get(f, part);
    if (!p->scorer) return SP_OK;
    struct sp_hst *h = sp_fraud_scorer_hst(p->scorer);
    if (h->windows == p->hst_windows) return SP_OK;
    sp_obj *o;
    int rc = sp_store_get(f->store, part, "fraudhst", &o);
    if (rc != SP_OK) return rc;
    sp_blob_encode(h, sizeof *h, f->enc);
    sp_obj_set_str(o, "hst", f->enc);
    p->hst_windows = h->windows;
    return SP_OK;
}

const sp_op sp_op_fraud = {
    .name = "fraud",
    .help = "scores orders (EWMA amount, velocity, cards/devices/IPs, rule, HST; optional "
            "logistic model) and emits FraudAlert with reasons",
    .init = fraud_init,
    .prefetch = fraud_prefetch,
    .process = fraud_process,
    .flush = fraud_flush,
    .assign = fraud_assign,
    .revoke = fraud_revoke,
    .destroy = fraud_destroy,
};
