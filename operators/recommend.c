/* recommend: on the click kinds of recommend.on, a fresh top-K list for the
 * user, produced to topics.recommendations (key user_id) and written to
 * "rec:<user_id>" (JSON, TTL recommend.ttl_s).
 *
 * The score of an item blends (recommend.blend) three parts:
 *   sequence    the loaded model's u . E[i] + b[i], u being the user's GRU
 *               hidden state advanced one step per event (O(d^2), no history
 *               replay), or attention over the user's last items (SASRec),
 *               or the MF user vector (an MF model);
 *   mf          the online MF user vector against the shared item factors;
 *   popularity  log(1 + events on the item seen by this instance), over
 *               log(1 + the most seen item's, at least POP_FLOOR) -- a
 *               per-instance prior, not state.
 * Items the user bought (the last BOUGHT_MAX) and, with
 * recommend.exclude_viewed, the item being viewed are excluded.
 *
 * What is scored: by default a candidate set of at most n_cands rows
 * (operators/candidates.h: the user's last SEEDS items, the model's next
 * items after each, the items co-visited after each, the most popular,
 * the model's favourites), a few hundred dot products instead of two
 * sgemvs over the catalogue. With SHOPSTREAM_RECOMMEND_CANDIDATES=0, every
 * item of the model (without a model, of the MF table) is scored, as before.
 * With a model, only its items are ranked in either mode.
 *
 * Per-user state in "{p<n>}:rs:<user_id>": h (GRU hidden state, hex
 * float32s), ring (SASRec: last item ids), seen (candidate mode: the last
 * SEEDS item ids, newest first), bought, last_ms (event time of the last
 * list: the rate limit, recommend.rate_limit_ms, is in event time so that a
 * replay recommends exactly where the first run did). rec_id is a hash of
 * (user_id, trigger event_id): a list repeated after a crash has the same
 * id. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "models/dot.h"
#include "models/model.h"
#include "operators/kpi.h"
#include "operators/operator.h"
#include "operators/personal.h"
#include "operators/recommend.h"
#include "proto/shopstream.pb-c.h"
#include "stream/error.h"
#include "stream/kafka.h"
#include "stream/metrics.h"

#define BOUGHT_MAX 100
#define TEXT_MAX 8192
#define K_MAX 100
#define POP_FLOOR 100.0f
#define SEEDS 3 /* recent items whose neighbours are candidates */
/* The GRU input table (sp_gru_input_table) is kept up to this size: 3x the
 * embeddings, 3.8 MB for 10k items at d = 32; a catalogue past ~170k items
 * at d = 32 computes each step's projection instead. */
#define GX_TABLE_MAX (64u << 20)

struct pend {
    size_t key;      /* offset of "rec:<user_id>" in text; its JSON follows its NUL */
    size_t keylen;
    size_t jsonlen;
};

struct recommend {
    sp_store *store;
    sp_personal *ctx;
    const sp_config *cfg;
    float *seq, *blend, *mf;  /* per-item scratch of exhaustive scoring */
    size_t cap;
    unsigned char *ban;       /* per-row flags, all zero between calls */
    size_t bancap;
    int32_t banned[BOUGHT_MAX + 2]; /* the rows flagged in ban during a call */
    size_t nbanned;
    int32_t *cands;           /* candidate rows of one list */
    int32_t *cand_mi;         /* score_rows32: their model indices */
    float *cand_score;        /* score_rows32: their scores */
    size_t candcap;
    /* rec:<user> writes of the batch: "key\0json\0" back to back in text,
     * pend[i] where the i-th is (offsets: text may move) */
    char *text;
    size_t ntext, captext;
    struct pend *pend;
    size_t npend, cappend;
    uint8_t *pbuf;            /* the packed Recommendation */
    size_t pcap;
    float maxpop;
    sp_op_hints rs, mfu;      /* the event's entries, prefetch to process */
    /* derived from the model of ctx->model_gen model_gen (model_refresh) */
    const sp_model *model;
    uint64_t model_gen;
    float *gx;                /* the GRU input projection of every item, or NULL */
    const char *label;        /* Recommendation.model: ctx->model_name, "mf" without a model */
    size_t label_len;
    int label_esc;            /* the label has bytes that JSON escapes */
    /* per row: 0 not looked up yet, else the id's length + 1 with ID_ESC
     * when JSON escapes it (list_items) */
    uint32_t *idinfo;
    size_t idcap;
    /* the fields read and written at every event: named once (sp_fname) */
    sp_fname f_h, f_seen, f_last, f_bought, f_v;
};

static int json_escapes(const char *s, size_t n);

/* Derives what recommend keeps of the current model. Called at start-up and
 * after a reload, so that the first events do not pay for the GRU input
 * table, and at each event in case another operator's reload swapped the
 * model. */
static void model_refresh(struct recommend *r) {
    sp_personal *c = r->ctx;
    if (r->model == c->model && r->model_gen == c->model_gen && r->label) return;
    free(r->gx);
    r->gx = c->model ? sp_gru_input_table(c->model, GX_TABLE_MAX) : NULL;
    r->label = c->model ? c->model_name : "mf";
    r->label_len = strlen(r->label);
    r->label_esc = json_escapes(r->label, r->label_len);
    r->model = c->model;
    r->model_gen = c->model_gen;
}

static int rec_init(void **priv, const sp_op_env *env, char *err, size_t errlen) {
    sp_personal *ctx = sp_personal_get(env, err, errlen);
    if (!ctx) return SP_ERR_FATAL;
    struct recommend *r = sp_xcalloc(1, sizeof *r);
    r->store = env->store;
    r->ctx = ctx;
    r->cfg = env->cfg;
    r->f_h = sp_fname_of("h");
    r->f_seen = sp_fname_of("seen");
    r->f_last = sp_fname_of("last_ms");
    r->f_bought = sp_fname_of("bought");
    r->f_v = sp_fname_of("v");
    model_refresh(r);
    *priv = r;
    return SP_OK;
}

/* prefix + user id into key (the user id is bounded by validation; a
 * longer one is cut, as snprintf did). */
static void user_key(char *key, size_t len, const char *prefix, const char *user) {
    size_t p = strlen(prefix), u = strlen(user);
    if (p + u + 1 > len) u = len - p - 1;
    memcpy(key, prefix, p);
    memcpy(key + p, user, u);
    key[p + u] = '\0';
}

static void rec_prefetch(void *priv, const sp_op_event *e) {
    struct recommend *r = priv;
    char key[256];
    user_key(key, sizeof key, "rs:", e->ev->user_id);
    sp_op_want(&r->rs, r->store, e, key);
    if (r->ctx->has_mf) return; /* mf wants mfu:<user> already */
    user_key(key, sizeof key, "mfu:", e->ev->user_id);
    sp_op_want(&r->mfu, r->store, e, key);
}

/* Whether `word` is in the space-separated list s. */
static int in_list(const char *s, const char *word) {
    size_t wl = strlen(word);
    for (; s && *s;) {
        const char *sp = strchr(s, ' ');
        size_t len = sp ? (size_t)(sp - s) : strlen(s);
        if (len == wl && !strncmp(s, word, len)) return 1;
        s += len;
        while (*s == ' ') s++;
    }
    return 0;
}

/* Appends word to a space-separated list field, keeping the last `max`. */
static void list_append(sp_obj *o, const char *field, const char *word, int max, int unique) {
    const char *old = sp_obj_get_str(o, field);
    if (!word || !*word || strchr(word, ' ') || (unique && in_list(old, word))) return;
    const char *s = old ? old : "";
    int count = 0;
    for (const char *c = s; *c; c++)
        if (*c == ' ') count++;
    if (*s) count++;
    while (count >= max && *s) {
        const char *sp = strchr(s, ' ');
        s = sp ? sp + 1 : s + strlen(s);
        count--;
    }
    char out[TEXT_MAX];
    snprintf(out, sizeof out, "%s%s%s", s, *s ? " " : "", word);
    sp_obj_set_str(o, field, out);
}

/* A vector field of n floats (sp_personal_hex_decoden: its length from
 * the store, no strlen); n when read. */
static size_t decode_field(const sp_obj *o, const sp_fname *f, float *v, size_t n) {
    size_t len;
    const char *s = sp_obj_get_strn_f(o, f, &len);
    return sp_personal_hex_decoden(s, len, v, n);
}

/* The user representation for the sequence part; 0 when there is none.
 * h: the GRU state this event left, when the caller has it decoded. */
static int seq_user(struct recommend *r, sp_obj *rs, const float *h, const float *mfu,
                    int have_mfu, float *u) {
    sp_personal *c = r->ctx;
    const sp_model *m = c->model;
    size_t d = sp_model_user_dim(m);
    switch (sp_model_kind_of(m)) {
    case SP_MODEL_GRU:
        if (h)
            memcpy(u, h, d * sizeof(float));
        else if (decode_field(rs, &r->f_h, u, d) != d)
            memset(u, 0, d * 4);
        return 1;
    case SP_MODEL_SASREC: {
        int32_t idx[SP_MODEL_MAX_LEN];
        size_t n = 0;
        const char *s = sp_obj_get_str(rs, "ring");
        char id[SP_EVENT_MAX_ID + 1];
        while (s && *s && n < SP_MODEL_MAX_LEN) {
            const char *sp = strchr(s, ' ');
            size_t len = sp ? (size_t)(sp - s) : strlen(s);
            if (len <= SP_EVENT_MAX_ID) {
                memcpy(id, s, len);
                id[len] = '\0';
                int32_t i = sp_model_item_index(m, id);
                if (i >= 0) idx[n++] = i;
            }
            s += len;
            while (*s == ' ') s++;
        }
        return n && sp_scorer_attn_encode(c->scorer, idx, n, u) == SP_OK;
    }
    default:
        if (!have_mfu || d != c->dim) return 0;
        memcpy(u, mfu, d * sizeof(float));
        return 1;
    }
}

/* Marks the rows the user must not get (the item in view with
 * recommend.exclude_viewed, the items bought) in r->ban and lists them in
 * r->banned (for unmarking, and for the candidates to skip). */
static void ban_rows(struct recommend *r, const char *bought, int32_t viewed_row) {
    int32_t *banned = r->banned;
    sp_personal *c = r->ctx;
    size_t rows = sp_vocab_size(c->items), nb = 0;
    if (rows > r->bancap) { /* doubled: the item table grows an item at a time */
        size_t cap = rows > 2 * r->bancap ? rows : 2 * r->bancap;
        r->ban = sp_xrealloc(r->ban, cap);
        memset(r->ban + r->bancap, 0, cap - r->bancap);
        r->bancap = cap;
    }
    if (r->cfg->recommend_exclude_viewed) banned[nb++] = viewed_row;
    for (const char *s = bought; s && *s && nb <= BOUGHT_MAX;) {
        const char *sp = strchr(s, ' ');
        size_t len = sp ? (size_t)(sp - s) : strlen(s);
        if (len <= SP_EVENT_MAX_ID) {
            int32_t b = sp_vocab_find(c->items, s, len);
            if (b >= 0) banned[nb++] = b;
        }
        s += len;
        while (*s == ' ') s++;
    }
    for (size_t i = 0; i < nb; i++) r->ban[banned[i]] = 1;
    r->nbanned = nb;
}

/* Scores every item (the model's, else the MF table's): two sgemvs. The
 * list in top[0..*got) best first. */
static void score_all(struct recommend *r, const float *u, int have_seq, const float *mfu,
                      int use_mf, const float w[3], struct sp_scored *top, size_t *got, size_t k) {
    sp_personal *c = r->ctx;
    const sp_model *m = c->model;
    size_t n = m ? sp_model_n_items(m) : sp_vocab_size(c->items), d = c->dim;
    if (n > r->cap) {
        r->cap = n;
        r->seq = sp_xrealloc(r->seq, n * sizeof(float));
        r->blend = sp_xrealloc(r->blend, n * sizeof(float));
        r->mf = sp_xrealloc(r->mf, n * sizeof(float));
    }
    if (have_seq) sp_scorer_score_all(c->scorer, u, 1, r->seq);
    int identity = !m || c->model2mf_identity;
    if (use_mf && identity) /* rows 0..n-1 are the candidates: one sgemv */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)d, 1.0f, c->vec, (int)d, mfu, 1,
                    0.0f, r->mf, 1);
    for (size_t i = 0; i < n; i++) {
        int32_t row = identity ? (int32_t)i : c->model2mf[i];
        float s = w[0] != 0 ? w[0] * r->seq[i] : 0;
        if (use_mf) {
            float dt = identity ? r->mf[i]
                                : cblas_sdot((int)d, mfu, 1, c->vec + (size_t)row * d, 1);
            s += w[1] * (dt + c->bias[row]);
        }
        r->blend[i] = s + w[2] * c->lpop[row];
    }
    for (size_t i = 0; i < n; i++) {
        int32_t row = identity ? (int32_t)i : c->model2mf[i];
        if (r->ban[row] || !isfinite(r->blend[i])) continue;
        sp_topk_offer(top, got, k, row, r->blend[i]);
    }
    sp_topk_finish(top, *got);
}

/* The scoring loop of score_cands over n rows with d floats a vector, the
 * list best first; inlined twice, once with d = 32 (the usual size,
 * unrolled). */
static inline __attribute__((always_inline)) void
score_rows(struct recommend *r, const float *u, int have_seq, const float *mfu, int use_mf,
           const float w[3], size_t n, size_t d, struct sp_scored *top, size_t *got, size_t k) {
    sp_personal *c = r->ctx;
    const sp_model *m = c->model;
    const float *E = m ? m->params + m->lay.emb : NULL, *eb = m ? m->params + m->lay.bias : NULL;
    for (size_t j = 0; j < n; j++) {
        int32_t row = r->cands[j];
        if ((size_t)row < r->bancap && r->ban[row]) continue;
        int32_t mi = m ? c->mf2model[row] : -1;
        if (m && mi < 0) continue;
        float s = have_seq ? w[0] * (sp_dot(u, E + (size_t)mi * d, d) + eb[mi]) : 0;
        if (use_mf) s += w[1] * (sp_dot(mfu, c->vec + (size_t)row * d, d) + c->bias[row]);
        s += w[2] * c->lpop[row];
        if (isfinite(s)) sp_topk_offer(top, got, k, row, s);
    }
    sp_topk_finish(top, *got);
}

/* score_rows for the usual case, d = 32 with both the sequence and the MF
 * part, over the nv candidates that are scored (r->cands, their model items
 * in r->cand_mi: sp_cands_collect_kept dropped the others), in two passes:
 * score them four at a time (their eight dot products finished together,
 * sp_dot_sum8, u and mfu loaded once, not once a row, and the blend in
 * 4-wide vectors), then select the best in candidate order
 * (sp_topk_select_finite). The scores are score_rows' bit for bit (the same
 * operations in the same order, no FMA), and so is the list. */
static inline __attribute__((always_inline)) void
score_rows32(struct recommend *r, const float *u, const float *mfu, const float w[3], size_t nv,
             struct sp_scored *top, size_t *got, size_t k) {
    sp_personal *c = r->ctx;
    const sp_model *m = c->model;
    const float *E = m->params + m->lay.emb, *eb = m->params + m->lay.bias;
    const int32_t *rows = r->cands, *mis = r->cand_mi;
    float *sc = r->cand_score;
    sp_v8sf U[4], V[4];
    memcpy(U, u, sizeof U);
    memcpy(V, mfu, sizeof V);
    const sp_v4sf W0 = {w[0], w[0], w[0], w[0]}, W1 = {w[1], w[1], w[1], w[1]},
                  W2 = {w[2], w[2], w[2], w[2]};
    size_t j = 0;
    for (; j + 4 <= nv; j += 4) {
        /* candidate i's sequence dot in acc[2i], its MF dot in acc[2i + 1]:
         * sp_dot_sum8's order puts the four sequence dots in the low half
         * of sum, the four MF dots in the high one */
        sp_v8sf acc[8];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            sp_dot32_lanes(U, E + (size_t)mis[j + i] * 32, &acc[2 * i]);
            sp_dot32_lanes(V, c->vec + (size_t)rows[j + i] * 32, &acc[2 * i + 1]);
        }
        sp_v8sf sum;
        sp_dot_sum8(acc, &sum);
        sp_v4sf ds = __builtin_shufflevector(sum, sum, 0, 1, 2, 3);
        sp_v4sf dm = __builtin_shufflevector(sum, sum, 4, 5, 6, 7);
        const int32_t *rw = rows + j, *mw = mis + j;
        sp_v4sf eb4 = {eb[mw[0]], eb[mw[1]], eb[mw[2]], eb[mw[3]]};
        sp_v4sf b4 = {c->bias[rw[0]], c->bias[rw[1]], c->bias[rw[2]], c->bias[rw[3]]};
        sp_v4sf lp4 = {c->lpop[rw[0]], c->lpop[rw[1]], c->lpop[rw[2]], c->lpop[rw[3]]};
        /* the blend of the loop below, four lanes at once: the same
         * roundings in the same order */
        sp_v4sf s4 = W0 * (ds + eb4);
        s4 += W1 * (dm + b4);
        s4 += W2 * lp4;
        memcpy(sc + j, &s4, sizeof s4);
    }
    for (; j < nv; j++) {
        int32_t row = rows[j], mi = mis[j];
        float s = w[0] * (sp_dot(u, E + (size_t)mi * 32, 32) + eb[mi]);
        s += w[1] * (sp_dot(mfu, c->vec + (size_t)row * 32, 32) + c->bias[row]);
        sc[j] = s + w[2] * c->lpop[row];
    }
    *got = sp_topk_select_finite(top, k, rows, sc, nv);
}

/* Scores the candidate rows of seeds[0..nseeds) only: the same blend,
 * term by term, as score_all (up to float rounding). With a model, rows
 * that are not model items are skipped, as score_all never sees them.
 * Cloned for AVX (picked at load time when the CPU has it): the same
 * operations, twice as wide. */
__attribute__((target_clones("avx", "default"))) static void
score_cands(struct recommend *r, const float *u, int have_seq, const float *mfu, int use_mf,
            const float w[3], const int32_t *seeds, size_t nseeds, struct sp_scored *top,
            size_t *got, size_t k) {
    sp_personal *c = r->ctx;
    if (c->n_cands > r->candcap) {
        r->candcap = c->n_cands;
        r->cands = sp_xrealloc(r->cands, r->candcap * sizeof *r->cands);
        r->cand_mi = sp_xrealloc(r->cand_mi, r->candcap * sizeof *r->cand_mi);
        r->cand_score = sp_xrealloc(r->cand_score, r->candcap * sizeof *r->cand_score);
    }
    if (c->dim == 32 && c->model && have_seq && use_mf) {
        sp_cands_keep keep = {r->banned, r->nbanned, c->mf2model};
        size_t nv = sp_cands_collect_kept(c->cands, seeds, nseeds, &keep, r->cands, r->cand_mi,
                                          c->n_cands);
        score_rows32(r, u, mfu, w, nv, top, got, k);
        return;
    }
    size_t n = sp_cands_collect(c->cands, seeds, nseeds, r->cands, c->n_cands);
    if (c->dim == 32)
        score_rows(r, u, have_seq, mfu, use_mf, w, n, 32, top, got, k);
    else
        score_rows(r, u, have_seq, mfu, use_mf, w, n, c->dim, top, got, k);
}

/* Ranks for one user and fills top[0..ret), best first. */
static size_t rank(struct recommend *r, sp_obj *rs, const float *h, const float *mfu, int have_mfu,
                   const char *bought, int32_t viewed_row, const int32_t *seeds, size_t nseeds,
                   struct sp_scored *top) {
    sp_personal *c = r->ctx;
    const sp_model *m = c->model;
    float u[SP_PERSONAL_MAX_DIM];
    int have_seq = m && c->blend[0] != 0 && seq_user(r, rs, h, mfu, have_mfu, u);
    /* scaled by the most popular item, but never by fewer than POP_FLOOR
     * events: a prior that has seen three events should not decide */
    float lp = 1.0f / log1pf(r->maxpop > POP_FLOOR ? r->maxpop : POP_FLOOR);
    int use_mf = have_mfu && c->blend[1] != 0;
    float w[3] = {have_seq ? c->blend[0] : 0, c->blend[1], c->blend[2] * lp};
    ban_rows(r, bought, viewed_row);
    size_t k = (size_t)r->cfg->recommend_k, got = 0;
    if (c->cands)
        score_cands(r, u, have_seq, mfu, use_mf, w, seeds, nseeds, top, &got, k);
    else
        score_all(r, u, have_seq, mfu, use_mf, w, top, &got, k);
    for (size_t i = 0; i < r->nbanned; i++) r->ban[r->banned[i]] = 0;
    return got;
}

/* ---------------------------------------------------------------- rec:<user> JSON */

static void text_reserve(struct recommend *r, size_t more) {
    if (r->ntext + more <= r->captext) return;
    size_t n = r->captext ? r->captext : 16384;
    while (n < r->ntext + more) n *= 2;
    r->text = sp_xrealloc(r->text, n);
    r->captext = n;
}

/* The JSON writers below write at a cursor into room the caller reserved
 * (text_reserve) and return the cursor past what they wrote: one
 * reservation a record part instead of one a token. */

/* Nonzero for the bytes a JSON string escapes. */
static const unsigned char json_esc[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    ['"'] = 1, ['\\'] = 1,
};

/* Whether the n bytes of s have one that a JSON string escapes. A scan
 * without branches: ids are short and almost never have one. */
static int json_escapes(const char *s, size_t n) {
    unsigned char any = 0;
    for (size_t i = 0; i < n; i++) any |= json_esc[(unsigned char)s[i]];
    return any;
}

/* A JSON string of s (n bytes): quotes, backslashes and control characters
 * escaped, as cJSON did. esc is json_escapes(s, n), which the caller may
 * know already. Needs 6 n + 2 bytes at worst. */
static char *json_str(char *o, const char *s, size_t n, int esc) {
    static const char hex[] = "0123456789abcdef";
    *o++ = '"';
    if (!esc) {
        sp_copy_short(o, s, n);
        o += n;
    } else {
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)s[i];
            if (!json_esc[ch]) {
                *o++ = (char)ch;
            } else if (ch == '"' || ch == '\\') {
                *o++ = '\\';
                *o++ = (char)ch;
            } else {
                memcpy(o, "\\u00", 4);
                o[4] = hex[ch >> 4];
                o[5] = hex[ch & 15];
                o += 6;
            }
        }
    }
    *o++ = '"';
    return o;
}

/* Decimal v: 20 bytes at most. One digit (a score's integer part, as a
 * rule) is one store, not a copy of a variable length; longer numbers (a
 * list's ts_ms) go two digits a division. */
static char *json_u64(char *o, uint64_t u) {
    if (u < 10) {
        *o = (char)('0' + u);
        return o + 1;
    }
    char buf[20], *e = buf + sizeof buf, *p = e;
    for (; u >= 100; u /= 100) {
        p -= 2;
        memcpy(p, sp_digit_pairs + 2 * (u % 100), 2);
    }
    if (u >= 10) {
        p -= 2;
        memcpy(p, sp_digit_pairs + 2 * u, 2);
    } else {
        *--p = (char)('0' + u);
    }
    memcpy(o, p, (size_t)(e - p));
    return o + (e - p);
}

static char *json_i64(char *o, int64_t v) {
    if (v < 0) *o++ = '-';
    return json_u64(o, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
}

/* A score cut to 4 decimals (what the JSON carried before: trailing zeros
 * dropped), without printf: the four decimals as two pairs, then the
 * zeros at the end taken back. JSON_SCORE_MAX bytes at most. */
#define JSON_SCORE_MAX 40
static char *json_score(char *o, float score) {
    double v = (double)score;
    if (!(fabs(v) < 1e12)) { /* out of the fixed-point range (never, with d=32 dots) */
        char buf[JSON_SCORE_MAX];
        int n = snprintf(buf, sizeof buf, "%.4g", isfinite(v) ? v : 0.0);
        memcpy(o, buf, (size_t)n);
        return o + n;
    }
    long long q = (long long)(v * 1e4); /* truncation toward zero, as before */
    if (q < 0) {
        *o++ = '-';
        q = -q;
    }
    o = json_u64(o, (uint64_t)(q / 10000));
    unsigned frac = (unsigned)(q % 10000);
    if (!frac) return o;
    o[0] = '.';
    memcpy(o + 1, sp_digit_pairs + 2 * (frac / 100), 2);
    memcpy(o + 3, sp_digit_pairs + 2 * (frac % 100), 2);
    size_t digits = 4;
    while (o[digits] == '0') digits--; /* stops at a digit: frac is not 0 */
    return o + digits + 1;
}

char *sp_recommend_json_score(char *out, float score) { return json_score(out, score); }

#define JSON_LIT(o, s) (memcpy((o), (s), sizeof(s) - 1), (o) + sizeof(s) - 1)

/* Grows pend by doubling. */
static void pend_grow(struct recommend *r) {
    r->cappend = r->cappend ? r->cappend * 2 : 64;
    r->pend = sp_xrealloc(r->pend, r->cappend * sizeof *r->pend);
}

/* rec:<user_id> and its JSON, for rec_flush; esc[i]: items[i]'s id has
 * bytes to escape. rec_id is 'r' and hex digits: nothing to escape. The
 * room for the whole record is reserved at once (its items' ids at worst
 * escaped), not an item at a time. */
static void pend_json(struct recommend *r, const sp_event *ev, const char *rec_id,
                      const sp_rec_item *items, const unsigned char *esc, size_t n) {
    if (r->npend == r->cappend) pend_grow(r);
    struct pend *p = &r->pend[r->npend++];
    size_t ul = strlen(ev->user_id), rl = strlen(rec_id), el = strlen(ev->event_id);
    /* the key, the three strings escaped, ts_ms and 80 bytes of names; an
     * item's id escaped, its score and 32 bytes of names and punctuation */
    size_t room = 4 + ul + 1 + 6 * (rl + el + r->label_len) + 6 + 20 + 128 + 3;
    for (size_t i = 0; i < n; i++) room += 6 * items[i].len + 2 + JSON_SCORE_MAX + 32;
    text_reserve(r, room);
    p->key = r->ntext;
    p->keylen = 4 + ul;
    char *o = r->text + r->ntext;
    o = JSON_LIT(o, "rec:");
    memcpy(o, ev->user_id, ul + 1); /* with its NUL: the key ends here */
    o += ul + 1;
    o = JSON_LIT(o, "{\"rec_id\":");
    o = json_str(o, rec_id, rl, 0);
    o = JSON_LIT(o, ",\"trigger_event_id\":");
    o = json_str(o, ev->event_id, el, json_escapes(ev->event_id, el));
    o = JSON_LIT(o, ",\"ts_ms\":");
    o = json_i64(o, ev->ts_ms);
    o = JSON_LIT(o, ",\"model\":");
    o = json_str(o, r->label, r->label_len, r->label_esc);
    o = JSON_LIT(o, ",\"items\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) *o++ = ',';
        o = JSON_LIT(o, "{\"item_id\":");
        o = json_str(o, items[i].id, items[i].len, esc[i]);
        o = JSON_LIT(o, ",\"score\":");
        o = json_score(o, items[i].score);
        *o++ = '}';
    }
    memcpy(o, "]}", 3); /* and the NUL */
    r->ntext = (size_t)(o + 3 - r->text);
    p->jsonlen = r->ntext - 1 - (p->key + p->keylen + 1);
}

/* ---------------------------------------------------------------- protobuf */

static size_t str_bound(const char *s) { return s ? strlen(s) + 11 : 0; }

/* The fields other than items: two strings, a varint and a fixed64. */
static size_t head_bound(const Shopstream__V1__Recommendation *rec) {
    return str_bound(rec->rec_id) + str_bound(rec->user_id) + str_bound(rec->model) +
           str_bound(rec->trigger_event_id) + 11 + 9;
}

/* An item of il id bytes: its tag and length, the id's, and the score. */
#define ITEM_BOUND(il) (11 + (il) + 11 + 5)

size_t sp_recommend_pack_bound(const Shopstream__V1__Recommendation *rec) {
    size_t n = head_bound(rec);
    for (size_t i = 0; i < rec->n_items; i++) {
        const char *id = rec->items[i]->item_id;
        n += ITEM_BOUND(id ? strlen(id) : 0);
    }
    return n;
}

size_t sp_recommend_pack_items_bound(const Shopstream__V1__Recommendation *rec,
                                     const sp_rec_item *items, size_t n) {
    size_t b = head_bound(rec);
    for (size_t i = 0; i < n; i++) b += ITEM_BOUND(items[i].len);
    return b;
}

static uint8_t *put_varint(uint8_t *o, uint64_t v) {
    while (v >= 0x80) {
        *o++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *o++ = (uint8_t)v;
    return o;
}

/* A string field of n bytes; proto3 leaves "" out, as protobuf-c does. */
static uint8_t *put_pb_bytes(uint8_t *o, uint8_t tag, const char *s, size_t n) {
    if (!n) return o;
    *o++ = tag;
    o = put_varint(o, n);
    memcpy(o, s, n);
    return o + n;
}

/* The same for a NUL-terminated s, NULL being "". */
static uint8_t *put_pb_str(uint8_t *o, uint8_t tag, const char *s) {
    return s ? put_pb_bytes(o, tag, s, strlen(s)) : o;
}

static size_t varint_len(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* One ScoredItem (il bytes of id) as field 3 of the Recommendation. An id
 * of 1 to ITEM_SHORT bytes (every id, as a rule) has one-byte lengths, the
 * item's and the id's: four bytes stored, no varint loops. */
#define ITEM_SHORT 120 /* the item's length, 2 + il + 5, stays below 128 */
static uint8_t *put_pb_item(uint8_t *o, const char *id, size_t il, float score) {
    size_t sl = score != 0 ? 5 : 0;
    if (il - 1 < ITEM_SHORT) { /* il in [1, ITEM_SHORT] */
        o[0] = 0x1a; /* field 3, length-delimited */
        o[1] = (uint8_t)(2 + il + sl);
        o[2] = 0x0a; /* field 1 of the item, length-delimited */
        o[3] = (uint8_t)il;
        sp_copy_short(o + 4, id, il);
        o += 4 + il;
    } else {
        *o++ = 0x1a;
        o = put_varint(o, (il ? 1 + varint_len(il) + il : 0) + sl);
        o = put_pb_bytes(o, 0x0a, id, il);
    }
    if (sl) {
        *o++ = 0x15; /* field 2, fixed32 */
        memcpy(o, &score, 4); /* little-endian targets only, like the hex codec */
        o += 4;
    }
    return o;
}

/* The fields after the items, in field order. */
static uint8_t *put_pb_tail(uint8_t *o, const Shopstream__V1__Recommendation *rec) {
    o = put_pb_str(o, 0x22, rec->model);
    o = put_pb_str(o, 0x2a, rec->trigger_event_id);
    if (rec->ts_ms) {
        *o++ = 0x30; /* field 6, varint: an int64 as its two's complement */
        o = put_varint(o, (uint64_t)rec->ts_ms);
    }
    if (rec->latency_ms != 0) {
        *o++ = 0x39; /* field 7, fixed64 */
        memcpy(o, &rec->latency_ms, 8);
        o += 8;
    }
    return o;
}

size_t sp_recommend_pack(const Shopstream__V1__Recommendation *rec, uint8_t *out) {
    uint8_t *o = put_pb_str(out, 0x0a, rec->rec_id);
    o = put_pb_str(o, 0x12, rec->user_id);
    for (size_t i = 0; i < rec->n_items; i++) {
        const Shopstream__V1__ScoredItem *it = rec->items[i];
        o = put_pb_item(o, it->item_id, it->item_id ? strlen(it->item_id) : 0, it->score);
    }
    return (size_t)(put_pb_tail(o, rec) - out);
}

size_t sp_recommend_pack_items(const Shopstream__V1__Recommendation *rec,
                               const sp_rec_item *items, size_t n, uint8_t *out) {
    uint8_t *o = put_pb_str(out, 0x0a, rec->rec_id);
    o = put_pb_str(o, 0x12, rec->user_id);
    for (size_t i = 0; i < n; i++) o = put_pb_item(o, items[i].id, items[i].len, items[i].score);
    return (size_t)(put_pb_tail(o, rec) - out);
}

#define ID_ESC 0x80000000u /* in idinfo: the id has bytes JSON escapes */

/* top[0..n) as items for the two encoders, and in esc whether JSON escapes
 * each id. An id's length and escape flag are found once per row and kept
 * in r->idinfo (a row's id never changes: the table only grows; ids are
 * Redis strings, below 2^31 bytes), not a strlen per encoder and a scan
 * per list. */
static void list_items(struct recommend *r, const struct sp_scored *top, size_t n,
                       sp_rec_item *items, unsigned char *esc) {
    sp_personal *c = r->ctx;
    size_t rows = sp_vocab_size(c->items);
    if (rows > r->idcap) { /* doubled: the table grows an item at a time */
        size_t cap = rows > 2 * r->idcap ? rows : 2 * r->idcap;
        r->idinfo = sp_xrealloc(r->idinfo, cap * sizeof *r->idinfo);
        memset(r->idinfo + r->idcap, 0, (cap - r->idcap) * sizeof *r->idinfo);
        r->idcap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        const char *id = sp_vocab_id(c->items, top[i].item);
        uint32_t info = r->idinfo[top[i].item];
        if (!info) {
            size_t len = strlen(id);
            info = (uint32_t)(len + 1) | (json_escapes(id, len) ? ID_ESC : 0);
            r->idinfo[top[i].item] = info;
        }
        items[i] = (sp_rec_item){id, (info & ~ID_ESC) - 1, top[i].score};
        esc[i] = (info & ID_ESC) != 0;
    }
}

#define HEX_ROW(h) \
    h "0" h "1" h "2" h "3" h "4" h "5" h "6" h "7" h "8" h "9" h "a" h "b" h "c" h "d" h "e" h "f"
/* "00" to "ff": a rec_id's bytes. */
static const char hex_pairs[513] = HEX_ROW("0") HEX_ROW("1") HEX_ROW("2") HEX_ROW("3") HEX_ROW("4")
    HEX_ROW("5") HEX_ROW("6") HEX_ROW("7") HEX_ROW("8") HEX_ROW("9") HEX_ROW("a") HEX_ROW("b")
    HEX_ROW("c") HEX_ROW("d") HEX_ROW("e") HEX_ROW("f");

static void emit(struct recommend *r, const sp_op_event *e, const struct sp_scored *top, size_t n,
                 double t0) {
    sp_personal *c = r->ctx;
    const sp_event *ev = e->ev;
    char rec_id[40];
    /* hash of "user_id/event_id", as before, in hex a byte at a time */
    uint64_t h = sp_personal_hash("/", sp_personal_hash(ev->user_id, 0));
    h = sp_personal_hash(ev->event_id, h);
    rec_id[0] = 'r';
    for (int i = 0; i < 8; i++)
        memcpy(rec_id + 1 + 2 * i, hex_pairs + 2 * ((h >> (56 - 8 * i)) & 255), 2);
    rec_id[17] = '\0';
    double start = e->arrival_us > 0 ? e->arrival_us : t0;
    double latency_ms = (sp_personal_now_us() - start) / 1000.0;

    sp_rec_item items[K_MAX];
    unsigned char esc[K_MAX];
    list_items(r, top, n, items, esc);
    Shopstream__V1__Recommendation rec = SHOPSTREAM__V1__RECOMMENDATION__INIT;
    rec.rec_id = rec_id;
    rec.user_id = ev->user_id;
    rec.model = (char *)r->label;
    rec.trigger_event_id = ev->event_id;
    rec.ts_ms = ev->ts_ms;
    rec.latency_ms = latency_ms;
    if (c->sink) {
        size_t bound = sp_recommend_pack_items_bound(&rec, items, n);
        if (bound > r->pcap) {
            r->pcap = bound * 2;
            r->pbuf = sp_xrealloc(r->pbuf, r->pcap);
        }
        size_t len = sp_recommend_pack_items(&rec, items, n, r->pbuf);
        sp_sink_produce(c->sink, r->cfg->recommend_topic, ev->user_id, strlen(ev->user_id),
                        r->pbuf, len, NULL, 0);
    }
    if (c->metrics) {
        c->metrics->recommendations++;
        sp_hist_add(&c->metrics->rec_latency, latency_ms * 1000.0);
    }
    sp_kpi_add_impressions(e->partition, ev->ts_ms, 1);
    pend_json(r, ev, rec_id, items, esc, n);
}

/* Candidate mode: the user's recent items (newest first) as rows into
 * seeds, the move from the last one to `row` counted as a co-visit, and
 * the list "seen" updated with `item` first. Returns the number of seeds. */
static size_t update_seeds(struct recommend *r, sp_obj *rs, const char *item, int32_t row,
                           int32_t *seeds) {
    sp_personal *c = r->ctx;
    size_t oldlen;
    const char *old = sp_obj_get_strn_f(rs, &r->f_seen, &oldlen);
    const char *w[SEEDS];
    size_t wl[SEEDS], nw = 0, il = strlen(item);
    const char *end = old ? old + oldlen : NULL;
    for (const char *s = old; s && *s && nw < SEEDS;) {
        const char *sp = memchr(s, ' ', (size_t)(end - s));
        size_t len = sp ? (size_t)(sp - s) : (size_t)(end - s);
        w[nw] = s;
        wl[nw++] = len;
        s += len;
        while (*s == ' ') s++;
    }
    size_t n = 0;
    seeds[n++] = row;
    if (nw && !(wl[0] == il && !memcmp(w[0], item, il))) {
        int32_t prev = sp_vocab_find(c->items, w[0], wl[0]);
        if (prev >= 0) sp_cands_covisit(c->cands, prev, row);
    }
    if (strchr(item, ' ')) return n;
    char out[SEEDS * (SP_EVENT_MAX_ID + 1) + 1];
    size_t o = 0;
    memcpy(out, item, il);
    o = il;
    for (size_t i = 0; i < nw && n < SEEDS; i++) {
        if ((wl[i] == il && !memcmp(w[i], item, il)) || wl[i] > SP_EVENT_MAX_ID) continue;
        int32_t s = sp_vocab_find(c->items, w[i], wl[i]);
        if (s >= 0) seeds[n++] = s;
        out[o++] = ' ';
        memcpy(out + o, w[i], wl[i]);
        o += wl[i];
    }
    out[o] = '\0';
    if (!old || oldlen != o || memcmp(old, out, o)) sp_obj_set_str_f(rs, &r->f_seen, out, o);
    return n;
}

static int rec_process(void *priv, const sp_op_event *e) {
    struct recommend *r = priv;
    sp_personal *c = r->ctx;
    const sp_event *ev = e->ev;
    double t0 = sp_personal_now_us();
    model_refresh(r);
    char key[256];
    user_key(key, sizeof key, "rs:", ev->user_id);
    sp_obj *rs, *mo;
    int rc = sp_op_get(&r->rs, r->store, e, key, &rs);
    if (rc != SP_OK) return rc;
    if (ev->body_case == SHOPSTREAM__V1__EVENT__BODY_ORDER && ev->order) {
        for (size_t i = 0; i < ev->order->n_items; i++)
            list_append(rs, "bought", ev->order->items[i]->item_id, BOUGHT_MAX, 1);
        return SP_OK;
    }
    if (ev->body_case != SHOPSTREAM__V1__EVENT__BODY_CLICK || !ev->click || !ev->click->item_id ||
        !*ev->click->item_id)
        return SP_OK;
    const char *item = ev->click->item_id;
    int32_t row = sp_personal_item(c, item, ev->click->category);
    if (e->kind != SP_KIND_REMOVE_FROM_CART) {
        sp_personal_seen(c, row);
        if (c->pop[row] > r->maxpop) r->maxpop = c->pop[row];
    }
    const sp_model *m = c->model;
    int32_t idx = m ? c->mf2model[row] : -1;
    float h[SP_PERSONAL_MAX_DIM];
    int have_h = 0;
    if (m && idx >= 0 && e->kind <= SP_KIND_ADD_TO_CART) {
        if (sp_model_kind_of(m) == SP_MODEL_GRU) {
            size_t d = sp_model_user_dim(m);
            if (decode_field(rs, &r->f_h, h, d) != d) memset(h, 0, d * 4);
            have_h = 1;
            if (sp_gru_step_with(m, r->gx, h, idx) == SP_OK) {
                char hex[8 * SP_PERSONAL_MAX_DIM + 1];
                sp_personal_hex_encode(h, d, hex);
                sp_obj_set_str_f(rs, &r->f_h, hex, 8 * d);
            }
        } else if (sp_model_kind_of(m) == SP_MODEL_SASREC) {
            list_append(rs, "ring", item, (int)sp_model_max_len(m), 0);
        }
    }
    int32_t seeds[SEEDS] = {row};
    size_t nseeds = 1;
    if (c->cands && e->kind <= SP_KIND_ADD_TO_CART) nseeds = update_seeds(r, rs, item, row, seeds);
    if (!c->rec_on[e->kind]) return SP_OK;
    int64_t last = sp_obj_get_int_f(rs, &r->f_last, INT64_MIN);
    if (last != INT64_MIN && ev->ts_ms - last < r->cfg->recommend_rate_limit_ms) return SP_OK;
    sp_obj_set_int_f(rs, &r->f_last, ev->ts_ms);

    user_key(key, sizeof key, "mfu:", ev->user_id);
    if ((rc = sp_op_get(&r->mfu, r->store, e, key, &mo)) != SP_OK) return rc;
    float mfu[SP_PERSONAL_MAX_DIM];
    int have_mfu = decode_field(mo, &r->f_v, mfu, c->dim) == c->dim;
    struct sp_scored top[K_MAX];
    size_t n = rank(r, rs, have_h ? h : NULL, mfu, have_mfu, sp_obj_get_str_f(rs, &r->f_bought),
                    row, seeds, nseeds, top);
    emit(r, e, top, n, t0);
    return SP_OK;
}

/* A batch's rec:<user> writes, handed to the store's committer: the text
 * and pend arrays rec_flush gave up, and the TTL. */
struct rec_writes {
    char *text;
    struct pend *pend;
    size_t n;
    char ttl[24];
    size_t tl;
};

#define SET_ARGC 5 /* SET key json EX ttl */

/* On the committer's connection, just before the batch's commits: one
 * pipeline of SETs, retried as a whole (each SET is idempotent). */
static int rec_writes_run(sp_store *conn, void *ctx) {
    struct rec_writes *w = ctx;
    int *argc = sp_xmalloc(w->n * sizeof *argc);
    const char **argv = sp_xmalloc(SET_ARGC * w->n * sizeof *argv), ***argvs =
        sp_xmalloc(w->n * sizeof *argvs);
    size_t *len = sp_xmalloc(SET_ARGC * w->n * sizeof *len), **lens =
        sp_xmalloc(w->n * sizeof *lens);
    for (size_t i = 0; i < w->n; i++) {
        const struct pend *p = &w->pend[i];
        const char **a = argv + SET_ARGC * i;
        size_t *l = len + SET_ARGC * i;
        a[0] = "SET";
        l[0] = 3;
        a[1] = w->text + p->key;
        l[1] = p->keylen;
        a[2] = w->text + p->key + p->keylen + 1;
        l[2] = p->jsonlen;
        a[3] = "EX";
        l[3] = 2;
        a[4] = w->ttl;
        l[4] = w->tl;
        argc[i] = SET_ARGC;
        argvs[i] = a;
        lens[i] = l;
    }
    int rc = sp_store_side_bin(conn, w->n, argc, (const char *const *const *)argvs,
                               (const size_t *const *)lens, NULL);
    free(argc);
    free(argv);
    free(argvs);
    free(len);
    free(lens);
    return rc;
}

static void rec_writes_free(void *ctx) {
    struct rec_writes *w = ctx;
    free(w->text);
    free(w->pend);
    free(w);
}

/* The batch's rec:<user> writes go to Redis from the store's committer
 * thread with the batch's commit (sp_store_tx_job), not here: the consumer
 * loop does not wait a round trip to Redis for a cache the web tier reads
 * on a later page. A list is in Redis once its batch commits, after the
 * batch's Recommendations are acknowledged by Kafka. The text and pend
 * arrays go with the job; the next batch starts new ones of the same size. */
static int rec_flush(void *priv, int32_t part) {
    (void)part;
    struct recommend *r = priv;
    if (!r->npend) return SP_OK;
    struct rec_writes *w = sp_xmalloc(sizeof *w);
    w->text = r->text;
    w->pend = r->pend;
    w->n = r->npend;
    w->tl = (size_t)snprintf(w->ttl, sizeof w->ttl, "%d", r->cfg->recommend_ttl_s);
    sp_store_tx_job(r->store, rec_writes_run, rec_writes_free, w);
    r->text = sp_xmalloc(r->captext);
    r->pend = sp_xmalloc(r->cappend * sizeof *r->pend);
    r->npend = 0;
    r->ntext = 0;
    return SP_OK;
}

static int rec_reload(void *priv) {
    struct recommend *r = priv;
    int rc = sp_personal_reload(r->ctx);
    model_refresh(r);
    return rc;
}

static void rec_destroy(void *priv) {
    struct recommend *r = priv;
    if (!r) return;
    sp_op_hints_release(&r->rs);
    sp_op_hints_release(&r->mfu);
    free(r->text);
    free(r->pend);
    free(r->pbuf);
    free(r->cands);
    free(r->cand_mi);
    free(r->cand_score);
    free(r->seq);
    free(r->blend);
    free(r->mf);
    free(r->ban);
    free(r->gx);
    free(r->idinfo);
    sp_personal_put(r->ctx);
    free(r);
}

const sp_op sp_op_recommend = {
    .name = "recommend",
    .help = "top-K recommendations on views and clicks: sequence model + online MF + popularity",
    .init = rec_init,
    .prefetch = rec_prefetch,
    .process = rec_process,
    .flush = rec_flush,
    .reload = rec_reload,
    .destroy = rec_destroy,
};
