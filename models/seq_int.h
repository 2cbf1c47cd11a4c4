#ifndef MODELS_SEQ_INT_H
#define MODELS_SEQ_INT_H

/* The encoders' scratch and caches, shared by seq.c, gru.c and sasrec.c.
 * Sized once for max_t steps; no allocation per sequence. */
#include "models/seq.h"

struct sp_attn_cache {
    float *xin, *xhat1, *rstd1, *a, *q, *k, *v, *att, *ctx, *o, *mo;
    float *x1, *xhat2, *rstd2, *c, *f1, *f2, *mf, *xout;
};

struct sp_seq_work {
    size_t max_t, dim, n_neg;
    size_t t;           /* steps of the last forward */
    const int32_t *in;  /* items of the last forward (borrowed) */
    float *out;         /* t x dim outputs */
    float *dout;        /* t x dim gradient of the outputs (loss) */
    /* GRU */
    float *x, *gx, *h, *r, *z, *n, *ghn, *dgx, *dgh, *dx;
    float *mx, *mo, *dh_m; /* GRU dropout masks (input, output) and masked dH */
    /* attention */
    float *x0, *m0, *xf, *xhatf, *rstdf;
    struct sp_attn_cache blk[SP_MODEL_MAX_BLOCKS];
    float *d_x, *d_x1, *d_f2, *d_f1, *d_c, *d_o, *d_ctx, *d_att, *d_q, *d_k, *d_v, *d_a;
    /* loss */
    float *eneg, *bneg, *logits, *dlogits, *deneg;
};

#endif
