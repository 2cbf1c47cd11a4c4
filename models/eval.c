/* Evaluation protocols and baselines.
 *
 *  sampled100   the last item of each user against 100 random items the
 *               user never interacted with (SASRec paper), <= max_users
 *  full         the last item against every item, the user's history masked
 *  session      GRU4Rec: each next item of a test session against every item,
 *               unknown items dropped, sessions shorter than 2 dropped
 *  prequential  every event in time order is predicted from the state
 *               before it, then learned from (MF and popularity learn online)
 *
 * Models score in batches: user vectors of up to BATCH queries, then one
 * sgemm against the item table. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/eval.h"
#include "models/scorer.h"
#include "models/seq.h"
#include "stream/error.h"
#include "stream/log.h"

#define BATCH 128
#define KNN_LAST 5  /* history items the kNN baseline looks at */

struct sp_rec {
    enum sp_rec_kind kind;
    size_t n_items;
    /* model */
    sp_model *m; /* a private copy: prequential MF learns into it */
    sp_scorer *sc;
    sp_seq_work *w;
    uint32_t fold_passes;
    struct sp_mf_delta *deltas;
    float *dbuf;
    uint64_t rng;
    /* baselines */
    float *pop;
    size_t *nb_off;
    int32_t *nb_item;
    float *nb_sim;
};

int sp_protocol_parse(const char *s, enum sp_protocol *out) {
    static const char *names[] = {"sampled100", "full", "session", "prequential"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) {
            *out = (enum sp_protocol)i;
            return SP_OK;
        }
    return SP_ERR_BADINPUT;
}

static sp_model *model_copy(const sp_model *m) {
    sp_model *c = sp_xcalloc(1, sizeof *c);
    *c = *m;
    c->params = sp_xmalloc(m->lay.total * sizeof(float));
    memcpy(c->params, m->params, m->lay.total * sizeof(float));
    c->vocab = NULL; /* borrowed ids are not needed for ranking */
    return c;
}

sp_rec *sp_rec_new_model(const sp_model *m, uint32_t fold_passes) {
    sp_rec *r = sp_xcalloc(1, sizeof *r);
    r->kind = SP_REC_MODEL;
    r->m = model_copy(m);
    r->n_items = m->n_items;
    r->sc = sp_scorer_new(r->m, BATCH, NULL, 0);
    if (m->cfg.kind != SP_MODEL_MF) r->w = sp_seq_work_new(r->m, m->cfg.max_len, 0);
    r->fold_passes = fold_passes ? fold_passes : 1;
    size_t nd = sp_mf_n_deltas(m);
    r->deltas = sp_xmalloc(nd * sizeof *r->deltas);
    r->dbuf = sp_xmalloc(nd * m->cfg.dim * sizeof(float));
    for (size_t i = 0; i < nd; i++) r->deltas[i].vec = r->dbuf + i * m->cfg.dim;
    r->rng = sp_rng_seed(7);
    return r;
}

struct pair {
    int32_t a, b;
};

static int cmp_pair(const void *x, const void *y) {
    const struct pair *p = x, *q = y;
    if (p->a != q->a) return p->a < q->a ? -1 : 1;
    return p->b < q->b ? -1 : p->b > q->b;
}

/* Item-kNN (as GRU4Rec's baseline): cosine similarity of items by the
 * number of sequences they share, c_ij / sqrt(c_i c_j), stored as
 * neighbour lists. Each sequence contributes its distinct items (its last
 * 50, to bound the pairs of very long histories). */
static void fit_knn(sp_rec *r, const struct sp_dataset *d, uint32_t holdout) {
    size_t n = r->n_items, np = 0, cap = 1 << 16;
    struct pair *pairs = sp_xmalloc(cap * sizeof *pairs);
    float *cnt = sp_xcalloc(n, sizeof(float));
    int32_t uniq[50];
    for (size_t s = 0; s < d->n_seq; s++) {
        size_t len = d->off[s + 1] - d->off[s];
        len = len > holdout ? len - holdout : 0;
        size_t nu = 0;
        for (size_t i = len; i-- > 0 && nu < 50;) {
            int32_t it = d->item[d->off[s] + i];
            if (it < 0) continue;
            int dup = 0;
            for (size_t k = 0; k < nu; k++) dup |= uniq[k] == it;
            if (!dup) uniq[nu++] = it;
        }
        for (size_t a = 0; a < nu; a++) {
            cnt[uniq[a]] += 1.0f;
            for (size_t b = 0; b < nu; b++) {
                if (a == b) continue;
                if (np == cap) pairs = sp_xrealloc(pairs, (cap *= 2) * sizeof *pairs);
                pairs[np++] = (struct pair){uniq[a], uniq[b]};
            }
        }
    }
    qsort(pairs, np, sizeof *pairs, cmp_pair);
    r->nb_off = sp_xcalloc(n + 1, sizeof *r->nb_off);
    r->nb_item = sp_xmalloc((np ? np : 1) * sizeof *r->nb_item);
    r->nb_sim = sp_xmalloc((np ? np : 1) * sizeof *r->nb_sim);
    size_t m = 0;
    for (size_t i = 0; i < np;) {
        size_t j = i;
        while (j < np && pairs[j].a == pairs[i].a && pairs[j].b == pairs[i].b) j++;
        int32_t a = pairs[i].a, b = pairs[i].b;
        r->nb_item[m] = b;
        r->nb_sim[m] = (float)(j - i) / sqrtf(cnt[a] * cnt[b]);
        r->nb_off[a + 1]++;
        m++;
        i = j;
    }
    for (size_t i = 0; i < n; i++) r->nb_off[i + 1] += r->nb_off[i];
    free(pairs);
    free(cnt);
}

sp_rec *sp_rec_new_baseline(enum sp_rec_kind kind, const struct sp_dataset *fit, size_t n_items,
                            uint32_t holdout) {
    sp_rec *r = sp_xcalloc(1, sizeof *r);
    r->kind = kind;
    r->n_items = n_items;
    r->pop = sp_xcalloc(n_items ? n_items : 1, sizeof(float));
    for (size_t s = 0; s < fit->n_seq; s++) {
        size_t len = fit->off[s + 1] - fit->off[s];
        len = len > holdout ? len - holdout : 0;
        for (size_t i = 0; i < len; i++) {
            int32_t it = fit->item[fit->off[s] + i];
            if (it >= 0 && (size_t)it < n_items) r->pop[it] += 1.0f;
        }
    }
    if (kind == SP_REC_KNN) fit_knn(r, fit, holdout);
    return r;
}

void sp_rec_destroy(sp_rec *r) {
    if (!r) return;
    if (r->m) {
        free(r->m->params);
        free(r->m);
    }
    sp_scorer_destroy(r->sc);
    sp_seq_work_destroy(r->w);
    free(r->deltas);
    free(r->dbuf);
    free(r->pop);
    free(r->nb_off);
    free(r->nb_item);
    free(r->nb_sim);
    free(r);
}

/* User vector of a model after hist[0..n) (unknown items skipped). MF
 * folds the history in with fold_passes passes of the online update, the
 * item factors frozen. */
static void user_vec(sp_rec *r, const int32_t *hist, size_t n, float *u) {
    const sp_model *m = r->m;
    size_t d = m->cfg.dim, L = m->cfg.max_len;
    int32_t known[SP_MODEL_MAX_LEN];
    size_t nk = 0;
    memset(u, 0, d * sizeof(float));
    if (m->cfg.kind == SP_MODEL_MF) {
        for (uint32_t p = 0; p < r->fold_passes; p++)
            for (size_t i = 0; i < n; i++)
                if (hist[i] >= 0) sp_mf_learn(m, u, hist[i], 1.0f, m->cfg.lr, &r->rng, r->deltas);
        return;
    }
    /* the newest L known items, oldest first */
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += hist[i] >= 0;
    size_t skip = total > L ? total - L : 0;
    for (size_t i = 0; i < n; i++) {
        if (hist[i] < 0) continue;
        if (skip) {
            skip--;
            continue;
        }
        known[nk++] = hist[i];
    }
    if (!nk) return;
    if (m->cfg.kind == SP_MODEL_GRU) {
        const float *H = sp_seq_forward(m, m->params, r->w, known, nk, 0, NULL);
        memcpy(u, H + (nk - 1) * d, d * sizeof(float));
    } else {
        sp_scorer_attn_encode(r->sc, known, nk, u);
    }
}

static void baseline_score(sp_rec *r, const int32_t *hist, size_t n, float *scores) {
    float mx = 1.0f;
    for (size_t i = 0; i < r->n_items; i++) mx = r->pop[i] > mx ? r->pop[i] : mx;
    if (r->kind == SP_REC_POP) {
        memcpy(scores, r->pop, r->n_items * sizeof(float));
        return;
    }
    /* kNN; popularity only breaks ties among items with equal similarity */
    for (size_t i = 0; i < r->n_items; i++) scores[i] = 1e-3f * r->pop[i] / mx;
    float wt = 1.0f;
    size_t used = 0;
    for (size_t h = n; h-- > 0 && used < KNN_LAST;) {
        int32_t it = hist[h];
        if (it < 0) continue;
        for (size_t k = r->nb_off[it]; k < r->nb_off[it + 1]; k++)
            scores[r->nb_item[k]] += wt * r->nb_sim[k];
        wt *= 0.5f;
        used++;
    }
}

void sp_rec_score(sp_rec *r, const int32_t *hist, size_t n, float *scores) {
    if (r->kind != SP_REC_MODEL) {
        baseline_score(r, hist, n, scores);
        return;
    }
    float u[SP_MODEL_MAX_DIM];
    user_vec(r, hist, n, u);
    sp_scorer_score_all(r->sc, u, 1, scores);
}

/* One ranking query: history, target, and whether to mask the history. */
struct query {
    const int32_t *hist;
    size_t n;
    int32_t target;
    size_t seq; /* sequence, for the sampled protocol's seen set */
};

struct ctx {
    sp_rec *r;
    const struct sp_dataset *d;
    const struct sp_eval_opts *o;
    struct sp_metrics *mt;
    size_t n_items;
    struct query q[BATCH];
    size_t nq;
    float *users, *scores;
    unsigned char *ban;
    uint64_t rng;
};

static void rank_query(struct ctx *c, const struct query *q, const float *sc) {
    if (c->o->protocol == SP_PROTO_SAMPLED100) {
        /* 100 distinct random items outside the user's whole sequence */
        const struct sp_dataset *d = c->d;
        for (size_t i = d->off[q->seq]; i < d->off[q->seq + 1]; i++)
            if (d->item[i] >= 0) c->ban[d->item[i]] = 1;
        float neg[100];
        size_t nn = 0;
        int32_t picked[100];
        for (size_t tries = 0; nn < 100 && tries < 100000; tries++) {
            int32_t j = (int32_t)sp_rng_below(&c->rng, (uint32_t)c->n_items);
            if (c->ban[j]) continue;
            c->ban[j] = 1;
            picked[nn] = j;
            neg[nn++] = sc[j];
        }
        for (size_t i = 0; i < nn; i++) c->ban[picked[i]] = 0;
        for (size_t i = d->off[q->seq]; i < d->off[q->seq + 1]; i++)
            if (d->item[i] >= 0) c->ban[d->item[i]] = 0;
        sp_metrics_add(c->mt, sp_rank_among(sc[q->target], neg, nn));
        return;
    }
    if (c->o->protocol == SP_PROTO_FULL) {
        for (size_t i = 0; i < q->n; i++)
            if (q->hist[i] >= 0) c->ban[q->hist[i]] = 1;
        sp_metrics_add(c->mt, sp_rank_of(sc, c->n_items, q->target, c->ban));
        for (size_t i = 0; i < q->n; i++)
            if (q->hist[i] >= 0) c->ban[q->hist[i]] = 0;
        return;
    }
    sp_metrics_add(c->mt, sp_rank_of(sc, c->n_items, q->target, NULL));
}

static void flush(struct ctx *c) {
    if (!c->nq) return;
    sp_rec *r = c->r;
    if (r->kind == SP_REC_MODEL) {
        size_t d = r->m->cfg.dim;
        for (size_t i = 0; i < c->nq; i++) user_vec(r, c->q[i].hist, c->q[i].n, c->users + i * d);
        sp_scorer_score_all(r->sc, c->users, c->nq, c->scores);
    } else {
        for (size_t i = 0; i < c->nq; i++)
            baseline_score(r, c->q[i].hist, c->q[i].n, c->scores + i * c->n_items);
    }
    for (size_t i = 0; i < c->nq; i++) rank_query(c, &c->q[i], c->scores + i * c->n_items);
    c->nq = 0;
}

static void add_query(struct ctx *c, const int32_t *hist, size_t n, int32_t target, size_t seq) {
    c->q[c->nq++] = (struct query){hist, n, target, seq};
    if (c->nq == BATCH) flush(c);
}

struct ev_ref {
    int64_t ts;
    uint32_t seq, pos;
};

static int cmp_ev(const void *x, const void *y) {
    const struct ev_ref *a = x, *b = y;
    if (a->ts != b->ts) return a->ts < b->ts ? -1 : 1;
    if (a->seq != b->seq) return a->seq < b->seq ? -1 : 1;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

/* Prequential: events in time order; each one with a known item and a
 * known earlier event of its sequence is predicted first, then learned:
 * MF updates the user vector and the item factors, popularity its counts,
 * GRU its hidden state; attention re-reads the sequence up to the event. */
static void prequential(struct ctx *c) {
    const struct sp_dataset *d = c->d;
    sp_rec *r = c->r;
    struct ev_ref *ev = sp_xmalloc((d->n_events ? d->n_events : 1) * sizeof *ev);
    for (size_t s = 0; s < d->n_seq; s++)
        for (size_t i = d->off[s]; i < d->off[s + 1]; i++)
            ev[i] = (struct ev_ref){d->ts[i], (uint32_t)s, (uint32_t)(i - d->off[s])};
    qsort(ev, d->n_events, sizeof *ev, cmp_ev);
    size_t dim = r->kind == SP_REC_MODEL ? r->m->cfg.dim : 1;
    float *state = sp_xcalloc(d->n_seq * dim + 1, sizeof(float));
    unsigned char *seen = sp_xcalloc(d->n_seq + 1, 1);
    for (size_t e = 0; e < d->n_events; e++) {
        if (c->o->max_events && c->mt->n >= c->o->max_events) break;
        size_t s = ev[e].seq, i = d->off[s] + ev[e].pos;
        int32_t it = d->item[i];
        if (it < 0) continue;
        float *u = state + s * dim;
        if (seen[s]) {
            if (r->kind == SP_REC_MODEL && r->m->cfg.kind != SP_MODEL_SASREC)
                sp_scorer_score_all(r->sc, u, 1, c->scores);
            else
                sp_rec_score(r, d->item + d->off[s], ev[e].pos, c->scores);
            sp_metrics_add(c->mt, sp_rank_of(c->scores, c->n_items, it, NULL));
        }
        seen[s] = 1;
        if (r->kind == SP_REC_MODEL && r->m->cfg.kind == SP_MODEL_MF) {
            sp_model *m = r->m;
            int nw = sp_mf_learn(m, u, it, sp_mf_kind_weight(m, d->kind[i]), m->cfg.lr, &r->rng,
                                 r->deltas);
            for (int k = 0; k < nw; k++) {
                float *q = m->params + m->lay.emb + (size_t)r->deltas[k].item * dim;
                for (size_t j = 0; j < dim; j++) q[j] += r->deltas[k].vec[j];
                m->params[m->lay.bias + r->deltas[k].item] += r->deltas[k].dbias;
            }
        } else if (r->kind == SP_REC_MODEL && r->m->cfg.kind == SP_MODEL_GRU) {
            sp_gru_step(r->m, u, it);
        } else if (r->kind != SP_REC_MODEL) {
            r->pop[it] += 1.0f;
        }
    }
    free(ev);
    free(state);
    free(seen);
}

int sp_evaluate(sp_rec *r, const struct sp_dataset *d, size_t n_items,
                const struct sp_eval_opts *o, struct sp_metrics *out) {
    struct ctx c = {0};
    c.r = r;
    c.d = d;
    c.o = o;
    c.mt = out;
    c.n_items = n_items;
    c.rng = sp_rng_seed(o->seed);
    c.users = sp_xmalloc(BATCH * SP_MODEL_MAX_DIM * sizeof(float));
    c.scores = sp_xmalloc(BATCH * n_items * sizeof(float));
    c.ban = sp_xcalloc(n_items, 1);
    sp_metrics_init(out, o->ks, o->n_k);
    if (o->protocol == SP_PROTO_PREQUENTIAL) {
        prequential(&c);
    } else if (o->protocol == SP_PROTO_SESSION) {
        /* drop unknown items, then every next item of sessions of >= 2 */
        int32_t *buf = sp_xmalloc((d->n_events ? d->n_events : 1) * sizeof *buf);
        size_t nb = 0;
        for (size_t s = 0; s < d->n_seq; s++) {
            size_t start = nb;
            for (size_t i = d->off[s]; i < d->off[s + 1]; i++)
                if (d->item[i] >= 0) buf[nb++] = d->item[i];
            for (size_t t = start + 1; t < nb; t++) add_query(&c, buf + start, t - start, buf[t], s);
            flush(&c); /* queries point into buf, which stays put */
        }
        free(buf);
    } else {
        /* leave-one-out: users whose last item is known and who have history */
        size_t *users = sp_xmalloc((d->n_seq ? d->n_seq : 1) * sizeof *users), nu = 0;
        for (size_t s = 0; s < d->n_seq; s++) {
            size_t len = d->off[s + 1] - d->off[s];
            if (len >= 2 && d->item[d->off[s + 1] - 1] >= 0) users[nu++] = s;
        }
        if (o->protocol == SP_PROTO_SAMPLED100 && o->max_users && nu > o->max_users) {
            uint64_t rr = sp_rng_seed(o->seed ^ 0xabcULL);
            for (size_t i = 0; i < o->max_users; i++) {
                size_t j = i + sp_rng_below(&rr, (uint32_t)(nu - i));
                size_t t = users[i];
                users[i] = users[j];
                users[j] = t;
            }
            nu = o->max_users;
        }
        for (size_t x = 0; x < nu; x++) {
            size_t s = users[x], len = d->off[s + 1] - d->off[s];
            add_query(&c, d->item + d->off[s], len - 1, d->item[d->off[s] + len - 1], s);
        }
        flush(&c);
        free(users);
    }
    free(c.users);
    free(c.scores);
    free(c.ban);
    return SP_OK;
}
