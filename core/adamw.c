/* adamw.c — AdamW (Loshchilov & Hutter) with bias-corrected moments and
 * decoupled weight decay, the update of torch.optim.AdamW:
 *   g = grad_scale grad
 *   m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
 *   mhat = m / (1 - b1^step); vhat = v / (1 - b2^step)
 *   param -= lr (mhat / (sqrt(vhat) + eps) + wd param)
 * step counts from 1. sumsq: sum of squares in double (gradient norms). */
#include <math.h>

#include "common.h"
#include "ops.h"

void adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                  float beta1, float beta2, float eps, float wd, float grad_scale, long step) {
    FLIP_CHECK(step >= 1, "adamw_update: step %ld; steps count from 1", step);
    float bc1 = (float)(1.0 - pow((double)beta1, (double)step));
    float bc2 = (float)(1.0 - pow((double)beta2, (double)step));
    float inv_bc1 = 1.0f / bc1, inv_bc2 = 1.0f / bc2;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float mhat = mi * inv_bc1, vhat = vi * inv_bc2;
        param[i] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * param[i]);
    }
}

void adamw_update_ref(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                      float beta1, float beta2, float eps, float wd, float grad_scale,
                      long step) {
    FLIP_CHECK(step >= 1, "adamw_update_ref: step %ld; steps count from 1", step);
    double bc1 = 1.0 - pow((double)beta1, (double)step);
    double bc2 = 1.0 - pow((double)beta2, (double)step);
    for (size_t i = 0; i < n; i++) {
        double g = (double)grad[i] * grad_scale;
        double mi = beta1 * (double)m[i] + (1.0 - beta1) * g;
        double vi = beta2 * (double)v[i] + (1.0 - beta2) * g * g;
        m[i] = (float)mi;
        v[i] = (float)vi;
        double p = param[i];
        param[i] = (float)(p - lr * ((mi / bc1) / (sqrt(vi / bc2) + eps) + wd * p));
    }
}

double sumsq(const float *x, size_t n) {
    double s = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : s)
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}
