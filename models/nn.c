/* Dense layers shared by the encoders: linear (one sgemm each way) and
 * layer normalisation, forward and backward. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "models/seq.h"

#define LN_EPS 1e-6f

void sp_nn_dropout(float *x, float *mask, size_t n, float p, int train, uint64_t *rng) {
    if (!train || p <= 0.0f || !rng) {
        for (size_t i = 0; i < n; i++) mask[i] = 1.0f;
        return;
    }
    float keep = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) {
        mask[i] = sp_rng_uniform(rng) < p ? 0.0f : keep;
        x[i] *= mask[i];
    }
}

void sp_nn_linear(const float *X, size_t t, size_t in, size_t out, const float *W, const float *b,
                  float *Y) {
    for (size_t i = 0; i < t; i++) {
        if (b)
            memcpy(Y + i * out, b, out * sizeof(float));
        else
            memset(Y + i * out, 0, out * sizeof(float));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)t, (int)out, (int)in, 1.0f, X,
                (int)in, W, (int)out, 1.0f, Y, (int)out);
}

/* dW += X^T dY, db += column sums of dY, dX = dx_beta * dX + dY W^T (dX
 * may be NULL when the input needs no gradient). */
void sp_nn_linear_back(const float *X, const float *dY, size_t t, size_t in, size_t out,
                       const float *W, float *dX, float dx_beta, float *dW, float *db) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)in, (int)out, (int)t, 1.0f, X,
                (int)in, dY, (int)out, 1.0f, dW, (int)out);
    if (db)
        for (size_t i = 0; i < t; i++)
            for (size_t j = 0; j < out; j++) db[j] += dY[i * out + j];
    if (dX)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)t, (int)in, (int)out, 1.0f, dY,
                    (int)out, W, (int)out, dx_beta, dX, (int)in);
}

void sp_nn_layernorm(const float *X, size_t t, size_t d, const float *g, const float *b, float *Y,
                     float *xhat, float *rstd) {
    for (size_t i = 0; i < t; i++) {
        const float *x = X + i * d;
        float mean = 0, var = 0;
        for (size_t k = 0; k < d; k++) mean += x[k];
        mean /= (float)d;
        for (size_t k = 0; k < d; k++) var += (x[k] - mean) * (x[k] - mean);
        var /= (float)d;
        float r = 1.0f / sqrtf(var + LN_EPS);
        rstd[i] = r;
        for (size_t k = 0; k < d; k++) {
            float h = (x[k] - mean) * r;
            xhat[i * d + k] = h;
            Y[i * d + k] = h * g[k] + b[k];
        }
    }
}

/* dX += the input gradient; dg, db += the gain and shift gradients. */
void sp_nn_layernorm_back(const float *dY, const float *xhat, const float *rstd, size_t t, size_t d,
                          const float *g, float *dX, float *dg, float *db) {
    for (size_t i = 0; i < t; i++) {
        const float *dy = dY + i * d, *h = xhat + i * d;
        float s1 = 0, s2 = 0;
        for (size_t k = 0; k < d; k++) {
            float dh = dy[k] * g[k];
            s1 += dh;
            s2 += dh * h[k];
            dg[k] += dy[k] * h[k];
            db[k] += dy[k];
        }
        float r = rstd[i] / (float)d;
        for (size_t k = 0; k < d; k++)
            dX[i * d + k] += r * ((float)d * dy[k] * g[k] - s1 - h[k] * s2);
    }
}
