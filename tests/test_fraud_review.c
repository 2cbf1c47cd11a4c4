/* Review bursts: SimHash nearness on hand-written reviews, and burst alerts
 * (young accounts, near-identical text) on both sides of their thresholds. */
#include <criterion/criterion.h>
#include <string.h>

#include "models/fraud_review.h"

#define MIN (60 * 1000LL)

static const char *base =
    "Great blender, crushes ice in seconds and the jar is easy to clean. Five stars from me!";

Test(simhash, near_texts_are_near_and_others_are_not) {
    uint64_t a = sp_simhash(base);
    cr_assert_neq(a, 0);
    cr_assert_eq(sp_simhash(""), 0, "no words, no hash");
    cr_assert_eq(sp_hamming64(a, sp_simhash("GREAT blender crushes ice in seconds, and the jar is "
                                            "easy to clean... five stars from me")),
                 0, "case and punctuation do not matter");
    int one_word = sp_hamming64(a, sp_simhash("Great blender, crushes ice in seconds and the jar "
                                              "is easy to wash. Five stars from me!"));
    cr_assert_leq(one_word, 10, "one word changed: %d bits", one_word);
    static const char *other[] = {
        "The battery died after two days and support never answered my emails.",
        "Nice colour but the strap broke the first time I wore it.",
        "Terrible blender, leaks from the bottom and smells of burnt plastic.",
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        int d = sp_hamming64(a, sp_simhash(other[i]));
        cr_assert_gt(d, 16, "'%s' is %d bits away", other[i], d);
    }
}

static struct sp_review_item item;
static struct sp_review_burst_config cfg;
static void setup(void) {
    sp_review_item_init(&item);
    sp_review_burst_config_default(&cfg);
}

TestSuite(burst, .init = setup);

Test(burst, young_accounts_alert_at_the_threshold) {
    static const char *texts[] = {"love it", "works fine", "meh, average", "good value",
                                  "arrived late", "nice", "bad"};
    struct sp_review_burst_result r;
    /* An old account and a stale young review do not count. */
    sp_review_burst_update(&item, &(struct sp_review_obs){0, 2, "old news"});
    sp_review_burst_update(&item, &(struct sp_review_obs){100 * MIN, 400, "from a veteran"});
    for (int i = 0; i < 4; i++) {
        struct sp_review_obs o = {100 * MIN + (i + 1) * 5 * MIN, 0.5, texts[i]};
        sp_review_burst_score(&cfg, &item, &o, &r);
        cr_assert_eq(r.alert, 0, "review %d alerted early", i);
        sp_review_burst_update(&item, &o);
    }
    struct sp_review_obs o = {130 * MIN, 3, texts[4]};
    sp_review_burst_score(&cfg, &item, &o, &r);
    cr_assert_eq(r.in_window, 6, "4 young + the veteran + this one");
    cr_assert_eq(r.young, 5);
    cr_assert_eq(r.alert, 1);
    cr_assert_float_eq(r.score, 0.5, 1e-12);
    cr_assert_eq(r.nreasons, 1);
    cr_assert_str_eq(r.reasons[0],
                     "5 reviews of this item in 60 minutes from accounts younger than 7 days");
    /* The same review from an 8-day-old account: 4 young, no alert. */
    o.account_age_days = 8;
    sp_review_burst_score(&cfg, &item, &o, &r);
    cr_assert_eq(r.young, 4);
    cr_assert_eq(r.alert, 0);
    /* Two hours later the burst is over. */
    o = (struct sp_review_obs){250 * MIN, 0.1, texts[5]};
    sp_review_burst_score(&cfg, &item, &o, &r);
    cr_assert_eq(r.in_window, 1);
    cr_assert_eq(r.alert, 0);
}

Test(burst, near_identical_texts_alert) {
    static const char *copies[] = {
        "Great blender, crushes ice in seconds and the jar is easy to clean. Five stars from me!",
        "great blender crushes ice in seconds and the jar is easy to clean five stars from me",
        "Great blender, crushes ice in seconds and the jar is easy to clean. Five stars from me!!",
    };
    struct sp_review_burst_result r;
    sp_review_burst_update(&item, &(struct sp_review_obs){0, 900, "Sturdy and quiet, I use it daily."});
    for (int i = 0; i < 2; i++) {
        struct sp_review_obs o = {(i + 1) * MIN, 900, copies[i]};
        sp_review_burst_score(&cfg, &item, &o, &r);
        cr_assert_eq(r.alert, 0);
        sp_review_burst_update(&item, &o);
    }
    struct sp_review_obs o = {3 * MIN, 900, copies[2]};
    sp_review_burst_score(&cfg, &item, &o, &r);
    cr_assert_eq(r.near_dupes, 3);
    cr_assert_eq(r.young, 0, "old accounts");
    cr_assert_eq(r.alert, 1);
    cr_assert_str_eq(r.reasons[0], "3 near-identical reviews of this item in 60 minutes");
    cr_assert_gt(r.score, 0.49);
}
