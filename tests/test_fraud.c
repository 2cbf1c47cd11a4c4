/* Fraud: each feature on hand-made streams, the Flink walkthrough rule as a
 * golden test, reasons in words, the scorer, the metrics against
 * hand-computed cases, and per-user state that survives kill -9 through
 * byte snapshots committed with their offset. */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "models/fraud.h"
#include "stream/error.h"

#define MIN (60 * 1000LL)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)
#define T0 (1700000000000LL - 1700000000000LL % DAY) /* midnight, so buckets are obvious */

static struct sp_fraud_config cfg;
static struct sp_fraud_user user;
static struct sp_fraud_card card;
static struct sp_fraud_terminal term;
static struct sp_fraud_item item;
static struct sp_fraud_state st;

static void setup(void) {
    sp_fraud_config_default(&cfg);
    sp_fraud_user_init(&user);
    sp_fraud_card_init(&card);
    sp_fraud_terminal_init(&term);
    sp_fraud_item_init(&item);
    st = (struct sp_fraud_state){&user, &card, &term, &item};
}

static struct sp_fraud_order order(int64_t ts, double amount) {
    return (struct sp_fraud_order){.ts_ms = ts, .amount = amount, .card = 1, .session_views = -1};
}

/* Extract, then learn: what the operator does per order. */
static void feed(struct sp_fraud_order o, struct sp_fraud_features *f) {
    struct sp_fraud_features tmp;
    sp_fraud_extract(&cfg, &st, &o, f ? f : &tmp);
    sp_fraud_update(&cfg, &st, &o);
}

static int has_reason(const struct sp_fraud_result *r, const char *text) {
    for (int i = 0; i < r->nreasons; i++)
        if (!strcmp(r->reasons[i], text)) return 1;
    return 0;
}

static void print_reasons(const struct sp_fraud_result *r) {
    for (int i = 0; i < r->nreasons; i++) fprintf(stderr, "  reason: %s\n", r->reasons[i]);
}

TestSuite(features, .init = setup);

Test(features, amount_against_the_users_mean_and_median) {
    struct sp_fraud_features f;
    feed(order(T0, 50), &f);
    cr_assert_eq(f.v[SP_FF_FIRST_ORDER], 1);
    cr_assert_float_eq(f.amount_z, 0, 1e-12, "no history, no z");
    for (int i = 1; i < 10; i++) feed(order(T0 + i * HOUR, 50), NULL);
    /* Ten times 50: mean 50, spread 0, floored at 10% of the mean = 5. */
    sp_fraud_extract(&cfg, &st, &(struct sp_fraud_order){.ts_ms = T0 + 10 * HOUR, .amount = 100},
                     &f);
    cr_assert_eq(f.v[SP_FF_FIRST_ORDER], 0);
    cr_assert_float_eq(f.amount_z, 10.0, 1e-9);
    cr_assert_float_eq(f.amount_med_z, 10.0, 1e-9);
    cr_assert_float_eq(f.v[SP_FF_AMOUNT_MED_RATIO], log(101.0 / 51.0), 1e-5);
    cr_assert_float_eq(f.v[SP_FF_AMOUNT_RATIO], log(101.0 / 51.0), 1e-5, "30-day average is 50");
    cr_assert_float_eq(f.v[SP_FF_AMOUNT_Z_OVER_3], 7.0, 1e-5);
    cr_assert_float_eq(f.v[SP_FF_AMOUNT_OVER_100], 0.0, 1e-6);
    cr_assert_float_eq(f.v[SP_FF_LOG_AMOUNT], log(101.0), 1e-5);
    /* Below the mean: negative z, no "above" reason. */
    sp_fraud_extract(&cfg, &st, &(struct sp_fraud_order){.ts_ms = T0 + 10 * HOUR, .amount = 40},
                     &f);
    cr_assert_float_eq(f.amount_z, -2.0, 1e-9);
}

Test(features, median_ignores_a_run_of_inflated_amounts) {
    struct sp_fraud_features f;
    for (int i = 0; i < 12; i++) feed(order(T0 + i * HOUR, 20 + (i % 3)), NULL);
    /* A compromised card: every third order five times the usual. */
    for (int i = 12; i < 24; i++) feed(order(T0 + i * HOUR, i % 3 ? 21 : 105), NULL);
    sp_fraud_extract(&cfg, &st, &(struct sp_fraud_order){.ts_ms = T0 + 24 * HOUR, .amount = 105},
                     &f);
    cr_assert_float_eq(f.amount_median, 21.0, 1e-9, "median of the last 16 stays 21");
    cr_assert_gt(f.amount_med_z, 8, "still %.1f MADs out", f.amount_med_z);
}

/* The compromised-card features on a hand-computed stream. Amounts 10, 20,
 * 30 make the clean baseline: mean 20, sample sd 10 (above the floors of
 * 10% of the mean and 0.5). Then 60: its x5 log-likelihood ratio is
 * ((60-20)^2 - (60/5-20)^2) / (2 * 10^2) - ln 5 = 7.68 - ln 5 = 6.0706,
 * above the suspect threshold of 3, so it stays out of the baseline and
 * counts as an inflated-looking amount; its compromise evidence is
 * ln(2/3 + e^6.0706 / 3) = 4.97656. The posteriors were computed by hand
 * (a separate script) from prior 0.01 and share 1/3. */
Test(features, inflated_amounts_against_the_clean_baseline) {
    struct sp_fraud_features f;
    feed(order(T0, 10), &f);
    cr_assert_float_eq(f.v[SP_FF_X5_LLR], 0, 1e-12, "no baseline yet");
    feed(order(T0 + HOUR, 20), NULL);
    feed(order(T0 + 2 * HOUR, 30), NULL);
    feed(order(T0 + 3 * HOUR, 60), &f);
    cr_assert_float_eq(f.clean_mean, 20.0, 1e-9);
    cr_assert_float_eq(f.x5_llr, 7.68 - log(5.0), 1e-9);
    cr_assert_float_eq(f.v[SP_FF_CLEAN_RATIO], log(61.0 / 21.0), 1e-5);
    cr_assert_float_eq(f.v[SP_FF_X5_RECENT_14D], 0, 1e-12);
    cr_assert_float_eq(f.v[SP_FF_X5_LLR_RECENT], 0, 1e-12, "nothing suspicious before");
    cr_assert_float_eq(f.v[SP_FF_X5_EVIDENCE], 0, 1e-12);
    cr_assert_float_eq(f.v[SP_FF_X5_POSTERIOR], 0.370118514, 1e-5);
    /* A day later, 20: the baseline did not learn the 60 (still mean 20,
     * sd 10), llr = (0 - 16^2) / 200 - ln 5 = -2.88944. */
    sp_fraud_extract(&cfg, &st, &(struct sp_fraud_order){.ts_ms = T0 + DAY, .amount = 20}, &f);
    cr_assert_float_eq(f.clean_mean, 20.0, 1e-9, "the inflated-looking 60 is not in the baseline");
    cr_assert_float_eq(f.x5_llr, -1.28 - log(5.0), 1e-9);
    cr_assert_eq(f.x5_recent_14d, 1);
    cr_assert_float_eq(f.v[SP_FF_X5_RECENT_14D], log(2.0), 1e-6);
    cr_assert_float_eq(f.v[SP_FF_X5_LLR_RECENT], -1.28 - log(5.0), 1e-5);
    cr_assert_float_eq(f.v[SP_FF_X5_EVIDENCE], 4.976558910, 1e-5);
    cr_assert_float_eq(f.v[SP_FF_X5_POSTERIOR], -4.287817453, 1e-5);
    /* 15 days later the 14-day windows have forgotten the 60. */
    sp_fraud_extract(&cfg, &st, &(struct sp_fraud_order){.ts_ms = T0 + 15 * DAY, .amount = 20}, &f);
    cr_assert_eq(f.x5_recent_14d, 0);
    cr_assert_float_eq(f.v[SP_FF_X5_EVIDENCE], 0, 1e-12);
    cr_assert_float_eq(f.v[SP_FF_X5_LLR_RECENT], 0, 1e-12);
    /* An ordinary amount joins the baseline: 10, 20, 30, 20 -> mean 20. */
    feed(order(T0 + 15 * DAY, 20), NULL);
    sp_fraud_extract(&cfg, &st, &(struct sp_fraud_order){.ts_ms = T0 + 15 * DAY, .amount = 40}, &f);
    /* sd = sqrt(200 / 3) = 8.16497: llr = (400 - 144) / (2 * 200 / 3) - ln 5 */
    cr_assert_float_eq(f.x5_llr, 256.0 * 3 / 400 - log(5.0), 1e-9);
}

/* Labels known before the delay (investigated alerts) count only in
 * term_fresh_frauds: tx days after the horizon (today - 7), today included. */
Test(features, terminal_fresh_frauds_are_labels_inside_the_delay) {
    struct sp_fraud_features f;
    struct sp_fraud_state ts = {.terminal = &term};
    /* today = day 20, horizon = day 13: days 14..20 are "fresh" */
    sp_fraud_terminal_label(&term, T0 + 13 * DAY + HOUR, 1); /* at the horizon: not fresh */
    sp_fraud_terminal_label(&term, T0 + 14 * DAY, 1);
    sp_fraud_terminal_label(&term, T0 + 19 * DAY + 5 * HOUR, 1);
    sp_fraud_terminal_label(&term, T0 + 19 * DAY + 6 * HOUR, 0);
    sp_fraud_terminal_label(&term, T0 + 20 * DAY + HOUR, 1);
    struct sp_fraud_order o = order(T0 + 20 * DAY + 2 * HOUR, 10);
    sp_fraud_extract(&cfg, &ts, &o, &f);
    cr_assert_float_eq(f.v[SP_FF_TERM_FRESH_FRAUDS], log1p(3), 1e-6);
    cr_assert_float_eq(f.v[SP_FF_TERM_FRAUDS_7D], log1p(1), 1e-6, "the day-13 label is past the delay");
    /* A day later day 14 has crossed the horizon. */
    o.ts_ms = T0 + 21 * DAY;
    sp_fraud_extract(&cfg, &ts, &o, &f);
    cr_assert_float_eq(f.v[SP_FF_TERM_FRESH_FRAUDS], log1p(2), 1e-6);
}

/* Frauds in a row among a terminal's latest labels. */
Test(features, terminal_fraud_streak) {
    struct sp_fraud_features f;
    struct sp_fraud_state ts = {.terminal = &term};
    struct sp_fraud_order o = order(T0 + 20 * DAY, 10);
    static const int labels[] = {1, 1, 0, 1, 1, 1};
    static const int want[] = {1, 2, 0, 1, 2, 3};
    for (int i = 0; i < 6; i++) {
        sp_fraud_terminal_label(&term, T0 + 10 * DAY + i * HOUR, labels[i]);
        sp_fraud_extract(&cfg, &ts, &o, &f);
        cr_assert_float_eq(f.v[SP_FF_TERM_STREAK], log1p(want[i]), 1e-6, "after label %d", i);
        cr_assert_eq(f.v[SP_FF_TERM_STREAK_2], want[i] >= 2, "after label %d", i);
    }
}

Test(features, velocity_in_sliding_windows) {
    struct sp_fraud_features f;
    for (int i = 0; i < 4; i++) feed(order(T0 + i * MIN, 10), NULL);
    feed(order(T0 + 4 * MIN, 10), &f);
    cr_assert_eq(f.tx_10m, 4, "four orders before this one in 10 minutes");
    cr_assert_eq(f.tx_1h, 4);
    cr_assert_float_eq(f.v[SP_FF_TX_1D], 4, 1e-9);
    /* 15 minutes later the 10-minute window is empty, the hour is not. */
    sp_fraud_extract(&cfg, &st, &(struct sp_fraud_order){.ts_ms = T0 + 19 * MIN, .amount = 10}, &f);
    cr_assert_eq(f.tx_10m, 0);
    cr_assert_eq(f.tx_1h, 5);
    /* Two hours later only the day window holds them; 2 days later nothing
     * but the 30-day window. */
    sp_fraud_extract(&cfg, &st, &(struct sp_fraud_order){.ts_ms = T0 + 2 * HOUR, .amount = 10}, &f);
    cr_assert_eq(f.tx_1h, 0);
    cr_assert_float_eq(f.v[SP_FF_TX_1D], 5, 1e-9);
    sp_fraud_extract(&cfg, &st, &(struct sp_fraud_order){.ts_ms = T0 + 2 * DAY, .amount = 10}, &f);
    cr_assert_float_eq(f.v[SP_FF_TX_1D], 0, 1e-9);
    cr_assert_float_eq(f.v[SP_FF_TX_30D], log1p(5), 1e-6);
}

Test(features, distinct_cards_devices_and_ips) {
    struct sp_fraud_features f;
    for (int i = 0; i < 5; i++) {
        struct sp_fraud_order o = order(T0 + i * MIN, 30);
        o.card = 100 + (uint64_t)i;
        o.device = sp_fraud_hash(i < 3 ? "phone" : "laptop");
        o.ip = sp_fraud_hash(i % 2 ? "10.0.0.1" : "10.0.0.2");
        feed(o, &f);
    }
    cr_assert_eq(f.cards_10m, 5, "five cards in ten minutes, this one included");
    cr_assert_eq(f.devices_1d, 2);
    cr_assert_eq(f.ips_1d, 2);
    /* Card 100 again 20 minutes later: the others fell out of the window. */
    struct sp_fraud_order o = order(T0 + 24 * MIN, 30);
    o.card = 100;
    sp_fraud_extract(&cfg, &st, &o, &f);
    cr_assert_eq(f.cards_10m, 1);
    /* More distinct cards than the recent-set holds: still counted up to it. */
    for (int i = 0; i < 12; i++) {
        struct sp_fraud_order p = order(T0 + HOUR + i * 10 * 1000, 30);
        p.card = 1000 + (uint64_t)i;
        feed(p, &f);
    }
    cr_assert_eq(f.cards_10m, SP_FRAUD_RECENT + 1, "8 remembered + this one");
}

Test(features, accounts_sharing_a_card) {
    char err[128];
    sp_fraud_scorer *sc = sp_fraud_scorer_new(&cfg, NULL, err, sizeof err);
    struct sp_fraud_user others[3];
    struct sp_fraud_features f;
    struct sp_fraud_result r;
    for (int i = 0; i < 3; i++) {
        sp_fraud_user_init(&others[i]);
        struct sp_fraud_state s = {.user = &others[i], .card = &card};
        struct sp_fraud_order o = order(T0 + i * HOUR, 20);
        o.user = 500 + (uint64_t)i;
        sp_fraud_extract(&cfg, &s, &o, &f);
        cr_assert_eq(f.card_users_1d, (uint32_t)i + 1);
        sp_fraud_update(&cfg, &s, &o);
    }
    sp_fraud_score(sc, &f, &r);
    cr_assert(has_reason(&r, "card used by 3 accounts in 1 day"));
    /* The next day the card's first two users are out of the window. */
    struct sp_fraud_state s = {.user = &others[0], .card = &card};
    struct sp_fraud_order o = order(T0 + DAY + 90 * MIN, 20);
    o.user = 500;
    sp_fraud_extract(&cfg, &s, &o, &f);
    cr_assert_eq(f.card_users_1d, 2, "user 500 again, and 502 seen 22.5 hours ago");
    sp_fraud_scorer_destroy(sc);
}

Test(features, account_age_views_countries_quantity_and_price) {
    struct sp_fraud_features f;
    for (int i = 0; i < 5; i++) {
        struct sp_fraud_order o = order(T0 + i * HOUR, 20);
        o.quantity = 1;
        o.unit_price = 20;
        feed(o, NULL);
    }
    struct sp_fraud_order o = order(T0 + 5 * HOUR, 50);
    o.account_created_ms = T0 + 3 * HOUR;
    o.session_views = 0;
    memcpy(o.ship_country, "DE", 3);
    memcpy(o.ip_country, "FR", 3);
    o.quantity = 10;
    o.unit_price = 5;
    sp_fraud_extract(&cfg, &st, &o, &f);
    cr_assert_float_eq(f.account_age_days, 2.0 / 24, 1e-9);
    cr_assert_float_eq(f.v[SP_FF_ACCOUNT_AGE], log1p(2.0 / 24), 1e-6);
    cr_assert_eq(f.v[SP_FF_NO_VIEWS], 1);
    cr_assert_eq(f.v[SP_FF_COUNTRY_MISMATCH], 1);
    cr_assert_float_eq(f.quantity_z, 9.0, 1e-9, "(10 - 1) / floor 1");
    cr_assert_float_eq(f.price_ratio, 0.25, 1e-9);
    /* Unknowns are not evidence: first-seen stands in for the account's age. */
    o.account_created_ms = 0;
    o.session_views = -1;
    o.ip_country[0] = '\0';
    sp_fraud_extract(&cfg, &st, &o, &f);
    cr_assert_float_eq(f.account_age_days, 5.0 / 24, 1e-9);
    cr_assert_eq(f.v[SP_FF_NO_VIEWS], 0);
    cr_assert_eq(f.v[SP_FF_COUNTRY_MISMATCH], 0);
}

Test(features, terminal_risk_uses_only_labels_past_the_delay) {
    struct sp_fraud_features f;
    struct sp_fraud_state ts = {.terminal = &term};
    /* Two tx a day on days 0..9; both of day 2's are frauds, and the labels
     * are known at once (an early label feed). */
    for (int d = 0; d < 10; d++)
        for (int k = 0; k < 2; k++) {
            struct sp_fraud_order o = order(T0 + d * DAY + k * HOUR, 10);
            sp_fraud_update(&cfg, &ts, &o);
            sp_fraud_terminal_label(&term, o.ts_ms, d == 2);
        }
    cr_assert_eq(cfg.label_delay_days, 7);
    /* On day 8 the horizon is day 1: day 2's frauds are not used yet. */
    struct sp_fraud_order o = order(T0 + 8 * DAY + 12 * HOUR, 10);
    sp_fraud_extract(&cfg, &ts, &o, &f);
    cr_assert_float_eq(f.v[SP_FF_TERM_RISK_7D], 0, 1e-9);
    /* On day 9 the horizon is day 2: 1 day = day 2 only (2 of 2), 7 days =
     * days 0..2 (2 of 6), 30 days the same. */
    o.ts_ms = T0 + 9 * DAY + 12 * HOUR;
    sp_fraud_extract(&cfg, &ts, &o, &f);
    cr_assert_float_eq(f.v[SP_FF_TERM_RISK_1D], 1.0, 1e-6);
    cr_assert_float_eq(f.v[SP_FF_TERM_RISK_7D], 2.0 / 6, 1e-6);
    cr_assert_float_eq(f.v[SP_FF_TERM_RISK_30D], 2.0 / 6, 1e-6);
    cr_assert_float_eq(f.v[SP_FF_TERM_TX_7D], log1p(6), 1e-6);
    cr_assert_float_eq(f.v[SP_FF_TERM_FRAUDS_30D], log1p(2), 1e-6);
    /* Day 10: 1-day window is day 3, clean again. */
    o.ts_ms = T0 + 10 * DAY;
    sp_fraud_extract(&cfg, &ts, &o, &f);
    cr_assert_float_eq(f.v[SP_FF_TERM_RISK_1D], 0, 1e-9);
    cr_assert_float_eq(f.v[SP_FF_TERM_RISK_7D], 2.0 / 8, 1e-6);
}

Test(features, known_frauds_of_the_user) {
    struct sp_fraud_features f;
    sp_fraud_user_label(&user, T0, 1);
    sp_fraud_user_label(&user, T0 + HOUR, 0);
    sp_fraud_user_label(&user, T0 + 2 * HOUR, 1);
    feed(order(T0 + 8 * DAY, 10), &f);
    cr_assert_eq(f.user_frauds_30d, 2);
    sp_fraud_extract(&cfg, &st, &(struct sp_fraud_order){.ts_ms = T0 + 31 * DAY, .amount = 1}, &f);
    cr_assert_eq(f.user_frauds_30d, 0, "30 days later they are out of the window");
}

/* Apache Flink's fraud-detection walkthrough (DataStream API): its
 * TransactionIterator's 50 transactions over accounts 1..5, produced by a
 * RateLimitedIterator one per 100 ms and repeated forever. The walkthrough's
 * FraudDetector (final version, flag plus one-minute timer) prints
 * Alert{id=3}: account 3 pays 0.219, 0.77, 0.80 and then 871.15. */
static const struct {
    int account;
    double amount;
} flink_tx[50] = {
    {1, 188.23}, {2, 374.79}, {3, 112.15}, {4, 478.75}, {5, 208.85}, {1, 379.64}, {2, 351.44},
    {3, 320.75}, {4, 259.42}, {5, 273.44}, {1, 267.25}, {2, 397.15}, {3, 0.219},  {4, 231.94},
    {5, 384.73}, {1, 419.62}, {2, 412.91}, {3, 0.77},   {4, 22.10},  {5, 377.54}, {1, 375.44},
    {2, 230.18}, {3, 0.80},   {4, 350.89}, {5, 127.55}, {1, 483.91}, {2, 228.22}, {3, 871.15},
    {4, 64.19},  {5, 79.43},  {1, 56.12},  {2, 256.48}, {3, 148.16}, {4, 199.95}, {5, 252.37},
    {1, 274.73}, {2, 473.54}, {3, 119.92}, {4, 323.59}, {5, 353.16}, {1, 211.90}, {2, 280.93},
    {3, 347.89}, {4, 459.86}, {5, 82.31},  {1, 373.26}, {2, 479.83}, {3, 454.25}, {4, 83.64},
    {5, 292.44}};

/* Replays `passes` rounds of the walkthrough data spaced step_ms apart and
 * writes the indices that alerted into out; returns how many. */
static int replay_flink(const struct sp_fraud_config *c, int64_t step_ms, int passes, int *out,
                        struct sp_fraud_result *last) {
    static struct sp_fraud_card cards[6];
    static struct sp_fraud_user users[6];
    for (int a = 0; a < 6; a++) {
        sp_fraud_card_init(&cards[a]);
        sp_fraud_user_init(&users[a]);
    }
    char err[128];
    sp_fraud_scorer *sc = sp_fraud_scorer_new(c, NULL, err, sizeof err);
    cr_assert_not_null(sc, "%s", err);
    int n = 0;
    for (int i = 0; i < 50 * passes; i++) {
        int a = flink_tx[i % 50].account;
        struct sp_fraud_state s = {.user = &users[a], .card = &cards[a]};
        struct sp_fraud_order o = {.ts_ms = 1546300800000LL + i * step_ms,
                                   .amount = flink_tx[i % 50].amount, .card = (uint64_t)a,
                                   .session_views = -1};
        struct sp_fraud_features f;
        struct sp_fraud_result r;
        sp_fraud_extract(c, &s, &o, &f);
        sp_fraud_score(sc, &f, &r);
        if (f.v[SP_FF_RULE] > 0) {
            cr_assert_eq(r.alert, 1, "the rule alone must alert");
            out[n++] = i;
            if (last) *last = r;
        }
        sp_fraud_update(c, &s, &o);
        sp_fraud_scorer_learn(sc, &f);
    }
    sp_fraud_scorer_destroy(sc);
    return n;
}

Test(flink_walkthrough, golden_alert_on_account_3) {
    struct sp_fraud_config c;
    struct sp_fraud_result r;
    int at[20];
    sp_fraud_config_default(&c);
    cr_assert_float_eq(c.rule_small_amount, 1.00, 1e-12);
    cr_assert_float_eq(c.rule_large_amount, 500.00, 1e-12);
    cr_assert_eq(c.rule_window_ms, 60000);
    int n = replay_flink(&c, 100, 2, at, &r);
    cr_assert_eq(n, 2, "one alert per pass, got %d", n);
    cr_assert_eq(at[0], 27, "the 871.15 of account 3");
    cr_assert_eq(at[1], 77);
    cr_assert_eq(flink_tx[at[0]].account, 3);
    print_reasons(&r);
    cr_assert(has_reason(&r, "0.80 then 871.15 on the same card within 60 s (small-then-large rule)"));
    cr_assert_str_eq(r.reasons[0],
                     "0.80 then 871.15 on the same card within 60 s (small-then-large rule)",
                     "the rule is the strongest reason");
}

Test(flink_walkthrough, window_and_thresholds_are_honoured) {
    struct sp_fraud_config c;
    int at[20];
    sp_fraud_config_default(&c);
    /* The same data in event time, one tx per 6 minutes (the walkthrough's
     * timestamps): account 3's pair is 30 minutes apart, outside the minute. */
    cr_assert_eq(replay_flink(&c, 6 * MIN, 1, at, NULL), 0);
    /* A one-hour window catches it again. */
    c.rule_window_ms = HOUR;
    cr_assert_eq(replay_flink(&c, 6 * MIN, 1, at, NULL), 1);
    cr_assert_eq(at[0], 27);
    /* Raising the large threshold above 871.15 silences it. */
    sp_fraud_config_default(&c);
    c.rule_large_amount = 900;
    cr_assert_eq(replay_flink(&c, 100, 1, at, NULL), 0);
    /* Raising the small threshold to 150 makes account 3's 112.15 small, but
     * 320.75 is not large: still one alert, and 0.219 stays small. */
    sp_fraud_config_default(&c);
    c.rule_small_amount = 150;
    cr_assert_eq(replay_flink(&c, 100, 1, at, NULL), 1);
}

Test(flink_walkthrough, boundary_of_the_minute) {
    struct sp_fraud_config c;
    struct sp_fraud_card cd;
    sp_fraud_config_default(&c);
    sp_fraud_card_init(&cd);
    struct sp_fraud_state s = {.card = &cd};
    struct sp_fraud_order small = {.ts_ms = 1000, .amount = 0.99};
    sp_fraud_update(&c, &s, &small);
    struct sp_fraud_order big = {.ts_ms = 1000 + 59999, .amount = 500.01};
    cr_assert_eq(sp_fraud_rule_check(&c, &cd, &big), 1);
    big.ts_ms = 1000 + 60000;
    cr_assert_eq(sp_fraud_rule_check(&c, &cd, &big), 0, "a minute later the timer has fired");
    big.ts_ms = 2000;
    big.amount = 500.00;
    cr_assert_eq(sp_fraud_rule_check(&c, &cd, &big), 0, "500.00 is not above 500.00");
    small.amount = 1.00;
    sp_fraud_update(&c, &s, &small);
    big.amount = 600;
    cr_assert_eq(sp_fraud_rule_check(&c, &cd, &big), 0, "1.00 is not below 1.00");
}

TestSuite(scorer, .init = setup);

Test(scorer, reasons_in_words_and_alert_threshold) {
    char err[128];
    sp_fraud_scorer *sc = sp_fraud_scorer_new(&cfg, NULL, err, sizeof err);
    struct sp_fraud_features f;
    struct sp_fraud_result r;
    for (int i = 0; i < 10; i++) feed(order(T0 + i * HOUR, 50), NULL);
    /* An ordinary order: low score, no reasons, no alert. */
    struct sp_fraud_order o = order(T0 + 11 * HOUR, 52);
    sp_fraud_extract(&cfg, &st, &o, &f);
    sp_fraud_score(sc, &f, &r);
    cr_assert_lt(r.score, 0.3, "ordinary order scored %.3f", r.score);
    cr_assert_eq(r.alert, 0);
    cr_assert_eq(r.nreasons, 0);
    /* 5 cards in 3 minutes, the last one 9.3 spreads above the mean. */
    for (int i = 0; i < 4; i++) {
        struct sp_fraud_order p = order(T0 + 12 * HOUR + i * 40 * 1000, 50);
        p.card = 10 + (uint64_t)i;
        feed(p, NULL);
    }
    o = order(T0 + 12 * HOUR + 3 * MIN, 50 + 9.3 * 5);
    o.card = 99;
    sp_fraud_extract(&cfg, &st, &o, &f);
    sp_fraud_score(sc, &f, &r);
    print_reasons(&r);
    cr_assert_gt(r.score, cfg.alert_threshold);
    cr_assert_eq(r.alert, 1);
    cr_assert_float_eq(r.score, r.unsup, 1e-12, "no model: the combined score is the detector's");
    cr_assert(r.score >= 0 && r.score <= 1);
    cr_assert(has_reason(&r, "amount 9.3σ above this user's mean"));
    cr_assert(has_reason(&r, "5 cards in 10 minutes"));
    cr_assert(has_reason(&r, "5 orders in 10 minutes"));
    cr_assert_eq(f.v[SP_FF_UNSUP], (float)r.unsup, "the score is recorded among the features");
    sp_fraud_scorer_destroy(sc);
}

Test(scorer, model_is_used_and_shape_is_checked) {
    char err[128];
    cr_assert_null(sp_fraud_scorer_new(&cfg, sp_logreg_new(3), err, sizeof err));
    cr_assert_not_null(strstr(err, "3 features"), "%s", err);
    /* A model that knows one thing: the rule feature. */
    enum { N = 200 };
    float *x = calloc(N * SP_FF__COUNT, sizeof(float));
    uint8_t y[N];
    for (int i = 0; i < N; i++) {
        y[i] = i % 10 == 0;
        x[i * SP_FF__COUNT + SP_FF_RULE] = y[i];
    }
    sp_logreg *m = sp_logreg_new(SP_FF__COUNT);
    struct sp_logreg_opts lo = {.epochs = 300, .lr = 0.1, .standardize = 1};
    sp_logreg_train(m, x, y, N, &lo);
    free(x);
    sp_fraud_scorer *sc = sp_fraud_scorer_new(&cfg, m, err, sizeof err);
    cr_assert_not_null(sc, "%s", err);
    struct sp_fraud_features f;
    struct sp_fraud_result r;
    memset(&f, 0, sizeof f);
    sp_fraud_score(sc, &f, &r);
    double plain = r.score;
    f.v[SP_FF_RULE] = 1;
    sp_fraud_score(sc, &f, &r);
    cr_assert_gt(r.score, 0.9);
    cr_assert_lt(plain, 0.1);
    sp_fraud_scorer_destroy(sc);
}

Test(metrics, auc_against_hand_computed_cases) {
    /* Positives 0.35 and 0.8, negatives 0.1 and 0.4: 3 of 4 pairs right. */
    double s[] = {0.1, 0.4, 0.35, 0.8};
    uint8_t y[] = {0, 0, 1, 1};
    cr_assert_float_eq(sp_metric_auc(s, y, 4), 0.75, 1e-12);
    /* A tie counts half: (0.5 + 1) / 2. */
    double t[] = {0.5, 0.5, 0.2};
    uint8_t ty[] = {1, 0, 0};
    cr_assert_float_eq(sp_metric_auc(t, ty, 3), 0.75, 1e-12);
    double p[] = {0.9, 0.8, 0.1};
    uint8_t py[] = {1, 1, 0};
    cr_assert_float_eq(sp_metric_auc(p, py, 3), 1.0, 1e-12);
    uint8_t iy[] = {0, 0, 1};
    cr_assert_float_eq(sp_metric_auc(p, iy, 3), 0.0, 1e-12);
}

Test(metrics, average_precision_against_hand_computed_cases) {
    /* Ranked: 0.8 (+) P=1 R=.5; 0.4 (-); 0.35 (+) P=2/3 R=1: .5*1 + .5*2/3. */
    double s[] = {0.1, 0.4, 0.35, 0.8};
    uint8_t y[] = {0, 0, 1, 1};
    cr_assert_float_eq(sp_metric_ap(s, y, 4), 0.5 + 1.0 / 3, 1e-12);
    /* One tied threshold holding both: precision 1/2 at recall 1. */
    double t[] = {0.5, 0.5};
    uint8_t ty[] = {1, 0};
    cr_assert_float_eq(sp_metric_ap(t, ty, 2), 0.5, 1e-12);
    uint8_t none[] = {0, 0};
    cr_assert_float_eq(sp_metric_ap(t, none, 2), 0.0, 1e-12);
}

Test(metrics, card_precision_per_day_with_detected_cards_removed) {
    /* Day 0: A max 0.9 (a fraud), B 0.8 (clean), C 0.7 (fraud); top 2 = A, B:
     * 1/2. Day 1: A 0.95 (fraud), D 0.5 (fraud), E 0.4, B 0.3. With A removed
     * (detected on day 0): D, E = 1/2; without removal: A, D = 2/2. */
    int32_t day[] = {0, 0, 0, 0, 1, 1, 1, 1};
    int32_t cust[] = {1, 1, 2, 3, 1, 4, 5, 2};
    double s[] = {0.9, 0.1, 0.8, 0.7, 0.95, 0.5, 0.4, 0.3};
    uint8_t y[] = {0, 1, 0, 1, 1, 1, 0, 0};
    cr_assert_float_eq(sp_metric_card_precision(day, cust, s, y, 8, 2, 1), 0.5, 1e-12);
    cr_assert_float_eq(sp_metric_card_precision(day, cust, s, y, 8, 2, 0), 0.75, 1e-12);
    /* k larger than the customers of a day still divides by k (handbook). */
    cr_assert_float_eq(sp_metric_card_precision(day, cust, s, y, 4, 4, 1), 2.0 / 4, 1e-12);
}

/* Per-user fraud state is plain bytes. A child process streams orders and
 * after each one commits the state together with the next offset (write to
 * a temporary file, rename), the way the operator commits state and offset
 * in one Redis transaction. It is killed with SIGKILL wherever it is (in an
 * update, a write or a rename) once past KILL_AFTER orders; the parent
 * resumes from the last commit, and the final state must be byte-identical
 * to an uninterrupted run: nothing lost, nothing applied twice. */
enum { STREAM_LEN = 20000, KILL_AFTER = 1000 };

static struct sp_fraud_order nth_order(int i) {
    struct sp_fraud_order o = order(T0 + (int64_t)i * 7 * MIN, 10 + (i * 37) % 90);
    o.card = 1 + (uint64_t)(i % 3);
    o.quantity = 1 + (uint32_t)(i % 4);
    return o;
}

struct snapshot {
    int64_t next;
    struct sp_fraud_user user;
    struct sp_fraud_card card;
};

static void commit(const char *path, const struct snapshot *s) {
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    fwrite(s, sizeof *s, 1, f);
    fclose(f);
    rename(tmp, path);
}

Test(durability, state_survives_kill_9_exactly_once, .timeout = 30) {
    char dir[] = "/tmp/sp_fraud_XXXXXX", path[256];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/state", dir);
    struct sp_fraud_config c;
    sp_fraud_config_default(&c);

    pid_t pid = fork();
    if (pid == 0) {
        struct snapshot s = {0};
        sp_fraud_user_init(&s.user);
        sp_fraud_card_init(&s.card);
        struct sp_fraud_state ps = {.user = &s.user, .card = &s.card};
        for (int i = 0; i < STREAM_LEN; i++) {
            struct sp_fraud_order o = nth_order(i);
            sp_fraud_update(&c, &ps, &o);
            s.next = i + 1;
            commit(path, &s);
        }
        _exit(0);
    }
    struct snapshot s;
    for (;;) { /* let the child get going, then kill it wherever it is */
        FILE *f = fopen(path, "rb");
        size_t got = f ? fread(&s, sizeof s, 1, f) : 0;
        if (f) fclose(f);
        if (got == 1 && s.next > KILL_AFTER) break;
        usleep(1000);
    }
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    FILE *f = fopen(path, "rb");
    cr_assert_eq(fread(&s, sizeof s, 1, f), 1);
    fclose(f);
    cr_assert(s.next > 0 && s.next < STREAM_LEN, "resume offset %lld", (long long)s.next);
    struct sp_fraud_state ps = {.user = &s.user, .card = &s.card};
    for (int64_t i = s.next; i < STREAM_LEN; i++) {
        struct sp_fraud_order o = nth_order((int)i);
        sp_fraud_update(&c, &ps, &o);
    }

    static struct snapshot ref;
    memset(&ref, 0, sizeof ref);
    sp_fraud_user_init(&ref.user);
    sp_fraud_card_init(&ref.card);
    struct sp_fraud_state rs = {.user = &ref.user, .card = &ref.card};
    for (int i = 0; i < STREAM_LEN; i++) {
        struct sp_fraud_order o = nth_order(i);
        sp_fraud_update(&c, &rs, &o);
    }
    cr_assert_eq(ref.user.orders, STREAM_LEN);
    cr_assert_eq(s.user.orders, STREAM_LEN, "orders counted once each: %u", s.user.orders);
    cr_assert_eq(memcmp(&s.user, &ref.user, sizeof ref.user), 0, "user state differs");
    cr_assert_eq(memcmp(&s.card, &ref.card, sizeof ref.card), 0, "card state differs");
    remove(path);
    rmdir(dir);
}
