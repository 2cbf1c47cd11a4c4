/* Ranking metrics, as the SASRec and GRU4Rec papers define them. */
#include <math.h>
#include <string.h>

#include "models/metrics.h"

double sp_metric_hit(size_t rank, size_t k) { return rank < k ? 1.0 : 0.0; }
double sp_metric_ndcg(size_t rank, size_t k) { return rank < k ? 1.0 / log2((double)rank + 2.0) : 0.0; }
double sp_metric_mrr(size_t rank, size_t k) { return rank < k ? 1.0 / ((double)rank + 1.0) : 0.0; }

size_t sp_rank_of(const float *scores, size_t n, int32_t target, const unsigned char *ban) {
    float t = scores[target];
    size_t gt = 0, eq = 0;
    for (size_t i = 0; i < n; i++) {
        if ((int32_t)i == target || (ban && ban[i])) continue;
        gt += scores[i] > t;
        eq += scores[i] == t;
    }
    return gt + eq / 2;
}

size_t sp_rank_among(float target_score, const float *others, size_t n) {
    size_t gt = 0, eq = 0;
    for (size_t i = 0; i < n; i++) {
        gt += others[i] > target_score;
        eq += others[i] == target_score;
    }
    return gt + eq / 2;
}

void sp_metrics_init(struct sp_metrics *mt, const size_t *ks, size_t n_k) {
    memset(mt, 0, sizeof *mt);
    mt->n_k = n_k > SP_METRICS_MAX_K ? SP_METRICS_MAX_K : n_k;
    memcpy(mt->k, ks, mt->n_k * sizeof *ks);
}

void sp_metrics_add(struct sp_metrics *mt, size_t rank) {
    mt->n++;
    for (size_t i = 0; i < mt->n_k; i++) {
        mt->hit[i] += sp_metric_hit(rank, mt->k[i]);
        mt->ndcg[i] += sp_metric_ndcg(rank, mt->k[i]);
        mt->mrr[i] += sp_metric_mrr(rank, mt->k[i]);
    }
}

double sp_metrics_mean(const struct sp_metrics *mt, const double *sum) {
    return mt->n ? *sum / (double)mt->n : 0.0;
}
