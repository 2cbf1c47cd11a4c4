/* The GRU step's own arithmetic (models/gru.c, models/vmath.h) against the
 * straightforward one it replaced: an sgemv per projection and libm's expf
 * and tanhf per unit. Not bit for bit -- the gates are a polynomial exp --
 * but within a stated tolerance, for dimensions on and off the 8-lane
 * blocks, and over a sequence long enough for errors to build up. And the
 * step from a precomputed input row against the step itself, bit for bit. */
#include <cblas.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/scorer.h"
#include "models/seq_int.h"
#include "models/vmath.h"

Test(models_vmath, exp_within_three_ulp_of_libm) {
    for (float x = -87.0f; x <= 88.0f; x += 0.0137f) {
        sp_v8sf e = sp_v8_splat(x);
        sp_vexp(&e);
        float ref = expf(x);
        cr_assert(fabsf(e[0] - ref) <= 3.0f * 1.2e-7f * ref, "exp(%g) = %.9g, libm %.9g", x,
                  e[0], ref);
    }
}

Test(models_vmath, sigmoid_and_tanh_within_2e7_of_libm_and_saturate) {
    for (float x = -30.0f; x <= 30.0f; x += 0.00731f) {
        sp_v8sf sv = sp_v8_splat(x), tv = sv;
        sp_vsigm(&sv);
        sp_vtanh(&tv);
        float s = sv[0], t = tv[0];
        cr_assert(fabsf(s - 1.0f / (1.0f + expf(-x))) <= 2e-7f, "sigm(%g) = %.9g", x, s);
        cr_assert(fabsf(t - tanhf(x)) <= 2e-7f, "tanh(%g) = %.9g", x, t);
    }
    /* past the clamp: finite, and at the limits */
    float big[] = {-1e30f, -200.0f, 200.0f, 1e30f};
    for (int i = 0; i < 4; i++) {
        sp_v8sf s = sp_v8_splat(big[i]), t = s, e = s;
        sp_vsigm(&s);
        sp_vtanh(&t);
        sp_vexp(&e);
        cr_assert_float_eq(s[0], big[i] > 0 ? 1.0f : 0.0f, 1e-30);
        cr_assert_float_eq(t[0], big[i] > 0 ? 1.0f : -1.0f, 1e-30);
        cr_assert(isfinite(e[0]));
    }
}

/* The step as it was: sgemv for both projections, libm for the gates. */
static void reference_step(const sp_model *m, float *h, int32_t item) {
    size_t d = m->cfg.dim;
    const float *P = m->params;
    float gx[3 * 64], gh[3 * 64], hn[64];
    memcpy(gx, P + m->lay.gru_bx, 3 * d * sizeof(float));
    memcpy(gh, P + m->lay.gru_bh, 3 * d * sizeof(float));
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)d, (int)(3 * d), 1.0f, P + m->lay.gru_wx,
                (int)(3 * d), P + m->lay.emb + (size_t)item * d, 1, 1.0f, gx, 1);
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)d, (int)(3 * d), 1.0f, P + m->lay.gru_wh,
                (int)(3 * d), h, 1, 1.0f, gh, 1);
    for (size_t k = 0; k < d; k++) {
        float r = 1.0f / (1.0f + expf(-(gx[k] + gh[k])));
        float z = 1.0f / (1.0f + expf(-(gx[d + k] + gh[d + k])));
        float n = tanhf(gx[2 * d + k] + r * gh[2 * d + k]);
        hn[k] = (1.0f - z) * n + z * h[k];
    }
    memcpy(h, hn, d * sizeof(float));
}

static sp_model *gru_model(uint32_t dim, uint32_t n_items) {
    struct sp_model_config cfg;
    sp_model_config_default(&cfg, SP_MODEL_GRU);
    cfg.dim = dim;
    sp_vocab *v = sp_vocab_new();
    char id[16];
    for (uint32_t i = 0; i < n_items; i++) sp_vocab_add(v, id, (size_t)snprintf(id, sizeof id, "%u", i));
    sp_model *m = sp_model_new(&cfg, v, 3, NULL, 0);
    /* input weights large enough for the gates to reach their saturated
     * ends as well as the middle; recurrent ones contracting (gain 0.9), as
     * trained ones are -- with a chaotic recurrence any rounding difference
     * grows without bound, whoever rounds */
    uint64_t r = sp_rng_seed(dim);
    float s = 1.0f / sqrtf((float)dim);
    for (size_t i = 0; i < 3 * (size_t)dim * dim; i++) {
        m->params[m->lay.gru_wh + i] = 0.9f * s * sp_rng_normal(&r);
        m->params[m->lay.gru_wx + i] = 3.0f * s * sp_rng_normal(&r);
    }
    for (size_t i = 0; i < (size_t)n_items * dim; i++)
        m->params[m->lay.emb + i] = sp_rng_normal(&r);
    return m;
}

Test(models_gru, step_within_1e5_of_the_sgemv_libm_step) {
    uint32_t dims[] = {1, 3, 8, 13, 32, 40, 64};
    for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
        uint32_t d = dims[di];
        sp_model *m = gru_model(d, 50);
        float h[64] = {0}, ref[64] = {0};
        uint64_t r = sp_rng_seed(11);
        float worst = 0.0f;
        for (int t = 0; t < 200; t++) {
            int32_t item = (int32_t)sp_rng_below(&r, 50);
            cr_assert_eq(sp_gru_step(m, h, item), 0);
            reference_step(m, ref, item);
            for (size_t k = 0; k < d; k++) worst = fmaxf(worst, fabsf(h[k] - ref[k]));
        }
        cr_log_info("d=%u: worst difference %g", d, worst);
        cr_assert(worst <= 1e-5f, "d=%u: worst difference %g", d, worst);
        /* and not trivially: the state moved */
        float norm = 0.0f;
        for (size_t k = 0; k < d; k++) norm += fabsf(h[k]);
        cr_assert_gt(norm, 0.01f * (float)d, "d=%u: state stayed near zero", d);
        sp_model_destroy(m);
    }
}

/* recommend steps users through the input table (models/scorer.h): a step
 * through the table must be sp_gru_step's bit for bit, for every size the
 * matvec blocks differently, over random items (the table's row is the
 * item's) and states that wander far from zero. */
Test(models_gru, step_through_the_input_table_is_sp_gru_step_bit_for_bit) {
    uint32_t dims[] = {1, 3, 8, 13, 32, 40, 64};
    for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
        uint32_t d = dims[di], n = 50;
        sp_model *m = gru_model(d, n);
        float *gx = sp_gru_input_table(m, SIZE_MAX);
        cr_assert_not_null(gx);
        float h[64] = {0}, want[64] = {0};
        uint64_t r = sp_rng_seed(5 + d);
        for (int t = 0; t < 300; t++) {
            int32_t item = (int32_t)sp_rng_below(&r, n);
            if (t % 50 == 0) /* a restart from an arbitrary state too */
                for (size_t k = 0; k < d; k++) h[k] = want[k] = sp_rng_normal(&r);
            cr_assert_eq(sp_gru_step(m, want, item), 0);
            cr_assert_eq(sp_gru_step_with(m, gx, h, item), 0);
            cr_assert(!memcmp(h, want, d * sizeof(float)), "d=%u step %d item %d: %a, want %a",
                      d, t, item, h[0], want[0]);
        }
        /* the size cap: one byte short of the table is no table */
        float *none = sp_gru_input_table(m, (size_t)n * 3 * d * sizeof(float) - 1);
        cr_assert_null(none);
        free(gx);
        sp_model_destroy(m);
    }
}
