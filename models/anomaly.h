#ifndef MODELS_ANOMALY_H
#define MODELS_ANOMALY_H

/* Streaming anomaly detectors. All state is plain fixed-size structs without
 * pointers, so an operator can keep them as bytes in Redis and a crash loses
 * nothing that the last commit did not hold. Each detector has a _score that
 * reads the state (call it first: a stream scores an observation before it
 * learns from it) and an _update that learns; scores are in [0,1], higher is
 * more anomalous. */
#include <stddef.h>
#include <stdint.h>

/* Maps a z-score to [0,1]: z^2 / (z^2 + 9), so 3 sigma scores 0.5, 6 sigma
 * 0.8, 10 sigma 0.92; monotone in |z| and never saturating. */
double sp_anomaly_z_to_score(double z);

/* --- Robust EWMA z-score of one quantity ------------------------------------
 * An exponentially weighted mean and variance. Robust in two ways: the
 * update clips the observation to mean +- clip*std (so one fraudulent
 * amount does not widen the spread that should expose the next one), and the
 * spread has a floor (min_std) so that a perfectly regular history does not
 * turn a cent's difference into 100 sigma. The first observations are
 * averaged plainly (weight 1/n until 1/n < alpha), so early estimates are not
 * biased towards the zero start. */
struct sp_ewma_z {
    double mean;
    double var;
    uint32_t n; /* observations learned, saturating */
};

struct sp_ewma_z_opts {
    double alpha;    /* weight of the newest observation, e.g. 0.1 */
    double clip;     /* winsorize updates at this many sigmas; 0 = no clipping */
    double min_std;  /* absolute floor of the spread */
    double rel_std;  /* floor of the spread relative to |mean| */
    uint32_t warmup; /* z is 0 until this many observations were learned */
};

void sp_ewma_z_init(struct sp_ewma_z *s);
double sp_ewma_z_std(const struct sp_ewma_z *s, const struct sp_ewma_z_opts *o);
/* (x - mean) / std, or 0 during warmup. */
double sp_ewma_z_score(const struct sp_ewma_z *s, double x, const struct sp_ewma_z_opts *o);
void sp_ewma_z_update(struct sp_ewma_z *s, double x, const struct sp_ewma_z_opts *o);

/* Words for a z-score, e.g. "amount 9.3σ above this user's mean". */
void sp_anomaly_z_reason(char *buf, size_t len, const char *what, double z, const char *whose);

/* --- Half-Space Trees (Tan, Ting & Liu, IJCAI 2011) ---------------------------
 * An ensemble of random binary trees over [0,1]^dim, built without data.
 * Each node counts the observations that passed through it in the latest
 * window (l) and in the previous full window (r, the reference profile). An
 * observation that lands in regions that were sparsely visited in the
 * reference window scores high. Features must be scaled to [0,1] by the
 * caller (values outside are clamped). */
#define SP_HST_MAX_TREES 32
#define SP_HST_MAX_DEPTH 8
#define SP_HST_MAX_DIM   32
#define SP_HST_NODES     ((1 << (SP_HST_MAX_DEPTH + 1)) - 1)

struct sp_hst {
    uint32_t trees, depth, dim;
    uint32_t window;     /* observations per window */
    uint32_t in_window;  /* observations in the latest window so far */
    uint32_t windows;    /* full windows completed */
    uint32_t size_limit; /* a node with reference mass below this ends the walk */
    uint8_t split_dim[SP_HST_MAX_TREES][SP_HST_NODES];
    float split_val[SP_HST_MAX_TREES][SP_HST_NODES];
    uint32_t r[SP_HST_MAX_TREES][SP_HST_NODES];
    uint32_t l[SP_HST_MAX_TREES][SP_HST_NODES];
};

/* Builds the trees from seed; returns SP_ERR_FATAL if a size is out of range. */
int sp_hst_init(struct sp_hst *h, uint32_t trees, uint32_t depth, uint32_t dim, uint32_t window,
                uint64_t seed);
/* 0 until the first window is complete (nothing to compare with yet). */
double sp_hst_score(const struct sp_hst *h, const float *x);
void sp_hst_update(struct sp_hst *h, const float *x);

/* --- KPI series detector ------------------------------------------------------
 * For one KPI window series (orders per minute, GMV, conversion rate): the
 * forecast is an EWMA level, or with season > 0 the value one season ago
 * (seasonal naive); the residual's robust EWMA z-score is the anomaly. A
 * point beyond 4 sigma is remembered as its forecast, so a spike neither
 * drags the level nor comes back as a false alarm one season later. */
#define SP_KPI_MAX_SEASON 1440

struct sp_kpi_detector {
    uint32_t season;  /* 0: EWMA level forecast; else period in windows */
    uint32_t pos;     /* next slot of hist */
    uint64_t n;       /* points learned */
    double alpha;     /* EWMA weight for the level and the residual */
    double level;
    struct sp_ewma_z resid;
    double hist[SP_KPI_MAX_SEASON]; /* last season of (clipped) values */
};

int sp_kpi_init(struct sp_kpi_detector *d, uint32_t season, double alpha);
/* Anomaly score in [0,1] of x as the next point; *z (may be NULL) gets the
 * signed residual z-score. 0 while the detector is warming up. */
double sp_kpi_score(const struct sp_kpi_detector *d, double x, double *z);
void sp_kpi_update(struct sp_kpi_detector *d, double x);
/* The forecast the next point is compared with (NAN while warming up). */
double sp_kpi_forecast(const struct sp_kpi_detector *d);
/* Words for a KPI alert, e.g. "orders 42 vs 100 expected (5.1σ below)". */
void sp_kpi_reason(char *buf, size_t len, const char *kpi, double x, double expected, double z);

#endif
