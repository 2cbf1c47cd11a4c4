/* `shopstream gen`: the synthetic shop.
 *
 * The generator keeps a fixed number of concurrent sessions ("slots"). Each
 * slot holds the whole plan of one session, made when it starts: the events
 * of one user with their timestamps. The next record is always the earliest
 * planned event over all slots, so the output is in event-time order except
 * for injected duplicates, and a user is in at most one slot at a time, so
 * each user's events are ordered and their sessions never overlap.
 *
 * Malformed records and duplicates are applied as records leave: a malformed
 * record is a planned (non-fraud) event damaged one way, a duplicate is a
 * verbatim copy of a recent valid record, as a producer retry would send.
 *
 * Determinism: one xoshiro256** stream seeded from --seed, consumed in a
 * fixed order; no clock, no hash-table iteration, no libc rand(). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "stream/cli.h"
#include "stream/error.h"
#include "stream/event.h"
#include "stream/gen.h"
#include "stream/log.h"
#include "stream/replay.h"

#define MAX_PLAN 64  /* events in one session plan */
#define MAX_LINES 8  /* line items in one generated order */
#define DUP_RING 256 /* recent valid records a duplicate may repeat */
#define NO_USER UINT32_MAX

/* ---- random numbers ---- */

typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rng_u64(rng *r) {
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5, result = ((x << 7) | (x >> 57)) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

static double rng_unit(rng *r) { return (double)(rng_u64(r) >> 11) * 0x1.0p-53; }

static uint32_t rng_below(rng *r, uint32_t n) {
    return (uint32_t)(((rng_u64(r) >> 32) * (uint64_t)n) >> 32);
}

static int64_t rng_range(rng *r, int64_t lo, int64_t hi) {
    return lo + (int64_t)rng_below(r, (uint32_t)(hi - lo + 1));
}

static double rng_exp(rng *r, double mean) { return -mean * log(1.0 - rng_unit(r)); }

static double rng_normal(rng *r) {
    double u = 1.0 - rng_unit(r), v = rng_unit(r);
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

/* A Zipf(s) distribution over ranks 0..n-1 as a cumulative table, sampled
 * by binary search: O(log n) per draw, exact, and cheap to build. */
typedef struct zipf {
    double *cdf;
    uint32_t n;
} zipf;

static void zipf_init(zipf *z, uint32_t n, double s) {
    z->n = n;
    z->cdf = sp_xmalloc(n * sizeof *z->cdf);
    double acc = 0;
    for (uint32_t i = 0; i < n; i++) z->cdf[i] = acc += pow((double)i + 1, -s);
}

static uint32_t zipf_draw(const zipf *z, rng *r) {
    double u = rng_unit(r) * z->cdf[z->n - 1];
    uint32_t lo = 0, hi = z->n - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (z->cdf[mid] > u) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* ---- the shop ---- */

static const char *countries[] = {"US", "GB", "DE", "FR", "NL", "ES", "IT", "PL", "SE", "CA"};
static const double country_weight[] = {30, 12, 14, 10, 5, 7, 7, 5, 4, 6};
#define NCOUNTRY 10

static const char *fraud_names[] = {"card_testing", "amount_spike", "multi_card_device",
                                    "geo_mismatch", "review_burst"};
#define NFRAUD 5

enum mal_kind {
    MAL_TRUNCATED_PB,
    MAL_INVALID_JSON,
    MAL_INVALID_UTF8,
    MAL_NEGATIVE_AMOUNT,
    MAL_NAN_AMOUNT,
    MAL_BAD_RATING,
    MAL_EMPTY_USER,
    MAL_MISSING_BODY,
    MAL__COUNT
};

static const char *mal_names[MAL__COUNT] = {
    "truncated_protobuf", "invalid_json", "invalid_utf8", "negative_amount",
    "nan_amount", "bad_rating", "empty_user_id", "missing_body",
};

static const char *review_text[5][3] = {
    {"terrible, broke on the first day", "not as described, want a refund",
     "poor quality, would not buy again"},
    {"disappointed, it feels cheap", "arrived late and scratched", "not worth the money"},
    {"okay for the price", "average, nothing special", "does the job"},
    {"good value, happy with it", "works as described", "nice quality, fast delivery"},
    {"excellent, love it", "great product, highly recommend", "perfect, exactly what I wanted"},
};

static const char *search_words[] = {"cheap", "best", "new", "sale", "gift", "black", "large"};

struct user {
    int64_t last_ts;       /* event time of the user's latest planned event */
    uint32_t ip;           /* home IP, inside the home country's block */
    uint8_t country;
    uint8_t ndev, ncard;
    uint8_t active;        /* in a slot now */
    uint8_t pending;       /* has an ordered item to review */
    uint32_t pend_item;
    uint64_t pend_order;
    uint32_t orders;
    double spend;
};

enum pev_type { T_VIEW = 1, T_CLICK, T_CART, T_UNCART, T_SEARCH, T_ORDER, T_REVIEW };

/* One planned event: everything needed to render it, nothing shared. */
struct pev {
    int64_t ts;
    uint32_t user;
    uint8_t type;
    uint8_t fraud;  /* pattern + 1, 0 for none */
    uint8_t nlines;
    uint8_t rating;
    uint8_t ship;   /* shipping country */
    uint8_t text;
    uint32_t item;  /* click, review; for search, the category searched */
    uint64_t session;
    uint64_t order_no;
    uint64_t rec_no; /* 0 for none */
    uint32_t line_item[MAX_LINES];
    uint32_t qty[MAX_LINES];
    double unit[MAX_LINES];
    double total;
    char device[20];
    char ip[20];
    char card[24];
    uint8_t ip_country;
    uint8_t app;
};

struct slot {
    struct pev plan[MAX_PLAN];
    int n, pos;
    uint32_t user; /* NO_USER for scenarios of fresh accounts */
};

struct fraud_truth {
    uint64_t index;
    char event_id[32];
    char user_id[16];
    uint8_t pattern;
};

struct mal_truth {
    uint64_t index;
    char event_id[32];
    uint8_t kind;
    const char *reason;
};

struct dup_truth {
    uint64_t index;
    char event_id[32];
};

struct ring_rec {
    uint8_t *data;
    size_t len, cap;
    char event_id[32];
    char user_id[16];
    int64_t ts;
    uint8_t kind;
};

/* The rendered event: protobuf-c structs pointing at the string buffers
 * beside them. */
struct render {
    sp_event ev;
    Shopstream__V1__Context ctx;
    Shopstream__V1__Click click;
    Shopstream__V1__Order order;
    Shopstream__V1__Review review;
    Shopstream__V1__LineItem li[MAX_LINES];
    Shopstream__V1__LineItem *lp[MAX_LINES];
    char event_id[32], user_id[16], session_id[32], order_id[32], rec_id[32];
    char item[12], cat[8], query[48], device[24], session_bad[40];
    char line_item[MAX_LINES][12], line_cat[MAX_LINES][8];
};

struct sp_gen {
    sp_gen_conf conf;
    rng r;
    uint32_t id_prefix; /* from the seed, so ids of different runs differ */
    /* catalog */
    uint32_t *item_cat;
    double *item_price;
    double *item_quality;
    uint32_t *item_by_rank; /* popularity rank -> item */
    zipf item_zipf;
    uint32_t **cat_items;   /* per category, its items by popularity */
    uint32_t *cat_n;
    zipf *cat_zipf;
    /* users */
    struct user *users;
    zipf user_zipf;
    uint32_t *user_by_rank;
    uint32_t fresh_users;   /* accounts created by scenarios, after conf.users */
    /* sessions */
    struct slot *slots;
    int nslots;
    int64_t clock;
    uint64_t next_session, next_order, next_rec, next_event, next_fresh_device;
    /* output */
    uint64_t produced;
    struct render rd;
    uint8_t *out;
    size_t out_len, out_cap;
    struct ring_rec ring[DUP_RING];
    int ring_n, ring_pos;
    /* truth */
    uint64_t kind_count[SP_KIND__COUNT];
    uint64_t mal_count[MAL__COUNT];
    uint64_t fraud_count[NFRAUD];
    struct fraud_truth *fraud;
    size_t nfraud, cap_fraud;
    struct mal_truth *mal;
    size_t nmal, cap_mal;
    struct dup_truth *dup;
    size_t ndup, cap_dup;
};

void sp_gen_conf_init(sp_gen_conf *c) {
    memset(c, 0, sizeof *c);
    c->seed = 1;
    c->events = 100000;
    c->users = 10000;
    c->items = 5000;
    c->categories = 50;
    c->start_ms = 1767225600000; /* 2026-01-01T00:00:00Z */
    c->format = SP_GEN_JSONL;
    c->fraud_rate = 0.01;
    c->malformed_rate = 0.005;
    c->duplicate_rate = 0.005;
}

static void out_reserve(sp_gen *g, size_t n) {
    if (n <= g->out_cap) return;
    g->out_cap = n * 2;
    g->out = sp_xrealloc(g->out, g->out_cap);
}

static void user_name(char *buf, size_t n, uint32_t u) { snprintf(buf, n, "u%06" PRIu32, u); }

/* Stable per-user identifiers (devices, cards) are hashes of the seed and the
 * user, not draws from the stream, so they cost nothing to keep. */
static uint64_t mix(uint64_t a, uint64_t b) {
    uint64_t x = a * 0x9e3779b97f4a7c15ull ^ b;
    return splitmix64(&x);
}

static void user_device(const sp_gen *g, uint32_t u, int k, char *buf, size_t n) {
    snprintf(buf, n, "d%012" PRIx64, mix(g->conf.seed, ((uint64_t)u << 8) | (uint64_t)k) >> 16);
}

static void user_card(const sp_gen *g, uint32_t u, int k, char *buf, size_t n) {
    snprintf(buf, n, "card_%012" PRIx64,
             mix(g->conf.seed ^ 0xca7d, ((uint64_t)u << 8) | (uint64_t)k) >> 16);
}

static void ip_in(uint8_t country, uint32_t host, char *buf, size_t n) {
    snprintf(buf, n, "%u.%u.%u.%u", 11u + 17u * country, (host >> 16) & 0xff, (host >> 8) & 0xff,
             (host & 0xfe) + 1u);
}

static uint8_t draw_country(rng *r) {
    double total = 0;
    for (int i = 0; i < NCOUNTRY; i++) total += country_weight[i];
    double u = rng_unit(r) * total;
    for (int i = 0; i < NCOUNTRY; i++)
        if ((u -= country_weight[i]) < 0) return (uint8_t)i;
    return 0;
}

static double round_cents(double v) { return round(v * 100.0) / 100.0; }

/* Builds the catalog and the users. Every item gets a category, a price
 * drawn around its category's level (log-normal) and a hidden quality that
 * drives its ratings; popularity ranks are a shuffle of the items. */
static void build_world(sp_gen *g) {
    const sp_gen_conf *c = &g->conf;
    rng *r = &g->r;
    double *cat_level = sp_xmalloc(c->categories * sizeof *cat_level);
    for (uint32_t k = 0; k < c->categories; k++) cat_level[k] = exp(3.2 + 0.9 * rng_normal(r));
    g->item_cat = sp_xmalloc(c->items * sizeof *g->item_cat);
    g->item_price = sp_xmalloc(c->items * sizeof *g->item_price);
    g->item_quality = sp_xmalloc(c->items * sizeof *g->item_quality);
    g->item_by_rank = sp_xmalloc(c->items * sizeof *g->item_by_rank);
    g->cat_n = sp_xcalloc(c->categories, sizeof *g->cat_n);
    for (uint32_t i = 0; i < c->items; i++) {
        uint32_t k = rng_below(r, c->categories);
        g->item_cat[i] = k;
        g->cat_n[k]++;
        double p = round_cents(cat_level[k] * exp(0.35 * rng_normal(r)));
        g->item_price[i] = p < 0.5 ? 0.5 : p;
        g->item_quality[i] = rng_unit(r);
        g->item_by_rank[i] = i;
    }
    for (uint32_t i = c->items - 1; i > 0; i--) {
        uint32_t j = rng_below(r, i + 1), t = g->item_by_rank[i];
        g->item_by_rank[i] = g->item_by_rank[j];
        g->item_by_rank[j] = t;
    }
    zipf_init(&g->item_zipf, c->items, 1.0);
    g->cat_items = sp_xcalloc(c->categories, sizeof *g->cat_items);
    g->cat_zipf = sp_xcalloc(c->categories, sizeof *g->cat_zipf);
    uint32_t *fill = sp_xcalloc(c->categories, sizeof *fill);
    for (uint32_t k = 0; k < c->categories; k++)
        if (g->cat_n[k]) {
            g->cat_items[k] = sp_xmalloc(g->cat_n[k] * sizeof **g->cat_items);
            zipf_init(&g->cat_zipf[k], g->cat_n[k], 1.0);
        }
    for (uint32_t rank = 0; rank < c->items; rank++) {
        uint32_t i = g->item_by_rank[rank], k = g->item_cat[i];
        g->cat_items[k][fill[k]++] = i;
    }
    free(fill);
    free(cat_level);

    g->users = sp_xcalloc(c->users, sizeof *g->users);
    g->user_by_rank = sp_xmalloc(c->users * sizeof *g->user_by_rank);
    for (uint32_t u = 0; u < c->users; u++) {
        struct user *us = &g->users[u];
        us->country = draw_country(r);
        us->ip = (uint32_t)rng_u64(r);
        us->ndev = (uint8_t)(1 + (rng_unit(r) < 0.35));
        us->ncard = (uint8_t)(1 + (rng_unit(r) < 0.2));
        g->user_by_rank[u] = u;
    }
    for (uint32_t u = c->users - 1; u > 0; u--) {
        uint32_t j = rng_below(r, u + 1), t = g->user_by_rank[u];
        g->user_by_rank[u] = g->user_by_rank[j];
        g->user_by_rank[j] = t;
    }
    zipf_init(&g->user_zipf, c->users, 0.6);
}

static uint32_t draw_item(sp_gen *g) {
    return g->item_by_rank[zipf_draw(&g->item_zipf, &g->r)];
}

static uint32_t draw_item_in(sp_gen *g, uint32_t cat) {
    if (!g->cat_n[cat]) return draw_item(g);
    return g->cat_items[cat][zipf_draw(&g->cat_zipf[cat], &g->r)];
}

/* ---- session plans ---- */

/* Starts a planned event for user u at ts with the user's usual context. */
static struct pev *plan_add(struct slot *s, uint32_t u, int64_t ts, uint8_t type) {
    struct pev *p = &s->plan[s->n++];
    memset(p, 0, sizeof *p);
    p->ts = ts;
    p->user = u;
    p->type = type;
    return p;
}

static void set_context(sp_gen *g, struct pev *p, uint32_t u, int dev) {
    const struct user *us = &g->users[u];
    user_device(g, u, dev, p->device, sizeof p->device);
    ip_in(us->country, us->ip, p->ip, sizeof p->ip);
    p->ip_country = us->country;
    p->app = (uint8_t)(dev == 1);
}

static void copy_context(struct pev *dst, const struct pev *src) {
    memcpy(dst->device, src->device, sizeof dst->device);
    memcpy(dst->ip, src->ip, sizeof dst->ip);
    dst->ip_country = src->ip_country;
    dst->app = src->app;
    dst->session = src->session;
}

static int64_t step(sp_gen *g) { return 2000 + (int64_t)rng_exp(&g->r, 25000); }

static uint8_t draw_rating(sp_gen *g, uint32_t item) {
    double v = 1 + 4 * g->item_quality[item] + 0.8 * rng_normal(&g->r);
    v = round(v);
    return (uint8_t)(v < 1 ? 1 : v > 5 ? 5 : v);
}

static void plan_review(sp_gen *g, struct slot *s, uint32_t u, int64_t ts, const struct pev *ctx,
                        uint32_t item, uint64_t order_no) {
    struct pev *p = plan_add(s, u, ts, T_REVIEW);
    copy_context(p, ctx);
    p->item = item;
    p->order_no = order_no;
    p->rating = draw_rating(g, item);
    p->text = (uint8_t)rng_below(&g->r, 3);
}

/* A normal session: perhaps a review of an earlier purchase, perhaps a
 * search, then views that drift within a category, some reached through a
 * recommendation click, some added to the cart (and a few removed), and an
 * order of what is left in the cart about half the time. */
static void plan_normal(sp_gen *g, struct slot *s, uint32_t u, int64_t ts) {
    rng *r = &g->r;
    struct user *us = &g->users[u];
    struct pev ctx;
    memset(&ctx, 0, sizeof ctx);
    set_context(g, &ctx, u, (int)rng_below(r, us->ndev));
    ctx.session = g->next_session++;

    if (us->pending && rng_unit(r) < 0.6) {
        plan_review(g, s, u, ts, &ctx, us->pend_item, us->pend_order);
        us->pending = 0;
        ts += step(g);
    }
    uint32_t cat = rng_below(r, g->conf.categories);
    int have_cat = 0;
    if (rng_unit(r) < 0.15) {
        struct pev *p = plan_add(s, u, ts, T_SEARCH);
        copy_context(p, &ctx);
        p->item = cat;
        p->text = (uint8_t)rng_below(r, sizeof search_words / sizeof *search_words);
        have_cat = 1;
        ts += step(g);
    }
    uint32_t cart[MAX_LINES];
    int ncart = 0;
    int views = 1 + (int)rng_exp(r, 4.0);
    if (views > 20) views = 20;
    for (int v = 0; v < views && s->n < MAX_PLAN - 6; v++) {
        uint32_t item = have_cat && rng_unit(r) < 0.6 ? draw_item_in(g, cat) : draw_item(g);
        cat = g->item_cat[item];
        have_cat = 1;
        if (rng_unit(r) < 0.2) {
            struct pev *p = plan_add(s, u, ts, T_CLICK);
            copy_context(p, &ctx);
            p->item = item;
            p->rec_no = ++g->next_rec;
            ts += 500 + (int64_t)rng_below(r, 3000);
        }
        struct pev *p = plan_add(s, u, ts, T_VIEW);
        copy_context(p, &ctx);
        p->item = item;
        ts += step(g);
        if (ncart < MAX_LINES && rng_unit(r) < 0.12) {
            p = plan_add(s, u, ts, T_CART);
            copy_context(p, &ctx);
            p->item = item;
            cart[ncart++] = item;
            ts += step(g);
            if (rng_unit(r) < 0.1) {
                p = plan_add(s, u, ts, T_UNCART);
                copy_context(p, &ctx);
                p->item = cart[--ncart];
                ts += step(g);
            }
        }
    }
    if (ncart && rng_unit(r) < 0.5) {
        struct pev *p = plan_add(s, u, ts, T_ORDER);
        copy_context(p, &ctx);
        p->order_no = ++g->next_order;
        p->nlines = (uint8_t)ncart;
        for (int i = 0; i < ncart; i++) {
            p->line_item[i] = cart[i];
            p->qty[i] = rng_unit(r) < 0.8 ? 1 : 2 + rng_below(r, 2);
            p->unit[i] = g->item_price[cart[i]];
            p->total += p->qty[i] * p->unit[i];
        }
        p->total = round_cents(p->total);
        user_card(g, u, (int)rng_below(r, us->ncard), p->card, sizeof p->card);
        p->ship = us->country;
        us->orders++;
        us->spend += p->total;
        if (rng_unit(r) < 0.7) {
            us->pending = 1;
            us->pend_item = cart[rng_below(r, (uint32_t)ncart)];
            us->pend_order = p->order_no;
        }
    }
}

static void fresh_card(sp_gen *g, char *buf, size_t n) {
    snprintf(buf, n, "card_%012" PRIx64, rng_u64(&g->r) >> 16);
}

/* An order of one item whose quantity brings the total to at least target. */
static struct pev *plan_big_order(sp_gen *g, struct slot *s, uint32_t u, int64_t ts,
                                  const struct pev *ctx, double target) {
    uint32_t item = draw_item(g);
    for (int k = 0; k < 8; k++) {
        uint32_t j = draw_item(g);
        if (g->item_price[j] > g->item_price[item]) item = j;
    }
    struct pev *p = plan_add(s, u, ts, T_ORDER);
    copy_context(p, ctx);
    p->order_no = ++g->next_order;
    p->nlines = 1;
    p->line_item[0] = item;
    p->unit[0] = g->item_price[item];
    p->qty[0] = (uint32_t)ceil(target / p->unit[0]);
    if (p->qty[0] < 1) p->qty[0] = 1;
    p->total = round_cents(p->qty[0] * p->unit[0]);
    p->ship = g->users[u].country;
    return p;
}

/* The injected fraud scenarios. Only the events that are the fraud carry the
 * label (the orders, the burst reviews), not the browsing around them. */
static void plan_fraud(sp_gen *g, struct slot *s, uint32_t u, int64_t ts, int pattern) {
    rng *r = &g->r;
    struct user *us = &g->users[u];
    struct pev ctx;
    memset(&ctx, 0, sizeof ctx);
    set_context(g, &ctx, u, 0);
    ctx.session = g->next_session++;
    uint8_t label = (uint8_t)(pattern + 1);
    struct pev *p;

    switch (pattern) {
    case 0: { /* card testing: < 1.00 then > 500 on one new card within a minute */
        char card[24];
        fresh_card(g, card, sizeof card);
        p = plan_add(s, u, ts, T_VIEW);
        copy_context(p, &ctx);
        p->item = draw_item(g);
        ts += 3000 + (int64_t)rng_below(r, 10000);
        p = plan_add(s, u, ts, T_ORDER);
        copy_context(p, &ctx);
        p->order_no = ++g->next_order;
        p->nlines = 1;
        p->line_item[0] = draw_item(g);
        p->qty[0] = 1;
        p->unit[0] = p->total = (double)rng_range(r, 1, 99) / 100.0;
        p->ship = us->country;
        memcpy(p->card, card, sizeof card);
        p->fraud = label;
        ts += 5000 + (int64_t)rng_below(r, 50000);
        p = plan_big_order(g, s, u, ts, &ctx, 500.0 + (double)rng_below(r, 1500));
        memcpy(p->card, card, sizeof card);
        p->fraud = label;
        break;
    }
    case 1: { /* amount spike: one order 20-50x the user's mean */
        double mean = us->orders ? us->spend / us->orders : 60.0;
        double target = mean * (20 + 30 * rng_unit(r));
        if (target < 800) target = 800;
        p = plan_add(s, u, ts, T_VIEW);
        copy_context(p, &ctx);
        p->item = draw_item(g);
        ts += step(g);
        p = plan_big_order(g, s, u, ts, &ctx, target);
        user_card(g, u, 0, p->card, sizeof p->card);
        p->fraud = label;
        break;
    }
    case 2: { /* many cards and devices within minutes */
        int n = 4 + (int)rng_below(r, 3);
        for (int k = 0; k < n; k++) {
            struct pev c2 = ctx;
            snprintf(c2.device, sizeof c2.device, "d%012" PRIx64, rng_u64(r) >> 16);
            uint32_t item = draw_item(g);
            p = plan_add(s, u, ts, T_ORDER);
            copy_context(p, &c2);
            p->order_no = ++g->next_order;
            p->nlines = 1;
            p->line_item[0] = item;
            p->qty[0] = 1 + rng_below(r, 2);
            p->unit[0] = g->item_price[item];
            p->total = round_cents(p->qty[0] * p->unit[0]);
            p->ship = us->country;
            fresh_card(g, p->card, sizeof p->card);
            p->fraud = label;
            ts += 20000 + (int64_t)rng_below(r, 60000);
        }
        break;
    }
    case 3: { /* shipping country differs from the IP's country */
        uint8_t abroad = (uint8_t)((us->country + 1 + rng_below(r, NCOUNTRY - 1)) % NCOUNTRY);
        ip_in(abroad, (uint32_t)rng_u64(r), ctx.ip, sizeof ctx.ip);
        ctx.ip_country = abroad;
        uint32_t item = draw_item(g);
        p = plan_add(s, u, ts, T_VIEW);
        copy_context(p, &ctx);
        p->item = item;
        ts += step(g);
        p = plan_add(s, u, ts, T_CART);
        copy_context(p, &ctx);
        p->item = item;
        ts += step(g);
        p = plan_add(s, u, ts, T_ORDER);
        copy_context(p, &ctx);
        p->order_no = ++g->next_order;
        p->nlines = 1;
        p->line_item[0] = item;
        p->qty[0] = 1;
        p->unit[0] = p->total = g->item_price[item];
        p->ship = us->country;
        user_card(g, u, 0, p->card, sizeof p->card);
        p->fraud = label;
        break;
    }
    default: { /* review burst: fresh accounts all rate one item within minutes */
        uint32_t item = draw_item(g);
        uint8_t rating = rng_unit(r) < 0.8 ? 5 : 1;
        int n = 8 + (int)rng_below(r, 8);
        for (int k = 0; k < n; k++) {
            uint32_t fu = g->conf.users + g->fresh_users++;
            struct pev c2;
            memset(&c2, 0, sizeof c2);
            snprintf(c2.device, sizeof c2.device, "d%012" PRIx64, rng_u64(r) >> 16);
            uint8_t cc = draw_country(r);
            ip_in(cc, (uint32_t)rng_u64(r), c2.ip, sizeof c2.ip);
            c2.ip_country = cc;
            c2.session = g->next_session++;
            p = plan_add(s, fu, ts, T_REVIEW);
            copy_context(p, &c2);
            p->item = item;
            p->rating = rating;
            p->text = (uint8_t)rng_below(r, 3);
            p->fraud = label;
            ts += 5000 + (int64_t)rng_below(r, 60000);
        }
        break;
    }
    }
}

/* Fills slot s with a new session that starts after now. The user is drawn
 * by (mild) Zipf activity among those not in a session, and starts no sooner
 * than half an hour after their previous session ended. */
static void start_session(sp_gen *g, struct slot *s) {
    rng *r = &g->r;
    s->n = s->pos = 0;
    uint32_t u = g->user_by_rank[zipf_draw(&g->user_zipf, r)];
    for (int tries = 0; g->users[u].active && tries < 16; tries++)
        u = g->user_by_rank[zipf_draw(&g->user_zipf, r)];
    while (g->users[u].active) u = (u + 1) % g->conf.users;
    int64_t ts = g->clock + 1000 + (int64_t)rng_exp(r, 20000);
    struct user *us = &g->users[u];
    if (us->last_ts && ts < us->last_ts + 1800000)
        ts = us->last_ts + 1800000 + (int64_t)rng_exp(r, 3600000);
    if (rng_unit(r) < g->conf.fraud_rate) {
        int pattern = (int)rng_below(r, NFRAUD);
        plan_fraud(g, s, u, ts, pattern);
        if (pattern == NFRAUD - 1) {
            s->user = NO_USER;
            return;
        }
    } else {
        plan_normal(g, s, u, ts);
    }
    s->user = u;
    us->active = 1;
    us->last_ts = s->plan[s->n - 1].ts;
}

/* ---- rendering ---- */

/* Fills g->rd from a planned event, assigning the next event id: ids are
 * given at emission, so they increase through the file. */
static void render(sp_gen *g, const struct pev *p) {
    struct render *rd = &g->rd;
    sp_event *ev = &rd->ev;
    shopstream__v1__event__init(ev);
    shopstream__v1__context__init(&rd->ctx);
    snprintf(rd->event_id, sizeof rd->event_id, "e%08" PRIx32 "%010" PRIu64, g->id_prefix,
             g->next_event++);
    user_name(rd->user_id, sizeof rd->user_id, p->user);
    snprintf(rd->session_id, sizeof rd->session_id, "s%08" PRIx32 "%08" PRIx64, g->id_prefix,
             p->session);
    ev->event_id = rd->event_id;
    ev->ts_ms = p->ts;
    ev->user_id = rd->user_id;
    ev->session_id = rd->session_id;
    ev->context = &rd->ctx;
    memcpy(rd->device, p->device, sizeof p->device);
    rd->ctx.device_id = rd->device;
    rd->ctx.ip = (char *)p->ip;
    rd->ctx.country = (char *)countries[p->ip_country];
    rd->ctx.channel = p->app ? "app" : "web";
    if (p->order_no)
        snprintf(rd->order_id, sizeof rd->order_id, "o%08" PRIx32 "%08" PRIx64, g->id_prefix,
                 p->order_no);
    else
        rd->order_id[0] = 0;

    if (p->type <= T_SEARCH) {
        Shopstream__V1__Click *c = &rd->click;
        shopstream__v1__click__init(c);
        ev->body_case = SHOPSTREAM__V1__EVENT__BODY_CLICK;
        ev->click = c;
        c->kind = (Shopstream__V1__ClickKind)p->type;
        if (p->type == T_SEARCH) {
            snprintf(rd->query, sizeof rd->query, "%s c%02" PRIu32, search_words[p->text],
                     p->item);
            c->query = rd->query;
        } else {
            snprintf(rd->item, sizeof rd->item, "i%05" PRIu32, p->item);
            snprintf(rd->cat, sizeof rd->cat, "c%02" PRIu32, g->item_cat[p->item]);
            c->item_id = rd->item;
            c->category = rd->cat;
            c->price = g->item_price[p->item];
        }
        if (p->rec_no) {
            snprintf(rd->rec_id, sizeof rd->rec_id, "r%08" PRIx32 "%08" PRIx64, g->id_prefix,
                     p->rec_no);
            c->rec_id = rd->rec_id;
        }
    } else if (p->type == T_ORDER) {
        Shopstream__V1__Order *o = &rd->order;
        shopstream__v1__order__init(o);
        ev->body_case = SHOPSTREAM__V1__EVENT__BODY_ORDER;
        ev->order = o;
        o->order_id = rd->order_id;
        for (int i = 0; i < p->nlines; i++) {
            Shopstream__V1__LineItem *li = &rd->li[i];
            shopstream__v1__line_item__init(li);
            snprintf(rd->line_item[i], sizeof rd->line_item[i], "i%05" PRIu32, p->line_item[i]);
            snprintf(rd->line_cat[i], sizeof rd->line_cat[i], "c%02" PRIu32,
                     g->item_cat[p->line_item[i]]);
            li->item_id = rd->line_item[i];
            li->category = rd->line_cat[i];
            li->quantity = p->qty[i];
            li->unit_price = p->unit[i];
            rd->lp[i] = li;
        }
        o->items = rd->lp;
        o->n_items = p->nlines;
        o->total = p->total;
        o->currency = "EUR";
        o->payment_method = "card";
        o->card_fingerprint = (char *)p->card;
        o->shipping_country = (char *)countries[p->ship];
    } else {
        Shopstream__V1__Review *rv = &rd->review;
        shopstream__v1__review__init(rv);
        ev->body_case = SHOPSTREAM__V1__EVENT__BODY_REVIEW;
        ev->review = rv;
        snprintf(rd->item, sizeof rd->item, "i%05" PRIu32, p->item);
        rv->item_id = rd->item;
        rv->rating = p->rating;
        rv->text = (char *)review_text[p->rating - 1][p->text];
        rv->order_id = rd->order_id;
    }
}

/* Encodes the rendered event into g->out in the configured format. */
static void encode(sp_gen *g) {
    if (g->conf.format == SP_GEN_JSONL) {
        char *js = sp_event_to_json(&g->rd.ev);
        g->out_len = strlen(js);
        out_reserve(g, g->out_len + 1);
        memcpy(g->out, js, g->out_len);
        free(js);
    } else {
        g->out_len = shopstream__v1__event__get_packed_size(&g->rd.ev);
        out_reserve(g, g->out_len + 8);
        shopstream__v1__event__pack(&g->rd.ev, g->out);
    }
}

/* Replaces the first `from` in g->out by `to` (JSON damage). */
static void out_replace(sp_gen *g, const char *from, const char *to) {
    size_t fl = strlen(from), tl = strlen(to);
    out_reserve(g, g->out_len + tl + 1);
    g->out[g->out_len] = 0;
    char *at = strstr((char *)g->out, from);
    if (!at) return;
    size_t off = (size_t)(at - (char *)g->out);
    memmove(g->out + off + tl, g->out + off + fl, g->out_len - off - fl);
    memcpy(g->out + off, to, tl);
    g->out_len = g->out_len - fl + tl;
}

/* Damages the rendered event one way and encodes it. Picks a kind that fits
 * the event and the format (a rating needs a review, an amount a price or a
 * total; truncation is of protobuf, broken syntax of JSON). Returns it. */
static enum mal_kind damage(sp_gen *g, const struct pev *p) {
    rng *r = &g->r;
    struct render *rd = &g->rd;
    int json = g->conf.format == SP_GEN_JSONL;
    enum mal_kind fits[MAL__COUNT];
    int n = 0;
    fits[n++] = json ? MAL_INVALID_JSON : MAL_TRUNCATED_PB;
    fits[n++] = MAL_INVALID_UTF8;
    if (p->type == T_ORDER || (p->type <= T_UNCART)) {
        fits[n++] = MAL_NEGATIVE_AMOUNT;
        fits[n++] = MAL_NAN_AMOUNT;
    }
    if (p->type == T_REVIEW) fits[n++] = MAL_BAD_RATING;
    fits[n++] = MAL_EMPTY_USER;
    fits[n++] = MAL_MISSING_BODY;
    /* a review is the only place a bad rating can go: give it half the odds */
    enum mal_kind k = p->type == T_REVIEW && rng_unit(r) < 0.5 ? MAL_BAD_RATING
                                                              : fits[rng_below(r, (uint32_t)n)];
    double *amount = p->type == T_ORDER ? &rd->order.total : &rd->click.price;

    switch (k) {
    case MAL_INVALID_UTF8:
        snprintf(rd->session_bad, sizeof rd->session_bad, "%s\xc3\x28", rd->session_id);
        rd->ev.session_id = rd->session_bad;
        break;
    case MAL_NEGATIVE_AMOUNT: *amount = *amount > 0 ? -*amount : -1.0; break;
    case MAL_NAN_AMOUNT: *amount = NAN; break;
    case MAL_BAD_RATING: rd->review.rating = rng_unit(r) < 0.5 ? 0 : 6; break;
    case MAL_EMPTY_USER: rd->ev.user_id = ""; break;
    case MAL_MISSING_BODY: rd->ev.body_case = SHOPSTREAM__V1__EVENT__BODY__NOT_SET; break;
    default: break;
    }
    encode(g);
    switch (k) {
    case MAL_TRUNCATED_PB: {
        /* The body is the last field, so cutting inside it leaves its length
         * prefix promising more bytes than remain. */
        size_t body = p->type <= T_SEARCH ? shopstream__v1__click__get_packed_size(&rd->click)
                      : p->type == T_ORDER ? shopstream__v1__order__get_packed_size(&rd->order)
                                           : shopstream__v1__review__get_packed_size(&rd->review);
        size_t cut = 1 + rng_below(r, (uint32_t)(body < 16 ? body : 16));
        g->out_len -= cut;
        break;
    }
    case MAL_INVALID_JSON: g->out_len = 1 + rng_below(r, (uint32_t)(g->out_len - 1)); break;
    case MAL_NAN_AMOUNT:
        if (json) out_replace(g, p->type == T_ORDER ? "\"total\":null" : "\"price\":null",
                              p->type == T_ORDER ? "\"total\":NaN" : "\"price\":NaN");
        break;
    case MAL_MISSING_BODY:
        if (!json) { /* an unknown field where the body should be: a newer producer's oneof */
            out_reserve(g, g->out_len + 8);
            g->out[g->out_len++] = (15 << 3) | 2;
            g->out[g->out_len++] = 3;
            memcpy(g->out + g->out_len, "new", 3);
            g->out_len += 3;
        }
        break;
    default: break;
    }
    return k;
}

static const char *mal_reason(enum mal_kind k, int json) {
    switch (k) {
    case MAL_TRUNCATED_PB: return "protobuf: truncated";
    case MAL_INVALID_JSON: return "json: syntax error";
    case MAL_INVALID_UTF8: return "invalid UTF-8";
    case MAL_NEGATIVE_AMOUNT: return "must be a finite amount";
    case MAL_NAN_AMOUNT: return json ? "json: syntax error" : "must be a finite amount";
    case MAL_BAD_RATING: return "review.rating must be 1..5";
    case MAL_EMPTY_USER: return "missing user_id";
    default: return "unknown or missing body";
    }
}

static enum sp_event_kind pev_kind(const struct pev *p) {
    if (p->type == T_ORDER) return SP_KIND_ORDER;
    if (p->type == T_REVIEW) return SP_KIND_REVIEW;
    return (enum sp_event_kind)(p->type - 1);
}

#define PUSH(arr, n, cap)                                          \
    do {                                                           \
        if ((n) == (cap)) {                                        \
            (cap) = (cap) ? 2 * (cap) : 64;                        \
            (arr) = sp_xrealloc((arr), (cap) * sizeof *(arr));     \
        }                                                          \
    } while (0)

/* Emits the earliest planned event over all slots (or, now and then, a
 * duplicate of a recent record), damages it if the malformed draw says so,
 * records the truth, and refills the slot when its session is over. The
 * order of random draws here is part of the output format: changing it
 * changes every file a seed produces. */
int sp_gen_next(sp_gen *g, sp_gen_record *rec) {
    if (g->produced >= g->conf.events) return 0;
    rng *r = &g->r;
    memset(rec, 0, sizeof *rec);
    rec->index = g->produced++;

    if (g->ring_n && rng_unit(r) < g->conf.duplicate_rate) {
        struct ring_rec *d = &g->ring[rng_below(r, (uint32_t)g->ring_n)];
        rec->data = d->data;
        rec->len = d->len;
        rec->label = SP_GEN_DUPLICATE;
        rec->kind = (enum sp_event_kind)d->kind;
        rec->event_id = d->event_id;
        rec->user_id = d->user_id;
        rec->ts_ms = d->ts;
        PUSH(g->dup, g->ndup, g->cap_dup);
        g->dup[g->ndup].index = rec->index;
        memcpy(g->dup[g->ndup++].event_id, d->event_id, sizeof d->event_id);
        return 1;
    }

    int best = 0;
    for (int i = 1; i < g->nslots; i++)
        if (g->slots[i].plan[g->slots[i].pos].ts < g->slots[best].plan[g->slots[best].pos].ts)
            best = i;
    struct slot *s = &g->slots[best];
    const struct pev *p = &s->plan[s->pos++];
    g->clock = p->ts;
    render(g, p);
    rec->kind = pev_kind(p);
    rec->event_id = g->rd.event_id;
    rec->user_id = g->rd.user_id;
    rec->ts_ms = p->ts;

    if (!p->fraud && rng_unit(r) < g->conf.malformed_rate) {
        enum mal_kind k = damage(g, p);
        rec->label = SP_GEN_MALFORMED;
        rec->malformed = mal_names[k];
        rec->reason = mal_reason(k, g->conf.format == SP_GEN_JSONL);
        g->mal_count[k]++;
        PUSH(g->mal, g->nmal, g->cap_mal);
        struct mal_truth *m = &g->mal[g->nmal++];
        m->index = rec->index;
        memcpy(m->event_id, g->rd.event_id, sizeof m->event_id);
        m->kind = (uint8_t)k;
        m->reason = rec->reason;
    } else {
        encode(g);
        rec->label = SP_GEN_VALID;
        g->kind_count[rec->kind]++;
        if (p->fraud) {
            rec->fraud = fraud_names[p->fraud - 1];
            g->fraud_count[p->fraud - 1]++;
            PUSH(g->fraud, g->nfraud, g->cap_fraud);
            struct fraud_truth *f = &g->fraud[g->nfraud++];
            f->index = rec->index;
            memcpy(f->event_id, g->rd.event_id, sizeof f->event_id);
            memcpy(f->user_id, g->rd.user_id, sizeof f->user_id);
            f->pattern = (uint8_t)(p->fraud - 1);
        }
        struct ring_rec *d = &g->ring[g->ring_pos];
        g->ring_pos = (g->ring_pos + 1) % DUP_RING;
        if (g->ring_n < DUP_RING) g->ring_n++;
        if (d->cap < g->out_len) {
            d->cap = g->out_len + 64;
            d->data = sp_xrealloc(d->data, d->cap);
        }
        memcpy(d->data, g->out, g->out_len);
        d->len = g->out_len;
        memcpy(d->event_id, g->rd.event_id, sizeof d->event_id);
        memcpy(d->user_id, g->rd.user_id, sizeof d->user_id);
        d->ts = p->ts;
        d->kind = (uint8_t)rec->kind;
    }
    rec->data = g->out;
    rec->len = g->out_len;

    if (s->pos == s->n) {
        if (s->user != NO_USER) g->users[s->user].active = 0;
        start_session(g, s);
    }
    return 1;
}

sp_gen *sp_gen_new(const sp_gen_conf *conf, char *err, size_t errlen) {
    const char *bad = NULL;
    if (!conf->users) bad = "--users must be >= 1";
    else if (conf->users > 100000000) bad = "--users must be <= 100000000";
    else if (!conf->items || conf->items > 100000) bad = "--items must be 1..100000";
    else if (!conf->categories || conf->categories > 100) bad = "--categories must be 1..100";
    else if (!(conf->fraud_rate >= 0 && conf->fraud_rate <= 1)) bad = "--fraud-rate must be in [0,1]";
    else if (!(conf->malformed_rate >= 0 && conf->malformed_rate <= 1))
        bad = "--malformed-rate must be in [0,1]";
    else if (!(conf->duplicate_rate >= 0 && conf->duplicate_rate <= 1))
        bad = "--duplicate-rate must be in [0,1]";
    else if (conf->start_ms <= 0) bad = "--start-ms must be > 0";
    if (bad) {
        snprintf(err, errlen, "%s", bad);
        return NULL;
    }
    sp_gen *g = sp_xcalloc(1, sizeof *g);
    g->conf = *conf;
    rng_seed(&g->r, conf->seed);
    uint64_t x = conf->seed;
    g->id_prefix = (uint32_t)splitmix64(&x);
    build_world(g);
    g->clock = conf->start_ms;
    g->nslots = (int)(conf->users / 4 < 1 ? 1 : conf->users / 4 > 64 ? 64 : conf->users / 4);
    g->slots = sp_xcalloc((size_t)g->nslots, sizeof *g->slots);
    for (int i = 0; i < g->nslots; i++) start_session(g, &g->slots[i]);
    return g;
}

void sp_gen_destroy(sp_gen *g) {
    if (!g) return;
    free(g->item_cat);
    free(g->item_price);
    free(g->item_quality);
    free(g->item_by_rank);
    free(g->item_zipf.cdf);
    for (uint32_t k = 0; g->cat_items && k < g->conf.categories; k++) {
        free(g->cat_items[k]);
        free(g->cat_zipf[k].cdf);
    }
    free(g->cat_items);
    free(g->cat_zipf);
    free(g->cat_n);
    free(g->users);
    free(g->user_by_rank);
    free(g->user_zipf.cdf);
    free(g->slots);
    free(g->out);
    for (int i = 0; i < DUP_RING; i++) free(g->ring[i].data);
    free(g->fraud);
    free(g->mal);
    free(g->dup);
    free(g);
}

char *sp_gen_truth_json(const sp_gen *g) {
    const sp_gen_conf *c = &g->conf;
    int json = c->format == SP_GEN_JSONL;
    cJSON *o = cJSON_CreateObject(), *t;
    char num[32];
    snprintf(num, sizeof num, "%" PRIu64, c->seed);
    cJSON_AddRawToObject(o, "seed", num);
    cJSON_AddStringToObject(o, "format", json ? "jsonl" : "proto");
    cJSON_AddNumberToObject(o, "records", (double)g->produced);
    cJSON_AddNumberToObject(o, "users", c->users);
    cJSON_AddNumberToObject(o, "fresh_users", g->fresh_users);
    cJSON_AddNumberToObject(o, "items", c->items);
    cJSON_AddNumberToObject(o, "categories", c->categories);
    snprintf(num, sizeof num, "%" PRId64, c->start_ms);
    cJSON_AddRawToObject(o, "start_ms", num);
    t = cJSON_AddObjectToObject(o, "events");
    uint64_t valid = 0;
    for (int k = 0; k < SP_KIND__COUNT; k++) {
        cJSON_AddNumberToObject(t, sp_event_kind_name((enum sp_event_kind)k),
                                (double)g->kind_count[k]);
        valid += g->kind_count[k];
    }
    cJSON_AddNumberToObject(o, "valid", (double)valid);
    cJSON_AddNumberToObject(o, "duplicates", (double)g->ndup);
    cJSON_AddNumberToObject(o, "malformed_total", (double)g->nmal);
    t = cJSON_AddObjectToObject(o, "malformed");
    for (int k = 0; k < MAL__COUNT; k++)
        cJSON_AddNumberToObject(t, mal_names[k], (double)g->mal_count[k]);
    t = cJSON_AddObjectToObject(o, "malformed_reasons");
    for (int k = 0; k < MAL__COUNT; k++)
        cJSON_AddStringToObject(t, mal_names[k], mal_reason((enum mal_kind)k, json));
    cJSON_AddNumberToObject(o, "fraud_total", (double)g->nfraud);
    t = cJSON_AddObjectToObject(o, "fraud_patterns");
    for (int k = 0; k < NFRAUD; k++) cJSON_AddNumberToObject(t, fraud_names[k], (double)g->fraud_count[k]);
    t = cJSON_AddArrayToObject(o, "fraud");
    for (size_t i = 0; i < g->nfraud; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "event_id", g->fraud[i].event_id);
        cJSON_AddStringToObject(e, "pattern", fraud_names[g->fraud[i].pattern]);
        cJSON_AddStringToObject(e, "user_id", g->fraud[i].user_id);
        cJSON_AddNumberToObject(e, "index", (double)g->fraud[i].index);
        cJSON_AddItemToArray(t, e);
    }
    t = cJSON_AddArrayToObject(o, "malformed_records");
    for (size_t i = 0; i < g->nmal; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "index", (double)g->mal[i].index);
        cJSON_AddStringToObject(e, "event_id", g->mal[i].event_id);
        cJSON_AddStringToObject(e, "kind", mal_names[g->mal[i].kind]);
        cJSON_AddStringToObject(e, "reason", g->mal[i].reason);
        cJSON_AddItemToArray(t, e);
    }
    t = cJSON_AddArrayToObject(o, "duplicate_records");
    for (size_t i = 0; i < g->ndup; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "index", (double)g->dup[i].index);
        cJSON_AddStringToObject(e, "event_id", g->dup[i].event_id);
        cJSON_AddItemToArray(t, e);
    }
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    if (!s) abort(); /* only on allocation failure, which aborts everywhere */
    return s;
}

int sp_gen_write(FILE *f, enum sp_gen_format fmt, const uint8_t *data, size_t len) {
    if (fmt == SP_GEN_PROTO) {
        uint8_t hdr[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                          (uint8_t)len};
        if (fwrite(hdr, 1, 4, f) != 4) return SP_ERR_IO;
    }
    if (len && fwrite(data, 1, len, f) != len) return SP_ERR_IO;
    if (fmt == SP_GEN_JSONL && putc('\n', f) == EOF) return SP_ERR_IO;
    return SP_OK;
}

/* ---- the command ---- */

static void gen_usage(FILE *f) {
    fprintf(f,
            "usage: shopstream gen [options]\n"
            "\n"
            "Writes a deterministic synthetic shop event stream: the same options give the\n"
            "same bytes. Sessions view, click, add to cart, order and later review; items\n"
            "have Zipf popularity, a category and a price; a share of sessions are fraud\n"
            "scenarios and a share of records are malformed or duplicated, all listed in\n"
            "the --truth file.\n"
            "\n"
            "  --events N          records to write, all kinds included (100000)\n"
            "  --users N           users (10000)\n"
            "  --items N           catalog items, at most 100000 (5000)\n"
            "  --categories N      categories, at most 100 (50)\n"
            "  --seed S            random seed (1)\n"
            "  --start-ms T        event time of the first session (1767225600000 =\n"
            "                      2026-01-01T00:00:00Z)\n"
            "  --format F          jsonl (one JSON event per line) or proto (each record a\n"
            "                      4-byte big-endian length, then the protobuf bytes) (jsonl)\n"
            "  --out FILE          output file, - for stdout (-)\n"
            "  --truth FILE        write the ground truth JSON there\n"
            "  --fraud-rate P      share of sessions that are fraud scenarios: card_testing,\n"
            "                      amount_spike, multi_card_device, geo_mismatch,\n"
            "                      review_burst (0.01)\n"
            "  --malformed-rate P  share of records damaged: truncated protobuf, invalid\n"
            "                      JSON, invalid UTF-8, negative/NaN amount, rating 0 or 6,\n"
            "                      empty user_id, missing body (0.005)\n"
            "  --duplicate-rate P  share of records repeating an earlier one verbatim, as a\n"
            "                      producer retry would (0.005)\n"
            "  --brokers H:P       also produce to Kafka (or SHOPSTREAM_BROKERS); without\n"
            "                      --out only to Kafka\n"
            "  --topic-prefix P    input topic prefix (shop.)\n"
            "  -X prop=value       librdkafka producer property (repeatable)\n"
            "  -h, --help          this help\n");
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-') return -1;
    *out = v;
    return 0;
}

static int parse_rate(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= 0 && v <= 1)) return -1;
    *out = v;
    return 0;
}

/* `shopstream gen`: parses the options into an sp_gen_conf, then streams
 * records to the file and/or Kafka, and the truth file last (it describes
 * the whole output). Exit 2 for usage errors, 1 for I/O or delivery
 * failures. */
int sp_cmd_gen(int argc, char **argv) {
    static const struct option opts[] = {
        {"events", required_argument, 0, 'n'},     {"users", required_argument, 0, 'u'},
        {"items", required_argument, 0, 'i'},      {"categories", required_argument, 0, 'c'},
        {"seed", required_argument, 0, 's'},       {"start-ms", required_argument, 0, 't'},
        {"format", required_argument, 0, 'f'},     {"out", required_argument, 0, 'o'},
        {"truth", required_argument, 0, 'T'},      {"fraud-rate", required_argument, 0, 'F'},
        {"malformed-rate", required_argument, 0, 'M'},
        {"duplicate-rate", required_argument, 0, 'D'},
        {"brokers", required_argument, 0, 'b'},    {"topic-prefix", required_argument, 0, 'p'},
        {"help", no_argument, 0, 'h'},             {0, 0, 0, 0},
    };
    sp_gen_conf conf;
    sp_gen_conf_init(&conf);
    const char *out_path = NULL, *truth_path = NULL, *brokers = getenv("SHOPSTREAM_BROKERS");
    const char *prefix = "shop.";
    const char **props = sp_xcalloc((size_t)argc + 1, sizeof *props);
    int nprops = 0, rc = 2, c;
    uint64_t v;
    sp_gen *g = NULL;
    sp_replay_sink *sink = NULL;
    FILE *out = NULL;
    char err[256];
    optind = 0;
    while ((c = getopt_long(argc, argv, "hX:", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (parse_u64(optarg, &conf.events)) goto bad_value;
            break;
        case 'u':
        case 'i':
        case 'c':
            if (parse_u64(optarg, &v) || v > UINT32_MAX) goto bad_value;
            *(c == 'u' ? &conf.users : c == 'i' ? &conf.items : &conf.categories) = (uint32_t)v;
            break;
        case 's':
            if (parse_u64(optarg, &conf.seed)) goto bad_value;
            break;
        case 't':
            if (parse_u64(optarg, &v) || v > INT64_MAX) goto bad_value;
            conf.start_ms = (int64_t)v;
            break;
        case 'f':
            if (!strcmp(optarg, "jsonl") || !strcmp(optarg, "json")) conf.format = SP_GEN_JSONL;
            else if (!strcmp(optarg, "proto") || !strcmp(optarg, "protobuf"))
                conf.format = SP_GEN_PROTO;
            else goto bad_value;
            break;
        case 'o': out_path = optarg; break;
        case 'T': truth_path = optarg; break;
        case 'F':
            if (parse_rate(optarg, &conf.fraud_rate)) goto bad_value;
            break;
        case 'M':
            if (parse_rate(optarg, &conf.malformed_rate)) goto bad_value;
            break;
        case 'D':
            if (parse_rate(optarg, &conf.duplicate_rate)) goto bad_value;
            break;
        case 'b': brokers = optarg; break;
        case 'p': prefix = optarg; break;
        case 'X': props[nprops++] = optarg; break;
        case 'h':
            gen_usage(stdout);
            rc = 0;
            goto fail;
        default: gen_usage(stderr); goto fail;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "shopstream gen: unexpected argument '%s'\n", argv[optind]);
        goto fail;
    }
    g = sp_gen_new(&conf, err, sizeof err);
    if (!g) {
        fprintf(stderr, "shopstream gen: %s\n", err);
        goto fail;
    }
    rc = 1;
    if (brokers && *brokers) {
        sp_replay_sink_conf sc = {.brokers = brokers, .topic_prefix = prefix, .props = props,
                                  .nprops = nprops};
        sink = sp_replay_sink_new(&sc, err, sizeof err);
        if (!sink) {
            fprintf(stderr, "shopstream gen: %s\n", err);
            rc = 2;
            goto fail;
        }
    }
    if (!sink || out_path) {
        if (!out_path || !strcmp(out_path, "-")) out = stdout;
        else if (!(out = fopen(out_path, "wb"))) {
            fprintf(stderr, "shopstream gen: %s: %s\n", out_path, strerror(errno));
            goto fail;
        }
    }
    sp_gen_record rec;
    while (sp_gen_next(g, &rec)) {
        if (out && sp_gen_write(out, conf.format, rec.data, rec.len)) {
            fprintf(stderr, "shopstream gen: write failed: %s\n", strerror(errno));
            goto fail;
        }
        if (sink) {
            sp_replay_sink_send(sink, rec.data, rec.len, conf.format == SP_GEN_JSONL);
            if ((rec.index & 1023) == 0) sp_replay_sink_poll(sink);
        }
    }
    if (out && fflush(out)) {
        fprintf(stderr, "shopstream gen: write failed: %s\n", strerror(errno));
        goto fail;
    }
    if (truth_path) {
        FILE *tf = fopen(truth_path, "w");
        char *truth = sp_gen_truth_json(g);
        int ok = tf && fputs(truth, tf) >= 0 && putc('\n', tf) != EOF;
        if (tf && fclose(tf)) ok = 0;
        free(truth);
        if (!ok) {
            fprintf(stderr, "shopstream gen: %s: cannot write truth file\n", truth_path);
            goto fail;
        }
    }
    if (sink) {
        uint64_t delivered, failed;
        int topics;
        sp_replay_sink_flush(sink);
        sp_replay_sink_stats(sink, NULL, &delivered, &failed, &topics);
        fprintf(stderr, "gen: %" PRIu64 " records produced to %d topics\n", delivered, topics);
        if (failed) {
            fprintf(stderr, "gen: %" PRIu64 " records failed delivery (first error: %s)\n",
                    failed, sp_replay_sink_first_error(sink));
            goto fail;
        }
    }
    rc = 0;
    goto fail;
bad_value:
    fprintf(stderr, "shopstream gen: bad value '%s' for --%s\n", optarg,
            c == 'n'   ? "events"
            : c == 'u' ? "users"
            : c == 'i' ? "items"
            : c == 'c' ? "categories"
            : c == 's' ? "seed"
            : c == 't' ? "start-ms"
            : c == 'f' ? "format"
            : c == 'F' ? "fraud-rate"
            : c == 'M' ? "malformed-rate"
                       : "duplicate-rate");
fail:
    if (sink) sp_replay_sink_close(sink);
    if (out && out != stdout) fclose(out);
    sp_gen_destroy(g);
    free(props);
    return rc;
}
