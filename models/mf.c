/* Online matrix factorisation for implicit feedback: BPR (Rendle et al.,
 * UAI 2009) learned one interaction at a time, each against n_neg items
 * sampled uniformly, the loss weighted by the event kind. Item factors are
 * shared state, so an update returns their changes as deltas instead of
 * writing them: the trainer applies them at once, the stream batches them
 * into its shared item table. */
#include <math.h>
#include <string.h>

#include "models/mf.h"
#include "models/scorer.h"
#include "stream/error.h"

float sp_mf_lr_at(const sp_model *m, uint64_t step) {
    return m->cfg.lr / (1.0f + m->cfg.lr_decay * (float)step);
}

float sp_mf_kind_weight(const sp_model *m, int kind) {
    if (kind < 0 || kind >= SP_MODEL_N_WEIGHTS) return 1.0f;
    return m->cfg.weights[kind];
}

size_t sp_mf_n_deltas(const sp_model *m) { return 1 + (m->cfg.n_neg ? m->cfg.n_neg : 1); }

/* Weighted BPR loss of one (user, positive i, negative j) triple with L2,
 *   w * -log sigmoid(u.(q_i - q_j) + b_i - b_j) + l2/2 * |params|^2,
 * and its gradient; returns the loss. */
double sp_mf_bpr_grad(const sp_model *m, const float *P, const float *u, int32_t i, int32_t j,
                      float w, float *du, float *dqi, float *dqj, float *dbi, float *dbj) {
    size_t d = m->cfg.dim;
    float l2 = m->cfg.l2;
    const float *qi = P + m->lay.emb + (size_t)i * d, *qj = P + m->lay.emb + (size_t)j * d;
    float bi = P[m->lay.bias + i], bj = P[m->lay.bias + j];
    double x = bi - bj, reg = bi * bi + bj * bj;
    for (size_t k = 0; k < d; k++) {
        x += u[k] * (qi[k] - qj[k]);
        reg += u[k] * u[k] + qi[k] * qi[k] + qj[k] * qj[k];
    }
    /* -log sigmoid(x), computed without overflow */
    double loss = w * (x > 0 ? log1p(exp(-x)) : -x + log1p(exp(x))) + 0.5 * l2 * reg;
    float g = (float)(-w / (1.0 + exp(x)));
    for (size_t k = 0; k < d; k++) {
        du[k] = g * (qi[k] - qj[k]) + l2 * u[k];
        dqi[k] = g * u[k] + l2 * qi[k];
        dqj[k] = -g * u[k] + l2 * qj[k];
    }
    *dbi = g + l2 * bi;
    *dbj = -g + l2 * bj;
    return loss;
}

int sp_mf_learn(const sp_model *m, float *user, int32_t item, float w, float lr, uint64_t *rng,
                struct sp_mf_delta *deltas) {
    if (item < 0 || (uint32_t)item >= m->n_items) return SP_ERR_BADINPUT;
    size_t d = m->cfg.dim, nneg = sp_mf_n_deltas(m) - 1;
    float du_sum[SP_MODEL_MAX_DIM], du[SP_MODEL_MAX_DIM], dqi[SP_MODEL_MAX_DIM];
    memset(du_sum, 0, d * sizeof(float));
    deltas[0].item = item;
    deltas[0].dbias = 0.0f;
    memset(deltas[0].vec, 0, d * sizeof(float));
    if (w == 0.0f || m->n_items < 2) return 1;
    for (size_t s = 0; s < nneg; s++) {
        int32_t j = (int32_t)sp_rng_below(rng, m->n_items);
        if (j == item) j = (j + 1) % (int32_t)m->n_items;
        float dbi, dbj;
        struct sp_mf_delta *dn = &deltas[1 + s];
        dn->item = j;
        sp_mf_bpr_grad(m, m->params, user, item, j, w, du, dqi, dn->vec, &dbi, &dbj);
        for (size_t k = 0; k < d; k++) {
            du_sum[k] += du[k];
            deltas[0].vec[k] -= lr * dqi[k];
            dn->vec[k] *= -lr;
        }
        deltas[0].dbias -= lr * dbi;
        dn->dbias = -lr * dbj;
    }
    for (size_t k = 0; k < d; k++) user[k] -= lr * du_sum[k];
    return (int)(1 + nneg);
}
