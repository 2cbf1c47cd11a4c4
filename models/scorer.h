#ifndef MODELS_SCORER_H
#define MODELS_SCORER_H

/* Serving API of the models: what the stream's recommend and mf operators
 * call, one event at a time per user. The user's state lives outside (in
 * Redis) as a float vector of sp_model_user_dim() floats (MF user vector or
 * GRU hidden state) or, for attention, a ring of the last max_len item
 * indices. Nothing here allocates after sp_scorer_new.
 *
 * Locality: a sp_model is read-only after load and may be shared by threads;
 * a sp_scorer holds scratch buffers and belongs to one thread. */
#include <stddef.h>
#include <stdint.h>

typedef struct sp_model sp_model;
typedef struct sp_scorer sp_scorer;

/* Loads a model file. Returns NULL and a reason in err when the file is
 * missing, truncated, corrupted (checksum), of another version or kind, or
 * its shapes do not agree with its payload. Never crashes on bad input. */
sp_model *sp_model_load(const char *path, char *err, size_t errlen);

/* Writes the model atomically (temporary file, then rename). 0 or SP_ERR_IO. */
int sp_model_save(const sp_model *m, const char *path, char *err, size_t errlen);

void sp_model_destroy(sp_model *m);

uint32_t sp_model_kind_of(const sp_model *m);  /* enum sp_model_kind */
size_t sp_model_user_dim(const sp_model *m);   /* floats in a user vector / hidden state */
size_t sp_model_n_items(const sp_model *m);
size_t sp_model_max_len(const sp_model *m);    /* attention ring length */

/* Item index of a stream item id, -1 when the model does not know it. */
int32_t sp_model_item_index(const sp_model *m, const char *item_id);
const char *sp_model_item_id(const sp_model *m, int32_t idx);

/* GRU: advances hidden (user_dim floats, zeros for a new user) by one
 * event on item. O(dim^2), no history replay. 0 or SP_ERR_BADINPUT. */
int sp_gru_step(const sp_model *m, float *hidden, int32_t item);

/* GRU: sp_gru_step for a caller that steps many users through the same
 * model. The input projection x Wx + bx depends on the item alone:
 * sp_gru_input_table computes it once for every item (row i, 3 user_dim
 * floats, for item i), and sp_gru_step_with takes the step from the item's
 * row -- half the arithmetic of a step, and bit for bit sp_gru_step (the
 * same code computes the row). The table is 3x the size of the embeddings:
 * NULL, when it would exceed max_bytes or for a model of another kind, has
 * sp_gru_step_with compute the projection as sp_gru_step does. The caller
 * frees the table; it belongs to m. */
float *sp_gru_input_table(const sp_model *m, size_t max_bytes);
int sp_gru_step_with(const sp_model *m, const float *table, float *hidden, int32_t item);

/* One MF update's change to one item's factors, for the caller to apply to
 * the shared item table (vec has user_dim floats, caller-provided). */
struct sp_mf_delta {
    int32_t item;
    float dbias;
    float *vec;
};

/* Online MF (BPR with sampled negatives): learns from one interaction of
 * weight w (the event kind's weight, see sp_mf_kind_weight) on item. Updates
 * user in place and writes the item-vector changes to deltas[0..ret) (the
 * positive, then each sampled negative); the model itself is not modified.
 * deltas must hold 1 + n_neg entries. lr comes from sp_mf_lr_at. Returns the
 * number of deltas or SP_ERR_BADINPUT. */
int sp_mf_learn(const sp_model *m, float *user, int32_t item, float w, float lr, uint64_t *rng,
                struct sp_mf_delta *deltas);
float sp_mf_lr_at(const sp_model *m, uint64_t step); /* learning-rate schedule */
float sp_mf_kind_weight(const sp_model *m, int kind); /* enum sp_event_kind */
size_t sp_mf_n_deltas(const sp_model *m);

/* A scored item of a top-K list. */
struct sp_scored {
    int32_t item;
    float score;
};

/* Items a user must not be recommended (purchased, unavailable, seen). */
struct sp_exclude {
    const int32_t *items;
    size_t n;
};

/* Top k of scores[i] + bias[i] (bias may be NULL), i < n, NaN skipped,
 * into out, best first, ties to the lower index: the partial selection the
 * scorer uses, for callers that have their own scores. Returns the number
 * written (<= k). */
size_t sp_scores_topk(const float *scores, const float *bias, size_t n, size_t k,
                      struct sp_scored *out);

/* Incremental top-k, for callers that score one item at a time: h holds
 * the best n (<= k) offered so far as a min-heap rooted at the worst kept,
 * so an item enters only when it beats the root; ties go to the lower item
 * (deterministic lists). The caller skips NaN scores. sp_topk_offer is the
 * inline test that rejects most items once the heap is full (the common
 * case: a few hundred offers for ten places) before the out-of-line
 * sp_topk_push; sp_topk_finish turns the heap into a best-first list in
 * place. Start with *n = 0. */
void sp_topk_push(struct sp_scored *h, size_t *n, size_t k, int32_t item, float score);
void sp_topk_finish(struct sp_scored *h, size_t n);

static inline void sp_topk_offer(struct sp_scored *h, size_t *n, size_t k, int32_t item,
                                 float score) {
    if (*n == k && (!k || score < h[0].score || (score == h[0].score && item > h[0].item)))
        return;
    sp_topk_push(h, n, k, item, score);
}

/* The k best finite scores[j] with their items[j], j < count, into h,
 * best first (ties to the lower item, as the heap): what offering each in
 * turn and sp_topk_finish give, for fewer instructions a score. Returns the
 * number written (<= k). */
size_t sp_topk_select_finite(struct sp_scored *h, size_t k, const int32_t *items,
                             const float *scores, size_t count);

/* Scratch space for up to max_batch users per call. */
sp_scorer *sp_scorer_new(const sp_model *m, size_t max_batch, char *err, size_t errlen);
void sp_scorer_destroy(sp_scorer *s);

/* Attention: encodes the last n (<= max_len, oldest first) item indices
 * into out (user_dim floats), the user vector to score with. O(n dim^2). */
int sp_scorer_attn_encode(sp_scorer *s, const int32_t *items, size_t n, float *out);

/* Top-k items for one user vector, best first, by partial selection (a
 * k-heap). cands = NULL scores all items, else only cands[0..n_cands).
 * Excluded items never appear. Returns the number written (<= k) or a
 * negative SP_ERR_*. */
int sp_scorer_topk(sp_scorer *s, const float *user, const int32_t *cands, size_t n_cands,
                   const struct sp_exclude *excl, size_t k, struct sp_scored *out);

/* Top-k against all items for n_users user vectors (rows of users) with one
 * sgemm. excl may be NULL or hold one entry per user; out holds n_users * k
 * entries and counts[u] the number written for user u. */
int sp_scorer_topk_batch(sp_scorer *s, const float *users, size_t n_users,
                         const struct sp_exclude *excl, size_t k, struct sp_scored *out,
                         size_t *counts);

/* Raw scores of all items for n_users user vectors (n_users x n_items,
 * row-major) with one sgemm: what the evaluator ranks. */
int sp_scorer_score_all(sp_scorer *s, const float *users, size_t n_users, float *scores);

#endif
