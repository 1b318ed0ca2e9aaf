/* layernorm.c — LayerNorm over the last dimension C (eps FLIP_LN_EPS = 1e-6),
 * learned weight and bias.
 *
 *   mean = (1/C) sum_i x_i,  rstd = 1 / sqrt((1/C) sum_i (x_i - mean)^2 + eps)
 *   xhat_i = (x_i - mean) rstd,  y_i = xhat_i w_i + b_i
 *
 * Backward (derivation in docs/backward.md), with g_i = dy_i w_i:
 *   dx_i = rstd (g_i - mean(g) - xhat_i mean(g xhat))
 *   dw_i += sum_rows dy_i xhat_i,   db_i += sum_rows dy_i
 * Forward saves mean (M) and rstd (M). Backward adds (+=); NULL outputs are
 * skipped. The fast path is row-parallel (OpenMP) for the forward and dinp,
 * column-block-parallel for dweight/dbias (no races, no scratch). */
#include <math.h>

#include "ops.h"

/* Row reductions with 8 independent partial sums: a single float add chain
 * is latency bound (and cannot be reordered without -ffast-math); 8 lanes let
 * the compiler use vector adds. */
#define LN_LANES 8

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *weight, const float *bias, int M, int C) {
    // out (M, C), mean (M), rstd (M), inp (M, C), weight (C), bias (C)
    const int C8 = C - C % LN_LANES;
#pragma omp parallel for schedule(static) if ((size_t)M * (size_t)C >= 16384)
    for (int r = 0; r < M; r++) {
        const float *x = inp + (size_t)r * C;
        float *y = out + (size_t)r * C;
        float acc[LN_LANES] = {0};
        for (int i = 0; i < C8; i += LN_LANES)
            for (int j = 0; j < LN_LANES; j++) acc[j] += x[i + j];
        float s = 0.0f;
        for (int i = C8; i < C; i++) s += x[i];
        for (int j = 0; j < LN_LANES; j++) s += acc[j];
        float mu = s / (float)C;
        float vacc[LN_LANES] = {0};
        for (int i = 0; i < C8; i += LN_LANES)
            for (int j = 0; j < LN_LANES; j++) {
                float d = x[i + j] - mu;
                vacc[j] += d * d;
            }
        float v = 0.0f;
        for (int i = C8; i < C; i++) v += (x[i] - mu) * (x[i] - mu);
        for (int j = 0; j < LN_LANES; j++) v += vacc[j];
        float rs = 1.0f / sqrtf(v / (float)C + FLIP_LN_EPS);
        for (int i = 0; i < C; i++) y[i] = (x[i] - mu) * rs * weight[i] + bias[i];
        mean[r] = mu;
        rstd[r] = rs;
    }
}

/* columns per task of the dweight/dbias pass: 64 floats = one cache line x 4 */
#define LN_COL_BLOCK 64

void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *mean, const float *rstd,
                        const float *weight, int M, int C) {
    // dinp (M, C), dweight (C), dbias (C), dout (M, C), inp (M, C), mean/rstd (M)
    if (dinp) {
        const int C8 = C - C % LN_LANES;
#pragma omp parallel for schedule(static) if ((size_t)M * (size_t)C >= 16384)
        for (int r = 0; r < M; r++) {
            const float *x = inp + (size_t)r * C;
            const float *dy = dout + (size_t)r * C;
            float *dx = dinp + (size_t)r * C;
            float mu = mean[r], rs = rstd[r];
            float ag[LN_LANES] = {0}, agx[LN_LANES] = {0};
            for (int i = 0; i < C8; i += LN_LANES)
                for (int j = 0; j < LN_LANES; j++) {
                    float g = dy[i + j] * weight[i + j];
                    ag[j] += g;
                    agx[j] += g * (x[i + j] - mu);
                }
            float sg = 0.0f, sgx = 0.0f;
            for (int i = C8; i < C; i++) {
                float g = dy[i] * weight[i];
                sg += g;
                sgx += g * (x[i] - mu);
            }
            for (int j = 0; j < LN_LANES; j++) {
                sg += ag[j];
                sgx += agx[j];
            }
            float mg = sg / (float)C, mgx = sgx * rs / (float)C;
            for (int i = 0; i < C; i++) {
                float xh = (x[i] - mu) * rs;
                dx[i] += rs * (dy[i] * weight[i] - mg - xh * mgx);
            }
        }
    }
    if (dweight || dbias) {
        int n_blocks = (C + LN_COL_BLOCK - 1) / LN_COL_BLOCK;
#pragma omp parallel for schedule(static)
        for (int blk = 0; blk < n_blocks; blk++) {
            int c0 = blk * LN_COL_BLOCK;
            int c1 = c0 + LN_COL_BLOCK < C ? c0 + LN_COL_BLOCK : C;
            float aw[LN_COL_BLOCK] = {0}, ab[LN_COL_BLOCK] = {0};
            for (int r = 0; r < M; r++) {
                const float *x = inp + (size_t)r * C;
                const float *dy = dout + (size_t)r * C;
                float mu = mean[r], rs = rstd[r];
                for (int i = c0; i < c1; i++) {
                    aw[i - c0] += dy[i] * (x[i] - mu) * rs;
                    ab[i - c0] += dy[i];
                }
            }
            for (int i = c0; i < c1; i++) {
                if (dweight) dweight[i] += aw[i - c0];
                if (dbias) dbias[i] += ab[i - c0];
            }
        }
    }
}

void layernorm_forward_ref(float *out, float *mean, float *rstd, const float *inp,
                           const float *weight, const float *bias, int M, int C) {
    for (int r = 0; r < M; r++) {
        const float *x = inp + (size_t)r * C;
        double s = 0.0;
        for (int i = 0; i < C; i++) s += x[i];
        double mu = s / C;
        double v = 0.0;
        for (int i = 0; i < C; i++) v += (x[i] - mu) * (x[i] - mu);
        double rs = 1.0 / sqrt(v / C + (double)FLIP_LN_EPS);
        for (int i = 0; i < C; i++)
            out[(size_t)r * C + i] = (float)((x[i] - mu) * rs * weight[i] + bias[i]);
        mean[r] = (float)mu;
        rstd[r] = (float)rs;
    }
}

void layernorm_backward_ref(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *mean, const float *rstd,
                            const float *weight, int M, int C) {
    if (dinp) {
        for (int r = 0; r < M; r++) {
            const float *x = inp + (size_t)r * C;
            const float *dy = dout + (size_t)r * C;
            double mu = mean[r], rs = rstd[r];
            double sg = 0.0, sgx = 0.0;
            for (int i = 0; i < C; i++) {
                double g = (double)dy[i] * weight[i];
                sg += g;
                sgx += g * (x[i] - mu) * rs;
            }
            for (int i = 0; i < C; i++) {
                double xh = (x[i] - mu) * rs;
                dinp[(size_t)r * C + i] +=
                    (float)(rs * ((double)dy[i] * weight[i] - sg / C - xh * sgx / C));
            }
        }
    }
    for (int i = 0; i < C; i++) {
        double aw = 0.0, ab = 0.0;
        for (int r = 0; r < M; r++) {
            double dy = dout[(size_t)r * C + i];
            aw += dy * (inp[(size_t)r * C + i] - (double)mean[r]) * rstd[r];
            ab += dy;
        }
        if (dweight) dweight[i] += (float)aw;
        if (dbias) dbias[i] += (float)ab;
    }
}
