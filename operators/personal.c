/* The context shared by the personalization operators: model, the local copy
 * of the shared MF item table, and their settings. See operators/personal.h. */
#include <emmintrin.h>
#include <immintrin.h>
#include <hiredis.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/model.h"
#include "operators/personal.h"
#include "stream/error.h"
#include "stream/log.h"

#define ITEMS_KEY "mf:items"

/* One context per store: one pipeline per consumer loop, and tests that open
 * several rigs in one process get one each. Thread-local, since each worker
 * (workers = N) builds and runs its pipeline on its own thread. */
#define MAX_CTX 8
static __thread sp_personal *contexts[MAX_CTX];

double sp_personal_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* FNV-1a, byte by byte (the seeds of mf's draws depend on every bit of
 * it), four bytes a turn of the loop: each event hashes its user and event
 * ids, some thirty bytes each, and the loop's test and step were a third
 * of the work. */
uint64_t sp_personal_hash(const char *s, uint64_t h) {
    const uint64_t prime = 1099511628211ULL;
    const unsigned char *c = (const unsigned char *)s;
    if (!h) h = 1469598103934665603ULL;
    for (;; c += 4) {
        if (!c[0]) return h;
        h = (h ^ c[0]) * prime;
        if (!c[1]) return h;
        h = (h ^ c[1]) * prime;
        if (!c[2]) return h;
        h = (h ^ c[2]) * prime;
        if (!c[3]) return h;
        h = (h ^ c[3]) * prime;
    }
}

/* Sixteen hex digits (lower case) of eight bytes, high nibble first. */
static inline void hex16_encode(const unsigned char *in, char *out) {
    __m128i b = _mm_loadl_epi64((const __m128i *)in);
    __m128i lo = _mm_and_si128(b, _mm_set1_epi8(0x0f));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0f));
    __m128i v = _mm_unpacklo_epi8(hi, lo); /* hi0 lo0 hi1 lo1 ... */
    __m128i letter = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8(9)), _mm_set1_epi8('a' - '0' - 10));
    _mm_storeu_si128((__m128i *)out, _mm_add_epi8(_mm_add_epi8(v, _mm_set1_epi8('0')), letter));
}

/* Thirty-two hex digits (lower case) of sixteen bytes, high nibble first:
 * each byte widened to a 16-bit lane holding its high nibble in the low
 * byte and its low nibble in the high one, then each nibble looked up. */
__attribute__((target("avx2"))) static inline void hex32_encode(const unsigned char *in, char *out) {
    __m256i x = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)in));
    __m256i nib = _mm256_or_si256(_mm256_srli_epi16(x, 4),
                                  _mm256_slli_epi16(_mm256_and_si256(x, _mm256_set1_epi16(0x0f)), 8));
    const __m256i digits = _mm256_setr_epi8('0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b',
                                            'c', 'd', 'e', 'f', '0', '1', '2', '3', '4', '5', '6', '7',
                                            '8', '9', 'a', 'b', 'c', 'd', 'e', 'f');
    _mm256_storeu_si256((__m256i *)out, _mm256_shuffle_epi8(digits, nib));
}

/* Sixty-four hex digits of thirty-two bytes: both nibbles of all 32 looked
 * up at once, interleaved high first within each 128-bit lane (bytes 0-7
 * and 16-23, then 8-15 and 24-31), and the lanes put back in order. */
__attribute__((target("avx2"))) static inline void hex64_encode(const unsigned char *in, char *out) {
    const __m256i digits = _mm256_setr_epi8('0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b',
                                            'c', 'd', 'e', 'f', '0', '1', '2', '3', '4', '5', '6', '7',
                                            '8', '9', 'a', 'b', 'c', 'd', 'e', 'f');
    const __m256i nibble = _mm256_set1_epi8(0x0f);
    __m256i x = _mm256_loadu_si256((const __m256i *)in);
    __m256i hi = _mm256_shuffle_epi8(digits, _mm256_and_si256(_mm256_srli_epi16(x, 4), nibble));
    __m256i lo = _mm256_shuffle_epi8(digits, _mm256_and_si256(x, nibble));
    __m256i a = _mm256_unpacklo_epi8(hi, lo), b = _mm256_unpackhi_epi8(hi, lo);
    _mm256_storeu_si256((__m256i *)out, _mm256_permute2x128_si256(a, b, 0x20));
    _mm256_storeu_si256((__m256i *)(out + 32), _mm256_permute2x128_si256(a, b, 0x31));
}

__attribute__((target("avx2"))) static void hex_encode_avx2(const unsigned char *bytes, size_t nb,
                                                            char *out) {
    size_t i = 0;
    for (; i + 32 <= nb; i += 32, out += 64) hex64_encode(bytes + i, out);
    if (i + 16 <= nb) {
        hex32_encode(bytes + i, out);
        i += 16;
        out += 32;
    }
    if (i < nb) { /* 4, 8 or 12 bytes left */
        unsigned char last[16] = {0};
        char tail[32];
        memcpy(last, bytes + i, nb - i);
        hex32_encode(last, tail);
        memcpy(out, tail, 2 * (nb - i));
        out += 2 * (nb - i);
    }
    *out = '\0';
}

/* Tests only: the SSE2 paths, also where AVX2 is there. */
static int hex_sse2_only;

void sp_personal_hex_sse2_only(int on) { hex_sse2_only = on; }

static int hex_avx2(void) { return !hex_sse2_only && __builtin_cpu_supports("avx2"); }

/* Every event encodes a vector or two (256 characters at d = 32): with
 * AVX2, thirty-two bytes a step; else with SSE2 (every x86-64), eight. */
void sp_personal_hex_encode(const float *v, size_t n, char *out) {
    const unsigned char *bytes = (const unsigned char *)v; /* little-endian, as documented */
    if (hex_avx2()) {
        hex_encode_avx2(bytes, 4 * n, out);
        return;
    }
    size_t i = 0;
    for (; i + 8 <= 4 * n; i += 8, out += 16) hex16_encode(bytes + i, out);
    if (i < 4 * n) { /* n odd: the last float */
        unsigned char last[8] = {0};
        char tail[16];
        memcpy(last, bytes + i, 4);
        hex16_encode(last, tail);
        memcpy(out, tail, 8);
        out += 8;
    }
    *out = '\0';
}

/* Sixteen hex digits into eight bytes; 0 when one is not [0-9a-f]. */
static inline int hex16_decode(const char *in, unsigned char *out) {
    __m128i c = _mm_loadu_si128((const __m128i *)in);
    __m128i dig = _mm_and_si128(_mm_cmpgt_epi8(c, _mm_set1_epi8('0' - 1)),
                                _mm_cmplt_epi8(c, _mm_set1_epi8('9' + 1)));
    __m128i let = _mm_and_si128(_mm_cmpgt_epi8(c, _mm_set1_epi8('a' - 1)),
                                _mm_cmplt_epi8(c, _mm_set1_epi8('f' + 1)));
    if (_mm_movemask_epi8(_mm_or_si128(dig, let)) != 0xffff) return 0;
    __m128i v = _mm_sub_epi8(_mm_sub_epi8(c, _mm_set1_epi8('0')),
                             _mm_and_si128(let, _mm_set1_epi8('a' - '0' - 10)));
    /* 16-bit lane i holds digit 2i (low byte) and 2i+1 (high byte) */
    __m128i w = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(v, _mm_set1_epi16(0x0f)), 4),
                             _mm_srli_epi16(v, 8));
    _mm_storel_epi64((__m128i *)out, _mm_packus_epi16(w, w));
    return 1;
}

/* Thirty-two hex digits into sixteen 16-bit lanes of one byte's value
 * each (eight bytes per 128-bit half, in order). A digit is valid when the
 * classes of its two nibbles share a bit (1: high nibble 3, low 0-9, i.e.
 * '0'-'9'; 2: high nibble 6, low 1-6, i.e. 'a'-'f'): *ok keeps the least
 * class of each byte so far, 0 once one was not a digit. Its value is the
 * character less the offset of its high nibble's class; one maddubs joins
 * each pair, high digit first. */
__attribute__((target("avx2"))) static inline __m256i hex32_words(const char *in, __m256i *ok) {
    const __m256i lo_class = _mm256_setr_epi8(1, 3, 3, 3, 3, 3, 3, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 3, 3,
                                              3, 3, 3, 3, 1, 1, 1, 0, 0, 0, 0, 0, 0);
    const __m256i hi_class = _mm256_setr_epi8(0, 0, 0, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                              1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m256i hi_offset = _mm256_setr_epi8(0, 0, 0, '0', 0, 0, 'a' - 10, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                               0, 0, 0, '0', 0, 0, 'a' - 10, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m256i nibble = _mm256_set1_epi8(0x0f);
    __m256i c = _mm256_loadu_si256((const __m256i *)in);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), nibble);
    __m256i lo = _mm256_and_si256(c, nibble);
    __m256i cls = _mm256_and_si256(_mm256_shuffle_epi8(lo_class, lo), _mm256_shuffle_epi8(hi_class, hi));
    *ok = _mm256_min_epu8(*ok, cls);
    __m256i v = _mm256_sub_epi8(c, _mm256_shuffle_epi8(hi_offset, hi));
    return _mm256_maddubs_epi16(v, _mm256_set1_epi16(0x0110)); /* 16 * first + second */
}

/* Thirty-two hex digits into sixteen bytes. */
__attribute__((target("avx2"))) static inline __m128i hex32_decode(const char *in, __m256i *ok) {
    __m256i w = hex32_words(in, ok);
    __m256i packed = _mm256_packus_epi16(w, w); /* each 128-bit lane's 8 bytes, twice */
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08));
}

/* nb bytes (a multiple of 4) from 2 * nb digits; 0 when a digit is not
 * [0-9a-f] or a float is not finite (exponent bits all ones), as the SSE2
 * path. out is undefined then. Sixty-four digits a step (a d = 32 vector
 * in four): one pack of two steps' words, put in order by one permute. */
__attribute__((target("avx2"))) static int hex_decode_avx2(const char *s, unsigned char *out, size_t nb) {
    const __m256i expo = _mm256_set1_epi32(0x7f800000);
    __m256i ok = _mm256_set1_epi8(-1), inf = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 32 <= nb; i += 32, s += 64) {
        __m256i a = hex32_words(s, &ok), b = hex32_words(s + 32, &ok);
        /* quarters: bytes 0-7, 16-23, 8-15, 24-31 */
        __m256i w = _mm256_permute4x64_epi64(_mm256_packus_epi16(a, b), 0xd8);
        _mm256_storeu_si256((__m256i *)(out + i), w);
        inf = _mm256_or_si256(inf, _mm256_cmpeq_epi32(_mm256_and_si256(w, expo), expo));
    }
    __m128i inf4 = _mm_or_si128(_mm256_castsi256_si128(inf), _mm256_extracti128_si256(inf, 1));
    const __m128i expo4 = _mm_set1_epi32(0x7f800000);
    if (i + 16 <= nb) {
        __m128i b = hex32_decode(s, &ok);
        _mm_storeu_si128((__m128i *)(out + i), b);
        inf4 = _mm_or_si128(inf4, _mm_cmpeq_epi32(_mm_and_si128(b, expo4), expo4));
        i += 16;
        s += 32;
    }
    if (i < nb) { /* 4, 8 or 12 bytes left: the rest of the step is '0's, zero floats */
        char last[32];
        memset(last, '0', sizeof last);
        memcpy(last, s, 2 * (nb - i));
        __m128i b = hex32_decode(last, &ok);
        unsigned char tail[16];
        _mm_storeu_si128((__m128i *)tail, b);
        memcpy(out + i, tail, nb - i);
        inf4 = _mm_or_si128(inf4, _mm_cmpeq_epi32(_mm_and_si128(b, expo4), expo4));
    }
    return !_mm256_movemask_epi8(_mm256_cmpeq_epi8(ok, _mm256_setzero_si256())) &&
           !_mm_movemask_epi8(inf4);
}

size_t sp_personal_hex_decode(const char *s, float *v, size_t n) {
    return s ? sp_personal_hex_decoden(s, strlen(s), v, n) : 0;
}

size_t sp_personal_hex_decoden(const char *s, size_t len, float *v, size_t n) {
    if (!s || len != 8 * n) return 0;
    unsigned char *out = (unsigned char *)v;
    if (hex_avx2()) return hex_decode_avx2(s, out, 4 * n) ? n : 0;
    size_t i = 0;
    for (; i + 8 <= 4 * n; i += 8, s += 16)
        if (!hex16_decode(s, out + i)) return 0;
    if (i < 4 * n) { /* n odd: the last float */
        char last[16];
        unsigned char b[8];
        memcpy(last, s, 8);
        memset(last + 8, '0', 8);
        if (!hex16_decode(last, b)) return 0;
        memcpy(out + i, b, 4);
    }
    for (size_t k = 0; k < n; k++)
        if (!isfinite(v[k])) return 0;
    return n;
}

/* ---------------------------------------------------------------- settings */

static int parse_float(const char *key, const char *s, float lo, float hi, float *out, char *err,
                       size_t errlen) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || v < lo || v > hi) {
        snprintf(err, errlen, "key '%s': '%s' is not a number in [%g, %g]", key, s, lo, hi);
        return SP_ERR_FATAL;
    }
    *out = (float)v;
    return SP_OK;
}

static int kind_index(const char *name, size_t len) {
    for (int k = 0; k < SP_KIND__COUNT; k++) {
        const char *n = sp_event_kind_name((enum sp_event_kind)k);
        if (strlen(n) == len && !strncmp(n, name, len)) return k;
    }
    return -1;
}

/* "view=1,click=2,..." into w (kinds not named keep their value). */
static int parse_weights(const char *s, float *w, char *err, size_t errlen) {
    char *list = sp_xstrdup(s), *save = NULL;
    int rc = SP_OK;
    for (char *t = strtok_r(list, ", ", &save); t && rc == SP_OK; t = strtok_r(NULL, ", ", &save)) {
        char *eq = strchr(t, '=');
        int k = eq ? kind_index(t, (size_t)(eq - t)) : -1;
        if (k < 0) {
            snprintf(err, errlen, "key 'mf.weights': '%s' is not kind=weight", t);
            rc = SP_ERR_FATAL;
        } else {
            rc = parse_float("mf.weights", eq + 1, 0, 1000, &w[k], err, errlen);
        }
    }
    free(list);
    return rc;
}

static int parse_settings(sp_personal *p, const sp_config *c, char *err, size_t errlen) {
    if (parse_float("mf.lr", c->mf_lr, 0, 10, &p->mf_lr, err, errlen) ||
        parse_float("mf.item_lr", c->mf_item_lr, 0, 10, &p->mf_item_lr, err, errlen))
        return SP_ERR_FATAL;
    static const float defw[SP_KIND__COUNT] = {1, 2, 4, 0, 0, 8, 3};
    memcpy(p->mf_weights, defw, sizeof defw);
    if (parse_weights(c->mf_weights, p->mf_weights, err, errlen)) return SP_ERR_FATAL;
    p->mf_neg = c->mf_neg;
    p->n_cands = (size_t)c->recommend_candidates; /* 0: every item */
    p->mf_refresh_ms = c->mf_refresh_ms;
    p->mf_apply_rows = c->mf_apply_rows;
    p->dim = (size_t)c->mf_dim;
    p->half_life_ms = (double)c->profile_half_life_s * 1000.0;

    char *list = sp_xstrdup(c->recommend_blend), *save = NULL;
    int n = 0, rc = SP_OK;
    static const char *names[] = {"sequence", "mf", "popularity"};
    for (char *t = strtok_r(list, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (n == 3) {
            snprintf(err, errlen, "key 'recommend.blend': three weights (%s,%s,%s)", names[0],
                     names[1], names[2]);
            rc = SP_ERR_FATAL;
            break;
        }
        if ((rc = parse_float("recommend.blend", t, 0, 1000, &p->blend[n++], err, errlen))) break;
    }
    free(list);
    if (rc == SP_OK && n != 3) {
        snprintf(err, errlen, "key 'recommend.blend': three weights (sequence,mf,popularity)");
        rc = SP_ERR_FATAL;
    }
    if (rc) return rc;

    list = sp_xstrdup(c->recommend_on);
    save = NULL;
    for (char *t = strtok_r(list, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        int k = kind_index(t, strlen(t));
        if (k < 0 || k > SP_KIND_SEARCH) {
            snprintf(err, errlen, "key 'recommend.on': '%s' is not a click kind", t);
            rc = SP_ERR_FATAL;
            break;
        }
        p->rec_on[k] = 1;
    }
    free(list);
    return rc;
}

/* ---------------------------------------------------------------- item table */

static void grow(sp_personal *p, size_t need) {
    if (need <= p->cap) return;
    size_t n = p->cap ? p->cap : 1024, d = p->dim;
    while (n < need) n *= 2;
    p->vec = sp_xrealloc(p->vec, n * d * sizeof(float));
    p->dvec = sp_xrealloc(p->dvec, n * d * sizeof(float));
    p->bias = sp_xrealloc(p->bias, n * sizeof(float));
    p->dbias = sp_xrealloc(p->dbias, n * sizeof(float));
    p->pop = sp_xrealloc(p->pop, n * sizeof(float));
    p->lpop = sp_xrealloc(p->lpop, n * sizeof(float));
    p->cat = sp_xrealloc(p->cat, n * sizeof(int32_t));
    p->cat_next = sp_xrealloc(p->cat_next, n * sizeof(int32_t));
    p->dirty = sp_xrealloc(p->dirty, n);
    p->dirty_list = sp_xrealloc(p->dirty_list, n * sizeof(int32_t));
    p->mf2model = sp_xrealloc(p->mf2model, n * sizeof(int32_t));
    for (size_t i = p->cap; i < n; i++) p->mf2model[i] = -1;
    if (p->cands) sp_cands_reserve(p->cands, n);
    memset(p->dvec + p->cap * d, 0, (n - p->cap) * d * sizeof(float));
    memset(p->dbias + p->cap, 0, (n - p->cap) * sizeof(float));
    memset(p->pop + p->cap, 0, (n - p->cap) * sizeof(float));
    memset(p->lpop + p->cap, 0, (n - p->cap) * sizeof(float));
    memset(p->dirty + p->cap, 0, n - p->cap);
    p->cap = n;
}

/* Puts row into its category's list, kept in ascending row order so that
 * init_row adds the rows up in the order a scan of the table would. A new
 * row is the highest (appended); a row whose category is learned later
 * goes in its place. */
static void cat_link(sp_personal *p, int32_t row, int32_t cat) {
    if ((size_t)cat >= p->ncat) {
        size_t n = p->ncat ? p->ncat : 64;
        while (n <= (size_t)cat) n *= 2;
        p->cat_first = sp_xrealloc(p->cat_first, n * sizeof(int32_t));
        p->cat_last = sp_xrealloc(p->cat_last, n * sizeof(int32_t));
        for (size_t i = p->ncat; i < n; i++) p->cat_first[i] = p->cat_last[i] = -1;
        p->ncat = n;
    }
    int32_t *at = &p->cat_first[cat];
    if (p->cat_last[cat] < row) /* the usual case: no walk */
        at = p->cat_last[cat] < 0 ? at : &p->cat_next[p->cat_last[cat]];
    else
        while (*at >= 0 && *at < row) at = &p->cat_next[*at];
    p->cat_next[row] = *at;
    *at = row;
    if (p->cat_next[row] < 0) p->cat_last[cat] = row;
}

/* Factors of a new row: the mean of its category's rows when there are
 * any (a new item is most like its neighbours on the shelf), else small
 * values seeded by the id, so that every instance starts it the same way.
 * The category's rows come from its list, lowest first: the sums of a scan
 * over every row, without the scan (10k rows for each new item). */
static void init_row(sp_personal *p, int32_t row, const char *item_id, int32_t cat) {
    size_t d = p->dim, n = 0;
    float *v = p->vec + (size_t)row * d;
    memset(v, 0, d * sizeof(float));
    p->bias[row] = 0;
    if (cat >= 0 && (size_t)cat < p->ncat)
        for (int32_t r = p->cat_first[cat]; r >= 0 && r < row; r = p->cat_next[r]) {
            const float *q = p->vec + (size_t)r * d;
            size_t k = 0;
            for (; k + 4 <= d; k += 4) /* four at a time (SSE), element by element as before */
                _mm_storeu_ps(v + k, _mm_add_ps(_mm_loadu_ps(v + k), _mm_loadu_ps(q + k)));
            for (; k < d; k++) v[k] += q[k];
            p->bias[row] += p->bias[r];
            n++;
        }
    if (n) {
        for (size_t k = 0; k < d; k++) v[k] /= (float)n;
        p->bias[row] /= (float)n;
        return;
    }
    uint64_t rng = sp_rng_seed(sp_personal_hash(item_id, 0));
    for (size_t k = 0; k < d; k++) v[k] = 0.01f * sp_rng_normal(&rng);
}

/* The category is looked up only when the row has none yet: a row keeps
 * the first it was given, and a category's number matters only as the
 * head of its list, so one met only on rows that have theirs need not be
 * numbered (most events: a known item of a known category). */
int32_t sp_personal_item(sp_personal *p, const char *item_id, const char *category) {
    size_t len = strlen(item_id);
    int32_t row = sp_vocab_find(p->items, item_id, len);
    if (row >= 0 && p->cat[row] >= 0) return row;
    int32_t cat = category && *category ? sp_vocab_add(p->cats, category, strlen(category)) : -1;
    if (row >= 0) {
        if (cat >= 0) {
            p->cat[row] = cat;
            cat_link(p, row, cat);
        }
        return row;
    }
    row = sp_vocab_add(p->items, item_id, len);
    grow(p, (size_t)row + 1);
    p->cat[row] = cat;
    init_row(p, row, item_id, cat);
    if (cat >= 0) cat_link(p, row, cat);
    return row;
}

void sp_personal_seen(sp_personal *p, int32_t row) {
    p->pop[row] += 1;
    p->lpop[row] = log1pf(p->pop[row]);
    if (p->cands) sp_cands_seen(p->cands, row, p->pop[row]);
}

void sp_personal_delta(sp_personal *p, int32_t row, float dbias, const float *dvec) {
    size_t d = p->dim;
    float *restrict dv = p->dvec + (size_t)row * d, *restrict v = p->vec + (size_t)row * d;
    size_t k = 0;
    for (; k + 4 <= d; k += 4) { /* four at a time (SSE), element by element as before */
        __m128 x = _mm_loadu_ps(dvec + k);
        _mm_storeu_ps(dv + k, _mm_add_ps(_mm_loadu_ps(dv + k), x));
        _mm_storeu_ps(v + k, _mm_add_ps(_mm_loadu_ps(v + k), x));
    }
    for (; k < d; k++) {
        dv[k] += dvec[k];
        v[k] += dvec[k];
    }
    sp_personal_touch(p, row, dbias);
}

/* Rows of the model's items: initialised from the model's embeddings and
 * biases when the dimensions agree (an MF or GRU model's item space is a
 * good start for the online factors), and the model -> row map rebuilt. */
static void adopt_model(sp_personal *p, const sp_model *m) {
    size_t n = sp_model_n_items(m), d = p->dim;
    int same = sp_model_user_dim(m) == d;
    int32_t *map = sp_xmalloc((n ? n : 1) * sizeof *map);
    for (size_t i = 0; i < n; i++) {
        const char *id = sp_model_item_id(m, (int32_t)i);
        int fresh = sp_vocab_find(p->items, id, strlen(id)) < 0;
        map[i] = sp_personal_item(p, id, NULL);
        if (fresh && same) {
            memcpy(p->vec + (size_t)map[i] * d, m->params + m->lay.emb + i * d, d * sizeof(float));
            p->bias[map[i]] = m->params[m->lay.bias + i];
        }
    }
    free(p->model2mf);
    p->model2mf = map;
    p->model2mf_identity = 1;
    for (size_t i = 0; i < p->cap; i++) p->mf2model[i] = -1;
    for (size_t i = 0; i < n; i++) {
        if (map[i] != (int32_t)i) p->model2mf_identity = 0;
        p->mf2model[map[i]] = (int32_t)i;
    }
    if (p->cands) {
        double t0 = sp_personal_now_us();
        if (sp_cands_build_model(p->cands, m, p->scorer, map) != SP_OK)
            sp_warn("recommend: the model's candidate lists could not be built; candidates come "
                    "from co-visitation and popularity only");
        else
            sp_info("recommend: candidate lists of %zu items built in %.0f ms", n,
                    (sp_personal_now_us() - t0) / 1000);
    }
}

/* ---------------------------------------------------------------- Redis */

static redisContext *connect_redis(const sp_personal *p) {
    sp_redis_url u;
    char err[256];
    if (sp_redis_url_parse(p->cfg->redis_url, &u, err, sizeof err)) return NULL;
    struct timeval tv = {p->cfg->redis_timeout_ms / 1000, (p->cfg->redis_timeout_ms % 1000) * 1000};
    redisContext *c = u.unix_path[0] ? redisConnectUnixWithTimeout(u.unix_path, tv)
                                     : redisConnectWithTimeout(u.host, u.port, tv);
    if (!c || c->err) goto fail;
    redisReply *r = NULL;
    if (u.password[0])
        r = u.user[0] ? redisCommand(c, "AUTH %s %s", u.user, u.password)
                      : redisCommand(c, "AUTH %s", u.password);
    if (u.password[0] && (!r || r->type == REDIS_REPLY_ERROR)) goto fail_r;
    freeReplyObject(r);
    r = NULL;
    if (u.db) {
        r = redisCommand(c, "SELECT %d", u.db);
        if (!r || r->type == REDIS_REPLY_ERROR) goto fail_r;
        freeReplyObject(r);
    }
    return c;
fail_r:
    if (r) freeReplyObject(r);
fail:
    if (c) redisFree(c);
    return NULL;
}

/* A row as stored: little-endian float32s, bias first (we build for
 * little-endian targets, so this is the in-memory layout). 0 when the
 * value is not d+1 floats, e.g. a row of another dimension. */
static int parse_row(const char *s, size_t len, size_t d, float *bias, float *v) {
    if (len != 4 * (d + 1)) return 0;
    memcpy(bias, s, 4);
    memcpy(v, s + 4, 4 * d);
    return 1;
}

int sp_personal_refresh(sp_personal *p) {
    redisContext *c = connect_redis(p);
    if (!c) {
        sp_warn("mf: cannot reach Redis to refresh the item table; keeping the local copy");
        return SP_ERR_RETRY;
    }
    redisReply *r = redisCommand(c, "HGETALL %s", ITEMS_KEY);
    int rc = SP_OK;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        sp_warn("mf: HGETALL %s failed; keeping the local copy", ITEMS_KEY);
        rc = SP_ERR_RETRY;
    } else {
        float v[SP_PERSONAL_MAX_DIM], b;
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            if (!parse_row(r->element[i + 1]->str, r->element[i + 1]->len, p->dim, &b, v))
                continue;
            int32_t row = sp_personal_item(p, r->element[i]->str, NULL);
            memcpy(p->vec + (size_t)row * p->dim, v, p->dim * sizeof(float));
            p->bias[row] = b;
        }
    }
    if (r) freeReplyObject(r);
    redisFree(c);
    return rc;
}

/* A batch's item deltas reach "mf:items" from the store's committer thread,
 * just before the batch's commit (sp_store_tx_job), as a compare-and-set:
 * take each row as this instance last read or wrote it (struct
 * item_known; HMGET the rows it has not seen), add the deltas here, and
 * write each row only if Redis still holds that value; rows another
 * instance changed meanwhile are read and added again. With one writer no
 * row is read twice. Redis thus does no float work (a Lua
 * script that added the rows itself cost ~7 us a row, and blocked Redis --
 * and the web tier reading rec:<user> -- for 10-16 ms at each commit of a
 * 100 ms interval), and each command covers at most mf.apply_rows rows.
 * A row Redis does not have (or holds at another size) gets our value.
 * Item deltas stay at-least-once: a script whose reply was lost is sent
 * again, finds its own write and adds the deltas once more (as a crash
 * between this and the commit does). Comparing with the value we meant to
 * write cannot tell that apart from another instance that added the same
 * delta to the same row. Rows are little-endian float32s: bias, then the
 * factors.
 *
 * ARGV: id, the value read ("" when absent), the new value, repeated.
 * Returns the 1-based positions of the rows that changed meanwhile. */
static const char cas_lua[] =
    "local key, ids = KEYS[1], {}\n"
    "for i = 1, #ARGV, 3 do ids[#ids + 1] = ARGV[i] end\n"
    "local cur = redis.call('HMGET', key, unpack(ids))\n"
    "local set, moved = {}, {}\n"
    "for j = 1, #ids do\n"
    "  local c, i = cur[j] or '', 3 * j - 2\n"
    "  if c == ARGV[i + 1] then\n"
    "    set[#set + 1] = ARGV[i]\n"
    "    set[#set + 1] = ARGV[i + 2]\n"
    "  else\n"
    "    moved[#moved + 1] = j\n"
    "  end\n"
    "end\n"
    "if #set > 0 then redis.call('HSET', key, unpack(set)) end\n"
    "return moved\n";

/* The rows as Redis held them after this instance's last read or write of
 * each (by row number), so that a row nobody else changed since is set
 * without being read first: the common case, and the whole of it with one
 * instance. Touched only by the item jobs, which run one at a time in
 * order (the committer thread); shared by reference count with the jobs,
 * which may outlive the context. Two slots a row: the new value is built
 * in the one not holding Redis's (which the script must compare with), and
 * a write that lands flips at[row] to it, with no copy. */
struct item_known {
    int refs;
    size_t cap, d;
    float *rows;          /* cap x 2 slots of d + 1 floats */
    unsigned char *at;    /* 0: Redis's value unknown; 1 + the slot that holds it */
};

/* Slot s (0 or 1) of row. */
static inline float *known_slot(const struct item_known *k, int32_t row, int s) {
    return k->rows + (2 * (size_t)row + (size_t)s) * (k->d + 1);
}

static struct item_known *known_ref(struct item_known *k) {
    __atomic_add_fetch(&k->refs, 1, __ATOMIC_RELAXED);
    return k;
}

static void known_unref(struct item_known *k) {
    if (!k || __atomic_sub_fetch(&k->refs, 1, __ATOMIC_ACQ_REL)) return;
    free(k->rows);
    free(k->at);
    free(k);
}

static void known_reserve(struct item_known *k, size_t rows) {
    if (rows <= k->cap) return;
    size_t cap = k->cap ? k->cap : 1024;
    while (cap < rows) cap *= 2;
    k->rows = sp_xrealloc(k->rows, 2 * cap * (k->d + 1) * sizeof *k->rows);
    k->at = sp_xrealloc(k->at, cap);
    memset(k->at + k->cap, 0, cap - k->cap);
    k->cap = cap;
}

/* The deltas of one commit, copied: the consumer thread goes on. */
struct item_job {
    size_t n, d, per;
    char **ids;           /* into idbuf */
    size_t *idlens;       /* each id's length, measured once (sp_personal_apply) */
    char *idbuf;
    int32_t *rows;        /* each id's row number */
    float *ours, *delta;  /* n rows of d + 1: bias, factors */
    struct item_known *known;
};

static void item_job_free(void *ctx) {
    struct item_job *j = ctx;
    known_unref(j->known);
    free(j->ids);
    free(j->idlens);
    free(j->idbuf);
    free(j->rows);
    free(j->ours);
    free(j->delta);
    free(j);
}

/* Builds pending rows' commands in chunks of at most j->per rows: argv
 * heads from head[0..nhead), then per row what add() appends. */
struct chunks {
    size_t n;
    int *argcs;
    const char ***argvs;
    size_t **lens;
    redisReply **rs;
};

static void chunks_init(struct chunks *c, size_t rows, size_t per, size_t args_per_row) {
    c->n = (rows + per - 1) / per;
    c->argcs = sp_xcalloc(c->n ? c->n : 1, sizeof *c->argcs);
    c->argvs = sp_xmalloc((c->n ? c->n : 1) * sizeof *c->argvs);
    c->lens = sp_xmalloc((c->n ? c->n : 1) * sizeof *c->lens);
    c->rs = sp_xcalloc(c->n ? c->n : 1, sizeof *c->rs);
    for (size_t i = 0; i < c->n; i++) {
        c->argvs[i] = sp_xmalloc((4 + args_per_row * per) * sizeof **c->argvs);
        c->lens[i] = sp_xmalloc((4 + args_per_row * per) * sizeof **c->lens);
    }
}

static void chunk_arg(struct chunks *c, size_t i, const char *s, size_t len) {
    c->argvs[i][c->argcs[i]] = s;
    c->lens[i][c->argcs[i]++] = len;
}

static int chunks_send(sp_store *conn, struct chunks *c) {
    return sp_store_call(conn, c->n, c->argcs, (const char *const *const *)c->argvs,
                         (const size_t *const *)c->lens, c->rs);
}

static void chunks_free(struct chunks *c) {
    for (size_t i = 0; i < c->n; i++) {
        if (c->rs[i]) freeReplyObject(c->rs[i]);
        free(c->argvs[i]);
        free(c->lens[i]);
    }
    free(c->argcs);
    free(c->argvs);
    free(c->lens);
    free(c->rs);
}

static int reply_is_array(const redisReply *r, const char *what) {
    if (r->type == REDIS_REPLY_ARRAY) return 1;
    sp_error("mf: %s on %s: %s", what, ITEMS_KEY, r->type == REDIS_REPLY_ERROR ? r->str : "?");
    return 0;
}

/* out = was + dl, d1 floats, out and was as stored (any alignment): four
 * a step (SSE), each element the same single add as one at a time. */
static void row_add(char *out, const char *was, const float *dl, size_t d1) {
    size_t y = 0;
    for (; y + 4 <= d1; y += 4)
        _mm_storeu_ps((float *)(out + 4 * y),
                      _mm_add_ps(_mm_loadu_ps((const float *)(was + 4 * y)), _mm_loadu_ps(dl + y)));
    for (; y < d1; y++) {
        float f;
        memcpy(&f, was + 4 * y, 4);
        f += dl[y];
        memcpy(out + 4 * y, &f, 4);
    }
}

/* One round over rows pend[0..n): reads those whose Redis value is not
 * known, builds each new value in the row's free slot, and sets them;
 * leaves the rows that changed meanwhile in pend, their count in *left. */
static int item_job_round(sp_store *conn, struct item_job *j, size_t *pend, size_t n,
                          size_t *left) {
    struct item_known *k = j->known;
    size_t d1 = j->d + 1, rowlen = 4 * d1, nread = 0;
    size_t *readi = sp_xmalloc((n ? n : 1) * sizeof *readi); /* pend index of each read */
    for (size_t x = 0; x < n; x++)
        if (!k->at[j->rows[pend[x]]]) readi[nread++] = x;
    /* 1. read the rows we do not know */
    struct chunks rd = {0}, wr;
    chunks_init(&rd, nread, j->per, 1);
    for (size_t x = 0; x < nread; x++) {
        size_t c = x / j->per;
        if (!rd.argcs[c]) {
            chunk_arg(&rd, c, "HMGET", 5);
            chunk_arg(&rd, c, ITEMS_KEY, strlen(ITEMS_KEY));
        }
        size_t i = pend[readi[x]];
        chunk_arg(&rd, c, j->ids[i], j->idlens[i]);
    }
    int rc = nread ? chunks_send(conn, &rd) : SP_OK;
    const redisReply **seen = sp_xcalloc(n ? n : 1, sizeof *seen);
    for (size_t c = 0; c < rd.n && rc == SP_OK; c++) {
        if (!reply_is_array(rd.rs[c], "HMGET")) rc = SP_ERR_FATAL;
        for (size_t e = 0; rc == SP_OK && e < rd.rs[c]->elements; e++)
            seen[readi[c * j->per + e]] = rd.rs[c]->element[e];
    }
    /* 2. add, then write each row still as read or last written */
    chunks_init(&wr, n, j->per, 3);
    for (size_t x = 0; x < n && rc == SP_OK; x++) {
        size_t c = x / j->per, i = pend[x];
        int32_t row = j->rows[i];
        if (!wr.argcs[c]) {
            chunk_arg(&wr, c, "EVAL", 4);
            chunk_arg(&wr, c, cas_lua, sizeof cas_lua - 1);
            chunk_arg(&wr, c, "1", 1);
            chunk_arg(&wr, c, ITEMS_KEY, strlen(ITEMS_KEY));
        }
        int at = k->at[row];
        char *val = (char *)known_slot(k, row, at ? 2 - at : 0); /* the free slot */
        const float *dl = j->delta + i * d1;
        const char *was;
        size_t waslen;
        if (at) {
            was = (const char *)known_slot(k, row, at - 1);
            waslen = rowlen;
        } else {
            const redisReply *e = seen[x];
            was = e->type == REDIS_REPLY_STRING ? e->str : "";
            waslen = e->type == REDIS_REPLY_STRING ? e->len : 0;
        }
        if (waslen == rowlen) {
            row_add(val, was, dl, d1);
        } else {
            memcpy(val, j->ours + i * d1, rowlen); /* none there, or of another size */
        }
        chunk_arg(&wr, c, j->ids[i], j->idlens[i]);
        chunk_arg(&wr, c, was, waslen);
        chunk_arg(&wr, c, val, rowlen);
    }
    if (rc == SP_OK) rc = chunks_send(conn, &wr);
    /* 3. what moved meanwhile goes round again, read first */
    size_t m = 0;
    for (size_t c = 0; c < wr.n && rc == SP_OK; c++) {
        if (!reply_is_array(wr.rs[c], "item script")) {
            rc = SP_ERR_FATAL;
            break;
        }
        size_t from = c * j->per, to = from + j->per < n ? from + j->per : n, e = 0;
        for (size_t x = from; x < to; x++) {
            int32_t row = j->rows[pend[x]];
            if (e < wr.rs[c]->elements && (size_t)wr.rs[c]->element[e]->integer == x - from + 1) {
                e++;
                k->at[row] = 0;
                pend[m++] = pend[x];
            } else { /* the slot written in step 2 is Redis's value now */
                k->at[row] = k->at[row] ? (unsigned char)(3 - k->at[row]) : 1;
            }
        }
    }
    if (rc != SP_OK) /* unsure what Redis holds now */
        for (size_t x = 0; x < n; x++) k->at[j->rows[pend[x]]] = 0;
    *left = m;
    free(readi);
    free(seen);
    chunks_free(&rd);
    chunks_free(&wr);
    return rc;
}

static int item_job_run(sp_store *conn, void *ctx) {
    struct item_job *j = ctx;
    size_t *pend = sp_xmalloc(j->n * sizeof *pend), n = j->n, maxrow = 0;
    for (size_t i = 0; i < n; i++) {
        pend[i] = i;
        if ((size_t)j->rows[i] + 1 > maxrow) maxrow = (size_t)j->rows[i] + 1;
    }
    known_reserve(j->known, maxrow);
    int rc = SP_OK;
    for (int round = 0; n && rc == SP_OK; round++) {
        rc = item_job_round(conn, j, pend, n, &n);
        if (round == 8 && n) sp_warn("mf: %zu item rows still contended after 8 rounds", n);
    }
    free(pend);
    return rc;
}

int sp_personal_apply(sp_personal *p) {
    size_t d = p->dim;
    if (p->ndirty) {
        struct item_job *j = sp_xcalloc(1, sizeof *j);
        j->n = p->ndirty;
        j->d = d;
        j->per = p->mf_apply_rows > 0 ? (size_t)p->mf_apply_rows : 128;
        j->ids = sp_xmalloc(j->n * sizeof *j->ids);
        j->idlens = sp_xmalloc(j->n * sizeof *j->idlens);
        j->rows = sp_xmalloc(j->n * sizeof *j->rows);
        if (p->known && p->known->d != d) { /* a reload changed the dimension */
            known_unref(p->known);
            p->known = NULL;
        }
        if (!p->known) {
            p->known = sp_xcalloc(1, sizeof *p->known);
            p->known->refs = 1;
            p->known->d = d;
        }
        j->known = known_ref(p->known);
        j->ours = sp_xmalloc(j->n * (d + 1) * sizeof *j->ours);
        j->delta = sp_xmalloc(j->n * (d + 1) * sizeof *j->delta);
        /* ids point into the vocabulary until they are copied, the
         * buffer's size known: one lookup and one strlen an id */
        size_t idlen = 0;
        for (size_t i = 0; i < j->n; i++) {
            const char *id = sp_vocab_id(p->items, p->dirty_list[i]);
            j->ids[i] = (char *)id;
            idlen += (j->idlens[i] = strlen(id)) + 1;
        }
        char *w = j->idbuf = sp_xmalloc(idlen);
        for (size_t i = 0; i < j->n; i++) {
            int32_t row = p->dirty_list[i];
            memcpy(w, j->ids[i], j->idlens[i] + 1);
            j->ids[i] = w;
            j->rows[i] = row;
            w += j->idlens[i] + 1;
            float *o = j->ours + i * (d + 1), *dl = j->delta + i * (d + 1);
            o[0] = p->bias[row];
            memcpy(o + 1, p->vec + (size_t)row * d, d * sizeof(float));
            dl[0] = p->dbias[row];
            memcpy(dl + 1, p->dvec + (size_t)row * d, d * sizeof(float));
            memset(p->dvec + (size_t)row * d, 0, d * sizeof(float));
            p->dbias[row] = 0;
            p->dirty[row] = 0;
        }
        p->ndirty = 0;
        sp_store_tx_job(p->store, item_job_run, item_job_free, j);
    }
    int64_t now = (int64_t)(sp_personal_now_us() / 1000);
    if (p->mf_refresh_ms > 0 && now - p->last_refresh_ms >= p->mf_refresh_ms) {
        p->last_refresh_ms = now;
        sp_personal_refresh(p);
    }
    return SP_OK;
}

/* ---------------------------------------------------------------- model */

static sp_model *load_model(sp_personal *p, const char *path, sp_scorer **scorer, char *err,
                            size_t errlen) {
    sp_model *m = sp_model_load(path, err, errlen);
    if (!m) return NULL;
    if (sp_model_user_dim(m) > SP_PERSONAL_MAX_DIM) {
        snprintf(err, errlen, "%s: dimension %zu above %d", path, sp_model_user_dim(m),
                 SP_PERSONAL_MAX_DIM);
        sp_model_destroy(m);
        return NULL;
    }
    *scorer = sp_scorer_new(m, 1, err, errlen);
    if (!*scorer) {
        sp_model_destroy(m);
        return NULL;
    }
    const char *base = strrchr(path, '/');
    snprintf(p->model_name, sizeof p->model_name, "%s:%s",
             sp_model_kind_name(sp_model_kind_of(m)), base ? base + 1 : path);
    return m;
}

int sp_personal_reload(sp_personal *p) {
    if (!p->model_path) {
        sp_info("reload: no recommend.model configured; nothing to reload");
        return SP_OK;
    }
    char err[256] = "";
    sp_scorer *s = NULL;
    char old_name[64];
    memcpy(old_name, p->model_name, sizeof old_name);
    sp_model *m = load_model(p, p->model_path, &s, err, sizeof err);
    if (!m) {
        memcpy(p->model_name, old_name, sizeof old_name);
        sp_error("reload: keeping the current model: %s", err);
        return SP_ERR_BADINPUT;
    }
    sp_scorer_destroy(p->scorer);
    sp_model_destroy(p->model);
    p->model = m;
    p->scorer = s;
    p->model_gen++;
    adopt_model(p, m);
    sp_info("reload: model %s loaded (%zu items, dim %zu)", p->model_path, sp_model_n_items(m),
            sp_model_user_dim(m));
    return SP_OK;
}

/* ---------------------------------------------------------------- lifecycle */

static void destroy(sp_personal *p) {
    if (!p) return;
    known_unref(p->known);
    sp_scorer_destroy(p->scorer);
    sp_model_destroy(p->model);
    free(p->model_path);
    sp_vocab_destroy(p->items);
    sp_vocab_destroy(p->cats);
    free(p->vec);
    free(p->bias);
    free(p->pop);
    free(p->lpop);
    free(p->cat);
    free(p->cat_next);
    free(p->cat_first);
    free(p->cat_last);
    free(p->dvec);
    free(p->dbias);
    free(p->dirty);
    free(p->dirty_list);
    free(p->model2mf);
    free(p->mf2model);
    sp_cands_destroy(p->cands);
    free(p);
}

sp_personal *sp_personal_get(const sp_op_env *env, char *err, size_t errlen) {
    for (int i = 0; i < MAX_CTX; i++)
        if (contexts[i] && contexts[i]->store == env->store) {
            contexts[i]->refs++;
            return contexts[i];
        }
    int slot = -1;
    for (int i = 0; i < MAX_CTX && slot < 0; i++)
        if (!contexts[i]) slot = i;
    if (slot < 0) {
        snprintf(err, errlen, "too many pipelines in one process");
        return NULL;
    }
    sp_personal *p = sp_xcalloc(1, sizeof *p);
    p->store = env->store;
    p->sink = env->sink;
    p->metrics = env->metrics;
    p->cfg = env->cfg;
    p->items = sp_vocab_new();
    p->cats = sp_vocab_new();
    if (parse_settings(p, env->cfg, err, errlen)) goto fail;
    if (env->cfg->recommend_model && env->cfg->recommend_model[0]) {
        p->model_path = sp_xstrdup(env->cfg->recommend_model);
        char sub[200];
        if (!(p->model = load_model(p, p->model_path, &p->scorer, sub, sizeof sub))) {
            snprintf(err, errlen, "key 'recommend.model': %s", sub);
            goto fail;
        }
        p->dim = sp_model_user_dim(p->model); /* one item space: the model's */
    }
    if (p->dim < 1 || p->dim > SP_PERSONAL_MAX_DIM) {
        snprintf(err, errlen, "key 'mf.dim': %zu out of range", p->dim);
        goto fail;
    }
    if (p->n_cands) {
        sp_cands_conf cc;
        sp_cands_conf_default(&cc);
        p->cands = sp_cands_new(&cc);
    }
    grow(p, 1);
    if (p->model) adopt_model(p, p->model);
    if (p->store) sp_personal_refresh(p);
    p->last_refresh_ms = (int64_t)(sp_personal_now_us() / 1000);
    p->refs = 1;
    contexts[slot] = p;
    return p;
fail:
    destroy(p);
    return NULL;
}

void sp_personal_put(sp_personal *p) {
    if (!p || --p->refs > 0) return;
    for (int i = 0; i < MAX_CTX; i++)
        if (contexts[i] == p) contexts[i] = NULL;
    destroy(p);
}
