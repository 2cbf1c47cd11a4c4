/* mf: online matrix factorisation, one weighted BPR step per interaction
 * (Rendle et al., UAI 2009), the weight by event kind (mf.weights), against
 * mf.neg negatives sampled from the model's items.
 *
 * The user vector lives in "{p<n>}:mfu:<user_id>" (fields v: hex float32s,
 * see operators/personal.h; n: updates applied), so it is committed with the
 * offsets: exactly-once. The item factors are shared by every instance:
 * each keeps a local copy (operators/personal.c), adds its deltas to it at
 * once, and at each state commit (every batch, or every commit.interval_ms)
 * hands the deltas since the last one to the store's committer thread,
 * which adds them to "mf:items" just before the commit (sp_store_tx_job;
 * see sp_personal_apply). It reloads the table every mf.refresh_ms. A crash
 * between those writes and the commit applies
 * the deltas again on replay: item factors are at-least-once. Because the
 * user's step reads those item factors, a user vector is exactly-once only
 * given the item table it saw; with mf.item_lr=0 (a frozen table) it is a
 * pure function of the user's events, which is what the kill -9 test
 * checks.
 *
 * Negatives and new users' starting vectors are seeded by the event id and
 * the user id, never by a clock or a counter, so a replayed batch draws the
 * same numbers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/model.h"
#include "operators/operator.h"
#include "operators/personal.h"
#include "stream/error.h"

#define MF_L2 0.001f

struct mf {
    sp_store *store;
    sp_personal *ctx;
    sp_op_hints users;    /* the event's mfu:<user> entry, prefetch to process */
    sp_fname v, n;        /* the hash's fields, named once (sp_fname) */
};

static int mf_init(void **priv, const sp_op_env *env, char *err, size_t errlen) {
    sp_personal *ctx = sp_personal_get(env, err, errlen);
    if (!ctx) return SP_ERR_FATAL;
    struct mf *m = sp_xcalloc(1, sizeof *m);
    m->store = env->store;
    m->ctx = ctx;
    m->v = sp_fname_of("v");
    m->n = sp_fname_of("n");
    ctx->has_mf = 1;
    *priv = m;
    return SP_OK;
}

static void mfu_key(char *buf, size_t len, const sp_op_event *e) {
    size_t u = strlen(e->ev->user_id);
    if (u + 5 > len) u = len - 5;
    memcpy(buf, "mfu:", 4);
    memcpy(buf + 4, e->ev->user_id, u);
    buf[4 + u] = '\0';
}

static void mf_prefetch(void *priv, const sp_op_event *e) {
    struct mf *m = priv;
    char key[256];
    mfu_key(key, sizeof key, e);
    sp_op_want(&m->users, m->store, e, key);
}

/* A random row to contrast with: one of the model's items when a model is
 * loaded (a fixed set, so a replay draws the same), else any row. nm is
 * the model's item count (0 without a model), looked up once per event. */
static int32_t negative(sp_personal *c, uint32_t nm, uint64_t *rng) {
    if (nm > 1) return c->model2mf[sp_rng_below(rng, nm)];
    return (int32_t)sp_rng_below(rng, (uint32_t)sp_vocab_size(c->items));
}

typedef float v4sf __attribute__((vector_size(16)));
static inline v4sf ld4(const float *p) {
    v4sf v;
    memcpy(&v, p, 16);
    return v;
}
static inline void st4(float *p, v4sf v) { memcpy(p, &v, 16); }

/* One weighted BPR step of user u on row i. The element-wise loops go four
 * floats a step (SSE): the same operations on each element, so the same
 * numbers. The score x is sp_personal_bpr_score's.
 * The item rows change in the loop that adds up the user's gradient, each
 * element read once: du from the rows before the step, then row i by
 * s * (g * u + MF_L2 * qi) and row j by s * (MF_L2 * qj - g * u) (the
 * same bits as s * (-g * u + MF_L2 * qj): negation and the order of an
 * addition change nothing), as deltas for the commit too. */
static void learn(sp_personal *c, float *u, int32_t i, float w, uint64_t *rng) {
    size_t d = c->dim, d4 = d & ~(size_t)3, k;
    uint32_t nm = c->model ? (uint32_t)sp_model_n_items(c->model) : 0;
    float du[SP_PERSONAL_MAX_DIM];
    memset(du, 0, d * sizeof *du);
    for (int s = 0; s < c->mf_neg; s++) {
        int32_t j = negative(c, nm, rng);
        if (j == i) continue;
        float *qi = c->vec + (size_t)i * d, *qj = c->vec + (size_t)j * d;
        double x = sp_personal_bpr_score(u, qi, qj, c->bias[i] - c->bias[j], d);
        float g = (float)(-w / (1.0 + exp(x)));
        if (c->mf_item_lr <= 0) { /* a frozen table: the user's gradient only */
            for (k = 0; k < d4; k += 4)
                st4(du + k, ld4(du + k) + (g * (ld4(qi + k) - ld4(qj + k)) + MF_L2 * ld4(u + k)));
            for (; k < d; k++) du[k] += g * (qi[k] - qj[k]) + MF_L2 * u[k];
            continue;
        }
        float lr = c->mf_item_lr, sl = -lr;
        float dbi = -lr * (g + MF_L2 * c->bias[i]), dbj = -lr * (-g + MF_L2 * c->bias[j]);
        float *dvi = c->dvec + (size_t)i * d, *dvj = c->dvec + (size_t)j * d;
        for (k = 0; k < d4; k += 4) {
            v4sf uk = ld4(u + k), a = ld4(qi + k), b = ld4(qj + k), gu = g * uk;
            st4(du + k, ld4(du + k) + (g * (a - b) + MF_L2 * uk));
            v4sf xi = sl * (gu + MF_L2 * a), xj = sl * (MF_L2 * b - gu);
            st4(dvi + k, ld4(dvi + k) + xi);
            st4(qi + k, a + xi);
            st4(dvj + k, ld4(dvj + k) + xj);
            st4(qj + k, b + xj);
        }
        for (; k < d; k++) {
            float a = qi[k], b = qj[k], gu = g * u[k];
            du[k] += g * (a - b) + MF_L2 * u[k];
            float xi = sl * (gu + MF_L2 * a), xj = sl * (MF_L2 * b - gu);
            dvi[k] += xi;
            qi[k] = a + xi;
            dvj[k] += xj;
            qj[k] = b + xj;
        }
        sp_personal_touch(c, i, dbi);
        sp_personal_touch(c, j, dbj);
    }
    for (k = 0; k < d4; k += 4) st4(u + k, ld4(u + k) - c->mf_lr * ld4(du + k));
    for (; k < d; k++) u[k] -= c->mf_lr * du[k];
}

static int mf_process(void *priv, const sp_op_event *e) {
    struct mf *m = priv;
    sp_personal *c = m->ctx;
    const sp_event *ev = e->ev;
    if (e->kind >= SP_KIND__COUNT || c->mf_weights[e->kind] <= 0) return SP_OK;
    const char *items[SP_EVENT_MAX_ITEMS], *cats[SP_EVENT_MAX_ITEMS];
    size_t n = 0;
    if (ev->body_case == SHOPSTREAM__V1__EVENT__BODY_CLICK && ev->click && ev->click->item_id &&
        *ev->click->item_id) {
        items[n] = ev->click->item_id;
        cats[n++] = ev->click->category;
    } else if (ev->body_case == SHOPSTREAM__V1__EVENT__BODY_ORDER && ev->order) {
        for (size_t i = 0; i < ev->order->n_items && n < SP_EVENT_MAX_ITEMS; i++)
            if (ev->order->items[i]->item_id && *ev->order->items[i]->item_id) {
                items[n] = ev->order->items[i]->item_id;
                cats[n++] = ev->order->items[i]->category;
            }
    } else if (ev->body_case == SHOPSTREAM__V1__EVENT__BODY_REVIEW && ev->review &&
               ev->review->item_id && *ev->review->item_id) {
        items[n] = ev->review->item_id;
        cats[n++] = NULL;
    }
    if (!n) return SP_OK;

    char key[256];
    mfu_key(key, sizeof key, e);
    sp_obj *o;
    int rc = sp_op_get(&m->users, m->store, e, key, &o);
    if (rc != SP_OK) return rc;
    size_t d = c->dim;
    float u[SP_PERSONAL_MAX_DIM];
    size_t vlen;
    const char *vtext = sp_obj_get_strn_f(o, &m->v, &vlen);
    uint64_t hu = sp_personal_hash(ev->user_id, 0); /* seeds both draws below */
    if (sp_personal_hex_decoden(vtext, vlen, u, d) != d) {
        /* new user, or a vector of another dimension (a reloaded model) */
        uint64_t rng = sp_rng_seed(hu);
        for (size_t k = 0; k < d; k++) u[k] = 0.01f * sp_rng_normal(&rng);
    }
    float w = c->mf_weights[e->kind];
    if (e->kind == SP_KIND_REVIEW) w *= (float)ev->review->rating / 5.0f;
    uint64_t rng = sp_rng_seed(sp_personal_hash(ev->event_id, hu));
    for (size_t i = 0; i < n; i++) learn(c, u, sp_personal_item(c, items[i], cats[i]), w, &rng);
    char hex[8 * SP_PERSONAL_MAX_DIM + 1];
    sp_personal_hex_encode(u, d, hex); /* 8 * d characters: no strlen */
    sp_obj_set_str_f(o, &m->v, hex, 8 * d);
    sp_obj_incr_f(o, &m->n, 1);
    return SP_OK;
}

static int mf_before_commit(void *priv) {
    struct mf *m = priv;
    return sp_personal_apply(m->ctx);
}

static void mf_destroy(void *priv) {
    struct mf *m = priv;
    if (!m) return;
    m->ctx->has_mf = 0;
    sp_personal_put(m->ctx);
    sp_op_hints_release(&m->users);
    free(m);
}

const sp_op sp_op_mf = {
    .name = "mf",
    .help = "online matrix factorisation: user vectors per partition, shared item factors",
    .init = mf_init,
    .prefetch = mf_prefetch,
    .process = mf_process,
    .before_commit = mf_before_commit,
    .destroy = mf_destroy,
};
