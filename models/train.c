/* Trainer for the three model kinds. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "models/mf.h"
#include "models/scorer.h"
#include "models/seq.h"
#include "models/train.h"
#include "stream/error.h"
#include "stream/log.h"

void sp_train_opts_default(struct sp_train_opts *o, enum sp_model_kind kind) {
    memset(o, 0, sizeof *o);
    sp_model_config_default(&o->cfg, kind);
    o->epochs = kind == SP_MODEL_MF ? 30 : 20;
    o->batch = 128;
    o->holdout = 0;
    o->seed = 42;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Epoch, loss, elapsed and ETA: redrawn in place on a terminal, one log
 * line per epoch otherwise (so logs of CI runs stay readable). */
static void progress(const struct sp_train_opts *o, uint32_t epoch, double frac, double loss,
                     double t0, int done) {
    double el = now_s() - t0, total = (epoch + frac) > 0 ? el / (epoch + frac) * o->epochs : 0;
    int tty = o->progress && isatty(2);
    if (tty) {
        fprintf(stderr, "\repoch %u/%u %5.1f%%  loss %.4f  elapsed %.0fs  ETA %.0fs   ",
                epoch + 1, o->epochs, 100.0 * frac, loss, el, total > el ? total - el : 0);
        if (done) fputc('\n', stderr);
    } else if (done && o->progress >= 0) {
        sp_info("train: epoch %u/%u loss %.4f elapsed %.1fs ETA %.0fs", epoch + 1, o->epochs,
                loss, el, total > el ? total - el : 0);
    }
}

struct adam {
    float *m, *v;
    size_t n;
    uint64_t t;
};

/* Adam (Kingma & Ba) with beta2 = 0.98, as SASRec trains. */
static void adam_step(struct adam *a, float *P, const float *G, float lr, float l2) {
    const float b1 = 0.9f, b2 = 0.98f, eps = 1e-8f;
    a->t++;
    float c1 = 1.0f - powf(b1, (float)a->t), c2 = 1.0f - powf(b2, (float)a->t);
    float step = lr * sqrtf(c2) / c1;
    for (size_t i = 0; i < a->n; i++) {
        float g = G[i] + l2 * P[i];
        a->m[i] = b1 * a->m[i] + (1.0f - b1) * g;
        a->v[i] = b2 * a->v[i] + (1.0f - b2) * g * g;
        P[i] -= step * a->m[i] / (sqrtf(a->v[i]) + eps);
    }
}

static void shuffle(size_t *a, size_t n, uint64_t *rng) {
    for (size_t i = n; i > 1; i--) {
        size_t j = sp_rng_below(rng, (uint32_t)i);
        size_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* Length of sequence s once the holdout is removed. */
static size_t train_len(const struct sp_dataset *d, size_t s, uint32_t holdout) {
    size_t n = d->off[s + 1] - d->off[s];
    return n > holdout ? n - holdout : 0;
}

static int train_seq(sp_model *m, const struct sp_dataset *d, const struct sp_train_opts *o) {
    size_t L = m->cfg.kind == SP_MODEL_SASREC ? m->cfg.max_len : (o->cfg.max_len ? o->cfg.max_len : 50);
    size_t S = m->cfg.n_neg;
    uint64_t rng = sp_rng_seed(o->seed ^ 0x5eedULL);
    size_t *order = sp_xmalloc((d->n_seq ? d->n_seq : 1) * sizeof *order), n_ord = 0;
    for (size_t s = 0; s < d->n_seq; s++)
        if (train_len(d, s, o->holdout) >= 2) order[n_ord++] = s;
    float *G = sp_xcalloc(m->lay.total, sizeof(float));
    struct adam a = {sp_xcalloc(m->lay.total, sizeof(float)), sp_xcalloc(m->lay.total, sizeof(float)),
                     m->lay.total, 0};
    sp_seq_work *w = sp_seq_work_new(m, L, S);
    int32_t *negs = sp_xmalloc((S ? S : 1) * sizeof *negs);
    double t0 = now_s();
    for (uint32_t ep = 0; ep < o->epochs; ep++) {
        shuffle(order, n_ord, &rng);
        double loss = 0;
        size_t n_tok = 0;
        for (size_t b0 = 0; b0 < n_ord; b0 += o->batch) {
            size_t b1 = b0 + o->batch < n_ord ? b0 + o->batch : n_ord, tok = 0;
            for (size_t i = b0; i < b1; i++) {
                size_t n = train_len(d, order[i], o->holdout) - 1;
                tok += n < L ? n : L;
            }
            memset(G, 0, m->lay.total * sizeof(float));
            for (size_t i = b0; i < b1; i++) {
                size_t s = order[i], n = train_len(d, s, o->holdout);
                const int32_t *it = d->item + d->off[s];
                size_t t = n - 1 < L ? n - 1 : L, start = n - 1 - t;
                for (size_t j = 0; j < S; j++) negs[j] = (int32_t)sp_rng_below(&rng, m->n_items);
                loss += sp_seq_loss(m, m->params, G, w, it + start, it + start + 1, t, negs, S,
                                    1.0f / (float)tok, 1, &rng);
            }
            n_tok += tok;
            adam_step(&a, m->params, G, m->cfg.lr, m->cfg.l2);
            if ((b0 / o->batch) % 20 == 0)
                progress(o, ep, (double)b1 / (double)n_ord, loss / (double)n_tok, t0, 0);
        }
        progress(o, ep, 1.0, n_tok ? loss / (double)n_tok : 0, t0, 1);
        if (o->max_seconds > 0 && now_s() - t0 > o->max_seconds) {
            sp_warn("train: stopping after epoch %u: time budget of %.0fs spent", ep + 1,
                    o->max_seconds);
            break;
        }
    }
    free(order);
    free(G);
    free(a.m);
    free(a.v);
    free(negs);
    sp_seq_work_destroy(w);
    return SP_OK;
}

/* MF: shuffled interactions, each one sp_mf_learn step whose item deltas
 * are applied straight away, with the learning rate decayed per epoch. */
static int train_mf(sp_model *m, const struct sp_dataset *d, const struct sp_train_opts *o) {
    size_t dim = m->cfg.dim, nd = sp_mf_n_deltas(m);
    uint64_t rng = sp_rng_seed(o->seed ^ 0x3fULL);
    float *users = sp_xmalloc((d->n_seq ? d->n_seq : 1) * dim * sizeof(float));
    for (size_t i = 0; i < d->n_seq * dim; i++) users[i] = 0.1f * sp_rng_normal(&rng);
    size_t *ev = sp_xmalloc((d->n_events ? d->n_events : 1) * sizeof *ev), n_ev = 0;
    uint32_t *owner = sp_xmalloc((d->n_events ? d->n_events : 1) * sizeof *owner);
    for (size_t s = 0; s < d->n_seq; s++)
        for (size_t i = d->off[s]; i < d->off[s] + train_len(d, s, o->holdout); i++) {
            owner[i] = (uint32_t)s;
            if (d->item[i] >= 0) ev[n_ev++] = i;
        }
    struct sp_mf_delta *deltas = sp_xmalloc(nd * sizeof *deltas);
    float *dbuf = sp_xmalloc(nd * dim * sizeof(float));
    for (size_t i = 0; i < nd; i++) deltas[i].vec = dbuf + i * dim;
    float *du = sp_xmalloc(3 * dim * sizeof(float));
    double t0 = now_s();
    for (uint32_t ep = 0; ep < o->epochs; ep++) {
        shuffle(ev, n_ev, &rng);
        float lr = sp_mf_lr_at(m, ep);
        for (size_t x = 0; x < n_ev; x++) {
            size_t e = ev[x];
            float *u = users + (size_t)owner[e] * dim;
            int nw = sp_mf_learn(m, u, d->item[e], sp_mf_kind_weight(m, d->kind[e]), lr, &rng, deltas);
            for (int k = 0; k < nw; k++) {
                float *q = m->params + m->lay.emb + (size_t)deltas[k].item * dim;
                for (size_t j = 0; j < dim; j++) q[j] += deltas[k].vec[j];
                m->params[m->lay.bias + deltas[k].item] += deltas[k].dbias;
            }
        }
        /* loss on a fixed-size sample, for the progress line only */
        double loss = 0;
        size_t ns = n_ev < 2000 ? n_ev : 2000;
        uint64_t r2 = sp_rng_seed(ep);
        for (size_t x = 0; x < ns; x++) {
            size_t e = ev[sp_rng_below(&r2, (uint32_t)n_ev)];
            float dbi, dbj;
            int32_t j = (int32_t)sp_rng_below(&r2, m->n_items);
            loss += sp_mf_bpr_grad(m, m->params, users + (size_t)owner[e] * dim, d->item[e], j,
                                   1.0f, du, du + dim, du + 2 * dim, &dbi, &dbj);
        }
        progress(o, ep, 1.0, ns ? loss / (double)ns : 0, t0, 1);
        if (o->max_seconds > 0 && now_s() - t0 > o->max_seconds) break;
    }
    free(users);
    free(ev);
    free(owner);
    free(deltas);
    free(dbuf);
    free(du);
    return SP_OK;
}

sp_model *sp_train(const struct sp_dataset *d, sp_vocab *vocab, const struct sp_train_opts *o,
                   char *err, size_t errlen) {
    if (sp_vocab_size(vocab) < 1) {
        snprintf(err, errlen, "train: the data has no items");
        sp_vocab_destroy(vocab);
        return NULL;
    }
    sp_model *m = sp_model_new(&o->cfg, vocab, o->seed, err, errlen);
    if (!m) {
        sp_vocab_destroy(vocab);
        return NULL;
    }
    if (m->cfg.kind == SP_MODEL_MF)
        train_mf(m, d, o);
    else
        train_seq(m, d, o);
    return m;
}
