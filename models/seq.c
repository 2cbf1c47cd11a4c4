/* Sequence encoders: work buffers, dispatch by kind, and the
 * sampled-softmax next-item loss shared by GRU and attention training. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/seq_int.h"
#include "stream/error.h"

static float *fl(size_t n) { return sp_xcalloc(n ? n : 1, sizeof(float)); }

sp_seq_work *sp_seq_work_new(const sp_model *m, size_t max_t, size_t n_neg) {
    sp_seq_work *w = sp_xcalloc(1, sizeof *w);
    size_t d = m->cfg.dim, T = max_t ? max_t : 1;
    w->max_t = T;
    w->dim = d;
    w->n_neg = n_neg;
    w->out = fl(T * d);
    w->dout = fl(T * d);
    if (m->cfg.kind == SP_MODEL_GRU) {
        w->x = fl(T * d);
        w->gx = fl(T * 3 * d);
        w->h = fl((T + 1) * d);
        w->r = fl(T * d);
        w->z = fl(T * d);
        w->n = fl(T * d);
        w->ghn = fl(T * d);
        w->dgx = fl(T * 3 * d);
        w->dgh = fl(T * 3 * d);
        w->dx = fl(T * d);
        w->mx = fl(T * d);
        w->mo = fl(T * d);
        w->dh_m = fl(T * d);
    } else if (m->cfg.kind == SP_MODEL_SASREC) {
        w->x0 = fl(T * d);
        w->m0 = fl(T * d);
        w->xf = fl(T * d);
        w->xhatf = fl(T * d);
        w->rstdf = fl(T);
        for (uint32_t b = 0; b < m->cfg.n_blocks; b++) {
            struct sp_attn_cache *c = &w->blk[b];
            float **mats[] = {&c->xin, &c->xhat1, &c->a, &c->q, &c->k, &c->v, &c->ctx, &c->o,
                              &c->mo, &c->x1, &c->xhat2, &c->c, &c->f1, &c->f2, &c->mf, &c->xout};
            for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) *mats[i] = fl(T * d);
            c->rstd1 = fl(T);
            c->rstd2 = fl(T);
            c->att = fl(T * T);
        }
        float **mats[] = {&w->d_x, &w->d_x1, &w->d_f2, &w->d_f1, &w->d_c, &w->d_o,
                          &w->d_ctx, &w->d_q, &w->d_k, &w->d_v, &w->d_a};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) *mats[i] = fl(T * d);
        w->d_att = fl(T * T);
    }
    w->eneg = fl(n_neg * d);
    w->bneg = fl(n_neg);
    w->deneg = fl(n_neg * d);
    w->logits = fl(T * (n_neg + 1));
    w->dlogits = fl(T * (n_neg + 1));
    return w;
}

void sp_seq_work_destroy(sp_seq_work *w) {
    if (!w) return;
    float *all[] = {w->out, w->dout, w->x, w->gx, w->h, w->r, w->z, w->n, w->ghn, w->dgx,
                    w->dgh, w->dx, w->mx, w->mo, w->dh_m, w->x0, w->m0, w->xf, w->xhatf, w->rstdf, w->d_x, w->d_x1,
                    w->d_f2, w->d_f1, w->d_c, w->d_o, w->d_ctx, w->d_att, w->d_q, w->d_k,
                    w->d_v, w->d_a, w->eneg, w->bneg, w->logits, w->dlogits, w->deneg};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    for (int b = 0; b < SP_MODEL_MAX_BLOCKS; b++) {
        struct sp_attn_cache *c = &w->blk[b];
        float *mats[] = {c->xin, c->xhat1, c->rstd1, c->a, c->q, c->k, c->v, c->att, c->ctx,
                         c->o, c->mo, c->x1, c->xhat2, c->rstd2, c->c, c->f1, c->f2, c->mf,
                         c->xout};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) free(mats[i]);
    }
    free(w);
}

const float *sp_seq_forward(const sp_model *m, const float *P, sp_seq_work *w,
                            const int32_t *items, size_t t, int train, uint64_t *rng) {
    if (t > w->max_t) {
        items += t - w->max_t;
        t = w->max_t;
    }
    if (m->cfg.kind == SP_MODEL_GRU) return sp_gru_forward(m, P, w, items, t, train, rng);
    return sp_sasrec_forward(m, P, w, items, t, train, rng);
}

void sp_seq_backward(const sp_model *m, const float *P, float *G, sp_seq_work *w,
                     const float *dH) {
    if (m->cfg.kind == SP_MODEL_GRU)
        sp_gru_backward(m, P, G, w, dH);
    else
        sp_sasrec_backward(m, P, G, w, dH);
}

/* Sampled softmax: the target's logit against the logits of the shared
 * negatives, all from one sgemm (t x n_neg). Sharing negatives across the
 * steps of a sequence is what makes the output layer cheap enough to train
 * on a laptop core while still pushing down many items per update. */
double sp_seq_loss(const sp_model *m, const float *P, float *G, sp_seq_work *w,
                   const int32_t *items, const int32_t *targets, size_t t, const int32_t *negs,
                   size_t n_neg, float scale, int train, uint64_t *rng) {
    if (t > w->max_t) {
        items += t - w->max_t;
        targets += t - w->max_t;
        t = w->max_t;
    }
    if (n_neg > w->n_neg) n_neg = w->n_neg;
    size_t d = m->cfg.dim, S = n_neg, W = S + 1;
    const float *E = P + m->lay.emb, *bias = P + m->lay.bias;
    const float *H = sp_seq_forward(m, P, w, items, t, train, rng);
    for (size_t j = 0; j < S; j++) {
        memcpy(w->eneg + j * d, E + (size_t)negs[j] * d, d * sizeof(float));
        w->bneg[j] = bias[negs[j]];
    }
    /* logits row i: [positive, negatives...] */
    for (size_t i = 0; i < t; i++) {
        float *row = w->logits + i * W;
        row[0] = cblas_sdot((int)d, H + i * d, 1, E + (size_t)targets[i] * d, 1) + bias[targets[i]];
        for (size_t j = 0; j < S; j++) row[1 + j] = w->bneg[j];
    }
    if (S)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)t, (int)S, (int)d, 1.0f, H,
                    (int)d, w->eneg, (int)d, 1.0f, w->logits + 1, (int)W);
    double loss = 0;
    for (size_t i = 0; i < t; i++) {
        float *row = w->logits + i * W, *drow = w->dlogits + i * W;
        float mx = row[0];
        for (size_t j = 0; j < S; j++)
            if (negs[j] != targets[i] && row[1 + j] > mx) mx = row[1 + j];
        double sum = 0;
        for (size_t j = 0; j < W; j++) {
            int skip = j > 0 && negs[j - 1] == targets[i];
            drow[j] = skip ? 0.0f : expf(row[j] - mx);
            sum += drow[j];
        }
        loss += -(row[0] - mx - log(sum));
        for (size_t j = 0; j < W; j++) drow[j] = (float)(drow[j] / sum) * scale;
        drow[0] -= scale;
    }
    if (!G) return loss;
    float *dE = G + m->lay.emb, *db = G + m->lay.bias;
    float *dH = w->dout;
    /* dH = dlogits[:,1:] Eneg + dlogit_pos * E[target] */
    if (S)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)t, (int)d, (int)S, 1.0f,
                    w->dlogits + 1, (int)W, w->eneg, (int)d, 0.0f, dH, (int)d);
    else
        memset(dH, 0, t * d * sizeof(float));
    for (size_t i = 0; i < t; i++) {
        float g = w->dlogits[i * W];
        const float *e = E + (size_t)targets[i] * d;
        float *de = dE + (size_t)targets[i] * d;
        for (size_t k = 0; k < d; k++) {
            dH[i * d + k] += g * e[k];
            de[k] += g * H[i * d + k];
        }
        db[targets[i]] += g;
    }
    if (S) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)S, (int)d, (int)t, 1.0f,
                    w->dlogits + 1, (int)W, H, (int)d, 0.0f, w->deneg, (int)d);
        for (size_t j = 0; j < S; j++) {
            float *de = dE + (size_t)negs[j] * d;
            for (size_t k = 0; k < d; k++) de[k] += w->deneg[j * d + k];
            for (size_t i = 0; i < t; i++) db[negs[j]] += w->dlogits[i * W + 1 + j];
        }
    }
    sp_seq_backward(m, P, G, w, dH);
    return loss;
}
