#ifndef STATE_NUMTEXT_H
#define STATE_NUMTEXT_H

/* The text the state store writes to Redis for a double: byte for byte what
 * printf's "%.17g" prints (17 significant digits, so every double reads back
 * exactly), without printf's cost in the common cases. Dumps of runs are
 * compared byte for byte, including runs where some values were reloaded
 * from Redis and some computed, so the text must never depend on which path
 * produced it. */
#include <stddef.h>

/* Longest text sp_g17() writes, with its NUL ("-2.2250738585072014e-308"). */
#define SP_G17_MAX 32

/* Writes "%.17g" of v into out (at least SP_G17_MAX bytes) and returns its
 * length. Integers below 1e17 and values from 1e-14 up take exact integer
 * fast paths; the rest (NaN, infinities, subnormals, huge integers) go to
 * snprintf. Assumes the default rounding mode, as the process never changes
 * it. */
size_t sp_g17(double v, char *out);

#endif
