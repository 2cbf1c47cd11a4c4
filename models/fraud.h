#ifndef MODELS_FRAUD_H
#define MODELS_FRAUD_H

/* Order fraud: per-entity state, the feature extractor, the scorer and the
 * reasons in words.
 *
 * State is kept per user, per card, per terminal (merchant) and per item, as
 * plain fixed-size structs without pointers: the fraud operator stores them
 * as bytes under the partition's Redis keys (exactly-once with the offsets),
 * except the item and terminal state, which are shared (at-least-once).
 *
 * The stream contract: for each order, sp_fraud_extract() reads the state,
 * sp_fraud_score() scores the features, and only then sp_fraud_update()
 * learns from the order. Labels (confirmed fraud, chargebacks) reach the
 * terminal and user state through sp_fraud_terminal_label() and
 * sp_fraud_user_label() whenever they become known, typically days later;
 * features use only labels older than label_delay_days. */
#include <stddef.h>
#include <stdint.h>

#include "models/anomaly.h"
#include "models/logreg.h"

/* --- Configuration --- */
struct sp_fraud_config {
    double alert_threshold;    /* alert when the combined score is above; 0.5 */
    double rule_small_amount;  /* Flink walkthrough rule: a tx below this ... 1.00 */
    double rule_large_amount;  /* ... then one above this on the same card ... 500.00 */
    int64_t rule_window_ms;    /* ... strictly within this time. 60000 */
    double amount_alpha;       /* EWMA weight of the newest amount; 0.1 */
    double amount_clip;        /* amounts learn clipped at mean +- this many sigmas; 3 */
    int label_delay_days;      /* labels younger than this are not used; 7 */
};
void sp_fraud_config_default(struct sp_fraud_config *c);

/* --- Bucketed sliding-window counters ---
 * A ring of n buckets of width w: count and amount sum of the last n*w
 * milliseconds (the current bucket included, at bucket granularity). */
#define SP_FRAUD_MAX_BUCKETS 32
struct sp_fraud_window {
    int64_t bucket[SP_FRAUD_MAX_BUCKETS]; /* absolute bucket index held in each slot */
    uint32_t count[SP_FRAUD_MAX_BUCKETS];
    float sum[SP_FRAUD_MAX_BUCKETS];
};

/* The last few distinct values (cards, devices, IPs) with when last seen. */
#define SP_FRAUD_RECENT 8
struct sp_fraud_recent {
    uint64_t key[SP_FRAUD_RECENT]; /* hashes; 0 = empty slot */
    int64_t ts_ms[SP_FRAUD_RECENT];
};

/* --- Per-entity state --- */
#define SP_FRAUD_LAST_AMOUNTS 16
struct sp_fraud_user {
    int64_t first_seen_ms; /* 0: never seen */
    uint32_t orders;
    struct sp_ewma_z amount;
    struct sp_ewma_z quantity;
    struct sp_fraud_window w10m; /* 10 x 1 minute */
    struct sp_fraud_window w1h;  /* 12 x 5 minutes */
    struct sp_fraud_window w1d;  /* 24 x 1 hour */
    struct sp_fraud_window w30d; /* 30 x 1 day */
    struct sp_fraud_recent cards, devices, ips;
    struct sp_fraud_window frauds30d; /* known frauds by tx day, 30 x 1 day */
    float last_amounts[SP_FRAUD_LAST_AMOUNTS]; /* ring of the latest amounts, for the median */
    uint32_t last_n;                           /* amounts ever put in the ring */
    /* The "clean" amount baseline: count, sum and sum of squares of the
     * amounts that did not look inflated when they came (x5 log-likelihood
     * ratio <= SP_FRAUD_X5_SUSPECT against the baseline of the time; every amount while the
     * baseline has fewer than SP_FRAUD_CLEAN_MIN). Inflated amounts on a
     * compromised card therefore never move it. */
    double clean_n, clean_sum, clean_sumsq;
    struct sp_fraud_window x5_14d; /* amounts that looked inflated, 14 x 1 day */
    struct sp_fraud_window ev14d;  /* every amount, its sum = compromise evidence (below) */
};
#define SP_FRAUD_CLEAN_MIN 3
/* An amount whose x5 log-likelihood ratio is above this "looks inflated":
 * it stays out of the clean baseline and counts in x5_14d. */
#define SP_FRAUD_X5_SUSPECT 3.0
/* The compromised-card threat model behind x5_evidence and x5_posterior (the
 * fraud handbook's scenario 3): a card is compromised with prior probability
 * SP_FRAUD_X5_PRIOR, and then a share SP_FRAUD_X5_SHARE of its amounts are
 * usual amounts times 5. Each amount adds log(1 - q + q e^llr) to the
 * evidence that the card is compromised (llr: its x5 log-likelihood ratio,
 * capped at SP_FRAUD_X5_EV_CAP so one outlier cannot decide alone). */
#define SP_FRAUD_X5_PRIOR  0.01
#define SP_FRAUD_X5_SHARE  (1.0 / 3.0)
#define SP_FRAUD_X5_EV_CAP 10.0

struct sp_fraud_card {
    int64_t small_ts_ms; /* time of a pending "small" tx; 0 = none (Flink's flag + timer) */
    double small_amount; /* its amount, for the reason */
    struct sp_fraud_recent users; /* accounts that used the card lately */
};

/* Per terminal (merchant): every tx by day, and the labels known so far by
 * the day of the labelled tx. */
#define SP_FRAUD_TERM_DAYS 40
struct sp_fraud_terminal {
    int64_t day[SP_FRAUD_TERM_DAYS];
    uint32_t tx[SP_FRAUD_TERM_DAYS];
    uint32_t labelled[SP_FRAUD_TERM_DAYS];
    uint32_t fraud[SP_FRAUD_TERM_DAYS];
    /* Frauds among the latest labels in a row (0 after a legitimate label):
     * a compromised terminal's labels are all fraud, while a terminal where
     * a stolen card happened to pay once has one fraud then legitimate
     * labels again. In label delivery order. */
    uint32_t fraud_streak;
};

struct sp_fraud_item {
    struct sp_ewma_z price;
};

void sp_fraud_user_init(struct sp_fraud_user *u);
void sp_fraud_card_init(struct sp_fraud_card *c);
void sp_fraud_terminal_init(struct sp_fraud_terminal *t);
void sp_fraud_item_init(struct sp_fraud_item *i);

/* The state one order touches; borrowed; any pointer may be NULL (unknown
 * card, no terminal in the data, ...). */
struct sp_fraud_state {
    struct sp_fraud_user *user;
    struct sp_fraud_card *card;
    struct sp_fraud_terminal *terminal;
    struct sp_fraud_item *item;
};

/* One order as the detector sees it. Hash strings with sp_fraud_hash(). */
struct sp_fraud_order {
    int64_t ts_ms;
    double amount;
    uint32_t quantity;          /* units; 0 = unknown */
    double unit_price;          /* of the main line item; 0 = unknown */
    uint64_t user, card, device, ip; /* 0 = unknown */
    char ship_country[4], ip_country[4]; /* ISO codes; "" = unknown */
    int64_t account_created_ms; /* 0 = unknown (first seen is used) */
    int session_views;          /* views earlier in the session; -1 = unknown */
};
uint64_t sp_fraud_hash(const char *s);

/* --- Features --- */
enum sp_fraud_feature {
    SP_FF_LOG_AMOUNT,     /* log(1 + amount) */
    SP_FF_AMOUNT_Z,       /* amount vs the user's EWMA mean, in its spreads */
    SP_FF_AMOUNT_RATIO,   /* log(amount / user's 30-day average) */
    SP_FF_FIRST_ORDER,    /* 1: no history for this user */
    SP_FF_TX_10M,         /* the user's orders before this one, last 10 min */
    SP_FF_TX_1H,
    SP_FF_TX_1D,
    SP_FF_TX_30D,         /* log(1 + n) */
    SP_FF_AMOUNT_1D_RATIO, /* log(amount / user's 1-day average) */
    SP_FF_CARDS_10M,      /* distinct cards of the user in 10 min, this one included */
    SP_FF_DEVICES_1D,
    SP_FF_IPS_1D,
    SP_FF_ACCOUNT_AGE,    /* log(1 + days) */
    SP_FF_NO_VIEWS,       /* 1: no views in the session before ordering */
    SP_FF_COUNTRY_MISMATCH, /* 1: shipping country differs from the IP's */
    SP_FF_QUANTITY_Z,     /* quantity vs the user's usual */
    SP_FF_PRICE_RATIO,    /* log(unit price / item's recent EWMA price) */
    SP_FF_TERM_RISK_1D,   /* share of labelled frauds at the terminal, label horizon + 1 day */
    SP_FF_TERM_RISK_7D,
    SP_FF_TERM_RISK_30D,
    SP_FF_TERM_TX_1D,     /* log(1 + labelled tx) in the same windows */
    SP_FF_TERM_TX_7D,
    SP_FF_TERM_TX_30D,
    SP_FF_RULE,           /* 1: the small-then-large rule fired */
    SP_FF_USER_FRAUD_30D, /* log(1 + the user's known frauds, tx in the last 30 days) */
    SP_FF_AMOUNT_OVER_100, /* hinges max(0, log(amount / k)) for k = 100, 200, 500: */
    SP_FF_AMOUNT_OVER_200, /* with them the linear model can bend its response to */
    SP_FF_AMOUNT_OVER_500, /* the amount (a piecewise-linear spline) */
    SP_FF_AMOUNT_Z_OVER_3, /* max(0, amount_z - 3) */
    SP_FF_TERM_FRAUDS_7D, /* log(1 + known frauds at the terminal), label horizon + 7 days */
    SP_FF_TERM_FRAUDS_30D,
    SP_FF_AMOUNT_MED_Z,   /* amount vs the median of the user's last 16, in MADs */
    SP_FF_AMOUNT_MED_RATIO, /* log((amount + 1) / (that median + 1)) */
    SP_FF_CARD_USERS_1D,  /* distinct accounts on this card in 1 day, this one included */
    SP_FF_X5_LLR,         /* log-likelihood ratio "this amount is a usual one times 5" vs
                           * "a usual one", under a normal fitted to the clean baseline;
                           * clipped to [-10, 30]; 0 without a baseline */
    SP_FF_CLEAN_RATIO,    /* log((amount + 1) / (clean baseline mean + 1)) */
    SP_FF_X5_RECENT_14D,  /* log(1 + the user's earlier amounts in 14 days that looked inflated) */
    SP_FF_X5_LLR_RECENT,  /* x5_llr if there is such an earlier amount, else 0 */
    SP_FF_X5_EVIDENCE,    /* sum of the compromise evidence of the user's amounts in 14 days */
    SP_FF_X5_POSTERIOR,   /* log-odds that this amount is an inflated one, from the prior,
                           * that evidence and its x5_llr (0 without a baseline) */
    SP_FF_TERM_STREAK,    /* log(1 + the terminal's fraud_streak) */
    SP_FF_TERM_STREAK_2,  /* 1: that streak is 2 or more */
    SP_FF_TERM_FRESH_FRAUDS, /* log(1 + known frauds at the terminal of tx days after the label
                              * horizon): labels known early, e.g. from investigated alerts;
                              * 0 when every label comes label_delay_days late */
    SP_FF_HST,            /* Half-Space Trees anomaly score (set by the scorer) */
    SP_FF_UNSUP,          /* the unsupervised score (set by the scorer) */
    SP_FF__COUNT
};

struct sp_fraud_features {
    float v[SP_FF__COUNT];
    /* Raw quantities kept for the reasons. */
    double amount_z, amount_med_z, amount_median, quantity_z, price_ratio, term_risk_7d;
    double x5_llr, x5_evidence, clean_mean; /* clean_mean 0: no clean baseline yet */
    uint32_t x5_recent_14d;
    uint32_t tx_10m, tx_1h, cards_10m, devices_1d, ips_1d, term_labelled_7d, user_frauds_30d;
    uint32_t card_users_1d;
    double account_age_days;
    double amount, rule_small_amount;
    int64_t rule_gap_ms;
    char ship_country[4], ip_country[4];
};

/* Name of feature i, for model reports ("amount_z"). */
const char *sp_fraud_feature_name(int i);

/* Reads the state; changes nothing. */
void sp_fraud_extract(const struct sp_fraud_config *c, const struct sp_fraud_state *st,
                      const struct sp_fraud_order *o, struct sp_fraud_features *f);
/* Learns the order into the state (after scoring it). */
void sp_fraud_update(const struct sp_fraud_config *c, const struct sp_fraud_state *st,
                     const struct sp_fraud_order *o);
/* A label became known for a tx at tx_ts_ms on terminal t, or of user u. */
void sp_fraud_terminal_label(struct sp_fraud_terminal *t, int64_t tx_ts_ms, int fraud);
void sp_fraud_user_label(struct sp_fraud_user *u, int64_t tx_ts_ms, int fraud);

/* Flink walkthrough rule, on its own: 1 if o is a large tx on a card whose
 * previous tx was small and less than rule_window_ms ago. */
int sp_fraud_rule_check(const struct sp_fraud_config *c, const struct sp_fraud_card *card,
                        const struct sp_fraud_order *o);

/* --- Scorer ---
 * The unsupervised score is a noisy-OR of per-signal scores in [0,1]
 * (amount z, velocity, distinct cards, terminal risk, the rule, the small
 * signals, Half-Space Trees). With a logistic model loaded, the combined
 * score is the model's probability over all features, the unsupervised score
 * among them; without one it is the unsupervised score. Either way the
 * reasons come from the signals, in words. */
#define SP_FRAUD_MAX_REASONS 6
#define SP_FRAUD_REASON_LEN  96
struct sp_fraud_result {
    double score;       /* combined, in [0,1] */
    double unsup;       /* unsupervised part, in [0,1] */
    int alert;          /* score > alert_threshold, or the rule fired */
    int nreasons;
    char reasons[SP_FRAUD_MAX_REASONS][SP_FRAUD_REASON_LEN]; /* strongest first */
};

typedef struct sp_fraud_scorer sp_fraud_scorer;

/* model may be NULL (unsupervised only); the scorer takes ownership. */
sp_fraud_scorer *sp_fraud_scorer_new(const struct sp_fraud_config *c, sp_logreg *model,
                                     char *err, size_t errlen);
void sp_fraud_scorer_destroy(sp_fraud_scorer *s);
/* Fills f->v[SP_FF_HST] and f->v[SP_FF_UNSUP], then scores. */
void sp_fraud_score(sp_fraud_scorer *s, struct sp_fraud_features *f, struct sp_fraud_result *r);
/* Teaches the Half-Space Trees the order's features (after scoring). */
void sp_fraud_scorer_learn(sp_fraud_scorer *s, const struct sp_fraud_features *f);
/* The scorer's Half-Space Trees: plain bytes, for the operator to persist
 * and restore (per partition) alongside the per-entity state. */
struct sp_hst *sp_fraud_scorer_hst(sp_fraud_scorer *s);

/* --- Metrics (for `shopstream fraud eval`) ---
 * AUC ROC with ties counted half; Average Precision as scikit-learn defines
 * it (sum over distinct thresholds of recall increase times precision);
 * Card Precision@k as the fraud handbook defines it: per day, each customer
 * counts once with its highest score, the k highest-scored customers are
 * taken, and the share of them with a fraudulent tx that day is the day's
 * figure; customers found compromised on an earlier day are left out of the
 * later days (remove_detected); the result is the mean over days. */
double sp_metric_auc(const double *score, const uint8_t *label, size_t n);
double sp_metric_ap(const double *score, const uint8_t *label, size_t n);
double sp_metric_card_precision(const int32_t *day, const int32_t *customer, const double *score,
                                const uint8_t *label, size_t n, size_t k, int remove_detected);

#endif
