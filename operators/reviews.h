#ifndef OPERATORS_REVIEWS_H
#define OPERATORS_REVIEWS_H

/* The sentiment hook shared by the reviews and kpi operators.
 *
 * SENTIMENT HOOK: returns the sentiment score of a review text (negative is
 * negative; 0 neutral). Until the lexicon scorer (models/sentiment.*) is
 * merged it returns 0 for every text, so per-item `sentiment_sum` and the
 * KPI `sentiment_sum` counter stay 0. Wiring it is one line in
 * operators/reviews.c. */
double sp_reviews_sentiment(const char *text);

#endif
