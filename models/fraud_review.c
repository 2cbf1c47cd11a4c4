/* Review bursts: a ring of the item's latest reviews, counted over a window
 * for young accounts and for near-identical text. */
#include "models/fraud_review.h"

#include <stdio.h>
#include <string.h>

void sp_review_burst_config_default(struct sp_review_burst_config *c) {
    c->window_ms = 3600 * 1000LL;
    c->young_days = 7;
    c->min_young = 5;
    c->min_dupes = 3;
    c->near_bits = 10;
}

void sp_review_item_init(struct sp_review_item *it) { memset(it, 0, sizeof *it); }

static uint64_t fnv64(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void add_feature(int *acc, uint64_t h) {
    h = mix(h);
    for (int b = 0; b < 64; b++) acc[b] += (h >> b) & 1 ? 1 : -1;
}

/* Words are runs of letters and digits, lower-cased; each word and each pair
 * of adjacent words is one feature. Pairs make word order count a little, so
 * that a shuffled text is near but not identical. */
uint64_t sp_simhash(const char *text) {
    int acc[64] = {0};
    char word[64], prev[64] = "";
    size_t n = 0;
    int nfeat = 0;
    for (const char *p = text;; p++) {
        char ch = *p;
        int alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                    (unsigned char)ch >= 0x80;
        if (alnum) {
            if (n < sizeof word - 1) word[n++] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
            continue;
        }
        if (n > 0) {
            word[n] = '\0';
            uint64_t h = fnv64(1469598103934665603ull, word, n);
            add_feature(acc, h);
            if (prev[0]) {
                uint64_t b = fnv64(fnv64(h ^ 0x5bd1e995, " ", 1), prev, strlen(prev));
                add_feature(acc, b);
            }
            memcpy(prev, word, n + 1);
            n = 0;
            nfeat++;
        }
        if (!ch) break;
    }
    if (nfeat == 0) return 0;
    uint64_t out = 0;
    for (int b = 0; b < 64; b++)
        if (acc[b] > 0) out |= 1ull << b;
    return out;
}

int sp_hamming64(uint64_t a, uint64_t b) { return __builtin_popcountll(a ^ b); }

/* 0.5 at the threshold, rising towards 1 as the count grows past it, and
 * below 0.5 in proportion under it. */
static double burst_score(uint32_t count, uint32_t threshold) {
    if (threshold == 0) return 0;
    if (count < threshold) return 0.5 * count / threshold;
    return 1.0 - 0.5 * threshold / count;
}

void sp_review_burst_score(const struct sp_review_burst_config *c, const struct sp_review_item *it,
                           const struct sp_review_obs *o, struct sp_review_burst_result *r) {
    memset(r, 0, sizeof *r);
    uint64_t sh = o->text ? sp_simhash(o->text) : 0;
    int young_now = o->account_age_days >= 0 && o->account_age_days < c->young_days;
    r->in_window = 1;
    r->young = (uint32_t)young_now;
    r->near_dupes = sh != 0;
    uint32_t held = it->n < SP_REVIEW_RECENT ? it->n : SP_REVIEW_RECENT;
    for (uint32_t i = 0; i < held; i++) {
        if (it->ts_ms[i] <= o->ts_ms - c->window_ms || it->ts_ms[i] > o->ts_ms) continue;
        r->in_window++;
        r->young += it->account_age_days[i] >= 0 && it->account_age_days[i] < c->young_days;
        if (sh && it->simhash[i] && sp_hamming64(sh, it->simhash[i]) <= c->near_bits)
            r->near_dupes++;
    }
    sp_review_burst_from_counts(c, r->in_window, r->young, r->near_dupes, r);
}

void sp_review_burst_from_counts(const struct sp_review_burst_config *c, uint32_t in_window,
                                 uint32_t young, uint32_t near_dupes,
                                 struct sp_review_burst_result *r) {
    memset(r, 0, sizeof *r);
    r->in_window = in_window;
    r->young = young;
    r->near_dupes = near_dupes;
    double sy = burst_score(r->young, c->min_young), sd = burst_score(r->near_dupes, c->min_dupes);
    if (r->near_dupes < 2) sd = 0; /* one text alone is never a duplicate */
    r->score = sy > sd ? sy : sd;
    r->alert = r->score >= 0.5;
    double minutes = (double)c->window_ms / 60000.0;
    if (sy >= 0.5)
        snprintf(r->reasons[r->nreasons++], sizeof r->reasons[0],
                 "%u reviews of this item in %.0f minutes from accounts younger than %g days",
                 r->young, minutes, c->young_days);
    if (sd >= 0.5)
        snprintf(r->reasons[r->nreasons++], sizeof r->reasons[0],
                 "%u near-identical reviews of this item in %.0f minutes", r->near_dupes, minutes);
}

void sp_review_burst_update(struct sp_review_item *it, const struct sp_review_obs *o) {
    uint32_t slot = it->n % SP_REVIEW_RECENT;
    it->ts_ms[slot] = o->ts_ms;
    it->account_age_days[slot] = (float)o->account_age_days;
    it->simhash[slot] = o->text ? sp_simhash(o->text) : 0;
    it->n++;
}
