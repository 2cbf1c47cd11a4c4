/* Logistic regression: batch Adam on the L2-regularized weighted log loss,
 * with the two matrix-vector products per epoch done by OpenBLAS (double). */
#include "models/logreg.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/error.h"

#define LOGREG_MAGIC   "SPLR"
#define LOGREG_VERSION 1u
#define LOGREG_MAX_DIM (1u << 24)

struct sp_logreg {
    size_t d;
    float *mean; /* subtracted from each feature before the dot product */
    float *inv_std; /* then multiplied; 1 and 0 when not standardizing */
    float *w;
    double b;
    uint32_t flags; /* bit 0: trained with standardization */
};

sp_logreg *sp_logreg_new(size_t d) {
    sp_logreg *m = sp_xcalloc(1, sizeof *m);
    m->d = d;
    m->mean = sp_xcalloc(d, sizeof(float));
    m->inv_std = sp_xmalloc(d * sizeof(float));
    m->w = sp_xcalloc(d, sizeof(float));
    for (size_t j = 0; j < d; j++) m->inv_std[j] = 1.0f;
    return m;
}

void sp_logreg_destroy(sp_logreg *m) {
    if (!m) return;
    free(m->mean);
    free(m->inv_std);
    free(m->w);
    free(m);
}

size_t sp_logreg_dim(const sp_logreg *m) { return m->d; }

static double sigmoid(double z) {
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

double sp_logreg_logit(const sp_logreg *m, const float *x) {
    double z = m->b;
    for (size_t j = 0; j < m->d; j++)
        z += (double)m->w[j] * ((x[j] - m->mean[j]) * m->inv_std[j]);
    return z;
}

double sp_logreg_predict(const sp_logreg *m, const float *x) {
    return sigmoid(sp_logreg_logit(m, x));
}

double sp_logreg_weight(const sp_logreg *m, size_t j) { return j < m->d ? m->w[j] : 0.0; }

/* Learns the standardization from the training rows: features with no spread
 * keep a unit scale so that they cannot blow up at prediction time. */
static void fit_scaling(sp_logreg *m, const float *x, size_t n) {
    size_t d = m->d;
    double *sum = sp_xcalloc(d, sizeof(double)), *sq = sp_xcalloc(d, sizeof(double));
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < d; j++) {
            double v = x[i * d + j];
            sum[j] += v;
            sq[j] += v * v;
        }
    for (size_t j = 0; j < d; j++) {
        double mu = sum[j] / (double)n, var = sq[j] / (double)n - mu * mu;
        m->mean[j] = (float)mu;
        m->inv_std[j] = var > 1e-12 ? (float)(1.0 / sqrt(var)) : 1.0f;
    }
    free(sum);
    free(sq);
}

/* Batch Adam: every epoch computes all logits with one dgemv, the gradient of
 * the weighted mean log loss with a second, and takes one Adam step. Batch
 * rather than SGD so that a run needs no shuffling; the step size decays to
 * zero on a cosine schedule so that the last iterate settles instead of
 * hovering around the optimum, which (with double-precision sums) makes the
 * result insensitive to BLAS threading and summation order. The data sets
 * here (at most a few hundred thousand rows) fit in memory. */
int sp_logreg_train(sp_logreg *m, const float *x, const uint8_t *y, size_t n,
                    const struct sp_logreg_opts *opts) {
    if (n == 0) return SP_ERR_BADINPUT;
    size_t d = m->d;
    int epochs = opts && opts->epochs > 0 ? opts->epochs : 300;
    double lr = opts && opts->lr > 0 ? opts->lr : 0.05;
    double l2 = opts ? opts->l2 : 0.0;
    double pw = opts && opts->pos_weight > 0 ? opts->pos_weight : 1.0;

    if (opts && opts->standardize) {
        fit_scaling(m, x, n);
        m->flags |= 1u;
    } else {
        memset(m->mean, 0, d * sizeof(float));
        for (size_t j = 0; j < d; j++) m->inv_std[j] = 1.0f;
        m->flags &= ~1u;
    }
    double *xs = sp_xmalloc(n * d * sizeof(double));
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < d; j++)
            xs[i * d + j] = ((double)x[i * d + j] - m->mean[j]) * m->inv_std[j];

    double *z = sp_xmalloc(n * sizeof(double)), *r = sp_xmalloc(n * sizeof(double));
    double *g = sp_xmalloc(d * sizeof(double)), *w = sp_xcalloc(d, sizeof(double));
    double *mw = sp_xcalloc(d, sizeof(double)), *vw = sp_xcalloc(d, sizeof(double));
    double mb = 0, vb = 0, wsum = 0, b = 0;
    for (size_t i = 0; i < n; i++) wsum += y[i] ? pw : 1.0;
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    for (int t = 1; t <= epochs; t++) {
        cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)d, 1.0, xs, (int)d, w, 1, 0.0, z, 1);
        double gb = 0;
        for (size_t i = 0; i < n; i++) {
            double p = sigmoid(z[i] + b), wi = y[i] ? pw : 1.0;
            r[i] = wi * (p - y[i]) / wsum;
            gb += r[i];
        }
        cblas_dgemv(CblasRowMajor, CblasTrans, (int)n, (int)d, 1.0, xs, (int)d, r, 1, 0.0, g, 1);
        double c1 = 1 - pow(b1, t), c2 = 1 - pow(b2, t);
        double step = lr * 0.5 * (1 + cos(M_PI * (t - 1) / epochs));
        for (size_t j = 0; j < d; j++) {
            double gj = g[j] + l2 * w[j];
            mw[j] = b1 * mw[j] + (1 - b1) * gj;
            vw[j] = b2 * vw[j] + (1 - b2) * gj * gj;
            w[j] -= step * (mw[j] / c1) / (sqrt(vw[j] / c2) + eps);
        }
        mb = b1 * mb + (1 - b1) * gb;
        vb = b2 * vb + (1 - b2) * gb * gb;
        b -= step * (mb / c1) / (sqrt(vb / c2) + eps);
    }
    for (size_t j = 0; j < d; j++) m->w[j] = (float)w[j];
    m->b = b;
    free(xs);
    free(z);
    free(r);
    free(g);
    free(w);
    free(mw);
    free(vw);
    return SP_OK;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h;
}

#define FNV_SEED 1469598103934665603ull

/* Writes through a checksum so that load can tell a flipped byte from a
 * model; the file is written to path.tmp and renamed, so a crash never leaves
 * a half-written model under the real name. */
int sp_logreg_save(const sp_logreg *m, const char *path, char *err, size_t errlen) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        return SP_ERR_IO;
    }
    uint64_t h = FNV_SEED;
    uint32_t hdr[3] = {LOGREG_VERSION, (uint32_t)m->d, m->flags};
    size_t fs = m->d * sizeof(float);
    int ok = 1;
#define PUT(p, n)                                      \
    do {                                               \
        ok = ok && fwrite((p), 1, (n), f) == (size_t)(n); \
        h = fnv1a(h, (p), (n));                        \
    } while (0)
    PUT(LOGREG_MAGIC, 4);
    PUT(hdr, sizeof hdr);
    PUT(m->mean, fs);
    PUT(m->inv_std, fs);
    PUT(m->w, fs);
    PUT(&m->b, sizeof m->b);
#undef PUT
    ok = ok && fwrite(&h, sizeof h, 1, f) == 1;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        remove(tmp);
        return SP_ERR_IO;
    }
    return SP_OK;
}

sp_logreg *sp_logreg_load(const char *path, char *err, size_t errlen) {
    sp_logreg *m = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open model %s: %s", path, strerror(errno));
        return NULL;
    }
    char magic[4];
    uint32_t hdr[3];
    uint64_t h = FNV_SEED, stored;
    if (fread(magic, 1, 4, f) != 4 || memcmp(magic, LOGREG_MAGIC, 4) != 0) {
        snprintf(err, errlen, "%s is not a shopstream logistic-regression model (bad magic)", path);
        goto fail;
    }
    if (fread(hdr, sizeof hdr, 1, f) != 1) goto truncated;
    if (hdr[0] != LOGREG_VERSION) {
        snprintf(err, errlen, "%s: model format version %u, this build reads %u", path, hdr[0],
                 LOGREG_VERSION);
        goto fail;
    }
    if (hdr[1] == 0 || hdr[1] > LOGREG_MAX_DIM) {
        snprintf(err, errlen, "%s: corrupted model (dimension %u)", path, hdr[1]);
        goto fail;
    }
    h = fnv1a(fnv1a(h, magic, 4), hdr, sizeof hdr);
    m = sp_logreg_new(hdr[1]);
    m->flags = hdr[2];
    size_t fs = m->d * sizeof(float);
    if (fread(m->mean, 1, fs, f) != fs || fread(m->inv_std, 1, fs, f) != fs ||
        fread(m->w, 1, fs, f) != fs || fread(&m->b, sizeof m->b, 1, f) != 1 ||
        fread(&stored, sizeof stored, 1, f) != 1)
        goto truncated;
    h = fnv1a(h, m->mean, fs);
    h = fnv1a(h, m->inv_std, fs);
    h = fnv1a(h, m->w, fs);
    h = fnv1a(h, &m->b, sizeof m->b);
    if (h != stored) {
        snprintf(err, errlen, "%s: corrupted model (checksum mismatch)", path);
        goto fail;
    }
    if (fgetc(f) != EOF) {
        snprintf(err, errlen, "%s: corrupted model (trailing bytes)", path);
        goto fail;
    }
    fclose(f);
    return m;
truncated:
    snprintf(err, errlen, "%s: corrupted model (truncated)", path);
fail:
    fclose(f);
    sp_logreg_destroy(m);
    return NULL;
}
