#ifndef MODELS_VMATH_H
#define MODELS_VMATH_H

/* Eight-lane exp, sigmoid and tanh for the GRU cell (models/gru.c), as
 * inline functions on the vector types of models/dot.h so that the
 * caller's target decides the code (one AVX op, or two SSE ones, a step).
 *
 * Why not libm: expf and tanhf are a call and some fifty instructions per
 * element, three calls per hidden unit and step -- two thirds of a GRU
 * step at d = 32. These are within a few units in the last place of
 * libm's (sp_vexp) and within 2e-7 absolute (sp_vsigm, sp_vtanh); the
 * training forward pass uses the same cell, so serving and training agree.
 *
 * sp_vexp: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two so that
 * n ln2 is exact), exp(r) by its degree-6 Taylor/minimax polynomial
 * (Cephes' expf coefficients), times 2^n built in the exponent bits.
 * Inputs are clamped to [-87.3, 88.3], where the result is a normal
 * float; below that sp_vsigm's 1 / (1 + exp(-x)) is already 0 or 1 to
 * float precision as libm's. */
#include "models/dot.h"

/* Vector arguments and results of always-inline functions never cross a
 * call, so the ABI note GCC makes for them in non-AVX code is moot. It is
 * turned off for the rest of the including file, not popped: GCC reports
 * it when it emits the default clones, at the end of the unit. */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef int sp_v8si __attribute__((vector_size(32)));

static inline __attribute__((always_inline)) sp_v8sf sp_v8_splat(float f) {
    return (sp_v8sf){f, f, f, f, f, f, f, f};
}

static inline __attribute__((always_inline)) sp_v8sf sp_v8_load(const float *src) {
    sp_v8sf v;
    memcpy(&v, src, sizeof v);
    return v;
}

/* Eight floats of src from k, zero-padded at end (a vector's tail). */
static inline __attribute__((always_inline)) sp_v8sf sp_v8_loadn(const float *src, size_t k,
                                                                  size_t end) {
    if (end - k >= 8) return sp_v8_load(src + k);
    sp_v8sf v = sp_v8_splat(0.0f);
    memcpy(&v, src + k, (end - k) * sizeof(float));
    return v;
}

/* The first n (at most 8) lanes of *v to dst. */
static inline __attribute__((always_inline)) void sp_v8_storen(float *dst, const sp_v8sf *v,
                                                               size_t n) {
    if (n >= 8)
        memcpy(dst, v, sizeof *v);
    else
        memcpy(dst, v, n * sizeof(float));
}

/* *x's lanes clamped to [lo, hi] (C has no vector ?:, hence the masks). */
static inline __attribute__((always_inline)) void sp_v8_clamp(sp_v8sf *x, float lo, float hi) {
    sp_v8sf l = sp_v8_splat(lo), h = sp_v8_splat(hi);
    sp_v8si ix, il, ih, below = *x < l, above = *x > h;
    memcpy(&ix, x, sizeof ix);
    memcpy(&il, &l, sizeof il);
    memcpy(&ih, &h, sizeof ih);
    ix = (il & below) | (ih & above) | (ix & ~(below | above));
    memcpy(x, &ix, sizeof ix);
}

/* In place, like sp_vsigm and sp_vtanh: a vector parameter by value would
 * draw GCC's note on the 32-byte ABI in the non-AVX clone. */
static inline __attribute__((always_inline)) void sp_vexp(sp_v8sf *v) {
    sp_v8_clamp(v, -87.3f, 88.3f);
    sp_v8sf x = *v;
    /* round(x / ln2) by the 1.5 * 2^23 trick: exact for |t| < 2^22 */
    sp_v8sf magic = sp_v8_splat(12582912.0f);
    sp_v8sf n = (x * sp_v8_splat(1.44269504088896341f) + magic) - magic;
    sp_v8sf r = x - n * sp_v8_splat(0.693359375f);
    r = r - n * sp_v8_splat(-2.12194440e-4f);
    sp_v8sf p = sp_v8_splat(1.9875691500e-4f);
    p = p * r + sp_v8_splat(1.3981999507e-3f);
    p = p * r + sp_v8_splat(8.3334519073e-3f);
    p = p * r + sp_v8_splat(4.1665795894e-2f);
    p = p * r + sp_v8_splat(1.6666665459e-1f);
    p = p * r + sp_v8_splat(5.0000001201e-1f);
    p = p * (r * r) + r + sp_v8_splat(1.0f);
    sp_v8si e = (__builtin_convertvector(n, sp_v8si) + 127) << 23;
    sp_v8sf scale;
    memcpy(&scale, &e, sizeof scale);
    *v = p * scale;
}

static inline __attribute__((always_inline)) void sp_vsigm(sp_v8sf *v) {
    sp_v8sf e = -*v;
    sp_vexp(&e);
    *v = sp_v8_splat(1.0f) / (sp_v8_splat(1.0f) + e);
}

/* tanh x = 2 sigmoid(2x) - 1: absolute, not relative, accuracy near 0,
 * which is what a hidden state needs. */
static inline __attribute__((always_inline)) void sp_vtanh(sp_v8sf *v) {
    sp_v8sf s = *v + *v;
    sp_vsigm(&s);
    *v = sp_v8_splat(2.0f) * s - sp_v8_splat(1.0f);
}

#endif
