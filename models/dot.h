#ifndef MODELS_DOT_H
#define MODELS_DOT_H

/* The dot product of the serving paths (recommend's candidate scores), as
 * an inline function so that the caller's target decides the code: inside
 * a function cloned for AVX it is one 8-wide multiply and add a step, in a
 * plain x86-64 one two 4-wide SSE ones -- the same operations in the same
 * order either way, so the scores are bit for bit the same:
 *
 *   lane j (of 8) sums a[k] * b[k] for k = j mod 8, k below d rounded down
 *   to 8; then lanes j and j + 4 are added, then ((0 + 1) + (2 + 3)), then
 *   the tail k one at a time.
 *
 * That is the order of the two four-lane SSE sums recommend used before.
 * No FMA: a clone must target "avx", not "fma", or the products would not
 * be rounded before the adds. With d a constant at the call (d = 32), the
 * loop unrolls fully. */
#include <stddef.h>
#include <string.h>

typedef float sp_v8sf __attribute__((vector_size(32)));
typedef float sp_v4sf __attribute__((vector_size(16)));

static inline __attribute__((always_inline)) float sp_dot(const float *a, const float *b,
                                                          size_t d) {
    sp_v8sf acc = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t k = 0;
#pragma GCC unroll 4
    for (; k + 8 <= d; k += 8) {
        sp_v8sf x, y;
        memcpy(&x, a + k, 32);
        memcpy(&y, b + k, 32);
        acc += x * y;
    }
    sp_v4sf lo, hi;
    memcpy(&lo, &acc, 16);
    memcpy(&hi, (const char *)&acc + 16, 16);
    lo += hi;
    float s = (lo[0] + lo[1]) + (lo[2] + lo[3]);
    for (; k < d; k++) s += a[k] * b[k];
    return s;
}

/* The same sums for eight dot products of d = 32 at once, for a caller
 * that scores a block of candidates: sp_dot32_lanes gives a product's
 * eight lane sums (a is the fixed vector, loaded once into four vectors
 * by the caller so that it stays in registers), sp_dot_sum8 finishes
 * eight of them together. Finishing one dot product alone takes eight
 * instructions of shuffles and scalar adds for three useful adds; here
 * the eight share them: a cross-half add per pair and two rounds of
 * pairwise adds, each operation on every product at once.
 *
 * Bit for bit sp_dot: every result is made of the same adds in the same
 * order -- lanes j and j + 4 first, then ((0 + 1) + (2 + 3)) -- only
 * several products ride in one vector. Vectors go by pointer: as values
 * GCC notes an ABI change in files built without AVX (-Wpsabi), moot for
 * inlined code. */
static inline __attribute__((always_inline)) void sp_dot32_lanes(const sp_v8sf a[4],
                                                                 const float *b, sp_v8sf *acc) {
    sp_v8sf s = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        sp_v8sf y;
        memcpy(&y, b + 8 * k, 32);
        s += a[k] * y;
    }
    *acc = s;
}

/* Within each 128-bit half: x's adjacent pairs summed, then y's (what
 * SSE3's haddps does). */
static inline __attribute__((always_inline)) void sp_dot_pairsum(const sp_v8sf *x,
                                                                 const sp_v8sf *y, sp_v8sf *out) {
    *out = __builtin_shufflevector(*x, *y, 0, 2, 8, 10, 4, 6, 12, 14) +
           __builtin_shufflevector(*x, *y, 1, 3, 9, 11, 5, 7, 13, 15);
}

/* The eight lane sums acc[0..8) finished into *out as
 * {r0, r2, r4, r6, r1, r3, r5, r7}, ri being sp_dot's result for acc[i]
 * (that order costs no shuffle). */
static inline __attribute__((always_inline)) void sp_dot_sum8(const sp_v8sf acc[8],
                                                              sp_v8sf *out) {
    sp_v8sf w[4], h[2];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) /* [lo + hi of acc[2i] | lo + hi of acc[2i + 1]] */
        w[i] = __builtin_shufflevector(acc[2 * i], acc[2 * i + 1], 0, 1, 2, 3, 8, 9, 10, 11) +
               __builtin_shufflevector(acc[2 * i], acc[2 * i + 1], 4, 5, 6, 7, 12, 13, 14, 15);
    sp_dot_pairsum(&w[0], &w[1], &h[0]);
    sp_dot_pairsum(&w[2], &w[3], &h[1]);
    sp_dot_pairsum(&h[0], &h[1], out);
}

#endif
