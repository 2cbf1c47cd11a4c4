#ifndef STREAM_ERROR_H
#define STREAM_ERROR_H

/* Return codes used everywhere in shopstream: 0 is success, a negative
 * SP_ERR_* is failure. Keep the three families apart: RETRY (Kafka or Redis
 * unavailable: back off and try again), FATAL (bad config, programming error:
 * stop) and BADINPUT (this event goes to the dead-letter topic). */
#define SP_OK            0
#define SP_ERR_RETRY    -1  /* a dependency is unavailable; try again later */
#define SP_ERR_FATAL    -2  /* cannot go on: bad config, broken invariant */
#define SP_ERR_BADINPUT -3  /* malformed or invalid input */
#define SP_ERR_FENCED   -4  /* another instance owns the partition now */
#define SP_ERR_NOTFOUND -5
#define SP_ERR_IO       -6

/* Allocation failure aborts the process (sp_xmalloc and friends): callers do
 * not check for NULL after them. */
#include <stddef.h>
void *sp_xmalloc(size_t n);
void *sp_xcalloc(size_t n, size_t sz);
void *sp_xrealloc(void *p, size_t n);
char *sp_xstrdup(const char *s);
char *sp_xstrndup(const char *s, size_t n);

/* Writes v in decimal to out (at least 21 bytes), NUL-terminated, and
 * returns its length: the hot paths' replacement for snprintf("%lld"). */
#include <stdint.h>
size_t sp_i64toa(int64_t v, char *out);
/* "00" "01" ... "99": the two digits of n at sp_digit_pairs + 2 * n. */
extern const char sp_digit_pairs[201];

/* Whether the n bytes at a and b are the same, in eight-byte loads (the
 * last one overlapping the one before) and no call: for the short strings
 * of the hot paths (field names, ids), where a call to memcmp costs more
 * than the compare. Reads only a[0..n) and b[0..n). */
#include <string.h>
static inline int sp_bytes_eq(const char *a, const char *b, size_t n) {
    uint64_t x, y;
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8) {
            memcpy(&x, a + i, 8), memcpy(&y, b + i, 8);
            if (x != y) return 0;
        }
        memcpy(&x, a + n - 8, 8), memcpy(&y, b + n - 8, 8);
        return x == y;
    }
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

/* memcpy of n bytes without its call for n <= 24 (ids, numbers' texts):
 * a few fixed-size moves, the last overlapping the one before; longer ones
 * by memcpy. dst and src must not overlap. */
static inline void sp_copy_short(void *dst, const void *src, size_t n) {
    char *d = dst;
    const char *s = src;
    if (n > 24) {
        memcpy(d, s, n);
    } else if (n >= 8) {
        memcpy(d, s, 8);
        if (n > 16) memcpy(d + 8, s + 8, 8);
        memcpy(d + n - 8, s + n - 8, 8);
    } else if (n >= 4) {
        memcpy(d, s, 4);
        memcpy(d + n - 4, s + n - 4, 4);
    } else {
        for (size_t i = 0; i < n; i++) d[i] = s[i];
    }
}

/* A 64-bit hash of n bytes for in-memory hash tables (not stable across
 * versions: never store it). */
uint64_t sp_hash_bytes(const void *data, size_t n);

/* The monotonic clock in microseconds (for latencies and rates). */
double sp_now_us(void);

#endif
