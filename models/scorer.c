/* Serving-side scoring: user vector against item embeddings with BLAS,
 * exclusions, and top-K by partial selection. All buffers are allocated by
 * sp_scorer_new so that a call per event allocates nothing. */
#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "models/scorer.h"
#include "models/seq.h"
#include "stream/error.h"

struct sp_scorer {
    const sp_model *m;
    size_t max_batch;
    float *scores;      /* max_batch x n_items */
    unsigned char *ban; /* n_items flags, all zero between calls */
    sp_seq_work *attn;  /* attention encoder scratch (SASRec models only) */
};

sp_scorer *sp_scorer_new(const sp_model *m, size_t max_batch, char *err, size_t errlen) {
    if (!m || max_batch == 0) {
        if (err && errlen) snprintf(err, errlen, "scorer: need a model and max_batch >= 1");
        return NULL;
    }
    sp_scorer *s = sp_xcalloc(1, sizeof *s);
    s->m = m;
    s->max_batch = max_batch;
    s->scores = sp_xmalloc(max_batch * m->n_items * sizeof(float));
    s->ban = sp_xcalloc(m->n_items, 1);
    if (m->cfg.kind == SP_MODEL_SASREC) s->attn = sp_seq_work_new(m, m->cfg.max_len, 0);
    return s;
}

void sp_scorer_destroy(sp_scorer *s) {
    if (!s) return;
    free(s->scores);
    free(s->ban);
    sp_seq_work_destroy(s->attn);
    free(s);
}

int sp_scorer_attn_encode(sp_scorer *s, const int32_t *items, size_t n, float *out) {
    const sp_model *m = s->m;
    if (m->cfg.kind != SP_MODEL_SASREC || n == 0) return SP_ERR_BADINPUT;
    if (n > m->cfg.max_len) {
        items += n - m->cfg.max_len;
        n = m->cfg.max_len;
    }
    for (size_t i = 0; i < n; i++)
        if (items[i] < 0 || (uint32_t)items[i] >= m->n_items) return SP_ERR_BADINPUT;
    const float *H = sp_seq_forward(m, m->params, s->attn, items, n, 0, NULL);
    memcpy(out, H + (n - 1) * m->cfg.dim, m->cfg.dim * sizeof(float));
    return SP_OK;
}

int sp_scorer_score_all(sp_scorer *s, const float *users, size_t n_users, float *scores) {
    const sp_model *m = s->m;
    size_t d = m->cfg.dim, n = m->n_items;
    const float *bias = m->params + m->lay.bias;
    for (size_t u = 0; u < n_users; u++) memcpy(scores + u * n, bias, n * sizeof(float));
    if (n_users == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)d, 1.0f, m->params + m->lay.emb,
                    (int)d, users, 1, 1.0f, scores, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n_users, (int)n, (int)d, 1.0f,
                    users, (int)d, m->params + m->lay.emb, (int)d, 1.0f, scores, (int)n);
    return SP_OK;
}

/* Min-heap on (score, -item): the root is the worst of the k kept, so a
 * new item enters only when it beats the root. Ties go to the lower index
 * so that results are deterministic. */
static int worse(const struct sp_scored *a, const struct sp_scored *b) {
    return a->score < b->score || (a->score == b->score && a->item > b->item);
}

static void sift_down(struct sp_scored *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && worse(&h[l], &h[w])) w = l;
        if (r < n && worse(&h[r], &h[w])) w = r;
        if (w == i) return;
        struct sp_scored t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

void sp_topk_push(struct sp_scored *h, size_t *n, size_t k, int32_t item, float score) {
    struct sp_scored c = {item, score};
    if (*n < k) {
        size_t i = (*n)++;
        h[i] = c;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!worse(&h[i], &h[p])) break;
            struct sp_scored t = h[i];
            h[i] = h[p];
            h[p] = t;
            i = p;
        }
    } else if (k > 0 && worse(&h[0], &c)) {
        h[0] = c;
        sift_down(h, *n, 0);
    }
}

/* Some of the 8 scores at s could enter a list whose worst score is `root`: one
 * is >= it (NaN never is). With SSE (every x86-64) two compares and a
 * movemask: GCC's generic 8-wide vectors, in this file built for the
 * baseline, came out as a scalar compare and a stack store per lane. */
static inline int block_may_enter(const float *s, float root) {
#if defined(__SSE__)
    __m128 r = _mm_set1_ps(root);
    __m128 ge = _mm_or_ps(_mm_cmpge_ps(_mm_loadu_ps(s), r), _mm_cmpge_ps(_mm_loadu_ps(s + 4), r));
    return _mm_movemask_ps(ge) != 0;
#else
    int any = 0;
    for (int i = 0; i < 8; i++) any |= s[i] >= root;
    return any;
#endif
}

/* Heap sort: the worst goes to the end, one at a time. */
static void heap_sort(struct sp_scored *h, size_t n) {
    for (size_t end = n; end > 1; end--) {
        struct sp_scored t = h[0];
        h[0] = h[end - 1];
        h[end - 1] = t;
        sift_down(h, end - 1, 0);
    }
}

/* Insertion sort for the short lists (recommend's ten: no call per step,
 * about n^2/4 moves), the heap sort above TOPK_INSERTION_MAX. Either gives
 * the one order of the entries (best first, ties to the lower item; the
 * items of a heap are distinct). */
#define TOPK_INSERTION_MAX 32
void sp_topk_finish(struct sp_scored *h, size_t n) {
    if (n > TOPK_INSERTION_MAX) {
        heap_sort(h, n);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        struct sp_scored x = h[i];
        size_t j = i;
        for (; j > 0 && worse(&h[j - 1], &x); j--) h[j] = h[j - 1];
        h[j] = x;
    }
}

/* Inserts c into the best-first list h[0..*n) of at most k (> 0) entries
 * when it is among the k best: the short lists' form of the heap, whose
 * last entry is its worst. */
static inline void sorted_offer(struct sp_scored *h, size_t *n, size_t k, struct sp_scored c) {
    size_t i = *n;
    if (i == k) {
        if (!worse(&h[k - 1], &c)) return;
        i = k - 1;
    } else {
        (*n)++;
    }
    for (; i > 0 && worse(&h[i - 1], &c); i--) h[i] = h[i - 1];
    h[i] = c;
}

static inline __attribute__((always_inline)) void offer(struct sp_scored *h, size_t *n, size_t k,
                                                        int32_t item, float score, int sorted) {
    if (sorted)
        sorted_offer(h, n, k, (struct sp_scored){item, score});
    else
        sp_topk_offer(h, n, k, item, score);
}

/* Offers each finite score in turn, into the sorted list or the heap. Once
 * full, a score can enter only when it is at least the worst kept's (a tie
 * then goes by item), and most are not, so eight are compared with the
 * worst at once and skipped together when none is (NaN compares false,
 * -inf is never kept): a block is skipped only when each of its scores
 * would have been turned away. */
static inline __attribute__((always_inline)) size_t
select_finite(struct sp_scored *h, size_t k, const int32_t *items, const float *scores,
              size_t count, int sorted) {
    size_t n = 0, j = 0, worst = sorted ? k - 1 : 0;
    for (; j < count && n < k; j++)
        if (isfinite(scores[j])) offer(h, &n, k, items[j], scores[j], sorted);
    for (; j + 8 <= count; j += 8) {
        if (!block_may_enter(scores + j, h[worst].score)) continue;
        for (size_t i = j; i < j + 8; i++)
            if (isfinite(scores[i])) offer(h, &n, k, items[i], scores[i], sorted);
    }
    for (; j < count; j++)
        if (isfinite(scores[j])) offer(h, &n, k, items[j], scores[j], sorted);
    return n;
}

/* Up to TOPK_INSERTION_MAX places, a list kept sorted: an entry that gets
 * in moves about k/2 others (recommend's ten: fewer instructions than a
 * sift down, and no sort at the end); past it, the heap and its sort. */
size_t sp_topk_select_finite(struct sp_scored *h, size_t k, const int32_t *items,
                             const float *scores, size_t count) {
    if (!k) return 0;
    if (k <= TOPK_INSERTION_MAX) return select_finite(h, k, items, scores, count, 1);
    size_t n = select_finite(h, k, items, scores, count, 0);
    sp_topk_finish(h, n);
    return n;
}

static void ban_set(sp_scorer *s, const struct sp_exclude *e, unsigned char v) {
    if (!e) return;
    for (size_t i = 0; i < e->n; i++)
        if (e->items[i] >= 0 && (uint32_t)e->items[i] < s->m->n_items) s->ban[e->items[i]] = v;
}

static size_t select_all(sp_scorer *s, const float *sc, size_t k, struct sp_scored *out) {
    size_t n = 0;
    for (size_t i = 0; i < s->m->n_items; i++)
        if (!s->ban[i] && !isnan(sc[i])) sp_topk_offer(out, &n, k, (int32_t)i, sc[i]);
    sp_topk_finish(out, n);
    return n;
}

size_t sp_scores_topk(const float *scores, const float *bias, size_t n, size_t k,
                      struct sp_scored *out) {
    size_t got = 0;
    for (size_t i = 0; i < n; i++) {
        float s = bias ? scores[i] + bias[i] : scores[i];
        /* once full, an item enters only by beating the root's score: a tie
         * loses to the root's lower index (and NaN compares false) */
        if (got == k && !(s > out[0].score)) continue;
        if (!isnan(s)) sp_topk_offer(out, &got, k, (int32_t)i, s);
    }
    /* the heap sort, inlined as it was before sp_topk_finish grew its
     * insertion sort: calling that instead, GCC laid out the loop above
     * with the NaN test first, 6% more instructions for the candidate
     * lists' build (the same order either way) */
    heap_sort(out, got);
    return got;
}

int sp_scorer_topk(sp_scorer *s, const float *user, const int32_t *cands, size_t n_cands,
                   const struct sp_exclude *excl, size_t k, struct sp_scored *out) {
    const sp_model *m = s->m;
    size_t d = m->cfg.dim, n = 0;
    ban_set(s, excl, 1);
    if (!cands) {
        sp_scorer_score_all(s, user, 1, s->scores);
        n = select_all(s, s->scores, k, out);
    } else {
        const float *E = m->params + m->lay.emb, *bias = m->params + m->lay.bias;
        for (size_t c = 0; c < n_cands; c++) {
            int32_t i = cands[c];
            if (i < 0 || (uint32_t)i >= m->n_items || s->ban[i]) continue;
            s->ban[i] = 2; /* a candidate listed twice is scored once */
            float sc = cblas_sdot((int)d, user, 1, E + (size_t)i * d, 1) + bias[i];
            sp_topk_offer(out, &n, k, i, sc);
        }
        for (size_t c = 0; c < n_cands; c++)
            if (cands[c] >= 0 && (uint32_t)cands[c] < m->n_items && s->ban[cands[c]] == 2)
                s->ban[cands[c]] = 0;
        sp_topk_finish(out, n);
    }
    ban_set(s, excl, 0);
    return (int)n;
}

int sp_scorer_topk_batch(sp_scorer *s, const float *users, size_t n_users,
                         const struct sp_exclude *excl, size_t k, struct sp_scored *out,
                         size_t *counts) {
    size_t n = s->m->n_items;
    for (size_t u0 = 0; u0 < n_users; u0 += s->max_batch) {
        size_t nb = n_users - u0 < s->max_batch ? n_users - u0 : s->max_batch;
        sp_scorer_score_all(s, users + u0 * s->m->cfg.dim, nb, s->scores);
        for (size_t u = 0; u < nb; u++) {
            const struct sp_exclude *e = excl ? &excl[u0 + u] : NULL;
            ban_set(s, e, 1);
            counts[u0 + u] = select_all(s, s->scores + u * n, k, out + (u0 + u) * k);
            ban_set(s, e, 0);
        }
    }
    return SP_OK;
}
