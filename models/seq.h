#ifndef MODELS_SEQ_H
#define MODELS_SEQ_H

/* Sequence encoders (GRU, self-attention) for training and evaluation:
 * forward over a whole sequence, backward into a gradient array laid out
 * like the parameters, and the sampled-softmax next-item loss. Serving uses
 * the lighter calls in models/scorer.h. */
#include <stddef.h>
#include <stdint.h>

#include "models/model.h"

typedef struct sp_seq_work sp_seq_work;

/* Buffers for sequences of up to max_t steps with n_neg negatives. */
sp_seq_work *sp_seq_work_new(const sp_model *m, size_t max_t, size_t n_neg);
void sp_seq_work_destroy(sp_seq_work *w);

/* Encodes items[0..t) with parameters P (m's layout; pass m->params to
 * serve). Returns the t x dim outputs, row i being the user vector after
 * items[0..i]; valid until the next call on w. train turns dropout on. */
const float *sp_seq_forward(const sp_model *m, const float *P, sp_seq_work *w,
                            const int32_t *items, size_t t, int train, uint64_t *rng);

/* Accumulates into G the gradient of the last forward's outputs given dH
 * (t x dim). */
void sp_seq_backward(const sp_model *m, const float *P, float *G, sp_seq_work *w, const float *dH);

/* Next-item loss of one sequence: at each step i the target targets[i] is
 * scored against the shared sampled negatives negs[0..n_neg) with a softmax;
 * returns the summed cross-entropy. When G is not NULL, adds scale times the
 * gradient into G. A negative equal to the step's target is ignored. */
double sp_seq_loss(const sp_model *m, const float *P, float *G, sp_seq_work *w,
                   const int32_t *items, const int32_t *targets, size_t t, const int32_t *negs,
                   size_t n_neg, float scale, int train, uint64_t *rng);

/* Internal: per-kind passes (models/gru.c, models/sasrec.c). */
const float *sp_gru_forward(const sp_model *m, const float *P, sp_seq_work *w,
                            const int32_t *items, size_t t, int train, uint64_t *rng);
void sp_gru_backward(const sp_model *m, const float *P, float *G, sp_seq_work *w, const float *dH);
const float *sp_sasrec_forward(const sp_model *m, const float *P, sp_seq_work *w,
                               const int32_t *items, size_t t, int train, uint64_t *rng);
void sp_sasrec_backward(const sp_model *m, const float *P, float *G, sp_seq_work *w,
                        const float *dH);

/* Inverted dropout: zeroes each of x[0..n) with probability p and scales
 * the rest by 1/(1-p), recording the factor in mask; with train off (or no
 * rng) the mask is all ones and x is untouched. */
void sp_nn_dropout(float *x, float *mask, size_t n, float p, int train, uint64_t *rng);

/* Dense helpers (models/nn.c). Row-major; Y = X W + b. */
void sp_nn_linear(const float *X, size_t t, size_t in, size_t out, const float *W, const float *b,
                  float *Y);
void sp_nn_linear_back(const float *X, const float *dY, size_t t, size_t in, size_t out,
                       const float *W, float *dX, float dx_beta, float *dW, float *db);
void sp_nn_layernorm(const float *X, size_t t, size_t d, const float *g, const float *b, float *Y,
                     float *xhat, float *rstd);
void sp_nn_layernorm_back(const float *dY, const float *xhat, const float *rstd, size_t t, size_t d,
                          const float *g, float *dX, float *dg, float *db);

#endif
