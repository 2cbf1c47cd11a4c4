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
    struct sp_model_config cfg;
    sp_model_config_default(&cfg, SP_MODEL_GRU);
    cfg.dim = 8;
    sp_vocab *v = sp_vocab_new();
    char id[16];
    for (int i = 0; i < 300; i++) sp_vocab_add(v, id, (size_t)snprintf(id, sizeof id, "i%d", i));
    char err[256];
    sp_model *m = sp_model_new(&cfg, v, 7, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
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
