/* Streaming anomaly detectors: robust EWMA z-scores, Half-Space Trees, and
 * the KPI series detector built on the first. */
#include "models/anomaly.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "stream/error.h"

double sp_anomaly_z_to_score(double z) {
    if (!isfinite(z)) return 1.0;
    return z * z / (z * z + 9.0);
}

void sp_ewma_z_init(struct sp_ewma_z *s) { memset(s, 0, sizeof *s); }

double sp_ewma_z_std(const struct sp_ewma_z *s, const struct sp_ewma_z_opts *o) {
    double sd = sqrt(s->var > 0 ? s->var : 0);
    double floor = o->min_std > o->rel_std * fabs(s->mean) ? o->min_std : o->rel_std * fabs(s->mean);
    return sd > floor ? sd : (floor > 0 ? floor : 1e-12);
}

double sp_ewma_z_score(const struct sp_ewma_z *s, double x, const struct sp_ewma_z_opts *o) {
    if (s->n < o->warmup || s->n == 0) return 0.0;
    return (x - s->mean) / sp_ewma_z_std(s, o);
}

/* The incremental EWMA variance (West 1979): var <- (1-a)(var + a d^2). The
 * weight is 1/(n+1) while that is larger than alpha, which makes the first
 * estimates plain means instead of means biased towards the zero start. */
void sp_ewma_z_update(struct sp_ewma_z *s, double x, const struct sp_ewma_z_opts *o) {
    if (!isfinite(x)) return;
    double a = 1.0 / ((double)s->n + 1.0);
    if (a < o->alpha) a = o->alpha;
    if (o->clip > 0 && s->n >= o->warmup && s->n > 0) {
        double sd = sp_ewma_z_std(s, o), lo = s->mean - o->clip * sd, hi = s->mean + o->clip * sd;
        x = x < lo ? lo : x > hi ? hi : x;
    }
    double d = x - s->mean;
    s->mean += a * d;
    s->var = (1 - a) * (s->var + a * d * d);
    if (s->n < UINT32_MAX) s->n++;
}

void sp_anomaly_z_reason(char *buf, size_t len, const char *what, double z, const char *whose) {
    snprintf(buf, len, "%s %.1f\xcf\x83 %s %s mean", what, fabs(z), z >= 0 ? "above" : "below",
             whose);
}

/* --- Half-Space Trees --- */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double unit(uint64_t *s) { return (double)(splitmix(s) >> 11) / 9007199254740992.0; }

/* Tan et al.'s BuildSingleHS-Tree: a random dimension per node, split at the
 * middle of the node's range. The root's range per dimension is
 * [s - 2max(s,1-s), s + 2max(s,1-s)] for a random s, so the trees are
 * irregular yet every split still cuts through [0,1]. */
static void build(struct sp_hst *h, uint32_t t, uint32_t node, uint32_t k, float *lo, float *hi,
                  uint64_t *seed) {
    if (k == h->depth) return;
    uint32_t q = (uint32_t)(splitmix(seed) % h->dim);
    float mid = (lo[q] + hi[q]) / 2, save;
    h->split_dim[t][node] = (uint8_t)q;
    h->split_val[t][node] = mid;
    save = hi[q];
    hi[q] = mid;
    build(h, t, 2 * node + 1, k + 1, lo, hi, seed);
    hi[q] = save;
    save = lo[q];
    lo[q] = mid;
    build(h, t, 2 * node + 2, k + 1, lo, hi, seed);
    lo[q] = save;
}

int sp_hst_init(struct sp_hst *h, uint32_t trees, uint32_t depth, uint32_t dim, uint32_t window,
                uint64_t seed) {
    if (trees == 0 || trees > SP_HST_MAX_TREES || depth == 0 || depth > SP_HST_MAX_DEPTH ||
        dim == 0 || dim > SP_HST_MAX_DIM || window < 10)
        return SP_ERR_FATAL;
    memset(h, 0, sizeof *h);
    h->trees = trees;
    h->depth = depth;
    h->dim = dim;
    h->window = window;
    h->size_limit = window / 10;
    for (uint32_t t = 0; t < trees; t++) {
        float lo[SP_HST_MAX_DIM], hi[SP_HST_MAX_DIM];
        for (uint32_t q = 0; q < dim; q++) {
            double s = unit(&seed), r = 2 * (s > 1 - s ? s : 1 - s);
            lo[q] = (float)(s - r);
            hi[q] = (float)(s + r);
        }
        build(h, t, 0, 0, lo, hi, &seed);
    }
    return SP_OK;
}

static float clamp01(float v) { return v < 0 ? 0 : v > 1 ? 1 : (v != v ? 0 : v); }

/* Tan et al. score r(node) * 2^depth(node) at the node where the walk ends
 * (a leaf, or the first node with reference mass below size_limit), divided
 * by the window: an estimate of the local density relative to a uniform
 * spread over the workspace (about 1 for uniform data, large in dense
 * regions, 0 where nothing went). Anomaly = 1 / (1 + mean density), so
 * uniform data scores about 0.5, dense regions near 0, empty ones 1. */
double sp_hst_score(const struct sp_hst *h, const float *x) {
    if (h->windows == 0) return 0.0;
    double dens = 0;
    for (uint32_t t = 0; t < h->trees; t++) {
        uint32_t node = 0, k = 0;
        while (k < h->depth && h->r[t][node] >= h->size_limit) {
            node = clamp01(x[h->split_dim[t][node]]) < h->split_val[t][node] ? 2 * node + 1
                                                                               : 2 * node + 2;
            k++;
        }
        dens += (double)h->r[t][node] * (double)(1u << k) / (double)h->window;
    }
    return 1.0 / (1.0 + dens / h->trees);
}

void sp_hst_update(struct sp_hst *h, const float *x) {
    for (uint32_t t = 0; t < h->trees; t++) {
        uint32_t node = 0;
        for (uint32_t k = 0;; k++) {
            h->l[t][node]++;
            if (k == h->depth) break;
            node = clamp01(x[h->split_dim[t][node]]) < h->split_val[t][node] ? 2 * node + 1
                                                                               : 2 * node + 2;
        }
    }
    if (++h->in_window == h->window) {
        memcpy(h->r, h->l, sizeof h->r);
        memset(h->l, 0, sizeof h->l);
        h->in_window = 0;
        h->windows++;
    }
}

/* --- KPI series detector --- */

#define KPI_WARMUP 8
#define KPI_CLIP   4.0

int sp_kpi_init(struct sp_kpi_detector *d, uint32_t season, double alpha) {
    if (season > SP_KPI_MAX_SEASON || !(alpha > 0 && alpha <= 1)) return SP_ERR_FATAL;
    memset(d, 0, sizeof *d);
    d->season = season;
    d->alpha = alpha;
    return SP_OK;
}

static struct sp_ewma_z_opts kpi_opts(const struct sp_kpi_detector *d, double pred) {
    struct sp_ewma_z_opts o = {.alpha = d->alpha, .clip = KPI_CLIP, .warmup = KPI_WARMUP};
    o.min_std = 1e-9 + 0.01 * fabs(pred); /* a flat series still has a scale */
    return o;
}

/* The forecast: the (clipped) value one season ago, or the EWMA level. 0 and
 * *ok=0 until there is enough history for it. */
static double forecast(const struct sp_kpi_detector *d, int *ok) {
    if (d->season) {
        *ok = d->n >= d->season;
        return d->hist[d->pos];
    }
    *ok = d->n > 0;
    return d->level;
}

double sp_kpi_score(const struct sp_kpi_detector *d, double x, double *z) {
    int ok;
    double pred = forecast(d, &ok), zz = 0;
    if (ok && isfinite(x)) {
        struct sp_ewma_z_opts o = kpi_opts(d, pred);
        zz = sp_ewma_z_score(&d->resid, x - pred, &o);
    }
    if (z) *z = zz;
    return ok && isfinite(x) ? sp_anomaly_z_to_score(zz) : 0.0;
}

void sp_kpi_update(struct sp_kpi_detector *d, double x) {
    if (!isfinite(x)) return;
    int ok;
    double pred = forecast(d, &ok), kept = x;
    if (ok) {
        struct sp_ewma_z_opts o = kpi_opts(d, pred);
        double r = x - pred;
        if (d->resid.n >= KPI_WARMUP) {
            double sd = sp_ewma_z_std(&d->resid, &o);
            double lo = d->resid.mean - KPI_CLIP * sd, hi = d->resid.mean + KPI_CLIP * sd;
            if (r < lo || r > hi) kept = pred + d->resid.mean;
        }
        sp_ewma_z_update(&d->resid, r, &o);
    }
    double a = 1.0 / ((double)d->n + 1.0);
    if (a < d->alpha) a = d->alpha;
    d->level += a * (kept - d->level);
    if (d->season) {
        d->hist[d->pos] = kept;
        d->pos = (d->pos + 1) % d->season;
    }
    d->n++;
}

double sp_kpi_forecast(const struct sp_kpi_detector *d) {
    int ok;
    double f = forecast(d, &ok);
    return ok ? f : NAN;
}

void sp_kpi_reason(char *buf, size_t len, const char *kpi, double x, double expected, double z) {
    snprintf(buf, len, "%s %.4g vs %.4g expected (%.1f\xcf\x83 %s)", kpi, x, expected, fabs(z),
             z >= 0 ? "above" : "below");
}
