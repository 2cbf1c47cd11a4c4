/* profile: what the shop knows about a user, in the hash
 * "{p<n>}:prof:<user_id>" of the user's partition (so it is exactly-once,
 * committed with the offsets). Fields:
 *
 *   first_ms last_ms events n_<kind>      first/last event time, counts by kind
 *   sessions recent_sessions              distinct session ids (among the last 16)
 *   orders spend aov                      orders, their total, average order value
 *   aff aff_ms                            category affinity: "cat:score,..." best
 *                                         first, top profile.top_categories,
 *                                         decayed with profile.half_life_s of
 *                                         event time, as of aff_ms
 *   recent                                "item:kind:ts ..." newest first by event
 *                                         time, at most profile.recent_items
 *   price_n price_sum price_min price_max price_mean   prices of items seen
 *   devices ips                           space-separated, at most 8 each, newest first
 *   ratings_n ratings_sum ratings_mean    reviews given
 *   rec_clicks                            clicks that came from a recommendation
 *
 * The means (price_mean, aov, ratings_mean) are for reading, in six
 * significant digits; the sums they come from keep every digit.
 *
 * Every value is a function of the user's events in partition order, so a
 * replayed batch recomputes the same profile (decay uses event time, never
 * the clock). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operators/operator.h"
#include "operators/personal.h"
#include "operators/profile.h"
#include "stream/error.h"

#define LIST_MAX 8
#define SESSIONS_MAX 16
#define TEXT_MAX 8192

/* The profile's fields, by number: their names are hashed once, at init
 * (sp_fname), not at each of the some thirty reads and writes of an event. */
enum pf {
    PF_FIRST_MS, PF_LAST_MS, PF_EVENTS, PF_SESSIONS, PF_ORDERS, PF_SPEND, PF_AOV,
    PF_AFF, PF_AFF_MS, PF_RECENT, PF_PRICE_N, PF_PRICE_SUM, PF_PRICE_MIN, PF_PRICE_MAX,
    PF_PRICE_MEAN, PF_RATINGS_N, PF_RATINGS_SUM, PF_RATINGS_MEAN, PF_REC_CLICKS,
    PF__COUNT
};

static const char *const pf_names[PF__COUNT] = {
    [PF_FIRST_MS] = "first_ms",         [PF_LAST_MS] = "last_ms",
    [PF_EVENTS] = "events",             [PF_SESSIONS] = "sessions",
    [PF_ORDERS] = "orders",             [PF_SPEND] = "spend",
    [PF_AOV] = "aov",                   [PF_AFF] = "aff",
    [PF_AFF_MS] = "aff_ms",             [PF_RECENT] = "recent",
    [PF_PRICE_N] = "price_n",           [PF_PRICE_SUM] = "price_sum",
    [PF_PRICE_MIN] = "price_min",       [PF_PRICE_MAX] = "price_max",
    [PF_PRICE_MEAN] = "price_mean",     [PF_RATINGS_N] = "ratings_n",
    [PF_RATINGS_SUM] = "ratings_sum",   [PF_RATINGS_MEAN] = "ratings_mean",
    [PF_REC_CLICKS] = "rec_clicks",
};

/* A list of words with their times, as list_push keeps it. */
struct list {
    sp_fname field, tsfield;
    int max;
};

struct profile {
    sp_store *store;
    sp_personal *ctx;
    int recent, top;
    sp_fname f[PF__COUNT];
    char n_name[SP_KIND__COUNT + 1][24]; /* "n_<kind>", built once; +2: the kind's name */
    size_t kind_len[SP_KIND__COUNT + 1];  /* of the kind's name: no strlen per event */
    sp_fname n_field[SP_KIND__COUNT + 1]; /* of n_name */
    struct list sessions, devices, ips;
    sp_op_hints users;    /* the event's prof:<user> entry, prefetch to process */
};

static void list_init(struct list *l, const char *field, const char *tsfield, int max) {
    l->field = sp_fname_of(field);
    l->tsfield = sp_fname_of(tsfield);
    l->max = max;
}

static int profile_init(void **priv, const sp_op_env *env, char *err, size_t errlen) {
    sp_personal *ctx = sp_personal_get(env, err, errlen);
    if (!ctx) return SP_ERR_FATAL;
    struct profile *p = sp_xcalloc(1, sizeof *p);
    p->store = env->store;
    p->ctx = ctx;
    p->recent = env->cfg->profile_recent_items;
    p->top = env->cfg->profile_top_categories;
    for (int i = 0; i < PF__COUNT; i++) p->f[i] = sp_fname_of(pf_names[i]);
    for (int k = 0; k <= SP_KIND__COUNT; k++) {
        snprintf(p->n_name[k], sizeof p->n_name[k], "n_%s",
                 sp_event_kind_name((enum sp_event_kind)k));
        p->n_field[k] = sp_fname_of(p->n_name[k]);
        p->kind_len[k] = strlen(p->n_name[k]) - 2;
    }
    list_init(&p->sessions, "recent_sessions", "recent_sessions_ts", SESSIONS_MAX);
    list_init(&p->devices, "devices", "devices_ts", LIST_MAX);
    list_init(&p->ips, "ips", "ips_ts", LIST_MAX);
    *priv = p;
    return SP_OK;
}

static void prof_key(char *buf, size_t len, const sp_op_event *e) {
    size_t u = strlen(e->ev->user_id);
    if (u + 6 > len) u = len - 6;
    memcpy(buf, "prof:", 5);
    memcpy(buf + 5, e->ev->user_id, u);
    buf[5 + u] = '\0';
}

static void profile_prefetch(void *priv, const sp_op_event *e) {
    struct profile *p = priv;
    char key[256];
    prof_key(key, sizeof key, e);
    sp_op_want(&p->users, p->store, e, key);
}

/* strtoll(s, end, 10) for what sp_i64toa writes (optional '-', at most 18
 * digits, after any spaces), without strtoll's locale and overflow
 * machinery; anything else goes to strtoll itself, so the result is
 * strtoll's for every input. */
int64_t sp_profile_parse_i64(const char *s, char **end) {
    const char *c = s;
    while (*c == ' ') c++;
    int neg = *c == '-';
    const char *d = c + neg;
    int64_t v = 0;
    int n = 0;
    /* 18 digits at most here (no overflow); a 19th is left for strtoll. */
    for (; *d >= '0' && *d <= '9' && n < 18; d++, n++) v = v * 10 + (*d - '0');
    if (!n || (*d && *d != ' ')) return strtoll(s, end, 10);
    *end = (char *)d;
    return neg ? -v : v;
}

#define EIGHT_ZEROS 0x3030303030303030ULL /* "00000000" */

/* Whether the eight bytes in v are all ASCII digits: each byte's high
 * nibble is 3, and adding 6 leaves it 3 (no byte carries into the next, as
 * each is below 0x40 by then). */
static inline int eight_are_digits(uint64_t v) {
    const uint64_t high = 0xf0f0f0f0f0f0f0f0ULL;
    return (v & high) == EIGHT_ZEROS && ((v + 0x0606060606060606ULL) & high) == EIGHT_ZEROS;
}

/* The value of the eight ASCII digits in v (little-endian: the first digit
 * in the low byte), or -1 when a byte is not a digit: all eight at once
 * (Lemire's parse_eight_digits). */
static inline int64_t eight_digits(uint64_t v) {
    if (!eight_are_digits(v)) return -1;
    v -= EIGHT_ZEROS;
    v = v * 10 + (v >> 8); /* each pair of digits, as a number, in its first byte */
    v = ((v & 0x000000ff000000ffULL) * (100 + (1000000ULL << 32)) +
         ((v >> 16) & 0x000000ff000000ffULL) * (1 + (10000ULL << 32))) >> 32;
    return (int64_t)v;
}

/* sp_profile_parse_i64(t, end) for a word t of len bytes that ends at a
 * space or the text's end (t[len] is ' ' or NUL): a time of the recent
 * ring or a list. Knowing where the word ends, it reads a word of 9 to 16
 * bytes (the 13-digit times) as two words of eight digits: the last eight,
 * and the first eight with the bytes past the first len - 8 shifted out and
 * '0's shifted in before them. Up to eight bytes are read one by one (the
 * word may end right at the end of its buffer); any other word goes to
 * sp_profile_parse_i64, so the result is strtoll's for every word. */
int64_t sp_profile_parse_time(const char *t, size_t len, char **end) {
    int64_t v = -1;
    if (len > 8 && len <= 16) {
        size_t lead = len - 8;
        uint64_t head, tail;
        memcpy(&head, t, 8);
        memcpy(&tail, t + lead, 8);
        head = head << (8 * (8 - lead)) | (lead < 8 ? EIGHT_ZEROS >> (8 * lead) : 0);
        int64_t hi = eight_digits(head), lo = eight_digits(tail);
        if (hi >= 0 && lo >= 0) v = hi * 100000000 + lo;
    } else if (len >= 1 && len <= 8) {
        size_t i = 0;
        for (v = 0; i < len && t[i] >= '0' && t[i] <= '9'; i++) v = v * 10 + (t[i] - '0');
        if (i < len) v = -1;
    }
    if (v < 0) return sp_profile_parse_i64(t, end);
    *end = (char *)t + len;
    return v;
}

/* sp_i64toa(v, out) for every v; the 13-digit times of events (2001 to
 * 2286 in ms) written directly, without sp_i64toa's loops and its copy
 * out of a scratch buffer: the first digit, then two at a time from the
 * table, in 32-bit arithmetic after one 64-bit division. Every event of a
 * profile writes one. */
size_t sp_profile_fmt_time(int64_t v, char *out) {
    if (v < 1000000000000 || v >= 10000000000000) return sp_i64toa(v, out);
    uint32_t hi = (uint32_t)(v / 100000000), lo = (uint32_t)(v - (int64_t)hi * 100000000);
    uint32_t h1 = hi / 10000, h2 = hi - h1 * 10000; /* 1 digit, then 4 */
    uint32_t l1 = lo / 10000, l2 = lo - l1 * 10000; /* 4 digits, then 4 */
    out[0] = (char)('0' + h1);
    memcpy(out + 1, sp_digit_pairs + 2 * (h2 / 100), 2);
    memcpy(out + 3, sp_digit_pairs + 2 * (h2 % 100), 2);
    memcpy(out + 5, sp_digit_pairs + 2 * (l1 / 100), 2);
    memcpy(out + 7, sp_digit_pairs + 2 * (l1 % 100), 2);
    memcpy(out + 9, sp_digit_pairs + 2 * (l2 / 100), 2);
    memcpy(out + 11, sp_digit_pairs + 2 * (l2 % 100), 2);
    out[13] = '\0';
    return 13;
}

/* An event's time and its text as sp_i64toa writes it, written the first
 * time something needs it and then shared: the three lists and the ring of
 * recent items all write the same time. */
struct when {
    int64_t ms;
    size_t len; /* 0: text not written yet */
    char text[24];
};

static const char *when_text(struct when *t) {
    if (!t->len) t->len = sp_profile_fmt_time(t->ms, t->text);
    return t->text;
}

/* Whether the time t (len bytes, ending at a space or the text's end) is
 * before the event's: sp_profile_parse_time(t, len, end) < w->ms, with
 * *end set as that sets it. A time of 9 to 16 digits, as many as the
 * event's text has (the 13-digit times of the ring and the lists), is
 * compared as text, eight bytes at a time, without being read as a number:
 * the event's text is written once per event in any case. */
static int time_before(const char *t, size_t len, struct when *w, char **end) {
    const char *wt = when_text(w);
    if (len == w->len && len > 8 && len <= 16 && *wt != '-') {
        uint64_t a, b, x, y;
        memcpy(&a, t, 8);
        memcpy(&b, t + len - 8, 8);
        if (eight_are_digits(a) && eight_are_digits(b)) {
            memcpy(&x, wt, 8);
            memcpy(&y, wt + len - 8, 8);
            *end = (char *)t + len;
            /* big-endian, the first byte highest: as numbers, as texts */
            a = __builtin_bswap64(a);
            x = __builtin_bswap64(x);
            return a != x ? a < x : __builtin_bswap64(b) < __builtin_bswap64(y);
        }
    }
    return sp_profile_parse_time(t, len, end) < w->ms;
}

/* A field's text and its length, as sp_obj_get_strn_f gives them (s NULL:
 * absent): the lists and the ring are scanned word by word, and knowing
 * where the text ends spares a strlen at each word. The length is where
 * the text's NUL is: only this operator writes these fields, never a NUL. */
struct span {
    const char *s;
    size_t len;
};

static struct span span_get(const sp_obj *o, const sp_fname *f) {
    struct span t;
    t.s = sp_obj_get_strn_f(o, f, &t.len);
    return t;
}

/* The length of the word at s: up to the next space, or to end. */
static inline size_t word_len(const char *s, const char *end) {
    const char *sp = memchr(s, ' ', (size_t)(end - s));
    return sp ? (size_t)(sp - s) : (size_t)(end - s);
}

/* The length of `word` if a list takes it (a word: not nothing and not
 * two), else 0. */
static size_t list_word(const char *word) {
    if (!word) return 0;
    const char *e = strchrnul(word, ' '); /* one pass for the space and the end */
    return *e ? 0 : (size_t)(e - word);
}

/* The time text [s, end) that strtoll read, if it is byte for byte what
 * sp_i64toa writes for the value read (as every time this operator wrote
 * is): its start, and its length in *len; else NULL. A list rebuilt
 * copies such a text instead of writing the number again. Up to 18 bytes
 * only, so that strtoll's clamp at overflow never passes for a number. */
static const char *time_as_written(const char *s, const char *end, size_t *len) {
    while (s < end && (*s == ' ' || (*s >= '\t' && *s <= '\r'))) s++; /* strtoll's spaces */
    size_t n = (size_t)(end - s);
    if (!n || n > 18 || *s == '+') return NULL;
    const char *d = s + (*s == '-');
    if (d == end || (*d == '0' && (d != s || n != 1))) return NULL; /* "-0", "007" */
    *len = n;
    return s;
}

/* Keeps l->field as the l->max distinct words with the newest event
 * times, newest first (ties by word), and their times in l->tsfield. The
 * list is the top l->max words by the latest event time each was seen with,
 * so it depends only on which events came, not on how the three input
 * topics were interleaved: a restarted run and a clean one end with the
 * same text (an order of arrival would not; `make soak` caught that). A
 * list written before the times were kept reads as time 0. `old` is
 * l->field's text as the caller read it (s NULL if absent): the sessions
 * list is read once per event, for this and for counting sessions. The
 * word is one list_word took. */
static void list_push(sp_obj *o, const struct list *l, const struct span *old, struct span word,
                      struct when *when) {
    enum { CAP = 32 };
    struct {
        const char *w;
        size_t len;
        int64_t ts;
        const char *tt; /* ts as sp_i64toa writes it, tl bytes, or NULL: write it */
        size_t tl;
    } e[CAP + 1];
    int n = 0;
    int64_t ts = when->ms;
    size_t wl = word.len, tslen;
    const char *os = old->s, *oldts = sp_obj_get_strn_f(o, &l->tsfield, &tslen);
    char *tp = (char *)oldts;
    /* The common case: the word heads the list already (the same session,
     * device or ip as the user's newest event). Only its time can change,
     * to the later of the two, and it stays at the head: the words are as
     * they were, and the times get a new first one. */
    if (os && old->len >= wl && sp_bytes_eq(os, word.s, wl) && (old->len == wl || os[wl] == ' ') &&
        tp && *tp) {
        size_t hl = word_len(tp, oldts + tslen);
        char *rest;
        if (!time_before(tp, hl, when, &rest)) return;
        const char *now = when_text(when);
        size_t kt = when->len;
        char outts[CAP * 21 + 1];
        memcpy(outts, now, sizeof when->text);
        size_t rl = tslen - (size_t)(rest - oldts); /* what follows the head's time */
        tp = rest;
        if (kt + rl < sizeof outts) {
            memcpy(outts + kt, tp, rl + 1);
            sp_obj_set_str_f(o, &l->tsfield, outts, kt + rl);
            return;
        }
        tp = (char *)oldts;
    }
    const char *wtt = when_text(when); /* the word's time text, unless an older one is later */
    size_t wtl = when->len;
    const char *end = os ? os + old->len : NULL;
    for (const char *s = os; s && *s && n < CAP;) {
        size_t len = word_len(s, end), tl = 0;
        int64_t t = 0;
        const char *tt = NULL;
        if (tp && *tp) {
            const char *t0 = tp;
            t = sp_profile_parse_i64(tp, &tp);
            tt = time_as_written(t0, tp, &tl);
        }
        if (len == wl && sp_bytes_eq(s, word.s, len)) {
            if (t > ts) { /* the word's latest time */
                ts = t;
                wtt = tt;
                wtl = tl;
            }
        } else if (len) {
            e[n].w = s;
            e[n].len = len;
            e[n].tt = tt;
            e[n].tl = tl;
            e[n++].ts = t;
        }
        s += len;
        while (*s == ' ') s++;
    }
    /* Insert the word at its place: newest first, then by bytes. */
    int at = 0;
    while (at < n) {
        int c = e[at].ts != ts ? (e[at].ts > ts ? -1 : 1) : 0;
        if (!c) {
            size_t m = e[at].len < wl ? e[at].len : wl;
            c = memcmp(e[at].w, word.s, m);
            if (!c) c = e[at].len < wl ? -1 : 1;
        }
        if (c > 0) break;
        at++;
    }
    memmove(e + at + 1, e + at, (size_t)(n - at) * sizeof e[0]);
    e[at].w = word.s;
    e[at].len = wl;
    e[at].ts = ts;
    e[at].tt = wtt;
    e[at].tl = wtl;
    n++;
    if (n > l->max) n = l->max;
    char out[TEXT_MAX], outts[CAP * 21 + 1];
    size_t k = 0, kt = 0;
    for (int i = 0; i < n; i++) {
        if (k + e[i].len + 2 >= sizeof out) break;
        if (i) {
            out[k++] = ' ';
            outts[kt++] = ' ';
        }
        memcpy(out + k, e[i].w, e[i].len);
        k += e[i].len;
        if (e[i].tt) {
            memcpy(outts + kt, e[i].tt, e[i].tl);
            kt += e[i].tl;
        } else {
            kt += sp_i64toa(e[i].ts, outts + kt);
        }
    }
    out[k] = '\0';
    outts[kt] = '\0';
    if (!os || old->len != k || memcmp(os, out, k)) sp_obj_set_str_f(o, &l->field, out, k);
    if (!oldts || tslen != kt || memcmp(oldts, outts, kt))
        sp_obj_set_str_f(o, &l->tsfield, outts, kt);
}

/* list_push of an event's word, if a list takes it. */
static void list_offer(sp_obj *o, const struct list *l, const char *w, struct when *when) {
    struct span word = {w, list_word(w)};
    if (!word.len) return;
    struct span old = span_get(o, &l->field);
    list_push(o, l, &old, word, when);
}

/* The length of the first `words` words of a ring whose words are one
 * space apart, or -1 if they are not (a leading space, two in a row):
 * recent_push's loop copies words one by one and would not copy such a
 * text as it stands. A trailing space is left out, as that loop leaves it. */
static long ring_prefix(const char *ring, const char *end, int words) {
    const char *s = ring, *stop = ring;
    if (*s == ' ') return -1;
    for (int k = 0; k < words && *s; k++) {
        const char *sp = memchr(s, ' ', (size_t)(end - s));
        if (!sp) return (long)(end - ring);
        stop = sp;
        s = sp + 1;
        if (*s == ' ') return -1;
    }
    return (long)(stop - ring);
}

/* The time of a ring entry w (len bytes, ending at a space or the ring's
 * end): what follows its last colon (all of it without one), as atoll
 * (glibc: strtoll(s, NULL, 10)) reads it -- its text, and its length in
 * *tl, for sp_profile_parse_time or time_before. */
static const char *entry_time(const char *w, size_t len, size_t *tl) {
    const char *colon = memrchr(w, ':', len), *c = colon ? colon + 1 : w;
    *tl = len - (size_t)(c - w);
    return c;
}

/* Puts "item:kind:ts" into the ring of recent items, which is kept sorted
 * newest first by event time (then by text), so that the ring holds the
 * profile.recent_items newest events whatever order the input topics were
 * interleaved in. */
static void recent_push(struct profile *p, sp_obj *o, const char *item, int k,
                        struct when *when) {
    int64_t ts = when->ms;
    size_t oldlen;
    const char *old = sp_obj_get_strn_f(o, &p->f[PF_RECENT], &oldlen);
    const char *kind = p->n_name[k] + 2; /* "n_<kind>" */
    char mine[2 * SP_EVENT_MAX_ID + 48], out[TEXT_MAX];
    size_t il = strlen(item), kl = p->kind_len[k], mlen;
    if (il + kl + 23 <= sizeof mine) { /* "item:kind:ts", as snprintf wrote it */
        memcpy(mine, item, il);
        mine[il] = ':';
        memcpy(mine + il + 1, kind, kl);
        mine[il + 1 + kl] = ':';
        const char *tt = when_text(when); /* before when->len is read */
        memcpy(mine + il + kl + 2, tt, when->len + 1);
        mlen = il + kl + 2 + when->len;
    } else { /* longer than validation lets through: cut as before */
        mlen = (size_t)snprintf(mine, sizeof mine, "%s:%s:%lld", item, kind, (long long)ts);
        if (mlen >= sizeof mine) mlen = sizeof mine - 1;
    }
    /* The common case: the event is newer than the ring's head (events
     * mostly come in time order). The loop below would put it first and
     * then copy the ring's first recent_items - 1 words as they are: one
     * copy does the same. A time equal to the head's or older takes the
     * loop, which compares texts and finds the event's place. */
    const char *ring = old ? old : "", *end = ring + oldlen;
    if (p->recent >= 1 && *ring != ' ') {
        size_t hl = word_len(ring, end), tl;
        const char *tt = hl ? entry_time(ring, hl, &tl) : NULL;
        char *te;
        long keep =
            !hl || time_before(tt, tl, when, &te) ? ring_prefix(ring, end, p->recent - 1) : -1;
        if (keep >= 0 && mlen + (size_t)keep + 3 < sizeof out) {
            memcpy(out, mine, mlen);
            size_t n = mlen;
            if (keep) {
                out[n++] = ' ';
                memcpy(out + n, ring, (size_t)keep);
                n += (size_t)keep;
            }
            out[n] = '\0';
            if (!old || oldlen != n || memcmp(old, out, n))
                sp_obj_set_str_f(o, &p->f[PF_RECENT], out, n);
            return;
        }
    }
    size_t n = 0;
    int count = 0, placed = 0;
    const char *s = ring;
    while (count < p->recent && (*s || !placed)) {
        const char *w = s;
        size_t len = *s ? word_len(s, end) : 0;
        int take_mine = !placed;
        if (take_mine && len) {
            size_t tl;
            const char *tt = entry_time(w, len, &tl);
            char *te;
            int64_t wts = sp_profile_parse_time(tt, tl, &te);
            int cmp = wts != ts ? (wts < ts ? -1 : 1) : strncmp(w, mine, len);
            if (cmp == 0 && len == mlen) return; /* the same event again */
            take_mine = cmp < 0;
        }
        const char *src = take_mine ? mine : w;
        size_t sl = take_mine ? mlen : len;
        if (n + sl + 2 >= sizeof out) break;
        if (n) out[n++] = ' ';
        memcpy(out + n, src, sl);
        n += sl;
        count++;
        if (take_mine) {
            placed = 1;
        } else {
            s += len;
            while (*s == ' ') s++;
        }
    }
    out[n] = '\0';
    if (!old || oldlen != n || memcmp(old, out, n)) sp_obj_set_str_f(o, &p->f[PF_RECENT], out, n);
}

/* v as printf's "%.6g" writes it, without printf for the values an
 * affinity or a mean takes (1e-4 <= |v| < 1e6; printf for the others): six
 * significant digits, fixed notation, trailing zeros dropped; ties
 * (exact, or made by the scaling's rounding) go to printf, so the text is
 * printf's -- except for -0, written "0" (printf: "-0") as it always has
 * been. Returns the length written (out holds at least 32 bytes).
 *
 * Without libm as well: it runs a few times per event (every affinity
 * score, the means), and log10/floor/llround were most of its cost. The
 * exponent e = floor(log10 |v|) comes from comparisons with the powers of
 * ten, exact for every double (each constant below 1 is the double just
 * above its power, so no double lies between the two); the scaled value x
 * is below 2^20, where x + 0.5 is exact and truncation is floor. Starting
 * from the exact e matters: the scaled value rounds to 10^6 only when v
 * rounds up to the next power of ten, which printf writes with e + 1. */
size_t sp_profile_fmt_g6(double v, char *out) {
    static const double pow10[] = {1e-4, 1e-3, 1e-2, 1e-1, 1e0, 1e1, 1e2, 1e3, 1e4, 1e5};
    static const double scale[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};
    double a = fabs(v);
    if (v == 0) {
        memcpy(out, "0", 2);
        return 1;
    }
    if (!(a >= 1e-4 && a < 1e6)) return (size_t)snprintf(out, 32, "%.6g", v);
    int e = 0; /* from 1 outwards: most values are units or tens */
    if (a >= 1) {
        while (e < 5 && a >= pow10[e + 5]) e++;
    } else {
        e = -1;
        while (a < pow10[e + 4]) e--; /* stops at -4: a >= 1e-4 */
    }
    double x = a * scale[5 - e];
    double fl = (double)(int64_t)x;
    if (x - fl == 0.5) /* a tie, or one made by the product's rounding */
        return (size_t)snprintf(out, 32, "%.6g", v);
    uint32_t q = (uint32_t)(x + 0.5);
    if (q >= 1000000) { /* rounds up to 10^(e+1): one digit then zeros */
        if (++e > 5) return (size_t)snprintf(out, 32, "%.6g", v);
        q = 100000;
    }
    /* the six digits two at a time, and copied in fixed eight-byte moves
     * (out holds 32 bytes; the bytes past n are overwritten or left past
     * the NUL): loops of single digits and their calls to memcpy cost more
     * than the rest */
    char dig[16] = "";
    uint32_t hi = q / 10000, r = q - hi * 10000, mid = r / 100;
    memcpy(dig, sp_digit_pairs + 2 * hi, 2);
    memcpy(dig + 2, sp_digit_pairs + 2 * mid, 2);
    memcpy(dig + 4, sp_digit_pairs + 2 * (r - mid * 100), 2);
    int last = 5; /* last significant digit kept */
    while (last > 0 && dig[last] == '0' && last > e) last--;
    size_t n = v < 0;
    out[0] = '-'; /* overwritten by the digits when v > 0 */
    if (e >= 0) {
        memcpy(out + n, dig, 8);
        n += (size_t)e + 1;
        if (last > e) {
            out[n++] = '.';
            memcpy(out + n, dig + e + 1, 8);
            n += (size_t)(last - e);
        }
    } else { /* "0." and -e - 1 zeros before the digits */
        memcpy(out + n, "0.000", 5);
        n += (size_t)(1 - e);
        memcpy(out + n, dig, 8);
        n += (size_t)last + 1;
    }
    out[n] = '\0';
    return n;
}

/* strtod(s, NULL) for the text sp_profile_fmt_g6 writes (fixed notation, at most
 * 15 digits): the digits as an integer, exact in a double, divided by an
 * exact power of ten is one correctly rounded operation -- strtod's
 * result. Exponents, long mantissas and anything else go to strtod. */
double sp_profile_parse_score(const char *s) {
    static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    int neg = *s == '-';
    const char *c = s + neg, *int0 = c, *frac0 = NULL;
    uint64_t m = 0; /* wraps past 19 digits: those go to strtod below */
    while ((unsigned)(*c - '0') < 10) m = m * 10 + (uint64_t)(*c++ - '0');
    if (*c == '.') {
        frac0 = ++c;
        while ((unsigned)(*c - '0') < 10) m = m * 10 + (uint64_t)(*c++ - '0');
    }
    int frac = frac0 ? (int)(c - frac0) : 0, digits = (int)(c - int0) - (frac0 != NULL);
    if (!digits || digits > 15 || (*c && *c != ',')) return strtod(s, NULL);
    double v = (double)m / p10[frac];
    return neg ? -v : v;
}

/* One category of the affinity text: its name where it lies (the field's
 * text, or the event's), so entries move as three words while sorted. */
struct aff {
    const char *cat;
    size_t len;
    double score;
};

/* Best first, then by name as strcmp orders them (bytes, unsigned; a
 * prefix first). */
static int aff_cmp(const void *a, const void *b) {
    const struct aff *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    int c = memcmp(x->cat, y->cat, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Sorts a[0..n) by aff_cmp into the order qsort gives. Insertion: the text
 * was written in this order, so after a decay (which keeps the order, up
 * to ties that six-digit scores or the product's rounding make) and the one
 * added score it is all but sorted, and qsort's calls cost more than the
 * sort. Entries that compare equal have the same name and score, so they
 * print the same whichever comes first; a NaN score orders nothing
 * consistently, and then qsort itself decides, as it did. */
static void aff_sort(struct aff *a, int n) {
    for (int i = 0; i < n; i++)
        if (a[i].score != a[i].score) {
            qsort(a, (size_t)n, sizeof a[0], aff_cmp);
            return;
        }
    for (int i = 1; i < n; i++) {
        struct aff t = a[i];
        int j = i;
        while (j > 0 && aff_cmp(&a[j - 1], &t) > 0) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = t;
    }
}

/* Decays the affinity to event time ts (never backwards: a late event's
 * weight is decayed to the profile's time instead) and adds w to cat. */
static void affinity_add(struct profile *p, sp_obj *o, const char *cat, double w, int64_t ts) {
    size_t cl = cat ? strlen(cat) : 0;
    if (!cl || w <= 0 || cl > SP_EVENT_MAX_ID) return;
    struct aff a[101];
    int n = 0;
    size_t alen;
    const char *s = sp_obj_get_strn_f(o, &p->f[PF_AFF], &alen); /* valid until "aff" is set */
    const char *end = s ? s + alen : NULL;
    while (s && *s && n < p->top) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        size_t len = comma ? (size_t)(comma - s) : (size_t)(end - s);
        const char *colon = memrchr(s, ':', len);
        if (colon && (size_t)(colon - s) <= SP_EVENT_MAX_ID) {
            a[n].cat = s;
            a[n].len = (size_t)(colon - s);
            a[n].score = sp_profile_parse_score(colon + 1);
            n++;
        }
        s += len + (comma ? 1 : 0);
    }
    int64_t at = sp_obj_get_int_f(o, &p->f[PF_AFF_MS], ts);
    if (ts > at) {
        double f = pow(0.5, (double)(ts - at) / p->ctx->half_life_ms);
        for (int i = 0; i < n; i++) a[i].score *= f;
        at = ts;
    } else if (ts < at) { /* at == ts would multiply by pow(0.5, 0), which is 1 */
        w *= pow(0.5, (double)(at - ts) / p->ctx->half_life_ms);
    }
    int found = 0;
    for (int i = 0; i < n && !found; i++)
        if (a[i].len == cl && sp_bytes_eq(a[i].cat, cat, cl)) {
            a[i].score += w;
            found = 1;
        }
    if (!found) {
        a[n].cat = cat;
        a[n].len = cl;
        a[n++].score = w;
    }
    aff_sort(a, n);
    if (n > p->top) n = p->top;
    char out[TEXT_MAX];
    size_t len = 0;
    for (int i = 0; i < n && len < sizeof out - 160; i++) {
        if (i) out[len++] = ',';
        memcpy(out + len, a[i].cat, a[i].len);
        len += a[i].len;
        out[len++] = ':';
        len += sp_profile_fmt_g6(a[i].score, out + len);
    }
    out[len] = '\0';
    sp_obj_set_str_f(o, &p->f[PF_AFF], out, len);
    sp_obj_set_int_f(o, &p->f[PF_AFF_MS], at);
}

/* A derived value for people to read (a mean: never read back to compute
 * with), in six significant digits without printf's %.17g. */
static void set_shown(sp_obj *o, const sp_fname *field, double v) {
    char buf[40];
    size_t len = sp_profile_fmt_g6(v, buf);
    sp_obj_set_str_f(o, field, buf, len);
}

static void price_add(const struct profile *p, sp_obj *o, double price) {
    if (!(price > 0)) return;
    const sp_fname *f = p->f;
    int64_t n = sp_obj_get_int_f(o, &f[PF_PRICE_N], 0);
    double sum = sp_obj_get_double_f(o, &f[PF_PRICE_SUM], 0) + price;
    double lo = sp_obj_get_double_f(o, &f[PF_PRICE_MIN], price);
    double hi = sp_obj_get_double_f(o, &f[PF_PRICE_MAX], price);
    sp_obj_set_int_f(o, &f[PF_PRICE_N], n + 1);
    sp_obj_set_double_f(o, &f[PF_PRICE_SUM], sum);
    /* min and max rarely move: written when they do (or are new) */
    if (price < lo || !n) sp_obj_set_double_f(o, &f[PF_PRICE_MIN], price < lo ? price : lo);
    if (price > hi || !n) sp_obj_set_double_f(o, &f[PF_PRICE_MAX], price > hi ? price : hi);
    set_shown(o, &f[PF_PRICE_MEAN], sum / (double)(n + 1));
}

static int profile_process(void *priv, const sp_op_event *e) {
    struct profile *p = priv;
    const sp_event *ev = e->ev;
    char key[256];
    prof_key(key, sizeof key, e);
    sp_obj *o;
    int rc = sp_op_get(&p->users, p->store, e, key, &o);
    if (rc != SP_OK) return rc;
    /* a new profile gets most of its fields now: room for all of them */
    if (!sp_obj_nfields(o)) sp_obj_reserve(o, PF__COUNT + 6 + SP_KIND__COUNT + 1);
    int k = e->kind <= SP_KIND__COUNT ? (int)e->kind : SP_KIND__COUNT;
    int64_t ts = ev->ts_ms;
    struct when when = {.ms = ts};
    const sp_fname *f = p->f;
    if (ts < sp_obj_get_int_f(o, &f[PF_FIRST_MS], INT64_MAX))
        sp_obj_set_int_f(o, &f[PF_FIRST_MS], ts);
    if (ts > sp_obj_get_int_f(o, &f[PF_LAST_MS], INT64_MIN))
        sp_obj_set_int_f(o, &f[PF_LAST_MS], ts);
    sp_obj_incr_f(o, &f[PF_EVENTS], 1);
    sp_obj_incr_f(o, &p->n_field[k], 1);
    struct span word = {ev->session_id, list_word(ev->session_id)};
    if (word.len) {
        /* distinct session ids among the SESSIONS_MAX newest (by event
         * time): a session counts once unless it has dropped out of them */
        struct span seen = span_get(o, &p->sessions.field);
        const char *end = seen.s ? seen.s + seen.len : NULL;
        int known = 0;
        for (const char *c = seen.s; c && *c && !known;) {
            size_t len = word_len(c, end);
            known = len == word.len && sp_bytes_eq(c, word.s, len);
            c += len;
            while (*c == ' ') c++;
        }
        if (!known) sp_obj_incr_f(o, &f[PF_SESSIONS], 1); /* leaves `seen` as it is */
        list_push(o, &p->sessions, &seen, word, &when);
    }
    if (ev->context) {
        list_offer(o, &p->devices, ev->context->device_id, &when);
        list_offer(o, &p->ips, ev->context->ip, &when);
    }
    float w = e->kind < SP_KIND__COUNT ? p->ctx->mf_weights[e->kind] : 0;
    if (ev->body_case == SHOPSTREAM__V1__EVENT__BODY_CLICK && ev->click) {
        const Shopstream__V1__Click *c = ev->click;
        if (c->item_id && *c->item_id) {
            recent_push(p, o, c->item_id, k, &when);
            price_add(p, o, c->price);
        }
        affinity_add(p, o, c->category, w, ts);
        if (c->rec_id && *c->rec_id) sp_obj_incr_f(o, &f[PF_REC_CLICKS], 1);
    } else if (ev->body_case == SHOPSTREAM__V1__EVENT__BODY_ORDER && ev->order) {
        const Shopstream__V1__Order *ord = ev->order;
        int64_t orders = sp_obj_get_int_f(o, &f[PF_ORDERS], 0) + 1;
        double spend = sp_obj_get_double_f(o, &f[PF_SPEND], 0) + ord->total;
        sp_obj_set_int_f(o, &f[PF_ORDERS], orders);
        sp_obj_set_double_f(o, &f[PF_SPEND], spend);
        set_shown(o, &f[PF_AOV], spend / (double)orders);
        for (size_t i = 0; i < ord->n_items; i++) {
            const Shopstream__V1__LineItem *li = ord->items[i];
            if (li->item_id && *li->item_id) recent_push(p, o, li->item_id, k, &when);
            affinity_add(p, o, li->category, w, ts);
        }
    } else if (ev->body_case == SHOPSTREAM__V1__EVENT__BODY_REVIEW && ev->review) {
        int64_t n = sp_obj_get_int_f(o, &f[PF_RATINGS_N], 0) + 1;
        int64_t sum = sp_obj_get_int_f(o, &f[PF_RATINGS_SUM], 0) + ev->review->rating;
        sp_obj_set_int_f(o, &f[PF_RATINGS_N], n);
        sp_obj_set_int_f(o, &f[PF_RATINGS_SUM], sum);
        set_shown(o, &f[PF_RATINGS_MEAN], (double)sum / (double)n);
        if (ev->review->item_id && *ev->review->item_id)
            recent_push(p, o, ev->review->item_id, k, &when);
    }
    return SP_OK;
}

static void profile_destroy(void *priv) {
    struct profile *p = priv;
    if (!p) return;
    sp_personal_put(p->ctx);
    sp_op_hints_release(&p->users);
    free(p);
}

const sp_op sp_op_profile = {
    .name = "profile",
    .help = "per-user profile: counts, sessions, spend, category affinity, recent items",
    .init = profile_init,
    .prefetch = profile_prefetch,
    .process = profile_process,
    .destroy = profile_destroy,
};
