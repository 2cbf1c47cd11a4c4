#ifndef OPERATORS_PERSONAL_H
#define OPERATORS_PERSONAL_H

/* What the personalization operators (profile, mf, recommend) share within
 * one pipeline: the loaded model (swapped on SIGHUP), the instance's copy of
 * the shared MF item table with the deltas of the batch in hand, and a
 * popularity count per item. The three operators find it by their store
 * (sp_personal_get), so any subset of them can run, in any order the
 * operators key allows; whichever initialises first creates it, the last to
 * go frees it.
 *
 * Encodings in Redis:
 *  - user vectors (MF user vector, GRU hidden state) are one hash field of
 *    lower-case hex of the little-endian float32s (8 characters a float):
 *    exact (a vector read back is bit-identical, so a replayed batch computes
 *    the same numbers as the first run) and trivial to decode, at 1.5x the
 *    size of base64 -- 256 bytes for d=32, small beside the key overhead.
 *  - shared item factors are the hash "mf:items", field <item_id>, value the
 *    little-endian float32s of the bias then the d factors (binary: the Lua
 *    script that adds a batch's deltas reads and writes them with Redis's
 *    struct library in C; parsing text in Lua cost a third of a batch).
 *
 * @locality one thread: the consumer loop's. */
#include <emmintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "models/scorer.h"
#include "models/vocab.h"
#include "operators/candidates.h"
#include "operators/operator.h"

#define SP_PERSONAL_MAX_DIM 256

typedef struct sp_personal {
    sp_store *store;
    sp_sink *sink;
    sp_metrics *metrics;
    const sp_config *cfg;
    int refs;
    int has_mf;               /* the mf operator runs: it prefetches mfu:<user> */

    /* the model (recommend.model); NULL when none is configured */
    sp_model *model;
    sp_scorer *scorer;
    char *model_path;
    char model_name[64];      /* "gru:<basename>", in Recommendation.model */
    uint64_t model_gen;       /* bumped by each successful reload */

    /* shared MF item table: row i of vec is item sp_vocab_id(items, i) */
    size_t dim;
    sp_vocab *items;
    float *vec;               /* cap x dim */
    float *bias;              /* cap */
    float *pop;               /* cap: events seen by this instance (popularity prior) */
    int32_t *cat;             /* cap: category index, -1 unknown */
    int32_t *cat_next;        /* cap: next higher row of the same category, -1 none */
    int32_t *cat_first;       /* per category: its lowest row, -1 none (the list's head) */
    int32_t *cat_last;        /* per category: its highest row */
    size_t ncat;              /* categories with room in cat_first/cat_last */
    size_t cap;
    sp_vocab *cats;
    int32_t *model2mf;        /* model item index -> row, n_items of the model */
    int model2mf_identity;    /* model2mf[i] == i: the MF scores are one sgemv */
    int32_t *mf2model;        /* cap: row -> model item index, -1 not a model item */
    float *lpop;              /* cap: log(1 + pop), kept in step by sp_personal_seen */
    /* deltas since the last commit, applied by sp_personal_apply */
    float *dvec, *dbias;      /* cap x dim, cap */
    unsigned char *dirty;     /* cap */
    int32_t *dirty_list;
    size_t ndirty;
    struct item_known *known; /* mf:items rows as last read or written (personal.c) */
    int64_t last_refresh_ms;

    /* candidate generation (operators/candidates.h); NULL when the
     * recommend operator scores every item (n_cands 0) */
    sp_cands *cands;
    size_t n_cands;           /* candidates scored per list */

    /* settings parsed from the config */
    float mf_lr, mf_item_lr;
    float mf_weights[SP_KIND__COUNT];
    int mf_neg;
    int64_t mf_refresh_ms;
    int mf_apply_rows;
    float blend[3];           /* sequence model, MF, popularity */
    int rec_on[SP_KIND__COUNT];
    double half_life_ms;
} sp_personal;

/* The context of env->store, created on first use. Returns NULL with the
 * reason (a bad setting, an unreadable model file) in err. */
sp_personal *sp_personal_get(const sp_op_env *env, char *err, size_t errlen);
void sp_personal_put(sp_personal *p);

/* The candidate budget: the `recommend.candidates` key (environment
 * SHOPSTREAM_RECOMMEND_CANDIDATES), default SP_PERSONAL_CANDIDATES; 0
 * scores every item (exhaustive). */
#define SP_PERSONAL_CANDIDATES 256
#define SP_PERSONAL_CANDIDATES_MAX 100000

/* Loads recommend.model again; on any error keeps the current model and
 * returns SP_ERR_BADINPUT with the reason logged. */
int sp_personal_reload(sp_personal *p);

/* Row of item_id in the MF table, added when new (its factors start from
 * the mean of its category's rows, else from a small vector seeded by the
 * id). category may be NULL or "". */
int32_t sp_personal_item(sp_personal *p, const char *item_id, const char *category);

/* Counts one event on row i for the popularity prior. */
void sp_personal_seen(sp_personal *p, int32_t row);

/* Adds a change to row i's factors for the end of the batch. */
void sp_personal_delta(sp_personal *p, int32_t row, float dbias, const float *dvec);

/* What every change to row does besides its factors (which the caller adds
 * to both p->vec and p->dvec): puts it on the batch's dirty list, once, and
 * adds dbias to its bias. Inline so that mf's step can change the rows
 * itself, in the loop that reads them. */
static inline void sp_personal_touch(sp_personal *p, int32_t row, float dbias) {
    if (!p->dirty[row]) {
        p->dirty[row] = 1;
        p->dirty_list[p->ndirty++] = row;
    }
    p->dbias[row] += dbias;
    p->bias[row] += dbias;
}

/* The BPR score x + sum of u[k] * (qi[k] - qj[k]) over k < d: each term a
 * float, the sum a double, added in order k = 0, 1, ... as one plain loop
 * would (mf's numbers, and so a replay's, depend on it). The terms go four
 * a step (SSE), widened two a step (exact); only the adds are one at a
 * time. Inline: mf calls it for every negative. */
static inline double sp_personal_bpr_score(const float *u, const float *qi, const float *qj,
                                           double x, size_t d) {
    size_t k = 0;
    __m128d s = _mm_set_sd(x);
    for (; k + 4 <= d; k += 4) {
        __m128 t = _mm_mul_ps(_mm_loadu_ps(u + k), _mm_sub_ps(_mm_loadu_ps(qi + k), _mm_loadu_ps(qj + k)));
        __m128d lo = _mm_cvtps_pd(t), hi = _mm_cvtps_pd(_mm_movehl_ps(t, t));
        s = _mm_add_sd(s, lo);
        s = _mm_add_sd(s, _mm_unpackhi_pd(lo, lo));
        s = _mm_add_sd(s, hi);
        s = _mm_add_sd(s, _mm_unpackhi_pd(hi, hi));
    }
    x = _mm_cvtsd_f64(s);
    for (; k < d; k++) x += u[k] * (qi[k] - qj[k]);
    return x;
}

/* Hands the deltas since the last call to the store's next transaction
 * (sp_store_tx_job: the committer adds them to "mf:items" just before that
 * transaction's commits, by compare-and-set, mf.apply_rows rows a script;
 * rows Redis does not have get the local values), then refreshes the local copy when
 * mf.refresh_ms has passed (deltas not yet applied then are missing from
 * the copy until the next refresh). Called just before each state commit is
 * prepared. Not idempotent: a crash after it and before the state commit
 * applies those deltas again when the batches are replayed -- item factors
 * are at-least-once. */
int sp_personal_apply(sp_personal *p);

/* Reads "mf:items" into the local table (rows Redis has replace ours). */
int sp_personal_refresh(sp_personal *p);

/* Hex float codec (see above). encode writes 8*n chars and a NUL; decode
 * returns the number of floats read (0 when the text is not n finite
 * floats; v is then undefined). With AVX2 they go thirty-two bytes a
 * step (then sixteen, then a padded tail), else (SSE2) eight: the same
 * text and bits either way. */
void sp_personal_hex_encode(const float *v, size_t n, char *out);
size_t sp_personal_hex_decode(const char *s, float *v, size_t n);
/* decode of the len characters at s (no NUL needed), len as the store
 * gives it (sp_obj_get_strn_f): no strlen of a text whose length is known.
 * A len other than 8*n is refused, as decode refuses such a text. */
size_t sp_personal_hex_decoden(const char *s, size_t len, float *v, size_t n);

/* Tests only: on != 0 makes the codec take its SSE2 path on a machine with
 * AVX2 too, so that both are checked (the same bytes and floats). */
void sp_personal_hex_sse2_only(int on);

/* Deterministic 64-bit hash (FNV-1a) of a string, for seeds and rec ids. */
uint64_t sp_personal_hash(const char *s, uint64_t h);

/* Monotonic clock in microseconds. */
double sp_personal_now_us(void);

#endif
