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

#endif
