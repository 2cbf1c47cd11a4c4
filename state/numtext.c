/* "%.17g" without printf. See state/numtext.h. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "state/numtext.h"
#include "stream/error.h"

/* 5^0 .. 5^27, the powers that fit in 64 bits. */
static const uint64_t pow5[28] = {
    1ULL, 5ULL, 25ULL, 125ULL,
    625ULL, 3125ULL, 15625ULL, 78125ULL,
    390625ULL, 1953125ULL, 9765625ULL, 48828125ULL,
    244140625ULL, 1220703125ULL, 6103515625ULL, 30517578125ULL,
    152587890625ULL, 762939453125ULL, 3814697265625ULL, 19073486328125ULL,
    95367431640625ULL, 476837158203125ULL, 2384185791015625ULL, 11920928955078125ULL,
    59604644775390625ULL, 298023223876953125ULL, 1490116119384765625ULL,
    7450580596923828125ULL,
};

#define MAX_K 30 /* m * 5^30 < 2^53 * 2^70: the product stays inside 128 bits */

/* m * 2^-q * 10^k rounded to the nearest integer, ties to even -- what
 * printf does with the exact binary value. Exact, because 10^k = 5^k * 2^k
 * and m * 5^k fits in 128 bits for k <= MAX_K. Returns 0 when the shift is
 * out of range (the caller then falls back to printf). */
static uint64_t scaled(uint64_t m, int q, int k) {
    unsigned __int128 p5 = k <= 27 ? pow5[k] : (unsigned __int128)pow5[27] * pow5[k - 27];
    unsigned __int128 p = (unsigned __int128)m * p5;
    int s = q - k;
    if (s <= 0) return s > -8 ? (uint64_t)(p << -s) : 0;
    if (s >= 127) return 0;
    unsigned __int128 fl = p >> s, rem = p - (fl << s), half = (unsigned __int128)1 << (s - 1);
    if (rem > half || (rem == half && (fl & 1))) fl++;
    return (uint64_t)fl;
}

/* Two paths, both proven identical to "%.17g" (tests/test_store.c compares
 * them with snprintf over millions of values):
 *
 * - an integral |v| < 1e17 has at most 17 digits, so %.17g prints it
 *   exactly, without a point or exponent: that is sp_i64toa's text;
 * - otherwise v = m * 2^-q, and its 17 significant digits are the integer
 *   n = round(v * 10^(16-X)) in [1e16, 1e17), X the decimal exponent after
 *   rounding. X is estimated from the binary exponent (floor(E * log10 2),
 *   off by at most one, plus one more when rounding carries into a new
 *   digit) and corrected until n has 17 digits. Then %g's layout: trailing
 *   zeros dropped, fixed notation for -4 <= X < 17, else d.ddde-XX. */
size_t sp_g17(double v, char *out) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    int neg = (int)(bits >> 63), be = (int)(bits >> 52) & 0x7ff;
    uint64_t m = bits & ((1ULL << 52) - 1);
    double a = neg ? -v : v;
    if (a < 1e17 && a == (double)(int64_t)a) {
        if (a == 0 && neg) {
            memcpy(out, "-0", 3);
            return 2;
        }
        return sp_i64toa((int64_t)v, out);
    }
    if (be == 0 || be == 0x7ff || be >= 1075) goto slow; /* subnormal, NaN/inf, integral */
    m |= 1ULL << 52;
    int q = 1075 - be;                      /* v = m * 2^-q, q >= 1 */
    int x = ((be - 1023) * 78913) >> 18;    /* floor((be - 1023) * log10(2)) */
    uint64_t n = 0;
    for (int tries = 0;; tries++) {
        int k = 16 - x;
        if (k < 1 || k > MAX_K || tries == 4) goto slow;
        if (!(n = scaled(m, q, k))) goto slow;
        if (n >= 100000000000000000ULL)
            x++;
        else if (n < 10000000000000000ULL)
            x--;
        else
            break;
    }
    char d[24];
    size_t nd = sp_i64toa((int64_t)n, d);
    while (nd > 1 && d[nd - 1] == '0') nd--;
    char *w = out;
    if (neg) *w++ = '-';
    if (x < -4) { /* x >= -14 here: k <= MAX_K */
        *w++ = d[0];
        if (nd > 1) {
            *w++ = '.';
            memcpy(w, d + 1, nd - 1);
            w += nd - 1;
        }
        *w++ = 'e';
        *w++ = '-';
        *w++ = (char)('0' + -x / 10);
        *w++ = (char)('0' + -x % 10);
    } else if (x < 0) {
        *w++ = '0';
        *w++ = '.';
        for (int i = 0; i < -x - 1; i++) *w++ = '0';
        memcpy(w, d, nd);
        w += nd;
    } else {
        size_t ip = (size_t)x + 1; /* digits before the point */
        if (nd <= ip) {            /* rounded to an integer */
            memcpy(w, d, nd);
            memset(w + nd, '0', ip - nd);
            w += ip;
        } else {
            memcpy(w, d, ip);
            w[ip] = '.';
            memcpy(w + ip + 1, d + ip, nd - ip);
            w += nd + 1;
        }
    }
    *w = '\0';
    return (size_t)(w - out);
slow:
    return (size_t)snprintf(out, SP_G17_MAX, "%.17g", v);
}
