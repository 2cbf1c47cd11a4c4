#ifndef MODELS_EVAL_H
#define MODELS_EVAL_H

/* The evaluator: ranking protocols over a data set, for a trained model
 * or a baseline (popularity, item-kNN co-occurrence). */
#include <stddef.h>
#include <stdint.h>

#include "models/data.h"
#include "models/metrics.h"
#include "models/model.h"

enum sp_protocol { SP_PROTO_SAMPLED100, SP_PROTO_FULL, SP_PROTO_SESSION, SP_PROTO_PREQUENTIAL };
enum sp_rec_kind { SP_REC_MODEL, SP_REC_POP, SP_REC_KNN };

int sp_protocol_parse(const char *s, enum sp_protocol *out);

typedef struct sp_rec sp_rec;

/* A recommender to evaluate. For a model, fold_passes is how many passes
 * of online MF updates build a user vector from a history. Baselines are
 * fitted on fit (every sequence, minus the last holdout events of each),
 * with item indices of the same vocabulary as the evaluation data. */
sp_rec *sp_rec_new_model(const sp_model *m, uint32_t fold_passes);
sp_rec *sp_rec_new_baseline(enum sp_rec_kind kind, const struct sp_dataset *fit, size_t n_items,
                            uint32_t holdout);
void sp_rec_destroy(sp_rec *r);

/* Scores of all n_items items after history hist[0..n). */
void sp_rec_score(sp_rec *r, const int32_t *hist, size_t n, float *scores);

struct sp_eval_opts {
    enum sp_protocol protocol;
    size_t ks[SP_METRICS_MAX_K], n_k;
    uint64_t seed;
    size_t max_users;  /* sampled100: users drawn (10,000 in the SASRec paper) */
    size_t max_events; /* prequential: predictions made (0 = all) */
};

/* Runs the protocol on d (items are indices of the recommender's
 * vocabulary, -1 = unknown) and fills *out. */
int sp_evaluate(sp_rec *r, const struct sp_dataset *d, size_t n_items,
                const struct sp_eval_opts *o, struct sp_metrics *out);

#endif
