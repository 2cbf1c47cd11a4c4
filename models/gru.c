/* GRU session encoder (GRU4Rec style), gates as in PyTorch:
 *   r = sigmoid(x Wx_r + bx_r + h Wh_r + bh_r)
 *   z = sigmoid(x Wx_z + bx_z + h Wh_z + bh_z)
 *   n = tanh(x Wx_n + bx_n + r * (h Wh_n + bh_n))
 *   h' = (1 - z) * n + z * h
 * with x the item's embedding. The input projections of a whole sequence
 * are one sgemm; only the recurrent part runs step by step. In training,
 * dropout (GRU4Rec's embedding and hidden dropout) acts on x and on the
 * outputs that are scored, never on the recurrent state itself. */
#include <cblas.h>
#include <string.h>

#include "models/scorer.h"
#include "models/seq_int.h"
#include "models/vmath.h"
#include "stream/error.h"

/* nv vectors of y (8 nv columns from y[0]) += x W over the d rows of W,
 * n floats apart. nv is a constant at each call: the loops over it unroll
 * and the accumulators live in registers, one pass over x for them all. */
static inline __attribute__((always_inline)) void gru_matvec_block(const float *W,
                                                                   const float *x, size_t d,
                                                                   size_t n, float *y, int nv) {
    sp_v8sf a[12];
#pragma GCC unroll 12
    for (int q = 0; q < nv; q++) a[q] = sp_v8_load(y + 8 * q);
    for (size_t i = 0; i < d; i++) {
        const float *w = W + i * n;
        float xi = x[i]; /* a scalar operand: broadcast to every lane */
#pragma GCC unroll 12
        for (int q = 0; q < nv; q++) a[q] += sp_v8_load(w + 8 * q) * xi;
    }
#pragma GCC unroll 12
    for (int q = 0; q < nv; q++) memcpy(y + 8 * q, &a[q], sizeof a[q]);
}

/* y[j] += sum_i x[i] W[i][j] for the d x 3d row-major W: each column's sum
 * taken in order of i, one multiply and one add a term (no FMA), 96, 32
 * then 8 columns at a time and the odd ones alone -- the same result
 * whatever the blocking, so the same as the plain double loop. It replaces
 * an sgemv whose call and set-up cost more than its arithmetic at these
 * sizes; 96 columns (d = 32) fill twelve of AVX's sixteen registers. */
static inline __attribute__((always_inline)) void gru_matvec(const float *W, const float *x,
                                                             size_t d, float *y) {
    size_t n = 3 * d, j = 0;
    for (; j + 96 <= n; j += 96) gru_matvec_block(W + j, x, d, n, y + j, 12);
    for (; j + 32 <= n; j += 32) gru_matvec_block(W + j, x, d, n, y + j, 4);
    for (; j + 8 <= n; j += 8) gru_matvec_block(W + j, x, d, n, y + j, 1);
    for (; j < n; j++)
        for (size_t i = 0; i < d; i++) y[j] += W[i * n + j] * x[i];
}

/* One recurrent step given the input projection gx (3d, biases included):
 * writes h_out and, when the caches are not NULL, r, z, n and h Wh_n + bh_n.
 * Cloned for AVX: eight hidden units a step, the gates by models/vmath.h. */
__attribute__((target_clones("avx", "default"))) static void
gru_cell(const sp_model *m, const float *P, const float *gx, const float *h_in, float *h_out,
         float *r_c, float *z_c, float *n_c, float *ghn_c) {
    size_t d = m->cfg.dim;
    float gh[3 * SP_MODEL_MAX_DIM];
    memcpy(gh, P + m->lay.gru_bh, 3 * d * sizeof(float));
    gru_matvec(P + m->lay.gru_wh, h_in, d, gh);
    for (size_t k = 0; k < d; k += 8) {
        size_t nk = d - k < 8 ? d - k : 8;
        sp_v8sf r = sp_v8_loadn(gx, k, d) + sp_v8_loadn(gh, k, d);
        sp_v8sf z = sp_v8_loadn(gx + d, k, d) + sp_v8_loadn(gh + d, k, d);
        sp_vsigm(&r);
        sp_vsigm(&z);
        sp_v8sf ghn = sp_v8_loadn(gh + 2 * d, k, d);
        sp_v8sf n = sp_v8_loadn(gx + 2 * d, k, d) + r * ghn;
        sp_vtanh(&n);
        sp_v8sf h = (sp_v8_splat(1.0f) - z) * n + z * sp_v8_loadn(h_in, k, d);
        sp_v8_storen(h_out + k, &h, nk);
        if (r_c) {
            sp_v8_storen(r_c + k, &r, nk);
            sp_v8_storen(z_c + k, &z, nk);
            sp_v8_storen(n_c + k, &n, nk);
            sp_v8_storen(ghn_c + k, &ghn, nk);
        }
    }
}

/* The input projection is gru_matvec too (cloned apart: the cell's clone
 * does not reach here), not the sgemv it was. */
__attribute__((target_clones("avx", "default"))) static void
gru_input(const sp_model *m, const float *P, int32_t item, float *gx) {
    size_t d = m->cfg.dim;
    memcpy(gx, P + m->lay.gru_bx, 3 * d * sizeof(float));
    gru_matvec(P + m->lay.gru_wx, P + m->lay.emb + (size_t)item * d, d, gx);
}

/* The step from the input projection gx (3d floats, biases included). */
static void gru_step_from(const sp_model *m, float *hidden, const float *gx) {
    float hn[SP_MODEL_MAX_DIM];
    gru_cell(m, m->params, gx, hidden, hn, NULL, NULL, NULL, NULL);
    memcpy(hidden, hn, m->cfg.dim * sizeof(float));
}

int sp_gru_step(const sp_model *m, float *hidden, int32_t item) {
    return sp_gru_step_with(m, NULL, hidden, item);
}

float *sp_gru_input_table(const sp_model *m, size_t max_bytes) {
    size_t n = m->n_items, row = 3 * (size_t)m->cfg.dim;
    if (m->cfg.kind != SP_MODEL_GRU || !n || n * row * sizeof(float) > max_bytes) return NULL;
    float *t = sp_xmalloc(n * row * sizeof(float));
    for (size_t i = 0; i < n; i++) gru_input(m, m->params, (int32_t)i, t + i * row);
    return t;
}

int sp_gru_step_with(const sp_model *m, const float *table, float *hidden, int32_t item) {
    if (m->cfg.kind != SP_MODEL_GRU || item < 0 || (uint32_t)item >= m->n_items)
        return SP_ERR_BADINPUT;
    size_t row = 3 * (size_t)m->cfg.dim;
    if (table) {
        gru_step_from(m, hidden, table + (size_t)item * row);
    } else {
        float gx[3 * SP_MODEL_MAX_DIM];
        gru_input(m, m->params, item, gx);
        gru_step_from(m, hidden, gx);
    }
    return SP_OK;
}

/* The hidden state starts at zero for every sequence; w->h row 0 holds it
 * and row i+1 the state after items[i]. */
const float *sp_gru_forward(const sp_model *m, const float *P, sp_seq_work *w,
                            const int32_t *items, size_t t, int train, uint64_t *rng) {
    size_t d = m->cfg.dim;
    w->t = t;
    w->in = items;
    for (size_t i = 0; i < t; i++)
        memcpy(w->x + i * d, P + m->lay.emb + (size_t)items[i] * d, d * sizeof(float));
    sp_nn_dropout(w->x, w->mx, t * d, m->cfg.dropout, train, rng);
    sp_nn_linear(w->x, t, d, 3 * d, P + m->lay.gru_wx, P + m->lay.gru_bx, w->gx);
    memset(w->h, 0, d * sizeof(float));
    for (size_t i = 0; i < t; i++)
        gru_cell(m, P, w->gx + i * 3 * d, w->h + i * d, w->h + (i + 1) * d, w->r + i * d,
                 w->z + i * d, w->n + i * d, w->ghn + i * d);
    memcpy(w->out, w->h + d, t * d * sizeof(float));
    sp_nn_dropout(w->out, w->mo, t * d, m->cfg.dropout, train, rng);
    return w->out;
}

/* Back-propagation through time over the cached steps; the weight
 * gradients are two sgemms over all steps at the end. */
void sp_gru_backward(const sp_model *m, const float *P, float *G, sp_seq_work *w,
                     const float *dH) {
    size_t d = m->cfg.dim, t = w->t;
    float dh[SP_MODEL_MAX_DIM], dprev[SP_MODEL_MAX_DIM];
    memset(dprev, 0, d * sizeof(float));
    for (size_t i = 0; i < t * d; i++) w->dh_m[i] = dH[i] * w->mo[i];
    dH = w->dh_m;
    for (size_t ii = t; ii-- > 0;) {
        const float *r = w->r + ii * d, *z = w->z + ii * d, *n = w->n + ii * d;
        const float *ghn = w->ghn + ii * d, *hp = w->h + ii * d;
        float *dgx = w->dgx + ii * 3 * d, *dgh = w->dgh + ii * 3 * d;
        for (size_t k = 0; k < d; k++) {
            dh[k] = dH[ii * d + k] + dprev[k];
            float dn = dh[k] * (1.0f - z[k]);
            float dz = dh[k] * (hp[k] - n[k]);
            float dan = dn * (1.0f - n[k] * n[k]);
            float dr = dan * ghn[k];
            float dar = dr * r[k] * (1.0f - r[k]);
            float daz = dz * z[k] * (1.0f - z[k]);
            dgx[k] = dar;
            dgx[d + k] = daz;
            dgx[2 * d + k] = dan;
            dgh[k] = dar;
            dgh[d + k] = daz;
            dgh[2 * d + k] = dan * r[k];
            dprev[k] = dh[k] * z[k];
        }
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)d, (int)(3 * d), 1.0f, P + m->lay.gru_wh,
                    (int)(3 * d), dgh, 1, 1.0f, dprev, 1);
    }
    sp_nn_linear_back(w->h, w->dgh, t, d, 3 * d, P + m->lay.gru_wh, NULL, 0.0f,
                      G + m->lay.gru_wh, G + m->lay.gru_bh);
    sp_nn_linear_back(w->x, w->dgx, t, d, 3 * d, P + m->lay.gru_wx, w->dx, 0.0f,
                      G + m->lay.gru_wx, G + m->lay.gru_bx);
    float *dE = G + m->lay.emb;
    for (size_t i = 0; i < t; i++) {
        float *de = dE + (size_t)w->in[i] * d;
        for (size_t k = 0; k < d; k++) de[k] += w->dx[i * d + k] * w->mx[i * d + k];
    }
}
