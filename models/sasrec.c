/* Self-attention encoder (SASRec style): item embedding * sqrt(d) plus a
 * learned position, then n_blocks pre-norm causal blocks
 *   x = x + drop(Attn(LN1(x)) Wo + bo),  x = x + drop(FFN(LN2(x)))
 * with one head and a ReLU feed-forward, and a final layer norm. A
 * sequence shorter than max_len is placed at the end of the position
 * window, as SASRec's left padding does, so the newest item always has
 * the last position; padding itself is never computed. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "models/scorer.h"
#include "models/seq_int.h"
#include "stream/error.h"

const float *sp_sasrec_forward(const sp_model *m, const float *P, sp_seq_work *w,
                               const int32_t *items, size_t t, int train, uint64_t *rng) {
    size_t d = m->cfg.dim, L = m->cfg.max_len;
    if (t > L) {
        items += t - L;
        t = L;
    }
    size_t off = L - t;
    float sq = sqrtf((float)d), inv = 1.0f / sqrtf((float)d), p = m->cfg.dropout;
    w->t = t;
    w->in = items;
    for (size_t i = 0; i < t; i++) {
        const float *e = P + m->lay.emb + (size_t)items[i] * d, *ps = P + m->lay.pos + (off + i) * d;
        for (size_t k = 0; k < d; k++) w->x0[i * d + k] = e[k] * sq + ps[k];
    }
    sp_nn_dropout(w->x0, w->m0, t * d, p, train, rng);
    const float *x = w->x0;
    for (uint32_t b = 0; b < m->cfg.n_blocks; b++) {
        const struct sp_block_layout *k = &m->lay.blk[b];
        struct sp_attn_cache *c = &w->blk[b];
        memcpy(c->xin, x, t * d * sizeof(float));
        sp_nn_layernorm(c->xin, t, d, P + k->ln1_g, P + k->ln1_b, c->a, c->xhat1, c->rstd1);
        sp_nn_linear(c->a, t, d, d, P + k->wq, P + k->bq, c->q);
        sp_nn_linear(c->a, t, d, d, P + k->wk, P + k->bk, c->k);
        sp_nn_linear(c->a, t, d, d, P + k->wv, P + k->bv, c->v);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)t, (int)t, (int)d, inv, c->q,
                    (int)d, c->k, (int)d, 0.0f, c->att, (int)t);
        for (size_t i = 0; i < t; i++) {
            float *row = c->att + i * t, mx = row[0], sum = 0;
            for (size_t j = 1; j <= i; j++) mx = row[j] > mx ? row[j] : mx;
            for (size_t j = 0; j <= i; j++) sum += row[j] = expf(row[j] - mx);
            for (size_t j = 0; j <= i; j++) row[j] /= sum;
            for (size_t j = i + 1; j < t; j++) row[j] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)t, (int)d, (int)t, 1.0f,
                    c->att, (int)t, c->v, (int)d, 0.0f, c->ctx, (int)d);
        sp_nn_linear(c->ctx, t, d, d, P + k->wo, P + k->bo, c->o);
        sp_nn_dropout(c->o, c->mo, t * d, p, train, rng);
        for (size_t i = 0; i < t * d; i++) c->x1[i] = c->xin[i] + c->o[i];
        sp_nn_layernorm(c->x1, t, d, P + k->ln2_g, P + k->ln2_b, c->c, c->xhat2, c->rstd2);
        sp_nn_linear(c->c, t, d, d, P + k->w1, P + k->b1, c->f1);
        for (size_t i = 0; i < t * d; i++) c->f1[i] = c->f1[i] > 0.0f ? c->f1[i] : 0.0f;
        sp_nn_linear(c->f1, t, d, d, P + k->w2, P + k->b2, c->f2);
        sp_nn_dropout(c->f2, c->mf, t * d, p, train, rng);
        for (size_t i = 0; i < t * d; i++) c->xout[i] = c->x1[i] + c->f2[i];
        x = c->xout;
    }
    memcpy(w->xf, x, t * d * sizeof(float));
    sp_nn_layernorm(w->xf, t, d, P + m->lay.lnf_g, P + m->lay.lnf_b, w->out, w->xhatf, w->rstdf);
    return w->out;
}

void sp_sasrec_backward(const sp_model *m, const float *P, float *G, sp_seq_work *w,
                        const float *dH) {
    size_t d = m->cfg.dim, t = w->t, L = m->cfg.max_len, off = L - t, td = t * d;
    float sq = sqrtf((float)d), inv = 1.0f / sqrtf((float)d);
    float *dx = w->d_x;
    memset(dx, 0, td * sizeof(float));
    sp_nn_layernorm_back(dH, w->xhatf, w->rstdf, t, d, P + m->lay.lnf_g, dx, G + m->lay.lnf_g,
                         G + m->lay.lnf_b);
    for (uint32_t bb = m->cfg.n_blocks; bb-- > 0;) {
        const struct sp_block_layout *k = &m->lay.blk[bb];
        struct sp_attn_cache *c = &w->blk[bb];
        /* xout = x1 + drop(f2) */
        for (size_t i = 0; i < td; i++) {
            w->d_f2[i] = dx[i] * c->mf[i];
            w->d_x1[i] = dx[i];
        }
        sp_nn_linear_back(c->f1, w->d_f2, t, d, d, P + k->w2, w->d_f1, 0.0f, G + k->w2, G + k->b2);
        for (size_t i = 0; i < td; i++)
            if (c->f1[i] <= 0.0f) w->d_f1[i] = 0.0f;
        sp_nn_linear_back(c->c, w->d_f1, t, d, d, P + k->w1, w->d_c, 0.0f, G + k->w1, G + k->b1);
        sp_nn_layernorm_back(w->d_c, c->xhat2, c->rstd2, t, d, P + k->ln2_g, w->d_x1,
                             G + k->ln2_g, G + k->ln2_b);
        /* x1 = xin + drop(o) */
        for (size_t i = 0; i < td; i++) {
            w->d_o[i] = w->d_x1[i] * c->mo[i];
            dx[i] = w->d_x1[i];
        }
        sp_nn_linear_back(c->ctx, w->d_o, t, d, d, P + k->wo, w->d_ctx, 0.0f, G + k->wo, G + k->bo);
        /* ctx = att v */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)t, (int)t, (int)d, 1.0f,
                    w->d_ctx, (int)d, c->v, (int)d, 0.0f, w->d_att, (int)t);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)t, (int)d, (int)t, 1.0f, c->att,
                    (int)t, w->d_ctx, (int)d, 0.0f, w->d_v, (int)d);
        /* softmax rows, then the 1/sqrt(d) scale */
        for (size_t i = 0; i < t; i++) {
            float *da = w->d_att + i * t;
            const float *a = c->att + i * t;
            float s = 0;
            for (size_t j = 0; j <= i; j++) s += a[j] * da[j];
            for (size_t j = 0; j <= i; j++) da[j] = a[j] * (da[j] - s) * inv;
            for (size_t j = i + 1; j < t; j++) da[j] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)t, (int)d, (int)t, 1.0f,
                    w->d_att, (int)t, c->k, (int)d, 0.0f, w->d_q, (int)d);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)t, (int)d, (int)t, 1.0f,
                    w->d_att, (int)t, c->q, (int)d, 0.0f, w->d_k, (int)d);
        sp_nn_linear_back(c->a, w->d_q, t, d, d, P + k->wq, w->d_a, 0.0f, G + k->wq, G + k->bq);
        sp_nn_linear_back(c->a, w->d_k, t, d, d, P + k->wk, w->d_a, 1.0f, G + k->wk, G + k->bk);
        sp_nn_linear_back(c->a, w->d_v, t, d, d, P + k->wv, w->d_a, 1.0f, G + k->wv, G + k->bv);
        sp_nn_layernorm_back(w->d_a, c->xhat1, c->rstd1, t, d, P + k->ln1_g, dx, G + k->ln1_g,
                             G + k->ln1_b);
    }
    float *dE = G + m->lay.emb, *dP = G + m->lay.pos;
    for (size_t i = 0; i < t; i++) {
        float *de = dE + (size_t)w->in[i] * d, *dp = dP + (off + i) * d;
        for (size_t kk = 0; kk < d; kk++) {
            float g = dx[i * d + kk] * w->m0[i * d + kk];
            de[kk] += g * sq;
            dp[kk] += g;
        }
    }
}
