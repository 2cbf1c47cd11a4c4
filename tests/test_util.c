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
    int64_t p = 1; /* 10^0 .. 10^18 */
    for (int d = 0; d < 19; d++) {
        for (int64_t k = -2; k <= 2; k++) {
            same_as_printf(p + k);
            same_as_printf(-(p + k));
        }
        if (d < 18) p *= 10;
    }
}

Test(util, i64toa_matches_printf_on_random_values) {
    uint64_t x = 42;
    for (int i = 0; i < 200000; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        same_as_printf((int64_t)(x >> (x & 63))); /* every magnitude, both signs */
    }
}

/* sp_hash_bytes: every byte counts, at every length around the word size
 * (the last word overlaps the one before), and the low bits that pick a
 * bucket spread keys that differ in one byte. */
Test(util, hash_bytes_depends_on_every_byte_and_spreads_low_bits) {
    unsigned char buf[40];
    for (size_t n = 1; n <= sizeof buf; n++) {
        memset(buf, 'k', n);
        uint64_t h0 = sp_hash_bytes(buf, n);
        cr_assert_neq(h0, sp_hash_bytes(buf, n - 1), "length %zu", n);
        for (size_t i = 0; i < n; i++) {
            buf[i] ^= 1;
            cr_assert_neq(sp_hash_bytes(buf, n), h0, "byte %zu of %zu ignored", i, n);
            buf[i] ^= 1;
        }
    }
    /* 4096 ids differing only in their last digits over 1024 buckets: no
     * bucket gets more than a handful. */
    unsigned count[1024] = {0};
    char id[32];
    for (int i = 0; i < 4096; i++) {
        int n = snprintf(id, sizeof id, "ev-00000000-%06d", i);
        count[sp_hash_bytes(id, (size_t)n) & 1023]++;
    }
    for (int b = 0; b < 1024; b++) cr_assert_lt(count[b], 16, "bucket %d: %u", b, count[b]);
}
