#ifndef MODELS_FRAUD_REVIEW_H
#define MODELS_FRAUD_REVIEW_H

/* Review bursts: many reviews of one item in a short window from young
 * accounts, or with near-identical text (SimHash). Per-item state is a plain
 * fixed-size struct (the reviews operator keeps it as bytes in Redis); as
 * elsewhere, score a review against the state first, then update. */
#include <stddef.h>
#include <stdint.h>

#define SP_REVIEW_RECENT 32 /* reviews remembered per item */

struct sp_review_item {
    int64_t ts_ms[SP_REVIEW_RECENT];
    float account_age_days[SP_REVIEW_RECENT];
    uint64_t simhash[SP_REVIEW_RECENT];
    uint32_t n; /* reviews ever seen (the ring holds the last SP_REVIEW_RECENT) */
};

struct sp_review_burst_config {
    int64_t window_ms;   /* how far back a burst looks; 1 hour */
    double young_days;   /* an account younger than this is "young"; 7 */
    uint32_t min_young;  /* reviews from young accounts in the window to alert; 5 */
    uint32_t min_dupes;  /* near-identical reviews in the window to alert; 3 */
    int near_bits;       /* SimHash Hamming distance counted as near-identical; 10 */
};
void sp_review_burst_config_default(struct sp_review_burst_config *c);

struct sp_review_obs {
    int64_t ts_ms;
    double account_age_days; /* < 0: unknown, never counted as young */
    const char *text;
};

struct sp_review_burst_result {
    double score;       /* in [0,1]; 0.5 exactly at a threshold */
    int alert;          /* score >= 0.5 */
    uint32_t in_window; /* reviews in the window, this one included */
    uint32_t young;     /* of which from young accounts */
    uint32_t near_dupes; /* of which near-identical to this one, this one included */
    int nreasons;
    char reasons[2][128];
};

void sp_review_item_init(struct sp_review_item *it);
void sp_review_burst_score(const struct sp_review_burst_config *c, const struct sp_review_item *it,
                           const struct sp_review_obs *o, struct sp_review_burst_result *r);
/* The same score and reasons from counts made elsewhere (the reviews
 * operator counts in Redis, over all partitions): in_window, young and
 * near_dupes as in sp_review_burst_result, this review included. */
void sp_review_burst_from_counts(const struct sp_review_burst_config *c, uint32_t in_window,
                                 uint32_t young, uint32_t near_dupes,
                                 struct sp_review_burst_result *r);
void sp_review_burst_update(struct sp_review_item *it, const struct sp_review_obs *o);

/* 64-bit SimHash (Charikar) of the lower-cased words and word pairs of text:
 * texts that share most of their words differ in few bits. */
uint64_t sp_simhash(const char *text);
int sp_hamming64(uint64_t a, uint64_t b);

#endif
