/* Training and serving: planted patterns must be learned and ranked first;
 * the serving calls must agree with the training forward pass and with a
 * brute-force ranking; a seed must fix the model. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/data.h"
#include "models/dot.h"
#include "models/scorer.h"
#include "models/seq.h"
#include "models/train.h"

/* 300 sequences of 30 items: random filler with, somewhere, item "A"
 * followed by "B". Also "C" is always followed by "D", to make sure the
 * model learns a mapping and not one favourite. */
static const char *planted_file(void) {
    static char path[256];
    snprintf(path, sizeof path, "/tmp/sp_models_train_%d.txt", (int)getpid());
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    uint64_t r = sp_rng_seed(5);
    for (int u = 0; u < 300; u++) {
        fprintf(f, "u%d", u);
        int len = 3 + (int)sp_rng_below(&r, 4), at = (int)sp_rng_below(&r, (uint32_t)len);
        const char *a = u % 2 ? "A" : "C", *b = u % 2 ? "B" : "D";
        for (int i = 0; i < len; i++) {
            if (i == at) fprintf(f, " %s %s", a, b);
            fprintf(f, " f%u", sp_rng_below(&r, 26));
        }
        fprintf(f, "\n");
    }
    fclose(f);
    return path;
}

static sp_model *train_planted(enum sp_model_kind kind, uint32_t epochs, uint64_t seed) {
    const char *p = planted_file();
    sp_vocab *v = sp_vocab_new();
    struct sp_dataset d;
    char err[256];
    cr_assert_eq(sp_dataset_load(p, SP_FMT_SEQ, v, 0, &d, err, sizeof err), 0, "%s", err);
    unlink(p);
    struct sp_train_opts o;
    sp_train_opts_default(&o, kind);
    o.cfg.dim = 16;
    o.cfg.max_len = 8;
    o.cfg.n_blocks = 1;
    o.cfg.n_neg = 16;
    o.cfg.dropout = 0.1f;
    o.cfg.lr = 0.01f;
    o.epochs = epochs;
    o.batch = 16;
    o.seed = seed;
    o.progress = -1;
    sp_model *m = sp_train(&d, v, &o, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    sp_dataset_release(&d);
    return m;
}

static int32_t idx(const sp_model *m, const char *id) {
    int32_t i = sp_model_item_index(m, id);
    cr_assert_geq(i, 0, "%s unknown", id);
    return i;
}

/* The user vector after hist, through the serving API. */
static void serve_vec(const sp_model *m, sp_scorer *s, const int32_t *hist, size_t n, float *u) {
    memset(u, 0, sp_model_user_dim(m) * sizeof(float));
    if (sp_model_kind_of(m) == SP_MODEL_GRU)
        for (size_t i = 0; i < n; i++) cr_assert_eq(sp_gru_step(m, u, hist[i]), 0);
    else
        cr_assert_eq(sp_scorer_attn_encode(s, hist, n, u), 0);
}

static void expect_next(enum sp_model_kind kind) {
    sp_model *m = train_planted(kind, kind == SP_MODEL_GRU ? 12 : 15, 1);
    sp_scorer *s = sp_scorer_new(m, 4, NULL, 0);
    float u[16];
    struct sp_scored top[3];
    int32_t h1[] = {idx(m, "f3"), idx(m, "f7"), idx(m, "A")};
    serve_vec(m, s, h1, 3, u);
    cr_assert_eq(sp_scorer_topk(s, u, NULL, 0, NULL, 3, top), 3);
    cr_assert_eq(top[0].item, idx(m, "B"), "after A, top-1 is %s", sp_model_item_id(m, top[0].item));
    int32_t h2[] = {idx(m, "f1"), idx(m, "C")};
    serve_vec(m, s, h2, 2, u);
    sp_scorer_topk(s, u, NULL, 0, NULL, 3, top);
    cr_assert_eq(top[0].item, idx(m, "D"), "after C, top-1 is %s", sp_model_item_id(m, top[0].item));
    sp_scorer_destroy(s);
    sp_model_destroy(m);
}

Test(models_train, gru_ranks_the_planted_next_item_first) { expect_next(SP_MODEL_GRU); }
Test(models_train, attention_ranks_the_planted_next_item_first) { expect_next(SP_MODEL_SASREC); }

Test(models_train, mf_ranks_the_planted_cluster_first) {
    /* two taste clusters of 10 items; each user takes 5 from one */
    char path[256];
    snprintf(path, sizeof path, "/tmp/sp_models_mf_%d.txt", (int)getpid());
    FILE *f = fopen(path, "w");
    uint64_t r = sp_rng_seed(8);
    for (int u = 0; u < 200; u++) {
        fprintf(f, "u%d", u);
        for (int i = 0; i < 5; i++) fprintf(f, " %s%u", u % 2 ? "p" : "q", sp_rng_below(&r, 10));
        fprintf(f, "\n");
    }
    fclose(f);
    sp_vocab *v = sp_vocab_new();
    struct sp_dataset d;
    char err[256];
    cr_assert_eq(sp_dataset_load(path, SP_FMT_SEQ, v, 0, &d, err, sizeof err), 0);
    unlink(path);
    struct sp_train_opts o;
    sp_train_opts_default(&o, SP_MODEL_MF);
    o.cfg.dim = 8;
    o.epochs = 20;
    o.progress = -1;
    sp_model *m = sp_train(&d, v, &o, err, sizeof err);
    cr_assert_not_null(m);
    sp_dataset_release(&d);
    /* a new user folds in three p items online; the item table must not move */
    float *before = malloc(m->lay.total * sizeof(float));
    memcpy(before, m->params, m->lay.total * sizeof(float));
    float u[8] = {0}, dv[9][8];
    struct sp_mf_delta deltas[9];
    for (int i = 0; i < 9; i++) deltas[i].vec = dv[i];
    cr_assert_leq(sp_mf_n_deltas(m), 9u);
    int32_t hist[] = {idx(m, "p1"), idx(m, "p2"), idx(m, "p3")};
    uint64_t rng = sp_rng_seed(1);
    for (int pass = 0; pass < 10; pass++)
        for (int i = 0; i < 3; i++) {
            int n = sp_mf_learn(m, u, hist[i], sp_mf_kind_weight(m, 0), sp_mf_lr_at(m, 0), &rng, deltas);
            cr_assert_eq(n, (int)sp_mf_n_deltas(m));
            cr_assert_eq(deltas[0].item, hist[i]);
        }
    cr_assert_eq(memcmp(before, m->params, m->lay.total * sizeof(float)), 0);
    sp_scorer *s = sp_scorer_new(m, 1, NULL, 0);
    struct sp_scored top[5];
    struct sp_exclude ex = {hist, 3};
    cr_assert_eq(sp_scorer_topk(s, u, NULL, 0, &ex, 5, top), 5);
    for (int i = 0; i < 5; i++) {
        const char *id = sp_model_item_id(m, top[i].item);
        cr_assert(id[0] == 'p', "rank %d is %s", i, id);
        cr_assert(strcmp(id, "p1") && strcmp(id, "p2") && strcmp(id, "p3"));
    }
    sp_scorer_destroy(s);
    free(before);
    sp_model_destroy(m);
}

Test(models_train, same_seed_same_model_other_seed_other_model) {
    sp_model *a = train_planted(SP_MODEL_SASREC, 1, 7), *b = train_planted(SP_MODEL_SASREC, 1, 7);
    sp_model *c = train_planted(SP_MODEL_SASREC, 1, 8);
    cr_assert_eq(memcmp(a->params, b->params, a->lay.total * sizeof(float)), 0);
    cr_assert_neq(memcmp(a->params, c->params, a->lay.total * sizeof(float)), 0);
    sp_model_destroy(a);
    sp_model_destroy(b);
    sp_model_destroy(c);
}

/* A model with random weights, for the serving checks. */
static sp_model *random_model(enum sp_model_kind kind, uint32_t n_items) {
    struct sp_model_config cfg;
    sp_model_config_default(&cfg, kind);
    cfg.dim = 8;
    cfg.max_len = 4;
    cfg.n_blocks = 2;
    sp_vocab *v = sp_vocab_new();
    char id[16];
    for (uint32_t i = 0; i < n_items; i++) sp_vocab_add(v, id, (size_t)snprintf(id, sizeof id, "%u", i));
    sp_model *m = sp_model_new(&cfg, v, 2, NULL, 0);
    uint64_t r = sp_rng_seed(4);
    for (uint32_t i = 0; i < n_items; i++) m->params[m->lay.bias + i] = 0.3f * sp_rng_normal(&r);
    return m;
}

Test(models_serving, gru_step_equals_the_training_forward) {
    sp_model *m = random_model(SP_MODEL_GRU, 20);
    int32_t seq[] = {3, 9, 1, 1, 17, 4};
    sp_seq_work *w = sp_seq_work_new(m, 6, 0);
    const float *H = sp_seq_forward(m, m->params, w, seq, 6, 0, NULL);
    float h[8] = {0};
    for (int t = 0; t < 6; t++) {
        sp_gru_step(m, h, seq[t]);
        for (int k = 0; k < 8; k++) cr_assert_float_eq(h[k], H[t * 8 + k], 1e-5);
    }
    cr_assert_neq(sp_gru_step(m, h, 20), 0, "out-of-range item accepted");
    cr_assert_neq(sp_gru_step(m, h, -1), 0);
    sp_seq_work_destroy(w);
    sp_model_destroy(m);
}

Test(models_serving, attention_ring_keeps_only_the_last_max_len_items) {
    sp_model *m = random_model(SP_MODEL_SASREC, 20);
    sp_scorer *s = sp_scorer_new(m, 2, NULL, 0);
    int32_t ring[] = {5, 6, 7, 8, 9, 10};
    float a[8], b[8], c[8];
    cr_assert_eq(sp_scorer_attn_encode(s, ring, 6, a), 0);
    cr_assert_eq(sp_scorer_attn_encode(s, ring + 2, 4, b), 0);
    cr_assert_eq(sp_scorer_attn_encode(s, ring + 3, 3, c), 0);
    for (int k = 0; k < 8; k++) cr_assert_float_eq(a[k], b[k], 1e-6);
    float diff = 0;
    for (int k = 0; k < 8; k++) diff += fabsf(b[k] - c[k]);
    cr_assert(diff > 1e-4, "a shorter history must encode differently");
    int32_t bad[] = {1, 99};
    cr_assert_neq(sp_scorer_attn_encode(s, bad, 2, a), 0);
    sp_scorer_destroy(s);
    sp_model_destroy(m);
}

static int cmp_desc(const void *x, const void *y) {
    const struct sp_scored *a = x, *b = y;
    if (a->score != b->score) return a->score < b->score ? 1 : -1;
    return a->item - b->item;
}

Test(models_serving, topk_matches_brute_force_with_exclusions_and_candidates) {
    const uint32_t n = 500;
    sp_model *m = random_model(SP_MODEL_MF, n);
    sp_scorer *s = sp_scorer_new(m, 8, NULL, 0);
    float users[5 * 8];
    uint64_t r = sp_rng_seed(3);
    for (int i = 0; i < 40; i++) users[i] = sp_rng_normal(&r);
    int32_t excl[] = {0, 7, 42, 499};
    struct sp_exclude ex = {excl, 4};
    struct sp_scored all[500], top[10], btop[5 * 10];
    size_t counts[5];
    struct sp_exclude exs[5] = {ex, ex, ex, ex, ex};
    cr_assert_eq(sp_scorer_topk_batch(s, users, 5, exs, 10, btop, counts), 0);
    for (int u = 0; u < 5; u++) {
        /* brute force: score every item by hand, drop exclusions, sort */
        size_t na = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (i == 0 || i == 7 || i == 42 || i == 499) continue;
            float sc = m->params[m->lay.bias + i];
            for (int k = 0; k < 8; k++) sc += users[u * 8 + k] * m->params[m->lay.emb + i * 8 + k];
            all[na++] = (struct sp_scored){(int32_t)i, sc};
        }
        qsort(all, na, sizeof all[0], cmp_desc);
        cr_assert_eq(sp_scorer_topk(s, users + u * 8, NULL, 0, &ex, 10, top), 10);
        cr_assert_eq(counts[u], 10u);
        for (int i = 0; i < 10; i++) {
            cr_assert_eq(top[i].item, all[i].item, "user %d rank %d", u, i);
            cr_assert_float_eq(top[i].score, all[i].score, 1e-4);
            cr_assert_eq(btop[u * 10 + i].item, all[i].item, "batched user %d rank %d", u, i);
        }
    }
    /* candidates: only those, minus exclusions, duplicates once, best first */
    int32_t cands[] = {3, 7, 3, 100, 250, 600, 11};
    int got = sp_scorer_topk(s, users, cands, 7, &ex, 10, top);
    cr_assert_eq(got, 4, "3, 100, 250, 11 remain");
    for (int i = 0; i < got; i++) {
        cr_assert_neq(top[i].item, 7);
        if (i) cr_assert_geq(top[i - 1].score, top[i].score);
    }
    /* the exclusion marks are cleared between calls */
    cr_assert_eq(sp_scorer_topk(s, users, NULL, 0, NULL, 500, all), 500);
    sp_scorer_destroy(s);
    sp_model_destroy(m);
}

/* The reference order: best score first, ties to the lower item. */
static int ref_cmp(const void *a, const void *b) {
    const struct sp_scored *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return (x->item > y->item) - (x->item < y->item);
}

/* Scores drawn from a few values so that ties are common, offered in a
 * shuffled item order (ties must still go to the lower item), with k on
 * both sides of n (k > n returns all n, k = 0 none). */
Test(models_serving, topk_offer_matches_a_sorted_reference_with_ties_and_k_above_n) {
    uint64_t r = sp_rng_seed(11);
    for (int trial = 0; trial < 400; trial++) {
        size_t n = sp_rng_below(&r, 60), k = sp_rng_below(&r, 70);
        struct sp_scored in[60], ref[60], h[70];
        for (size_t i = 0; i < n; i++) {
            in[i].item = (int32_t)i;
            in[i].score = trial % 2 ? (float)sp_rng_below(&r, 5) : sp_rng_normal(&r);
        }
        for (size_t i = n; i > 1; i--) { /* shuffle the offer order */
            size_t j = sp_rng_below(&r, (uint32_t)i);
            struct sp_scored t = in[i - 1];
            in[i - 1] = in[j];
            in[j] = t;
        }
        memcpy(ref, in, n * sizeof *in);
        qsort(ref, n, sizeof *ref, ref_cmp);
        size_t got = 0;
        for (size_t i = 0; i < n; i++) sp_topk_offer(h, &got, k, in[i].item, in[i].score);
        sp_topk_finish(h, got);
        cr_assert_eq(got, n < k ? n : k, "trial %d: n %zu k %zu got %zu", trial, n, k, got);
        for (size_t i = 0; i < got; i++) {
            cr_assert_eq(h[i].item, ref[i].item, "trial %d place %zu", trial, i);
            cr_assert_eq(h[i].score, ref[i].score);
        }
    }
}

/* The order recommend's dot products had: two four-lane sums (k mod 8 in
 * 0..3 and 4..7), added lane by lane, then pairs, then the tail. */
static float dot_reference(const float *a, const float *b, size_t d) {
    float s0[4] = {0}, s1[4] = {0};
    size_t k = 0;
    for (; k + 8 <= d; k += 8)
        for (int j = 0; j < 4; j++) {
            s0[j] += a[k + j] * b[k + j];
            s1[j] += a[k + 4 + j] * b[k + 4 + j];
        }
    for (int j = 0; j < 4; j++) s0[j] += s1[j];
    float s = (s0[0] + s0[1]) + (s0[2] + s0[3]);
    for (; k < d; k++) s += a[k] * b[k];
    return s;
}

__attribute__((target("avx"))) static float dot_avx(const float *a, const float *b, size_t d) {
    return sp_dot(a, b, d);
}

static float dot_plain(const float *a, const float *b, size_t d) { return sp_dot(a, b, d); }

static float dot_32(const float *a, const float *b) { return sp_dot(a, b, 32); }

/* Bit for bit the reference, with and without AVX, for every d up to 40
 * (tails of every length, d = 32 as a constant), at unaligned addresses. */
Test(models_serving, dot_is_bit_identical_to_the_two_lane_sse_order) {
    uint64_t r = sp_rng_seed(12);
    float buf[2 * 41 + 2];
    for (int trial = 0; trial < 50; trial++)
        for (size_t d = 0; d <= 40; d++) {
            float *a = buf + 1, *b = buf + 42; /* not 32-byte aligned */
            for (size_t k = 0; k < d; k++) {
                a[k] = sp_rng_normal(&r) * (trial % 3 ? 1.0f : 1e4f);
                b[k] = sp_rng_normal(&r);
            }
            float want = dot_reference(a, b, d);
            cr_assert_eq(dot_plain(a, b, d), want, "d %zu", d);
            if (__builtin_cpu_supports("avx")) cr_assert_eq(dot_avx(a, b, d), want, "avx d %zu", d);
            if (d == 32) cr_assert_eq(dot_32(a, b), want);
        }
}
