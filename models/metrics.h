#ifndef MODELS_METRICS_H
#define MODELS_METRICS_H

/* Ranking metrics. A rank is 0-based: the number of competing items placed
 * above the target (0 = the target is first). */
#include <stddef.h>
#include <stdint.h>

double sp_metric_hit(size_t rank, size_t k);  /* HR@k and Recall@k for one target: rank < k */
double sp_metric_ndcg(size_t rank, size_t k); /* 1 / log2(rank + 2) when rank < k, else 0 */
double sp_metric_mrr(size_t rank, size_t k);  /* 1 / (rank + 1) when rank < k, else 0 */

/* Rank of scores[target] among the items i != target with ban[i] == 0
 * (ban may be NULL): items scoring higher count fully, ties count half
 * (rounded down), the expected rank under a random tie-break. */
size_t sp_rank_of(const float *scores, size_t n, int32_t target, const unsigned char *ban);

/* Rank of target_score among n competitor scores, by the same rule. */
size_t sp_rank_among(float target_score, const float *others, size_t n);

#define SP_METRICS_MAX_K 4

/* Running means of the metrics at a few cut-offs. */
struct sp_metrics {
    size_t n_k, k[SP_METRICS_MAX_K];
    size_t n;
    double hit[SP_METRICS_MAX_K], ndcg[SP_METRICS_MAX_K], mrr[SP_METRICS_MAX_K];
};

void sp_metrics_init(struct sp_metrics *mt, const size_t *ks, size_t n_k);
void sp_metrics_add(struct sp_metrics *mt, size_t rank);
double sp_metrics_mean(const struct sp_metrics *mt, const double *sum);

#endif
