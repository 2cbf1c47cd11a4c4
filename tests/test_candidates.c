/* The recommend operator's candidate generator (operators/candidates.c):
 * co-visitation keeps a planted neighbour among noise, popularity keeps the
 * most seen rows in order, the model's next lists are exactly the model's
 * own top items after a one-item session, and a collect call respects its
 * budget, lists each row once, and puts the seeds first. (Through the
 * pipeline, against exhaustive scoring: tests/test_personalize.c.) */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/model.h"
#include "models/scorer.h"
#include "operators/candidates.h"

static int contains(const int32_t *v, size_t n, int32_t x) {
    for (size_t i = 0; i < n; i++)
        if (v[i] == x) return 1;
    return 0;
}

static sp_cands *small(size_t next, size_t covisit, size_t popular, size_t prior) {
    sp_cands_conf conf = {next, covisit, popular, prior};
    sp_cands *c = sp_cands_new(&conf);
    sp_cands_reserve(c, 100);
    return c;
}

/* An untrained GRU of dimension 8 over items "i0".."i<n-1>". */
static sp_model *small_gru(int n, uint64_t seed) {
    struct sp_model_config cfg;
    sp_model_config_default(&cfg, SP_MODEL_GRU);
    cfg.dim = 8;
    sp_vocab *v = sp_vocab_new();
    char id[16], err[256];
    for (int i = 0; i < n; i++) sp_vocab_add(v, id, (size_t)snprintf(id, sizeof id, "i%d", i));
    sp_model *m = sp_model_new(&cfg, v, seed, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    return m;
}

Test(candidates, a_planted_covisited_item_survives_noise_and_is_a_candidate) {
    sp_cands *c = small(0, 4, 0, 0);
    /* item 5 is followed by 9 three times, and by 40 other items once each:
     * more distinct neighbours than slots */
    for (int i = 0; i < 40; i++) {
        sp_cands_covisit(c, 5, 50 + i);
        if (i % 13 == 0) sp_cands_covisit(c, 5, 9);
    }
    int32_t rows[8];
    float counts[8];
    size_t n = sp_cands_covisit_of(c, 5, rows, counts, 8);
    cr_assert_eq(n, 4);
    cr_assert(contains(rows, n, 9), "the heavy hitter lost its slot");
    int32_t seeds[] = {5}, out[16];
    n = sp_cands_collect(c, seeds, 1, out, 16);
    cr_assert_eq(out[0], 5, "the seed comes first");
    cr_assert(contains(out, n, 9));
    /* the move is directional, and a self-move is not a co-visit */
    cr_assert_eq(sp_cands_covisit_of(c, 9, rows, counts, 8), 0);
    sp_cands_covisit(c, 7, 7);
    cr_assert_eq(sp_cands_covisit_of(c, 7, rows, counts, 8), 0);
    sp_cands_destroy(c);
}

Test(candidates, popular_rows_are_kept_most_seen_first) {
    sp_cands *c = small(0, 0, 3, 0);
    float seen[10] = {0};
    /* row r is seen r times, interleaved */
    for (int round = 1; round <= 9; round++)
        for (int r = round; r <= 9; r++) sp_cands_seen(c, r, ++seen[r]);
    int32_t out[8];
    size_t n = sp_cands_collect(c, NULL, 0, out, 8);
    cr_assert_eq(n, 3);
    cr_assert_eq(out[0], 9);
    cr_assert_eq(out[1], 8);
    cr_assert_eq(out[2], 7);
    sp_cands_destroy(c);
}

Test(candidates, collect_respects_the_budget_and_lists_a_row_once) {
    sp_cands *c = small(0, 8, 8, 0);
    for (int i = 0; i < 8; i++) {
        sp_cands_covisit(c, 1, 10 + i);
        sp_cands_covisit(c, 2, 14 + i); /* overlaps 1's */
        sp_cands_seen(c, 20 + i, 1);
    }
    int32_t seeds[] = {1, 2, -1, 2}, out[64];
    size_t n = sp_cands_collect(c, seeds, 4, out, 64);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) cr_assert_neq(out[i], out[j], "row %d twice", out[i]);
    cr_assert_eq(out[0], 1);
    cr_assert_eq(out[1], 2);
    cr_assert_eq(n, 2 + 12 + 6, "seeds, 10..21, then the popular 22..27; got %zu", n);
    cr_assert_eq(sp_cands_collect(c, seeds, 4, out, 5), 5);
    /* a second call starts afresh */
    cr_assert_eq(sp_cands_collect(c, seeds, 4, out, 64), n);
    sp_cands_destroy(c);
}

/* The next list of every item is the model's own top items for a session
 * of that item alone, i.e. what exhaustive scoring ranks first for a user
 * whose only event is that item; the prior list is the highest biases. */
Test(candidates, next_lists_are_the_models_top_items_after_the_item) {
    sp_model *m = small_gru(300, 7);
    char err[256];
    float *b = m->params + m->lay.bias;
    for (int i = 0; i < 300; i++) b[i] = 0.001f * (float)((i * 37) % 300);
    sp_scorer *s = sp_scorer_new(m, 1, err, sizeof err);
    /* rows are the model's items shifted by 5 (as when the MF table had
     * rows before the model was loaded) */
    int32_t map[300];
    for (int i = 0; i < 300; i++) map[i] = i + 5;
    sp_cands *c = small(12, 4, 0, 6);
    cr_assert_eq(sp_cands_build_model(c, m, s, map), 0);
    for (int i = 0; i < 300; i += 7) {
        float h[8] = {0};
        cr_assert_eq(sp_gru_step(m, h, i), 0);
        struct sp_scored top[12];
        cr_assert_eq(sp_scorer_topk(s, h, NULL, 0, NULL, 12, top), 12);
        int32_t next[16];
        cr_assert_eq(sp_cands_next_of(c, i + 5, next, 16), 12);
        for (int j = 0; j < 12; j++)
            cr_assert_eq(next[j], top[j].item + 5, "item %d, rank %d: %d, want %d", i, j, next[j],
                         top[j].item + 5);
    }
    int32_t out[64];
    size_t n = sp_cands_collect(c, NULL, 0, out, 64);
    cr_assert_eq(n, 6);
    for (size_t j = 0; j < n; j++) cr_assert_geq(b[out[j] - 5], 0.001f * 294 - 1e-6f);
    /* rows outside the model have no next list */
    cr_assert_eq(sp_cands_next_of(c, 2, out, 64), 0);
    sp_cands_clear_model(c);
    cr_assert_eq(sp_cands_next_of(c, 5, out, 64), 0);
    sp_cands_destroy(c);
    sp_scorer_destroy(s);
    sp_model_destroy(m);
}

/* The collect described in operators/candidates.h, written the plain way:
 * each source read through the accessors (pop and prior as the test knows
 * them), a row listed when it is a row of the table, the budget has room
 * and a linear search does not find it listed already. */
struct sources {
    const sp_cands *c;
    size_t cap, next;           /* rows reserved, conf.next */
    const int32_t *pop, *prior; /* the most seen rows and the model's favourites, best first */
    size_t npop, nprior;
};

static void ref_add(int32_t *out, size_t *n, size_t max, size_t cap, int32_t row) {
    if (row < 0 || (size_t)row >= cap || *n == max || contains(out, *n, row)) return;
    out[(*n)++] = row;
}

static size_t ref_collect(const struct sources *src, const int32_t *seeds, size_t nseeds,
                          int32_t *out, size_t max) {
    size_t n = 0, cap = src->cap;
    int32_t rows[256];
    for (size_t s = 0; s < nseeds; s++) ref_add(out, &n, max, cap, seeds[s]);
    for (size_t s = 0; s < nseeds; s++) {
        int32_t r = seeds[s];
        if (r < 0 || (size_t)r >= cap) continue;
        size_t take = s == 0 ? src->next : (src->next + 1) / 2;
        size_t got = sp_cands_next_of(src->c, r, rows, 256);
        for (size_t j = 0; j < got && j < take; j++) ref_add(out, &n, max, cap, rows[j]);
        got = sp_cands_covisit_of(src->c, r, rows, NULL, 256);
        for (size_t j = 0; j < got; j++) ref_add(out, &n, max, cap, rows[j]);
    }
    for (size_t j = 0; j < src->npop; j++) ref_add(out, &n, max, cap, src->pop[j]);
    for (size_t j = 0; j < src->nprior; j++) ref_add(out, &n, max, cap, src->prior[j]);
    return n;
}

/* Sorts rows[0..n) by key[] descending (distinct keys): insertion sort. */
static void sort_by(int32_t *rows, size_t n, const float *key, const int32_t *key_of_row) {
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && key[key_of_row[rows[j]]] > key[key_of_row[rows[j - 1]]]; j--) {
            int32_t t = rows[j];
            rows[j] = rows[j - 1];
            rows[j - 1] = t;
        }
}

/* collect skips the budget test when the sources cannot fill the budget,
 * and reads the next and co-visit lists by their lengths: it must list
 * what the plain collect lists (the kept collect: less its skipped rows and
 * those without a model item), in the same order, for random tables where
 * the sources share rows (co-visits among the popular rows and the model's
 * next items, favourites among both), for seeds out of range, repeated or
 * without lists, and for budgets on both sides of the sources' size. The
 * output buffer is exactly max rows, guarded after. */
Test(candidates, collect_equals_the_plain_collect_on_random_tables) {
    enum { ITEMS = 200, SHIFT = 5, NEXT = 12, COVISIT = 4, POPULAR = 8, PRIOR = 6, GUARD = 4 };
    sp_model *m = small_gru(ITEMS, 11);
    char err[256];
    uint64_t rng = sp_rng_seed(5);
    float *b = m->params + m->lay.bias;
    for (int i = 0; i < ITEMS; i++) b[i] = 0.001f * (float)((i * 71) % ITEMS); /* distinct */
    sp_scorer *s = sp_scorer_new(m, 1, err, sizeof err);
    int32_t map[ITEMS], item_of[1024];
    for (int i = 0; i < ITEMS; i++) map[i] = i + SHIFT, item_of[i + SHIFT] = i;
    sp_cands *c = small(NEXT, COVISIT, POPULAR, PRIOR);
    cr_assert_eq(sp_cands_build_model(c, m, s, map), 0);

    /* the popular rows: every row of 0..299 seen once with a distinct count */
    float count[300];
    int32_t row_of[300], pop[300], prior[ITEMS];
    for (int32_t r = 0; r < 300; r++) count[r] = (float)((r * 113) % 300 + 1), row_of[r] = r;
    for (int32_t r = 0; r < 300; r++) pop[r] = (r * 7) % 300; /* the order seen */
    for (int r = 0; r < 300; r++) sp_cands_seen(c, pop[r], count[pop[r]]);
    sort_by(pop, 300, count, row_of);
    for (int i = 0; i < ITEMS; i++) prior[i] = map[i];
    sort_by(prior, ITEMS, b, item_of);
    struct sources src = {c, 1024, NEXT, pop, prior, POPULAR, PRIOR};

    /* co-visits: from anywhere below 320 to the popular rows, the
     * favourites or a few others, more neighbours than slots */
    for (int i = 0; i < 6000; i++) {
        int32_t to = sp_rng_below(&rng, 3) == 0   ? pop[sp_rng_below(&rng, POPULAR)]
                     : sp_rng_below(&rng, 2) == 0 ? prior[sp_rng_below(&rng, PRIOR)]
                                                  : (int32_t)sp_rng_below(&rng, 40);
        sp_cands_covisit(c, (int32_t)sp_rng_below(&rng, 320), to);
    }

    int32_t seeds[5], want[400], got[400 + GUARD], items[400 + GUARD], skip[8];
    int32_t row2model[1024]; /* the kept collect's: a third of the rows without a model item */
    for (int32_t r = 0; r < 1024; r++) row2model[r] = (r * 37) % 3 == 0 ? -1 : r + 7;
    for (int trial = 0; trial < 4000; trial++) {
        if (trial == 3000) sp_cands_clear_model(c); /* no next lists, no favourites */
        if (trial == 3000) src.nprior = 0;
        size_t nseeds = sp_rng_below(&rng, 6);
        for (size_t i = 0; i < nseeds; i++) {
            uint32_t pick = sp_rng_below(&rng, 10);
            seeds[i] = pick == 0   ? -1 - (int32_t)sp_rng_below(&rng, 3)     /* negative */
                       : pick == 1 ? 1024 + (int32_t)sp_rng_below(&rng, 50) /* past cap */
                       : pick == 2 && i ? seeds[i - 1]                      /* repeated */
                       : pick == 3 ? pop[sp_rng_below(&rng, POPULAR)]       /* shared */
                                   : (int32_t)sp_rng_below(&rng, 330);
        }
        /* the sources' size for these seeds, as collect bounds it */
        size_t most = nseeds + src.npop + src.nprior;
        for (size_t i = 0; i < nseeds; i++) most += (i ? (NEXT + 1) / 2 : NEXT) + COVISIT;
        size_t pick = sp_rng_below(&rng, 6), max;
        max = pick == 0 ? most : pick == 1 ? most - (most > 0) : pick == 2 ? most + 1
              : pick == 3 ? 256 : sp_rng_below(&rng, (uint32_t)most + 2);
        for (size_t i = 0; i < max + GUARD; i++) got[i] = -7;
        size_t nw = ref_collect(&src, seeds, nseeds, want, max);
        size_t ng = sp_cands_collect(c, seeds, nseeds, got, max);
        cr_assert_eq(ng, nw, "trial %d (max %zu, most %zu): %zu rows, want %zu", trial, max, most,
                     ng, nw);
        for (size_t i = 0; i < nw; i++)
            cr_assert_eq(got[i], want[i], "trial %d: row %zu is %d, want %d", trial, i, got[i],
                         want[i]);
        for (size_t i = max; i < max + GUARD; i++)
            cr_assert_eq(got[i], -7, "trial %d: written past the budget", trial);

        /* the kept collect: the same list without the skipped rows and
         * the rows that have no model item, each with its model item */
        size_t nskip = sp_rng_below(&rng, 8);
        for (size_t i = 0; i < nskip; i++) {
            uint32_t pick = sp_rng_below(&rng, 6);
            skip[i] = pick == 0   ? -1                                   /* negative */
                      : pick == 1 ? 1024 + (int32_t)sp_rng_below(&rng, 9) /* past cap */
                      : pick == 2 && nw ? want[sp_rng_below(&rng, (uint32_t)nw)] /* listed */
                      : pick == 3 && nseeds ? seeds[0]                    /* the seed */
                                            : (int32_t)sp_rng_below(&rng, 330);
        }
        size_t nk = 0;
        for (size_t i = 0; i < nw; i++)
            if (!contains(skip, nskip, want[i]) && row2model[want[i]] >= 0) want[nk++] = want[i];
        for (size_t i = 0; i < max + GUARD; i++) got[i] = -7, items[i] = -7;
        sp_cands_keep keep = {skip, nskip, row2model};
        ng = sp_cands_collect_kept(c, seeds, nseeds, &keep, got, items, max);
        cr_assert_eq(ng, nk, "trial %d (max %zu, most %zu): %zu kept, want %zu", trial, max, most,
                     ng, nk);
        for (size_t i = 0; i < nk; i++) {
            cr_assert_eq(got[i], want[i], "trial %d: kept row %zu is %d, want %d", trial, i,
                         got[i], want[i]);
            cr_assert_eq(items[i], row2model[got[i]], "trial %d: kept row %zu's item", trial, i);
        }
        for (size_t i = max; i < max + GUARD; i++)
            cr_assert(got[i] == -7 && items[i] == -7, "trial %d: kept past the budget", trial);
    }
    sp_cands_destroy(c);
    sp_scorer_destroy(s);
    sp_model_destroy(m);
}
