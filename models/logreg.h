#ifndef MODELS_LOGREG_H
#define MODELS_LOGREG_H

/* Binary logistic regression on dense float features: batch training with
 * Adam on the L2-regularized log loss, optional per-feature standardization
 * learned from the training set, and a versioned model file (magic, version,
 * shape, checksum). Used by the fraud scorer (a dozen or two handmade
 * features) and by the sentiment model (hashed bag of words). */
#include <stddef.h>
#include <stdint.h>

typedef struct sp_logreg sp_logreg;

struct sp_logreg_opts {
    int epochs;         /* full passes of batch gradient descent; 0 = 300 */
    double lr;          /* Adam step size; 0 = 0.05 */
    double l2;          /* L2 penalty on the weights (not the bias) */
    int standardize;    /* 1: learn mean/std per feature and apply them */
    double pos_weight;  /* weight of positive examples in the loss; 0 = 1 */
};

/* A model of d features with zero weights (scores 0.5 until trained). */
sp_logreg *sp_logreg_new(size_t d);
void sp_logreg_destroy(sp_logreg *m);
size_t sp_logreg_dim(const sp_logreg *m);

/* Trains on n rows of x (row-major n*d) with labels y in {0,1}, replacing any
 * previous weights. Returns 0, or SP_ERR_BADINPUT if n is 0. */
int sp_logreg_train(sp_logreg *m, const float *x, const uint8_t *y, size_t n,
                    const struct sp_logreg_opts *opts);

/* P(y=1 | x) for one row of d features, and its logit. */
double sp_logreg_predict(const sp_logreg *m, const float *x);
double sp_logreg_logit(const sp_logreg *m, const float *x);

/* Weight of feature j in standardized units (what the model leans on). */
double sp_logreg_weight(const sp_logreg *m, size_t j);

/* Model file: "SPLR" magic, format version, d, flags, mean[d], std[d], w[d],
 * bias, then a 64-bit FNV-1a checksum of everything before it. Load returns
 * NULL and a message in err for a missing, truncated, foreign or corrupted
 * file. */
int sp_logreg_save(const sp_logreg *m, const char *path, char *err, size_t errlen);
sp_logreg *sp_logreg_load(const char *path, char *err, size_t errlen);

#endif
