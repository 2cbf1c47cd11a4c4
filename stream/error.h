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

/* A 64-bit hash of n bytes for in-memory hash tables (not stable across
 * versions: never store it). */
uint64_t sp_hash_bytes(const void *data, size_t n);

/* The monotonic clock in microseconds (for latencies and rates). */
double sp_now_us(void);

#endif
