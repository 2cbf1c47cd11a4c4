/* Order fraud: state updates, feature extraction, the unsupervised signals
 * and their words, and the combined scorer. */
#include "models/fraud.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/error.h"

#define MINUTE_MS (60 * 1000LL)
#define HOUR_MS   (60 * MINUTE_MS)
#define DAY_MS    (24 * HOUR_MS)

void sp_fraud_config_default(struct sp_fraud_config *c) {
    c->alert_threshold = 0.5;
    c->rule_small_amount = 1.00;
    c->rule_large_amount = 500.00;
    c->rule_window_ms = MINUTE_MS;
    c->amount_alpha = 0.1;
    c->amount_clip = 3.0;
    c->label_delay_days = 7;
}

uint64_t sp_fraud_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; s && *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h ? h : 1; /* 0 means "unknown" */
}

/* --- windows and recent-sets --- */

static void window_init(struct sp_fraud_window *w) {
    for (int i = 0; i < SP_FRAUD_MAX_BUCKETS; i++) w->bucket[i] = INT64_MIN;
    memset(w->count, 0, sizeof w->count);
    memset(w->sum, 0, sizeof w->sum);
}

static int64_t floordiv(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

static void window_add(struct sp_fraud_window *w, int n, int64_t width, int64_t ts, double amount) {
    int64_t b = floordiv(ts, width);
    int slot = (int)(((b % n) + n) % n);
    if (w->bucket[slot] != b) {
        w->bucket[slot] = b;
        w->count[slot] = 0;
        w->sum[slot] = 0;
    }
    w->count[slot]++;
    w->sum[slot] += (float)amount;
}

/* Count and sum over the n buckets ending with the one holding ts. */
static uint32_t window_get(const struct sp_fraud_window *w, int n, int64_t width, int64_t ts,
                           double *sum) {
    int64_t b = floordiv(ts, width);
    uint32_t c = 0;
    double s = 0;
    for (int i = 0; i < n; i++)
        if (w->bucket[i] > b - n && w->bucket[i] <= b) {
            c += w->count[i];
            s += w->sum[i];
        }
    if (sum) *sum = s;
    return c;
}

/* Distinct keys seen since ts - span, counting key as seen now. */
static uint32_t recent_distinct(const struct sp_fraud_recent *r, uint64_t key, int64_t ts,
                                int64_t span) {
    uint32_t n = key != 0;
    for (int i = 0; i < SP_FRAUD_RECENT; i++)
        if (r->key[i] && r->key[i] != key && r->ts_ms[i] > ts - span) n++;
    return n;
}

/* Remembers key as seen at ts: refreshes it if present, else takes an empty
 * slot, else evicts the least recently seen key. */
static void recent_add(struct sp_fraud_recent *r, uint64_t key, int64_t ts) {
    if (!key) return;
    int slot = -1, oldest = 0;
    for (int i = 0; i < SP_FRAUD_RECENT && slot < 0; i++)
        if (r->key[i] == key) slot = i;
    for (int i = 0; i < SP_FRAUD_RECENT && slot < 0; i++)
        if (!r->key[i]) slot = i;
    if (slot < 0) {
        for (int i = 1; i < SP_FRAUD_RECENT; i++)
            if (r->ts_ms[i] < r->ts_ms[oldest]) oldest = i;
        slot = oldest;
        r->ts_ms[slot] = INT64_MIN;
    }
    if (r->key[slot] != key) r->ts_ms[slot] = INT64_MIN;
    r->key[slot] = key;
    if (ts > r->ts_ms[slot]) r->ts_ms[slot] = ts;
}

/* --- state --- */

void sp_fraud_user_init(struct sp_fraud_user *u) {
    memset(u, 0, sizeof *u);
    sp_ewma_z_init(&u->amount);
    sp_ewma_z_init(&u->quantity);
    window_init(&u->w10m);
    window_init(&u->w1h);
    window_init(&u->w1d);
    window_init(&u->w30d);
    window_init(&u->frauds30d);
    window_init(&u->x5_14d);
    window_init(&u->ev14d);
}

void sp_fraud_card_init(struct sp_fraud_card *c) { memset(c, 0, sizeof *c); }

void sp_fraud_terminal_init(struct sp_fraud_terminal *t) {
    memset(t, 0, sizeof *t);
    for (int i = 0; i < SP_FRAUD_TERM_DAYS; i++) t->day[i] = INT64_MIN;
}

void sp_fraud_item_init(struct sp_fraud_item *i) { sp_ewma_z_init(&i->price); }

static int term_slot(struct sp_fraud_terminal *t, int64_t day) {
    int slot = (int)(((day % SP_FRAUD_TERM_DAYS) + SP_FRAUD_TERM_DAYS) % SP_FRAUD_TERM_DAYS);
    if (t->day[slot] != day) {
        if (t->day[slot] > day) return -1; /* older than the ring: forget it */
        t->day[slot] = day;
        t->tx[slot] = t->labelled[slot] = t->fraud[slot] = 0;
    }
    return slot;
}

void sp_fraud_terminal_label(struct sp_fraud_terminal *t, int64_t tx_ts_ms, int fraud) {
    int slot = term_slot(t, floordiv(tx_ts_ms, DAY_MS));
    if (slot < 0) return;
    t->labelled[slot]++;
    t->fraud[slot] += fraud != 0;
    t->fraud_streak = fraud ? t->fraud_streak + 1 : 0;
}

void sp_fraud_user_label(struct sp_fraud_user *u, int64_t tx_ts_ms, int fraud) {
    if (fraud) window_add(&u->frauds30d, 30, DAY_MS, tx_ts_ms, 1.0);
}

/* Transactions and known frauds at t for tx days in (horizon - w, horizon]. */
static void term_window(const struct sp_fraud_terminal *t, int64_t horizon, int w, uint32_t *tx,
                        uint32_t *fraud) {
    *tx = *fraud = 0;
    for (int i = 0; i < SP_FRAUD_TERM_DAYS; i++)
        if (t->day[i] > horizon - w && t->day[i] <= horizon) {
            *tx += t->tx[i];
            *fraud += t->fraud[i];
        }
}

static struct sp_ewma_z_opts amount_opts(const struct sp_fraud_config *c) {
    return (struct sp_ewma_z_opts){
        .alpha = c->amount_alpha, .clip = c->amount_clip, .min_std = 1.0, .rel_std = 0.1, .warmup = 3};
}

static const struct sp_ewma_z_opts quantity_opts = {
    .alpha = 0.1, .clip = 3.0, .min_std = 1.0, .rel_std = 0.1, .warmup = 3};
static const struct sp_ewma_z_opts price_opts = {
    .alpha = 0.05, .clip = 3.0, .min_std = 0.01, .rel_std = 0.02, .warmup = 3};

int sp_fraud_rule_check(const struct sp_fraud_config *c, const struct sp_fraud_card *card,
                        const struct sp_fraud_order *o) {
    return card && card->small_ts_ms != 0 && o->amount > c->rule_large_amount &&
           o->ts_ms - card->small_ts_ms < c->rule_window_ms && o->ts_ms >= card->small_ts_ms;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static double median(float *v, uint32_t n) {
    qsort(v, n, sizeof *v, cmp_float);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Median and scaled MAD of the user's last amounts: unlike the EWMA, a
 * compromised card's run of inflated amounts (a third of them, say) moves
 * neither, so the fifth fraud stands out as much as the first. */
static int amount_median(const struct sp_fraud_user *u, double *med, double *mad) {
    uint32_t n = u->last_n < SP_FRAUD_LAST_AMOUNTS ? u->last_n : SP_FRAUD_LAST_AMOUNTS;
    if (n < 3) return 0;
    float v[SP_FRAUD_LAST_AMOUNTS];
    memcpy(v, u->last_amounts, n * sizeof *v);
    *med = median(v, n);
    for (uint32_t i = 0; i < n; i++) v[i] = (float)fabs(v[i] - *med);
    *mad = 1.4826 * median(v, n);
    return 1;
}

static float lg(double x) { return (float)log(x > 0 ? x : 1e-9); }

/* Mean and spread of the user's clean amounts; 0 while there are fewer than
 * SP_FRAUD_CLEAN_MIN. The spread is the sample standard deviation, floored at
 * a tenth of the mean and at 0.5 so that a few equal amounts do not make
 * every other one infinitely unlikely. */
static int clean_baseline(const struct sp_fraud_user *u, double *mean, double *sd) {
    if (u->clean_n < SP_FRAUD_CLEAN_MIN) return 0;
    double n = u->clean_n, m = u->clean_sum / n;
    double var = (u->clean_sumsq - n * m * m) / (n - 1);
    *mean = m;
    *sd = fmax(sqrt(var > 0 ? var : 0), fmax(0.1 * fabs(m), 0.5));
    return 1;
}

/* log p(amount | a usual amount times 5) - log p(amount | a usual amount),
 * usual amounts ~ N(mean, sd): the 1/5 is the Jacobian of x -> x/5. */
static double x5_llr(double amount, double mean, double sd) {
    double a = amount - mean, b = amount / 5.0 - mean;
    double llr = (a * a - b * b) / (2 * sd * sd) - log(5.0);
    return llr < -10 ? -10 : llr > 30 ? 30 : llr;
}

/* What one amount with this x5_llr adds to the compromise evidence. */
static double x5_evidence_term(double llr) {
    double q = SP_FRAUD_X5_SHARE;
    return log(1 - q + q * exp(fmin(llr, SP_FRAUD_X5_EV_CAP)));
}

/* log-odds that an amount with this llr is an inflated one, given the
 * compromise evidence of the earlier amounts: with pc = P(compromised),
 * P(inflated | x) = pc q p5(x) / (pc (1 - q + q e^llr) + 1 - pc) p(x)). */
static double x5_posterior(double llr, double evidence) {
    double q = SP_FRAUD_X5_SHARE;
    double lc = log(SP_FRAUD_X5_PRIOR / (1 - SP_FRAUD_X5_PRIOR)) + evidence;
    double pc = 1 / (1 + exp(-lc));
    double num = pc * q * exp(llr), den = pc * (1 - q) + (1 - pc);
    return log(num / den);
}

/* Reads every piece of state the order touches into a fixed feature vector.
 * Counts are of the orders before this one (the state has not learned it
 * yet), except the distinct cards/devices/IPs, which include this order's
 * own: "2 cards in 10 minutes" is what a reader expects to see. */
void sp_fraud_extract(const struct sp_fraud_config *c, const struct sp_fraud_state *st,
                      const struct sp_fraud_order *o, struct sp_fraud_features *f) {
    memset(f, 0, sizeof *f);
    int64_t ts = o->ts_ms;
    f->amount = o->amount;
    f->v[SP_FF_LOG_AMOUNT] = (float)log1p(o->amount > 0 ? o->amount : 0);
    const struct sp_fraud_user *u = st->user;
    if (u && u->orders > 0) {
        double s30, s1;
        struct sp_ewma_z_opts ao = amount_opts(c);
        f->amount_z = sp_ewma_z_score(&u->amount, o->amount, &ao);
        f->v[SP_FF_AMOUNT_Z] = (float)f->amount_z;
        uint32_t n30 = window_get(&u->w30d, 30, DAY_MS, ts, &s30);
        uint32_t n1 = window_get(&u->w1d, 24, HOUR_MS, ts, &s1);
        f->v[SP_FF_AMOUNT_RATIO] = n30 ? lg((o->amount + 1) / (s30 / n30 + 1)) : 0;
        f->v[SP_FF_AMOUNT_1D_RATIO] = n1 ? lg((o->amount + 1) / (s1 / n1 + 1)) : 0;
        double med, mad;
        if (amount_median(u, &med, &mad)) {
            double floor = fmax(1.0, 0.1 * med);
            f->amount_median = med;
            f->amount_med_z = (o->amount - med) / fmax(mad, floor);
            f->v[SP_FF_AMOUNT_MED_Z] = (float)f->amount_med_z;
            f->v[SP_FF_AMOUNT_MED_RATIO] = lg((o->amount + 1) / (med + 1));
        }
        double cm, csd;
        f->x5_recent_14d = window_get(&u->x5_14d, 14, DAY_MS, ts, NULL);
        f->v[SP_FF_X5_RECENT_14D] = (float)log1p(f->x5_recent_14d);
        if (clean_baseline(u, &cm, &csd)) {
            f->clean_mean = cm;
            f->x5_llr = x5_llr(o->amount, cm, csd);
            f->v[SP_FF_X5_LLR] = (float)f->x5_llr;
            f->v[SP_FF_CLEAN_RATIO] = lg((o->amount + 1) / (cm + 1));
            if (f->x5_recent_14d) f->v[SP_FF_X5_LLR_RECENT] = (float)f->x5_llr;
            window_get(&u->ev14d, 14, DAY_MS, ts, &f->x5_evidence);
            f->v[SP_FF_X5_EVIDENCE] = (float)f->x5_evidence;
            f->v[SP_FF_X5_POSTERIOR] = (float)x5_posterior(f->x5_llr, f->x5_evidence);
        }
        f->tx_10m = window_get(&u->w10m, 10, MINUTE_MS, ts, NULL);
        f->tx_1h = window_get(&u->w1h, 12, 5 * MINUTE_MS, ts, NULL);
        f->v[SP_FF_TX_10M] = (float)f->tx_10m;
        f->v[SP_FF_TX_1H] = (float)f->tx_1h;
        f->v[SP_FF_TX_1D] = (float)n1;
        f->v[SP_FF_TX_30D] = (float)log1p(n30);
        if (o->quantity) {
            f->quantity_z = sp_ewma_z_score(&u->quantity, o->quantity, &quantity_opts);
            f->v[SP_FF_QUANTITY_Z] = (float)f->quantity_z;
        }
    } else {
        f->v[SP_FF_FIRST_ORDER] = 1;
    }
    double la = o->amount > 0 ? log(o->amount) : 0;
    f->v[SP_FF_AMOUNT_OVER_100] = (float)fmax(0, la - log(100));
    f->v[SP_FF_AMOUNT_OVER_200] = (float)fmax(0, la - log(200));
    f->v[SP_FF_AMOUNT_OVER_500] = (float)fmax(0, la - log(500));
    f->v[SP_FF_AMOUNT_Z_OVER_3] = (float)fmax(0, f->amount_z - 3);
    if (u) {
        f->user_frauds_30d = window_get(&u->frauds30d, 30, DAY_MS, ts, NULL);
        f->v[SP_FF_USER_FRAUD_30D] = (float)log1p(f->user_frauds_30d);
        f->cards_10m = recent_distinct(&u->cards, o->card, ts, 10 * MINUTE_MS);
        f->devices_1d = recent_distinct(&u->devices, o->device, ts, DAY_MS);
        f->ips_1d = recent_distinct(&u->ips, o->ip, ts, DAY_MS);
        f->v[SP_FF_CARDS_10M] = (float)f->cards_10m;
        f->v[SP_FF_DEVICES_1D] = (float)f->devices_1d;
        f->v[SP_FF_IPS_1D] = (float)f->ips_1d;
        int64_t born = o->account_created_ms ? o->account_created_ms
                       : u->first_seen_ms    ? u->first_seen_ms
                                             : ts;
        f->account_age_days = (double)(ts - born) / (double)DAY_MS;
        if (f->account_age_days < 0) f->account_age_days = 0;
        f->v[SP_FF_ACCOUNT_AGE] = (float)log1p(f->account_age_days);
    }
    f->v[SP_FF_NO_VIEWS] = o->session_views == 0;
    memcpy(f->ship_country, o->ship_country, sizeof f->ship_country);
    memcpy(f->ip_country, o->ip_country, sizeof f->ip_country);
    f->ship_country[3] = f->ip_country[3] = '\0';
    f->v[SP_FF_COUNTRY_MISMATCH] =
        f->ship_country[0] && f->ip_country[0] && strcmp(f->ship_country, f->ip_country) != 0;
    if (st->item && o->unit_price > 0 && st->item->price.n >= price_opts.warmup &&
        st->item->price.mean > 0) {
        f->price_ratio = o->unit_price / st->item->price.mean;
        f->v[SP_FF_PRICE_RATIO] = lg(f->price_ratio);
    }
    if (st->terminal) {
        static const int wins[3] = {1, 7, 30};
        int64_t horizon = floordiv(ts, DAY_MS) - c->label_delay_days;
        for (int k = 0; k < 3; k++) {
            uint32_t tx, fr;
            term_window(st->terminal, horizon, wins[k], &tx, &fr);
            f->v[SP_FF_TERM_RISK_1D + k] = tx ? (float)fr / (float)tx : 0;
            f->v[SP_FF_TERM_TX_1D + k] = (float)log1p(tx);
            if (k > 0) f->v[SP_FF_TERM_FRAUDS_7D + k - 1] = (float)log1p(fr);
            if (k == 1) {
                f->term_risk_7d = tx ? (double)fr / tx : 0;
                f->term_labelled_7d = tx;
            }
        }
    }
    if (st->terminal) {
        f->v[SP_FF_TERM_STREAK] = (float)log1p(st->terminal->fraud_streak);
        f->v[SP_FF_TERM_STREAK_2] = st->terminal->fraud_streak >= 2;
        uint32_t tx, fr;
        int64_t today = floordiv(ts, DAY_MS);
        term_window(st->terminal, today, c->label_delay_days, &tx, &fr);
        f->v[SP_FF_TERM_FRESH_FRAUDS] = (float)log1p(fr);
    }
    if (st->card) {
        f->card_users_1d = recent_distinct(&st->card->users, o->user, ts, DAY_MS);
        f->v[SP_FF_CARD_USERS_1D] = (float)f->card_users_1d;
    }
    if (sp_fraud_rule_check(c, st->card, o)) {
        f->v[SP_FF_RULE] = 1;
        f->rule_small_amount = st->card->small_amount;
        f->rule_gap_ms = ts - st->card->small_ts_ms;
    }
}

/* Flink's FraudDetector, as state: any tx clears a pending small one (the
 * large tx must follow the small one directly), then a small tx becomes the
 * pending one; the timer is the ts comparison in sp_fraud_rule_check. */
void sp_fraud_update(const struct sp_fraud_config *c, const struct sp_fraud_state *st,
                     const struct sp_fraud_order *o) {
    int64_t ts = o->ts_ms;
    struct sp_fraud_user *u = st->user;
    if (u) {
        if (!u->first_seen_ms) u->first_seen_ms = ts;
        u->orders++;
        struct sp_ewma_z_opts ao = amount_opts(c);
        sp_ewma_z_update(&u->amount, o->amount, &ao);
        if (o->quantity) sp_ewma_z_update(&u->quantity, o->quantity, &quantity_opts);
        window_add(&u->w10m, 10, MINUTE_MS, ts, o->amount);
        window_add(&u->w1h, 12, 5 * MINUTE_MS, ts, o->amount);
        window_add(&u->w1d, 24, HOUR_MS, ts, o->amount);
        window_add(&u->w30d, 30, DAY_MS, ts, o->amount);
        double cm, csd;
        int base = clean_baseline(u, &cm, &csd);
        double llr = base ? x5_llr(o->amount, cm, csd) : 0;
        if (!base || llr <= SP_FRAUD_X5_SUSPECT) {
            u->clean_n++;
            u->clean_sum += o->amount;
            u->clean_sumsq += o->amount * o->amount;
        } else {
            window_add(&u->x5_14d, 14, DAY_MS, ts, o->amount);
        }
        if (base) window_add(&u->ev14d, 14, DAY_MS, ts, x5_evidence_term(llr));
        u->last_amounts[u->last_n % SP_FRAUD_LAST_AMOUNTS] = (float)o->amount;
        u->last_n++;
        recent_add(&u->cards, o->card, ts);
        recent_add(&u->devices, o->device, ts);
        recent_add(&u->ips, o->ip, ts);
    }
    if (st->card) {
        struct sp_fraud_card *cd = st->card;
        cd->small_ts_ms = 0;
        if (o->amount < c->rule_small_amount) {
            cd->small_ts_ms = ts ? ts : 1;
            cd->small_amount = o->amount;
        }
        recent_add(&cd->users, o->user, ts);
    }
    if (st->terminal) {
        int slot = term_slot(st->terminal, floordiv(ts, DAY_MS));
        if (slot >= 0) st->terminal->tx[slot]++;
    }
    if (st->item && o->unit_price > 0) sp_ewma_z_update(&st->item->price, o->unit_price, &price_opts);
}

static const char *const feature_names[SP_FF__COUNT] = {
    "log_amount",   "amount_z",       "amount_ratio_30d", "first_order",  "tx_10m",
    "tx_1h",        "tx_1d",          "log_tx_30d",       "amount_ratio_1d", "cards_10m",
    "devices_1d",   "ips_1d",         "log_account_age",  "no_views",     "country_mismatch",
    "quantity_z",   "log_price_ratio", "term_risk_1d",    "term_risk_7d", "term_risk_30d",
    "term_log_tx_1d", "term_log_tx_7d", "term_log_tx_30d", "rule",        "user_frauds_30d",
    "amount_over_100", "amount_over_200", "amount_over_500", "amount_z_over_3",
    "term_frauds_7d", "term_frauds_30d", "amount_median_z", "amount_median_ratio", "card_users_1d",
    "x5_llr", "clean_amount_ratio", "x5_recent_14d", "x5_llr_if_recent", "x5_evidence", "x5_posterior", "term_fraud_streak",
    "term_fraud_streak_2", "term_fresh_frauds", "hst",
    "unsup"};

const char *sp_fraud_feature_name(int i) {
    return i >= 0 && i < SP_FF__COUNT ? feature_names[i] : "?";
}

/* --- scorer --- */

#define HST_DIM 8

struct sp_fraud_scorer {
    struct sp_fraud_config cfg;
    sp_logreg *model; /* NULL: unsupervised only */
    struct sp_hst hst;
};

sp_fraud_scorer *sp_fraud_scorer_new(const struct sp_fraud_config *c, sp_logreg *model, char *err,
                                     size_t errlen) {
    if (model && sp_logreg_dim(model) != SP_FF__COUNT) {
        snprintf(err, errlen, "fraud model has %zu features, this build computes %d",
                 sp_logreg_dim(model), SP_FF__COUNT);
        sp_logreg_destroy(model);
        return NULL;
    }
    sp_fraud_scorer *s = sp_xcalloc(1, sizeof *s);
    s->cfg = *c;
    s->model = model;
    sp_hst_init(&s->hst, 25, 8, HST_DIM, 1000, 0x5eed);
    return s;
}

void sp_fraud_scorer_destroy(sp_fraud_scorer *s) {
    if (!s) return;
    sp_logreg_destroy(s->model);
    free(s);
}

static float squash(double x, double scale) { return (float)(0.5 + 0.5 * tanh(x / scale)); }

/* The Half-Space Trees see a squashed copy of the behavioural features, each
 * mapped into [0,1] with a scale at which its usual values spread out. */
static void hst_input(const struct sp_fraud_features *f, float *x) {
    x[0] = (float)(f->v[SP_FF_LOG_AMOUNT] / 10.0);
    x[1] = squash(f->v[SP_FF_AMOUNT_Z], 4);
    x[2] = squash(f->v[SP_FF_AMOUNT_RATIO], 1);
    x[3] = f->v[SP_FF_TX_1D] / (f->v[SP_FF_TX_1D] + 5.0f);
    x[4] = f->v[SP_FF_TX_10M] / (f->v[SP_FF_TX_10M] + 2.0f);
    x[5] = f->v[SP_FF_TERM_RISK_7D];
    x[6] = (float)(f->v[SP_FF_ACCOUNT_AGE] / 5.0);
    x[7] = squash(f->v[SP_FF_QUANTITY_Z], 4);
}

struct signal {
    double s;
    char why[SP_FRAUD_REASON_LEN];
};

static int cmp_signal(const void *a, const void *b) {
    double x = ((const struct signal *)a)->s, y = ((const struct signal *)b)->s;
    return (x < y) - (x > y);
}

static double count_score(double n, double free) { return n > free ? 1.0 - free / n : 0.0; }

/* Each signal is a score in [0,1] with its sentence; the unsupervised score
 * is their noisy-OR (1 - prod(1 - s)), so one strong signal or several
 * moderate ones raise it. Reasons are the signals of at least 0.3,
 * strongest first. */
static int signals(const struct sp_fraud_config *c, const struct sp_fraud_features *f,
                   double hst, struct signal *sig) {
    int n = 0;
#define SIG(score, ...)                                              \
    do {                                                             \
        sig[n].s = (score);                                          \
        snprintf(sig[n].why, SP_FRAUD_REASON_LEN, __VA_ARGS__);      \
        n++;                                                         \
    } while (0)
    if (f->v[SP_FF_RULE] > 0)
        SIG(1.0, "%.2f then %.2f on the same card within %.0f s (small-then-large rule)",
            f->rule_small_amount, f->amount, (double)c->rule_window_ms / 1000.0);
    if (f->amount_z > 0) {
        char buf[SP_FRAUD_REASON_LEN];
        sp_anomaly_z_reason(buf, sizeof buf, "amount", f->amount_z, "this user's");
        SIG(sp_anomaly_z_to_score(f->amount_z), "%s", buf);
    }
    if (f->amount_med_z > 0 && f->amount_median > 0)
        SIG(sp_anomaly_z_to_score(f->amount_med_z), "amount %.1f times this user's median of %.2f",
            f->amount / f->amount_median, f->amount_median);
    SIG(count_score(f->tx_10m + 1, 2), "%u orders in 10 minutes", f->tx_10m + 1);
    SIG(count_score(f->tx_1h + 1, 5) * 0.8, "%u orders in 1 hour", f->tx_1h + 1);
    SIG(count_score(f->cards_10m, 1), "%u cards in 10 minutes", f->cards_10m);
    SIG(count_score(f->card_users_1d, 1) * 0.8, "card used by %u accounts in 1 day",
        f->card_users_1d);
    SIG(count_score(f->devices_1d, 2) * 0.7, "%u devices in 1 day", f->devices_1d);
    SIG(count_score(f->ips_1d, 3) * 0.6, "%u IP addresses in 1 day", f->ips_1d);
    if (f->term_labelled_7d >= 3)
        SIG(f->term_risk_7d, "terminal: %.0f%% of its %u labelled transactions in 7 days were fraud",
            100 * f->term_risk_7d, f->term_labelled_7d);
    if (f->user_frauds_30d > 0)
        SIG(0.5, "%u confirmed frauds on this account in 30 days", f->user_frauds_30d);
    if (f->quantity_z > 0) {
        char buf[SP_FRAUD_REASON_LEN];
        sp_anomaly_z_reason(buf, sizeof buf, "quantity", f->quantity_z, "this user's");
        SIG(sp_anomaly_z_to_score(f->quantity_z) * 0.7, "%s", buf);
    }
    if (f->price_ratio > 0) {
        double lr = fabs(log(f->price_ratio));
        SIG(lr > log(1.5) ? 1 - exp(-lr) : 0, "unit price %.0f%% %s the item's recent price",
            100 * fabs(f->price_ratio - 1), f->price_ratio >= 1 ? "above" : "below");
    }
    if (f->v[SP_FF_COUNTRY_MISMATCH] > 0)
        SIG(0.3, "ships to %s, IP in %s", f->ship_country, f->ip_country);
    if (f->v[SP_FF_NO_VIEWS] > 0) SIG(0.3, "no views in the session before ordering");
    if (f->v[SP_FF_FIRST_ORDER] == 0 || f->account_age_days > 0) {
        if (f->account_age_days < 1.0 / 24)
            SIG(0.3, "account %.0f minutes old", f->account_age_days * 24 * 60);
        else if (f->account_age_days < 1)
            SIG(0.2, "account %.0f hours old", f->account_age_days * 24);
    }
    SIG(hst > 0.8 ? (hst - 0.8) / 0.2 * 0.6 : 0, "unusual combination of amount, velocity and "
                                                  "terminal (Half-Space Trees %.2f)", hst);
#undef SIG
    return n;
}

void sp_fraud_score(sp_fraud_scorer *s, struct sp_fraud_features *f, struct sp_fraud_result *r) {
    float x[HST_DIM];
    struct signal sig[24];
    hst_input(f, x);
    double hst = sp_hst_score(&s->hst, x);
    int n = signals(&s->cfg, f, hst, sig);
    double keep = 1.0;
    for (int i = 0; i < n; i++) keep *= 1.0 - (sig[i].s < 0 ? 0 : sig[i].s > 1 ? 1 : sig[i].s);
    memset(r, 0, sizeof *r);
    r->unsup = 1.0 - keep;
    f->v[SP_FF_HST] = (float)hst;
    f->v[SP_FF_UNSUP] = (float)r->unsup;
    r->score = s->model ? sp_logreg_predict(s->model, f->v) : r->unsup;
    r->alert = r->score > s->cfg.alert_threshold || f->v[SP_FF_RULE] > 0;
    qsort(sig, (size_t)n, sizeof sig[0], cmp_signal);
    for (int i = 0; i < n && r->nreasons < SP_FRAUD_MAX_REASONS; i++)
        if (sig[i].s >= 0.3) memcpy(r->reasons[r->nreasons++], sig[i].why, SP_FRAUD_REASON_LEN);
}

void sp_fraud_scorer_learn(sp_fraud_scorer *s, const struct sp_fraud_features *f) {
    float x[HST_DIM];
    hst_input(f, x);
    sp_hst_update(&s->hst, x);
}

struct sp_hst *sp_fraud_scorer_hst(sp_fraud_scorer *s) { return &s->hst; }

/* --- metrics --- */

struct scored {
    double s;
    uint8_t y;
};

static int cmp_desc(const void *a, const void *b) {
    double x = ((const struct scored *)a)->s, y = ((const struct scored *)b)->s;
    return (x < y) - (x > y);
}

static struct scored *sorted_desc(const double *score, const uint8_t *label, size_t n) {
    struct scored *v = sp_xmalloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = (struct scored){score[i], label[i] != 0};
    qsort(v, n, sizeof *v, cmp_desc);
    return v;
}

/* Walks tie groups from the top: each positive in a group beats every
 * negative below the group and half of the negatives inside it. */
double sp_metric_auc(const double *score, const uint8_t *label, size_t n) {
    struct scored *v = sorted_desc(score, label, n);
    double pos = 0, neg = 0, area = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        double gp = 0, gn = 0;
        while (j < n && v[j].s == v[i].s) {
            gp += v[j].y;
            gn += !v[j].y;
            j++;
        }
        area += gn * (pos + gp / 2); /* negatives here lose to positives above and half of these */
        pos += gp;
        neg += gn;
        i = j;
    }
    free(v);
    return pos > 0 && neg > 0 ? area / (pos * neg) : 0.5;
}

double sp_metric_ap(const double *score, const uint8_t *label, size_t n) {
    struct scored *v = sorted_desc(score, label, n);
    double total = 0, tp = 0, seen = 0, ap = 0;
    for (size_t i = 0; i < n; i++) total += v[i].y;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        double gp = 0;
        while (j < n && v[j].s == v[i].s) gp += v[j++].y;
        seen += (double)(j - i);
        tp += gp;
        if (gp > 0) ap += (gp / total) * (tp / seen);
        i = j;
    }
    free(v);
    return total > 0 ? ap : 0;
}

struct cust {
    int32_t id;
    double s;
    uint8_t y;
};

static int cmp_cust(const void *a, const void *b) {
    const struct cust *x = a, *y = b;
    if (x->s != y->s) return (x->s < y->s) - (x->s > y->s);
    return (x->id > y->id) - (x->id < y->id);
}

static int cmp_cust_id(const void *a, const void *b) {
    const struct cust *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

static int in_sorted(const int32_t *v, size_t n, int32_t id) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v[mid] == id) return 1;
        if (v[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Days are processed in increasing order whatever the input order. Ties in
 * score are broken by customer id so that the figure is reproducible. */
double sp_metric_card_precision(const int32_t *day, const int32_t *customer, const double *score,
                                const uint8_t *label, size_t n, size_t k, int remove_detected) {
    if (n == 0 || k == 0) return 0;
    int32_t dmin = day[0], dmax = day[0];
    for (size_t i = 1; i < n; i++) {
        if (day[i] < dmin) dmin = day[i];
        if (day[i] > dmax) dmax = day[i];
    }
    struct cust *c = sp_xmalloc(n * sizeof *c);
    int32_t *detected = sp_xmalloc(n * sizeof *detected);
    size_t ndet = 0, days = 0;
    double sum = 0;
    for (int32_t d = dmin; d <= dmax; d++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (day[i] == d && !(remove_detected && in_sorted(detected, ndet, customer[i])))
                c[m++] = (struct cust){customer[i], score[i], label[i] != 0};
        if (m == 0) continue;
        qsort(c, m, sizeof *c, cmp_cust_id); /* merge each customer's rows */
        size_t u = 0;
        for (size_t i = 0; i < m; i++) {
            if (u > 0 && c[u - 1].id == c[i].id) {
                if (c[i].s > c[u - 1].s) c[u - 1].s = c[i].s;
                c[u - 1].y |= c[i].y;
            } else {
                c[u++] = c[i];
            }
        }
        qsort(c, u, sizeof *c, cmp_cust);
        size_t top = u < k ? u : k, hit = 0;
        for (size_t i = 0; i < top; i++) {
            if (!c[i].y) continue;
            hit++;
            detected[ndet++] = c[i].id;
        }
        qsort(detected, ndet, sizeof *detected, cmp_i32);
        sum += (double)hit / (double)k;
        days++;
    }
    free(c);
    free(detected);
    return days ? sum / (double)days : 0;
}
