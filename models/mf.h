#ifndef MODELS_MF_H
#define MODELS_MF_H

/* Internal MF math (the serving calls are in models/scorer.h). */
#include "models/model.h"

/* Weighted BPR loss of (user u, positive i, negative j) with L2 on every
 * factor involved, and its gradient into du, dqi, dqj (dim floats each)
 * and dbi, dbj. P is the parameter array in m's layout. */
double sp_mf_bpr_grad(const sp_model *m, const float *P, const float *u, int32_t i, int32_t j,
                      float w, float *du, float *dqi, float *dqj, float *dbi, float *dbj);

#endif
