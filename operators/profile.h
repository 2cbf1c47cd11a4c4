#ifndef OPERATORS_PROFILE_H
#define OPERATORS_PROFILE_H

/* The profile operator's number parsing, apart so that tests can hold it
 * to libc's. The operator itself is sp_op_profile (operators/operator.h). */
#include <stdint.h>

/* strtoll(s, end, 10), quicker for the timestamps the operator writes. */
int64_t sp_profile_parse_i64(const char *s, char **end);

/* strtod(s, NULL) on an affinity score, s ending at ',' or NUL; quicker
 * (and exactly equal) for the fixed-notation text the operator writes. */
double sp_profile_parse_score(const char *s);

#endif
