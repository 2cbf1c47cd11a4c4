#ifndef OPERATORS_PROFILE_H
#define OPERATORS_PROFILE_H

/* The profile operator's number parsing and formatting, apart so that
 * tests can hold them to libc's. The operator itself is sp_op_profile
 * (operators/operator.h). */
#include <stddef.h>
#include <stdint.h>

/* strtoll(s, end, 10), quicker for the timestamps the operator writes. */
int64_t sp_profile_parse_i64(const char *s, char **end);

/* The same for a word of len bytes that ends there (t[len] is ' ' or
 * NUL), quicker still for the 13-digit times: the last eight digits read
 * at once. */
int64_t sp_profile_parse_time(const char *t, size_t len, char **end);

/* sp_i64toa(v, out), quicker for the 13-digit times of events; out holds
 * at least 24 bytes. Returns the length written. */
size_t sp_profile_fmt_time(int64_t v, char *out);

/* strtod(s, NULL) on an affinity score, s ending at ',' or NUL; quicker
 * (and exactly equal) for the fixed-notation text the operator writes. */
double sp_profile_parse_score(const char *s);

/* snprintf(out, 32, "%.6g", v), byte for byte (but "0" for -0), quicker
 * for the values the profile writes (1e-4 <= |v| < 1e6); out holds at
 * least 32 bytes. Returns the length written. */
size_t sp_profile_fmt_g6(double v, char *out);

#endif
