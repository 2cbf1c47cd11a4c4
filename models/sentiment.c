/* Review sentiment: a VADER-style rule layer over the AFINN-165 lexicon, and
 * the features of the small learned model built on top of it. */
#include "models/sentiment.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stream/error.h"

#define MAX_TOKENS 512
#define MAX_TOKEN  48
#define NEG_SCOPE  3 /* words after a negator that it flips */

struct token {
    char w[MAX_TOKEN];    /* lower case, apostrophes kept ("don't") */
    char bare[MAX_TOKEN]; /* the same without apostrophes ("dont") */
    int boundary;         /* punctuation that ends a clause */
};

struct tokens {
    struct token t[MAX_TOKENS];
    int n;
};

static int cmp_entry(const void *key, const void *elem) {
    return strcmp(key, ((const struct sp_lexicon_entry *)elem)->word);
}

int sp_sentiment_lookup(const char *word, int *value) {
    const struct sp_lexicon_entry *e =
        bsearch(word, sp_afinn165, sp_afinn165_count, sizeof sp_afinn165[0], cmp_entry);
    if (!e) return SP_ERR_NOTFOUND;
    *value = e->value;
    return SP_OK;
}

static int is_word_byte(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '\'' || c == '-' || c >= 0x80;
}

/* Splits text into lower-case word tokens and clause-boundary tokens.
 * Apostrophes and hyphens stay inside words because the lexicon has entries
 * such as "can't stand" and "cover-up"; leading or trailing ones are quotes
 * or dashes and are dropped. Texts longer than MAX_TOKENS tokens are cut. */
static void tokenize(const char *s, struct tokens *tk) {
    tk->n = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p && tk->n < MAX_TOKENS) {
        if (is_word_byte(*p)) {
            const unsigned char *q = p;
            while (*q && is_word_byte(*q)) q++;
            while (p < q && (*p == '\'' || *p == '-')) p++;
            const unsigned char *e = q;
            while (e > p && (e[-1] == '\'' || e[-1] == '-')) e--;
            if (e > p) {
                struct token *t = &tk->t[tk->n++];
                size_t n = 0, b = 0;
                for (const unsigned char *c = p; c < e && n < MAX_TOKEN - 1; c++) {
                    char ch = (*c >= 'A' && *c <= 'Z') ? (char)(*c + 32) : (char)*c;
                    t->w[n++] = ch;
                    if (ch != '\'') t->bare[b++] = ch;
                }
                t->w[n] = '\0';
                t->bare[b] = '\0';
                t->boundary = 0;
            }
            p = q;
        } else {
            if (strchr(".,;:!?()", *p) && *p) {
                struct token *t = &tk->t[tk->n++];
                t->w[0] = (char)*p;
                t->w[1] = '\0';
                t->bare[0] = '\0';
                t->boundary = 1;
            }
            p++;
        }
    }
}

static int in_list(const char *w, const char *const *list) {
    for (; *list; list++)
        if (!strcmp(w, *list)) return 1;
    return 0;
}

static const char *const negators[] = {
    "not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "nowhere",
    "without", "hardly", "cannot", "cant", "dont", "doesnt", "didnt", "isnt", "wasnt",
    "wont", "wouldnt", "shouldnt", "couldnt", "arent", "werent", "havent", "hasnt",
    "hadnt", "aint", "nt", NULL};

static int is_negator(const struct token *t) {
    if (t->boundary) return 0;
    size_t n = strlen(t->w);
    if (n > 3 && !strcmp(t->w + n - 3, "n't")) return 1;
    return in_list(t->bare, negators);
}

/* Multiplier of a valence word preceded by t: > 1 intensifies, < 1 damps. */
static double booster(const struct token *t) {
    static const struct {
        const char *w;
        double k;
    } tab[] = {{"very", 1.3},       {"really", 1.3},  {"so", 1.3},        {"extremely", 1.5},
               {"incredibly", 1.5}, {"absolutely", 1.4}, {"totally", 1.3}, {"completely", 1.3},
               {"highly", 1.3},     {"super", 1.3},   {"truly", 1.3},     {"most", 1.2},
               {"too", 1.2},        {"quite", 1.1},   {"especially", 1.3}, {"exceptionally", 1.5},
               {"slightly", 0.6},   {"somewhat", 0.7}, {"kinda", 0.7},    {"marginally", 0.6},
               {"fairly", 0.8},     {"pretty", 1.1}};
    if (t->boundary) return 1.0;
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(t->bare, tab[i].w)) return tab[i].k;
    return 1.0;
}

/* Longest lexicon match (3, 2 or 1 words) starting at token i; returns its
 * length in tokens and the valence in *value, or 0. Phrases are tried with
 * and without apostrophes ("dont like" is spelled without one). */
static int match_at(const struct tokens *tk, int i, int *value) {
    char buf[3 * MAX_TOKEN + 3];
    for (int len = 3; len >= 1; len--) {
        if (i + len > tk->n) continue;
        for (int bare = 0; bare < 2; bare++) {
            size_t off = 0;
            int ok = 1;
            for (int k = 0; k < len && ok; k++) {
                const struct token *t = &tk->t[i + k];
                if (t->boundary) ok = 0;
                const char *w = bare ? t->bare : t->w;
                size_t n = strlen(w);
                if (k) buf[off++] = ' ';
                memcpy(buf + off, w, n);
                off += n;
            }
            buf[off] = '\0';
            if (ok && sp_sentiment_lookup(buf, value) == SP_OK) return len;
        }
    }
    return 0;
}

/* Walks the tokens once. A negator opens a scope over the next NEG_SCOPE
 * words of the same clause, in which valences are multiplied by
 * SP_SENT_NEGATION (flipped and damped, as VADER does: "not bad" is mildly
 * positive, not as positive as "good"). Up to two boosters right before a
 * valence word scale it. The last "but" splits the text: what comes after it
 * is what the writer means, so it weighs 1.5 and what comes before 0.5.
 * A lexicon phrase that contains its own negator ("not good", "does not
 * work") is taken as one unit and opens no scope; a lone negator counts as a
 * negator even where AFINN gives it a valence ("no" is -1), so "no good" is
 * not positive. */
static double score_tokens(const struct tokens *tk, struct sp_sentiment_detail *d,
                           uint8_t *negmask) {
    int last_but = -1;
    for (int i = 0; i < tk->n; i++)
        if (!strcmp(tk->t[i].w, "but")) last_but = i;
    memset(d, 0, sizeof *d);
    int neg_left = 0;
    for (int i = 0; i < tk->n;) {
        const struct token *t = &tk->t[i];
        if (negmask) negmask[i] = neg_left > 0;
        if (t->boundary || !strcmp(t->w, "but")) {
            neg_left = 0;
            i++;
            continue;
        }
        int value = 0, len = match_at(tk, i, &value);
        if (len <= 1 && is_negator(t)) {
            neg_left = NEG_SCOPE;
            i++;
            continue;
        }
        if (len == 0 || value == 0) {
            if (neg_left > 0) neg_left--;
            i++;
            continue;
        }
        double v = value;
        for (int k = 1; k <= 2 && i - k >= 0; k++) v *= booster(&tk->t[i - k]);
        if (neg_left > 0) {
            v *= SP_SENT_NEGATION;
            d->negated++;
        }
        if (last_but >= 0) v *= i < last_but ? SP_SENT_BUT_BEFORE : SP_SENT_BUT_AFTER;
        d->raw += v;
        if (v > 0)
            d->pos += v;
        else
            d->neg -= v;
        d->hits++;
        for (int k = 1; k < len && negmask; k++) negmask[i + k] = neg_left > 0;
        neg_left = neg_left > len ? neg_left - len : 0;
        i += len;
    }
    return d->raw / sqrt(d->raw * d->raw + 15.0);
}

double sp_sentiment_score(const char *text, struct sp_sentiment_detail *detail) {
    struct tokens *tk = sp_xmalloc(sizeof *tk);
    struct sp_sentiment_detail d;
    tokenize(text, tk);
    double s = score_tokens(tk, &d, NULL);
    free(tk);
    if (detail) *detail = d;
    return s;
}

static uint32_t hash_str(uint32_t h, const char *s) {
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

/* Five lexicon outputs, then presence bits of hashed unigrams (prefixed "!"
 * inside a negation scope, so "not work" and "work" differ) and bigrams of
 * adjacent words. Presence, not counts: review sentences are short. */
void sp_sentiment_features(const char *text, float *x) {
    struct tokens *tk = sp_xmalloc(sizeof *tk);
    uint8_t *neg = sp_xcalloc(MAX_TOKENS, 1);
    struct sp_sentiment_detail d;
    tokenize(text, tk);
    double s = score_tokens(tk, &d, neg);
    memset(x, 0, SP_SENT_DIM * sizeof(float));
    x[0] = (float)s;
    x[1] = (float)(d.pos / 5.0);
    x[2] = (float)(d.neg / 5.0);
    x[3] = d.hits > 0;
    x[4] = (float)((d.raw > 0) - (d.raw < 0));
    const uint32_t mask = (1u << SP_SENT_HASH_BITS) - 1;
    for (int i = 0; i < tk->n; i++) {
        if (tk->t[i].boundary) continue;
        uint32_t h = hash_str(neg[i] ? hash_str(2166136261u, "!") : 2166136261u, tk->t[i].bare);
        x[5 + (h & mask)] = 1.0f;
        if (i + 1 < tk->n && !tk->t[i + 1].boundary) {
            uint32_t b = hash_str(hash_str(hash_str(2166136261u, tk->t[i].bare), " "),
                                  tk->t[i + 1].bare);
            x[5 + (b & mask)] = 1.0f;
        }
    }
    free(neg);
    free(tk);
}

double sp_sentiment_model_score(const sp_logreg *m, const char *text) {
    float *x = sp_xmalloc(SP_SENT_DIM * sizeof(float));
    sp_sentiment_features(text, x);
    double p = sp_logreg_predict(m, x);
    free(x);
    return p;
}

void sp_review_stats_add(struct sp_review_stats *s, int rating, double sentiment) {
    s->count++;
    s->sentiment_sum += sentiment;
    if (rating >= 1 && rating <= 5) {
        s->rated++;
        s->rating_sum += rating;
    }
}

double sp_review_stats_rating(const struct sp_review_stats *s) {
    return s->rated ? s->rating_sum / s->rated : 0.0;
}

double sp_review_stats_sentiment(const struct sp_review_stats *s) {
    return s->count ? s->sentiment_sum / s->count : 0.0;
}
