/* Candidate generation for the recommend operator; see operators/candidates.h. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/model.h"
#include "operators/candidates.h"
#include "stream/error.h"

#define BUILD_BLOCK 128 /* one-item sessions scored per sgemm at build time */

struct slot {
    int32_t row;  /* -1: free */
    float count;
};

struct sp_cands {
    sp_cands_conf conf;
    size_t cap;           /* rows reserved */
    int32_t *next;        /* cap x conf.next rows, best first, -1 padded */
    uint32_t *nnext;      /* cap: the rows before the first -1 of each next list */
    struct slot *cv;      /* cap x conf.covisit Space-Saving slots */
    uint32_t *ncv;        /* cap: the slots in use (a prefix: slots are never freed) */
    int32_t *pop;         /* the conf.popular most seen rows, most seen first */
    float *popc;          /* their counts */
    size_t npop;
    int32_t *popos;       /* cap: index in pop, or -1 */
    int32_t *prior;       /* highest-bias model rows, best first (none negative) */
    size_t nprior;
    uint32_t *stamp;      /* cap: the collect call that last listed the row */
    uint32_t gen;
};

void sp_cands_conf_default(sp_cands_conf *conf) {
    /* at most 3 + (64 + 16) + 2 * (32 + 16) + 32 + 32 = 255 rows for three
     * seeds: the default budget (SP_PERSONAL_CANDIDATES) takes them all */
    conf->next = 64;
    conf->covisit = 16;
    conf->popular = 32;
    conf->prior = 32;
}

sp_cands *sp_cands_new(const sp_cands_conf *conf) {
    sp_cands *c = sp_xcalloc(1, sizeof *c);
    c->conf = *conf;
    c->pop = sp_xmalloc((conf->popular ? conf->popular : 1) * sizeof *c->pop);
    c->popc = sp_xmalloc((conf->popular ? conf->popular : 1) * sizeof *c->popc);
    c->prior = sp_xmalloc((conf->prior ? conf->prior : 1) * sizeof *c->prior);
    return c;
}

void sp_cands_destroy(sp_cands *c) {
    if (!c) return;
    free(c->next);
    free(c->nnext);
    free(c->cv);
    free(c->ncv);
    free(c->pop);
    free(c->popc);
    free(c->popos);
    free(c->prior);
    free(c->stamp);
    free(c);
}

void sp_cands_reserve(sp_cands *c, size_t rows) {
    if (rows <= c->cap) return;
    size_t n = c->cap ? c->cap : 1024, M = c->conf.next, C = c->conf.covisit;
    while (n < rows) n *= 2;
    c->next = sp_xrealloc(c->next, (M ? n * M : 1) * sizeof *c->next);
    c->nnext = sp_xrealloc(c->nnext, n * sizeof *c->nnext);
    c->cv = sp_xrealloc(c->cv, (C ? n * C : 1) * sizeof *c->cv);
    c->ncv = sp_xrealloc(c->ncv, n * sizeof *c->ncv);
    c->popos = sp_xrealloc(c->popos, n * sizeof *c->popos);
    c->stamp = sp_xrealloc(c->stamp, n * sizeof *c->stamp);
    for (size_t i = c->cap * M; i < n * M; i++) c->next[i] = -1;
    for (size_t i = c->cap * C; i < n * C; i++) c->cv[i] = (struct slot){-1, 0};
    for (size_t i = c->cap; i < n; i++) c->popos[i] = -1;
    memset(c->nnext + c->cap, 0, (n - c->cap) * sizeof *c->nnext);
    memset(c->ncv + c->cap, 0, (n - c->cap) * sizeof *c->ncv);
    memset(c->stamp + c->cap, 0, (n - c->cap) * sizeof *c->stamp);
    c->cap = n;
}

void sp_cands_clear_model(sp_cands *c) {
    for (size_t i = 0; i < c->cap * c->conf.next; i++) c->next[i] = -1;
    if (c->cap) memset(c->nnext, 0, c->cap * sizeof *c->nnext);
    c->nprior = 0;
}

/* The user vector of a session made of item i alone. */
static int session_of(const sp_model *m, sp_scorer *scorer, int32_t i, float *u) {
    size_t d = m->cfg.dim;
    switch (m->cfg.kind) {
    case SP_MODEL_GRU:
        memset(u, 0, d * sizeof(float));
        return sp_gru_step(m, u, i);
    case SP_MODEL_SASREC:
        return sp_scorer_attn_encode(scorer, &i, 1, u);
    default:
        memcpy(u, m->params + m->lay.emb + (size_t)i * d, d * sizeof(float));
        return SP_OK;
    }
}

int sp_cands_build_model(sp_cands *c, const sp_model *m, sp_scorer *scorer,
                         const int32_t *model2row) {
    size_t n = m->n_items, d = m->cfg.dim, M = c->conf.next;
    if (!n) return SP_OK;
    size_t maxrow = 0;
    for (size_t i = 0; i < n; i++)
        if ((size_t)model2row[i] + 1 > maxrow) maxrow = (size_t)model2row[i] + 1;
    sp_cands_reserve(c, maxrow);
    sp_cands_clear_model(c);
    const float *E = m->params + m->lay.emb, *bias = m->params + m->lay.bias;
    size_t kk = M > c->conf.prior ? M : c->conf.prior;
    struct sp_scored *h = sp_xmalloc((kk ? kk : 1) * sizeof *h);
    size_t got = sp_scores_topk(bias, NULL, n, c->conf.prior, h);
    for (size_t j = 0; j < got; j++) /* collect would skip a negative row */
        if (model2row[h[j].item] >= 0) c->prior[c->nprior++] = model2row[h[j].item];
    int rc = SP_OK;
    if (M) {
        float *U = sp_xmalloc(BUILD_BLOCK * d * sizeof(float));
        float *S = sp_xmalloc(BUILD_BLOCK * n * sizeof(float));
        for (size_t i0 = 0; i0 < n && rc == SP_OK; i0 += BUILD_BLOCK) {
            size_t b = n - i0 < BUILD_BLOCK ? n - i0 : BUILD_BLOCK;
            for (size_t r = 0; r < b && rc == SP_OK; r++)
                rc = session_of(m, scorer, (int32_t)(i0 + r), U + r * d);
            if (rc != SP_OK) break;
            /* the bias is added in the selection's pass, not copied in first */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)b, (int)n, (int)d, 1.0f, U,
                        (int)d, E, (int)d, 0.0f, S, (int)n);
            for (size_t r = 0; r < b; r++) {
                size_t got = sp_scores_topk(S + r * n, bias, n, M, h);
                size_t row = (size_t)model2row[i0 + r], len = 0;
                int32_t *dst = c->next + row * M;
                for (size_t j = 0; j < got; j++) dst[j] = model2row[h[j].item];
                while (len < got && dst[len] >= 0) len++;
                c->nnext[row] = (uint32_t)len;
            }
        }
        free(U);
        free(S);
    }
    free(h);
    if (rc != SP_OK) sp_cands_clear_model(c);
    return rc;
}

/* Space-Saving: the count of `to` goes up by one; a new neighbour takes a
 * free slot, else the least counted one's, inheriting its count (so a
 * count over-estimates by at most the smallest count). */
void sp_cands_covisit(sp_cands *c, int32_t from, int32_t to) {
    size_t C = c->conf.covisit;
    if (!C || from < 0 || to < 0 || from == to) return;
    sp_cands_reserve(c, (size_t)(from > to ? from : to) + 1);
    struct slot *s = c->cv + (size_t)from * C;
    size_t min = 0;
    for (size_t j = 0; j < C; j++) {
        if (s[j].row == to) {
            s[j].count += 1;
            return;
        }
        if (s[j].row < 0) {
            s[j] = (struct slot){to, 1};
            c->ncv[from] = (uint32_t)j + 1;
            return;
        }
        if (s[j].count < s[min].count) min = j;
    }
    s[min].row = to;
    s[min].count += 1;
}

void sp_cands_seen(sp_cands *c, int32_t row, float count) {
    size_t P = c->conf.popular;
    if (!P || row < 0) return;
    sp_cands_reserve(c, (size_t)row + 1);
    int32_t i = c->popos[row];
    if (i < 0) {
        if (c->npop < P) {
            i = (int32_t)c->npop++;
        } else if (count > c->popc[P - 1]) {
            i = (int32_t)P - 1;
            c->popos[c->pop[i]] = -1;
        } else {
            return;
        }
        c->pop[i] = row;
        c->popos[row] = i;
    }
    c->popc[i] = count;
    /* counts only grow: the row moves up, never down */
    while (i > 0 && c->popc[i - 1] < c->popc[i]) {
        int32_t r = c->pop[i - 1];
        float n = c->popc[i - 1];
        c->pop[i - 1] = c->pop[i];
        c->popc[i - 1] = c->popc[i];
        c->pop[i] = r;
        c->popc[i] = n;
        c->popos[c->pop[i]] = i;
        c->popos[c->pop[i - 1]] = i - 1;
        i--;
    }
}

/* collect's cursor: the table's fields it reads copied in, so that the
 * stores to stamp[] and v[] (the same types) do not make the compiler
 * reload them from the table for every row. */
struct out {
    uint32_t *stamp, gen;
    int32_t *v;
    size_t n, max;
    const int32_t *row2model; /* kept: the model item of each row */
    int32_t *mi;              /* kept: the model items of v[] */
};

/* Lists row (in [0, cap)) unless listed already. Inlined in each of
 * collect's loops: it runs for every row of every source. Without a
 * budget (the caller knows the sources hold at most max rows, so v[n] is
 * room), it has no branch: the row is written at v[n] in any case and n
 * moves past it only when its stamp was not this call's. */
static inline __attribute__((always_inline)) void add(struct out *o, int32_t row, int budget,
                                                      int kept) {
    if (budget && o->n == o->max) return;
    o->v[o->n] = row;
    if (kept) { /* listed only with a model item; the stamp is set either way */
        int32_t mi = o->row2model[row];
        o->mi[o->n] = mi;
        o->n += (o->stamp[row] != o->gen) & (mi >= 0);
    } else {
        o->n += o->stamp[row] != o->gen;
    }
    o->stamp[row] = o->gen;
}

/* The sources in order, into o. Inlined twice, with and without the budget
 * test: the usual budget (SP_PERSONAL_CANDIDATES) holds every source, and
 * then no row pays for it. The tables' rows need no range test: every row
 * they hold was reserved (sp_cands_reserve) before it was stored; only the
 * caller's seeds are checked. Unrolled: the loop's own test and step cost
 * about as much as a row's listing. */
static inline __attribute__((always_inline)) void
collect_into(const sp_cands *c, const int32_t *seeds, size_t nseeds, struct out *o, int budget,
             int kept) {
    size_t M = c->conf.next, C = c->conf.covisit;
    for (size_t s = 0; s < nseeds; s++)
        if ((size_t)(uint32_t)seeds[s] < c->cap) add(o, seeds[s], budget, kept);
    for (size_t s = 0; s < nseeds; s++) {
        int32_t r = seeds[s];
        if ((size_t)(uint32_t)r >= c->cap) continue;
        /* the newest item's neighbours in full, older ones' best half */
        size_t take = s == 0 ? M : (M + 1) / 2;
        if (take > c->nnext[r]) take = c->nnext[r];
        const int32_t *nx = c->next + (size_t)r * M;
#pragma GCC unroll 4
        for (size_t j = 0; j < take; j++) add(o, nx[j], budget, kept);
        const struct slot *cv = c->cv + (size_t)r * C;
        size_t ncv = c->ncv[r]; /* read once: the stores to stamp[] might alias it */
#pragma GCC unroll 4
        for (size_t j = 0; j < ncv; j++) add(o, cv[j].row, budget, kept);
    }
    const int32_t *pop = c->pop, *prior = c->prior;
    size_t npop = c->npop, nprior = c->nprior;
#pragma GCC unroll 4
    for (size_t j = 0; j < npop; j++) add(o, pop[j], budget, kept);
#pragma GCC unroll 4
    for (size_t j = 0; j < nprior; j++) add(o, prior[j], budget, kept);
}

/* The next call's stamp; wraps by clearing every stamp, so that no stale
 * one equals the new gen. */
static uint32_t next_gen(sp_cands *c) {
    if (++c->gen == 0) {
        memset(c->stamp, 0, c->cap * sizeof *c->stamp);
        c->gen = 1;
    }
    return c->gen;
}

/* Whether the sources hold at most max rows for nseeds seeds: then collect
 * needs no budget test. */
static int sources_fit(const sp_cands *c, size_t nseeds, size_t max) {
    size_t most = nseeds + c->npop + c->nprior;
    for (size_t s = 0; s < nseeds; s++)
        most += (s == 0 ? c->conf.next : (c->conf.next + 1) / 2) + c->conf.covisit;
    return most <= max;
}

size_t sp_cands_collect(sp_cands *c, const int32_t *seeds, size_t nseeds, int32_t *out,
                        size_t max) {
    struct out o = {c->stamp, next_gen(c), out, 0, max, NULL, NULL};
    if (sources_fit(c, nseeds, max))
        collect_into(c, seeds, nseeds, &o, 0, 0);
    else
        collect_into(c, seeds, nseeds, &o, 1, 0);
    return o.n;
}

/* Without a budget to fill, the skipped rows are stamped as listed before
 * the sources are read and the model items are looked up as rows are
 * listed: one pass, no filter over the list after. A budget the sources
 * can fill counts the dropped rows as sp_cands_collect does, so there the
 * list is collected first and filtered after (rare: not the default
 * budget). */
size_t sp_cands_collect_kept(sp_cands *c, const int32_t *seeds, size_t nseeds,
                             const sp_cands_keep *keep, int32_t *out, int32_t *items, size_t max) {
    if (!sources_fit(c, nseeds, max)) {
        size_t n = sp_cands_collect(c, seeds, nseeds, out, max), nk = 0;
        /* the rows just listed carry this call's stamp; skipped ones get
         * another (gen - 1 is never the next call's) */
        for (size_t i = 0; i < keep->nskip; i++)
            if ((size_t)(uint32_t)keep->skip[i] < c->cap) c->stamp[keep->skip[i]] = c->gen - 1;
        for (size_t i = 0; i < n; i++) {
            int32_t row = out[i], mi = keep->row2model[row];
            if (c->stamp[row] != c->gen || mi < 0) continue;
            out[nk] = row;
            items[nk++] = mi;
        }
        return nk;
    }
    struct out o = {c->stamp, next_gen(c), out, 0, max, keep->row2model, items};
    for (size_t i = 0; i < keep->nskip; i++)
        if ((size_t)(uint32_t)keep->skip[i] < c->cap) c->stamp[keep->skip[i]] = o.gen;
    collect_into(c, seeds, nseeds, &o, 0, 1);
    return o.n;
}

size_t sp_cands_next_of(const sp_cands *c, int32_t row, int32_t *out, size_t max) {
    size_t n = 0, M = c->conf.next;
    if (row < 0 || (size_t)row >= c->cap) return 0;
    for (size_t j = 0; j < M && n < max && c->next[(size_t)row * M + j] >= 0; j++)
        out[n++] = c->next[(size_t)row * M + j];
    return n;
}

size_t sp_cands_covisit_of(const sp_cands *c, int32_t row, int32_t *out, float *counts,
                           size_t max) {
    size_t n = 0, C = c->conf.covisit;
    if (row < 0 || (size_t)row >= c->cap) return 0;
    for (size_t j = 0; j < C && n < max && c->cv[(size_t)row * C + j].row >= 0; j++) {
        out[n] = c->cv[(size_t)row * C + j].row;
        if (counts) counts[n] = c->cv[(size_t)row * C + j].count;
        n++;
    }
    return n;
}
