/* Small process-wide helpers: aborting allocators and the logger. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "stream/error.h"
#include "stream/log.h"

const char sp_digit_pairs[201] = "00010203040506070809101112131415161718192021222324"
                                  "25262728293031323334353637383940414243444546474849"
                                  "50515253545556575859606162636465666768697071727374"
                                  "75767778798081828384858687888990919293949596979899";

/* The last digits of x, two at a time, ending at end; pads to `min`
 * digits with zeros. Returns where they start. 32-bit arithmetic: cheaper
 * than 64-bit division. */
static char *put_u32(char *end, uint32_t x, int min) {
    int n = 0;
    while (x >= 100 || n + 2 < min) {
        uint32_t q = x / 100;
        end -= 2;
        memcpy(end, sp_digit_pairs + 2 * (x - q * 100), 2);
        x = q;
        n += 2;
    }
    if (x >= 10 || n + 1 < min) {
        end -= 2;
        memcpy(end, sp_digit_pairs + 2 * x, 2);
    } else {
        *--end = (char)('0' + x);
    }
    return end;
}

/* Eight digits at a time in 32-bit arithmetic, two at a time within them
 * from a table: for the 13-digit timestamps and the counters that the store
 * and dedupe write per event. */
size_t sp_i64toa(int64_t v, char *out) {
    char tmp[24], *end = tmp + sizeof tmp, *p;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    if (u < 100000000) {
        p = put_u32(end, (uint32_t)u, 1);
    } else if (u < 10000000000000000ULL) {
        uint64_t hi = u / 100000000;
        p = put_u32(end, (uint32_t)(u - hi * 100000000), 8);
        p = put_u32(p, (uint32_t)hi, 1);
    } else {
        uint64_t hi = u / 10000000000000000ULL, mid = u / 100000000 % 100000000;
        p = put_u32(end, (uint32_t)(u % 100000000), 8);
        p = put_u32(p, (uint32_t)mid, 8);
        p = put_u32(p, (uint32_t)hi, 1);
    }
    if (v < 0) *--p = '-';
    size_t len = (size_t)(end - p);
    sp_copy_short(out, p, len);
    out[len] = '\0';
    return len;
}

/* Eight bytes at a time (the last word overlapping the one before), then
 * a final mix so that the low bits, which pick a bucket, depend on every
 * byte. For the keys of hash tables on the hot path -- the store's cache,
 * dedupe's ids -- where a byte-at-a-time FNV-1a over twenty to forty bytes
 * was most of a lookup. */
uint64_t sp_hash_bytes(const void *data, size_t n) {
    const uint64_t k = 0xff51afd7ed558ccdULL;
    const char *s = data, *end = s + n;
    uint64_t h = n * 0x9e3779b97f4a7c15ULL, w = 0;
    if (n >= 8) {
        for (; end - s > 8; s += 8) {
            memcpy(&w, s, 8);
            h = (h ^ w) * k;
            h ^= h >> 32;
        }
        memcpy(&w, end - 8, 8);
    } else {
        for (; s < end; s++) w = w << 8 | (unsigned char)*s;
    }
    h = (h ^ w) * k;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

double sp_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void oom(size_t n) {
    fprintf(stderr, "shopstream: out of memory allocating %zu bytes\n", n);
    abort();
}

void *sp_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *sp_xcalloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) oom(n * sz);
    return p;
}

void *sp_xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) oom(n);
    return p;
}

char *sp_xstrdup(const char *s) {
    return sp_xstrndup(s, strlen(s));
}

char *sp_xstrndup(const char *s, size_t n) {
    char *p = sp_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static enum sp_log_level log_level = SP_LOG_INFO;

void sp_log_set_level(enum sp_log_level lvl) { log_level = lvl; }

int sp_log_parse_level(const char *s, enum sp_log_level *out) {
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (!strcasecmp(s, names[i])) {
            *out = (enum sp_log_level)i;
            return SP_OK;
        }
    return SP_ERR_FATAL;
}

void sp_log(enum sp_log_level lvl, const char *fmt, ...) {
    static const char *tags[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    if (lvl < log_level) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
            tags[lvl], msg);
}
