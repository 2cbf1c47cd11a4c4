/* Finite-difference gradient checks: the analytic backward passes of the
 * GRU, the attention encoder (dropout on, with the same masks each time)
 * and the MF BPR loss against central differences of their losses. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/mf.h"
#include "models/model.h"
#include "models/scorer.h"
#include "models/seq.h"

static sp_model *tiny(enum sp_model_kind kind, uint32_t n_items, uint32_t dim) {
    struct sp_model_config cfg;
    sp_model_config_default(&cfg, kind);
    cfg.dim = dim;
    cfg.max_len = 6;
    cfg.n_blocks = 2;
    cfg.dropout = 0.3f; /* fixed masks: the check covers dropout's backward too */
    sp_vocab *v = sp_vocab_new();
    char id[16];
    for (uint32_t i = 0; i < n_items; i++) sp_vocab_add(v, id, (size_t)snprintf(id, sizeof id, "i%u", i));
    char err[128];
    sp_model *m = sp_model_new(&cfg, v, 3, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    /* move biases and layer-norm parameters off their initial values so
     * that their gradients are exercised in a generic point */
    uint64_t r = sp_rng_seed(11);
    for (size_t i = 0; i < m->lay.total; i++) m->params[i] += 0.1f * sp_rng_normal(&r);
    return m;
}

static const int32_t items[] = {1, 4, 2, 6, 3};
static const int32_t targets[] = {4, 2, 6, 3, 5};
static const int32_t negs[] = {0, 2, 5, 6};

static double loss_at(const sp_model *m, sp_seq_work *w, float *G) {
    uint64_t rng = sp_rng_seed(99); /* same dropout masks on every call */
    return sp_seq_loss(m, m->params, G, w, items, targets, 5, negs, 4, 1.0f, 1, &rng);
}

/* Checks every parameter; allows a handful of misses where a finite step
 * crosses a ReLU kink, and insists the gradient is not trivially zero. */
static void check_seq(sp_model *m) {
    sp_seq_work *w = sp_seq_work_new(m, 8, 4);
    float *G = calloc(m->lay.total, sizeof(float));
    loss_at(m, w, G);
    size_t bad = 0, nonzero = 0;
    const float eps = 2e-3f;
    for (size_t i = 0; i < m->lay.total; i++) {
        float keep = m->params[i];
        m->params[i] = keep + eps;
        double lp = loss_at(m, w, NULL);
        m->params[i] = keep - eps;
        double lm = loss_at(m, w, NULL);
        m->params[i] = keep;
        double num = (lp - lm) / (2 * eps), ana = G[i];
        if (fabs(ana) > 1e-4) nonzero++;
        if (fabs(num - ana) > 2e-2 + 3e-2 * fabs(ana)) {
            bad++;
            if (bad < 5) fprintf(stderr, "param %zu: numeric %.5f analytic %.5f\n", i, num, ana);
        }
    }
    cr_assert(bad <= m->lay.total / 200, "%zu of %zu gradients disagree", bad, m->lay.total);
    cr_assert(nonzero > m->lay.total / 3, "only %zu non-zero gradients", nonzero);
    free(G);
    sp_seq_work_destroy(w);
}

Test(models_grad, gru_matches_finite_differences) {
    sp_model *m = tiny(SP_MODEL_GRU, 8, 5);
    check_seq(m);
    sp_model_destroy(m);
}

Test(models_grad, attention_matches_finite_differences) {
    sp_model *m = tiny(SP_MODEL_SASREC, 8, 4);
    check_seq(m);
    sp_model_destroy(m);
}

Test(models_grad, attention_longer_than_window_sees_only_the_last_items) {
    /* 5 steps through a window of 3 must equal the last 3 steps alone */
    sp_model *m = tiny(SP_MODEL_SASREC, 8, 4);
    m->cfg.max_len = 3;
    sp_seq_work *w = sp_seq_work_new(m, 3, 4);
    double all = sp_seq_loss(m, m->params, NULL, w, items, targets, 5, negs, 4, 1.0f, 0, NULL);
    double last = sp_seq_loss(m, m->params, NULL, w, items + 2, targets + 2, 3, negs, 4, 1.0f, 0, NULL);
    double first = sp_seq_loss(m, m->params, NULL, w, items, targets, 3, negs, 4, 1.0f, 0, NULL);
    cr_assert(isfinite(all) && all > 0);
    cr_assert_float_eq(all, last, 1e-5);
    cr_assert(fabs(all - first) > 1e-4, "the window must not be the first items");
    sp_seq_work_destroy(w);
    sp_model_destroy(m);
}

Test(models_grad, mf_bpr_matches_finite_differences) {
    sp_model *m = tiny(SP_MODEL_MF, 6, 4);
    m->cfg.l2 = 0.05f;
    float u[4] = {0.3f, -0.2f, 0.5f, 0.1f}, du[4], dqi[4], dqj[4], dbi, dbj;
    int32_t i = 2, j = 4;
    sp_mf_bpr_grad(m, m->params, u, i, j, 2.0f, du, dqi, dqj, &dbi, &dbj);
    float scratch[12], sb1, sb2;
    const float eps = 1e-3f;
    for (int k = 0; k < 4; k++) {
        float keep = u[k];
        u[k] = keep + eps;
        double lp = sp_mf_bpr_grad(m, m->params, u, i, j, 2.0f, scratch, scratch + 4, scratch + 8, &sb1, &sb2);
        u[k] = keep - eps;
        double lm = sp_mf_bpr_grad(m, m->params, u, i, j, 2.0f, scratch, scratch + 4, scratch + 8, &sb1, &sb2);
        u[k] = keep;
        cr_assert_float_eq((lp - lm) / (2 * eps), du[k], 2e-3, "du[%d]", k);
    }
    float *tensors[] = {m->params + m->lay.emb + i * 4, m->params + m->lay.emb + j * 4};
    float *grads[] = {dqi, dqj};
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 4; k++) {
            float keep = tensors[t][k];
            tensors[t][k] = keep + eps;
            double lp = sp_mf_bpr_grad(m, m->params, u, i, j, 2.0f, scratch, scratch + 4, scratch + 8, &sb1, &sb2);
            tensors[t][k] = keep - eps;
            double lm = sp_mf_bpr_grad(m, m->params, u, i, j, 2.0f, scratch, scratch + 4, scratch + 8, &sb1, &sb2);
            tensors[t][k] = keep;
            cr_assert_float_eq((lp - lm) / (2 * eps), grads[t][k], 2e-3, "tensor %d [%d]", t, k);
        }
    float *bias[] = {m->params + m->lay.bias + i, m->params + m->lay.bias + j};
    float bg[] = {dbi, dbj};
    for (int t = 0; t < 2; t++) {
        float keep = *bias[t];
        *bias[t] = keep + eps;
        double lp = sp_mf_bpr_grad(m, m->params, u, i, j, 2.0f, scratch, scratch + 4, scratch + 8, &sb1, &sb2);
        *bias[t] = keep - eps;
        double lm = sp_mf_bpr_grad(m, m->params, u, i, j, 2.0f, scratch, scratch + 4, scratch + 8, &sb1, &sb2);
        *bias[t] = keep;
        cr_assert_float_eq((lp - lm) / (2 * eps), bg[t], 2e-3, "bias %d", t);
    }
    sp_model_destroy(m);
}
