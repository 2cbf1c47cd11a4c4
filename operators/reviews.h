#ifndef OPERATORS_REVIEWS_H
#define OPERATORS_REVIEWS_H

/* The sentiment hook shared by the reviews and kpi operators.
 *
 * SENTIMENT HOOK: returns the sentiment score of a review text, the
 * AFINN-165 lexicon scorer's compound score in (-1, 1) (models/sentiment.h;
 * negative is negative, 0 neutral or nothing found). It feeds the per-item
 * `sentiment_sum` and the KPI `sentiment_sum` counter. */
double sp_reviews_sentiment(const char *text);

#endif
