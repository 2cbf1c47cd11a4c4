/* stream/util.c's sp_i64toa, which writes the integers the store sends to
 * Redis and dedupe's records: byte for byte what "%lld" prints, at every
 * digit-count boundary, both signs, the extremes and random values. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "stream/error.h"

static void same_as_printf(int64_t v) {
    char want[32], got[32];
    memset(got, 'x', sizeof got);
    int n = snprintf(want, sizeof want, "%" PRId64, v);
    size_t len = sp_i64toa(v, got);
    cr_assert_eq(len, (size_t)n, "%s: length %zu", want, len);
    cr_assert_str_eq(got, want);
}

Test(util, i64toa_matches_printf_at_every_boundary) {
    same_as_printf(INT64_MIN);
    same_as_printf(INT64_MAX);
    int64_t p = 1;
    for (int d = 0; d < 19; d++, p *= 10)
        for (int64_t k = -2; k <= 2; k++) {
            same_as_printf(p + k);
            same_as_printf(-(p + k));
        }
}

Test(util, i64toa_matches_printf_on_random_values) {
    uint64_t x = 42;
    for (int i = 0; i < 200000; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        same_as_printf((int64_t)(x >> (x & 63))); /* every magnitude, both signs */
    }
}
