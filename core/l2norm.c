/* l2norm.c — row L2 normalisation: out = x / n, n = max(|x|, 1e-12) (the floor
 * of PyTorch's F.normalize, so a zero row gives zeros, not NaN). Saves n (B).
 * Backward (docs/backward.md), y = x / |x|:
 *   dx += (dy - y (y . dy)) / n        (when |x| >= 1e-12)
 *   dx += dy / n                       (on the floor, where n is constant) */
#include <math.h>

#include "ops.h"

#define L2NORM_FLOOR 1e-12

void l2norm_forward(float *out, float *norm, const float *inp, int B, int D) {
    // out (B, D), norm (B), inp (B, D)
#pragma omp parallel for schedule(static) if ((size_t)B * (size_t)D >= 16384)
    for (int b = 0; b < B; b++) {
        const float *x = inp + (size_t)b * D;
        float *y = out + (size_t)b * D;
        double s = 0.0; /* one row: double costs nothing and keeps |y| = 1 tight */
        for (int i = 0; i < D; i++) s += (double)x[i] * x[i];
        double n = sqrt(s);
        if (n < L2NORM_FLOOR) n = L2NORM_FLOOR;
        float inv = (float)(1.0 / n);
        for (int i = 0; i < D; i++) y[i] = x[i] * inv;
        norm[b] = (float)n;
    }
}

void l2norm_backward(float *dinp, const float *dout, const float *out, const float *norm,
                     int B, int D) {
#pragma omp parallel for schedule(static) if ((size_t)B * (size_t)D >= 16384)
    for (int b = 0; b < B; b++) {
        const float *y = out + (size_t)b * D;
        const float *dy = dout + (size_t)b * D;
        float *dx = dinp + (size_t)b * D;
        float inv = 1.0f / norm[b];
        float yd = 0.0f;
        if ((double)norm[b] > L2NORM_FLOOR)
            for (int i = 0; i < D; i++) yd += y[i] * dy[i];
        for (int i = 0; i < D; i++) dx[i] += (dy[i] - y[i] * yd) * inv;
    }
}

void l2norm_forward_ref(float *out, float *norm, const float *inp, int B, int D) {
    for (int b = 0; b < B; b++) {
        const float *x = inp + (size_t)b * D;
        double s = 0.0;
        for (int i = 0; i < D; i++) s += (double)x[i] * x[i];
        double n = sqrt(s);
        if (n < L2NORM_FLOOR) n = L2NORM_FLOOR;
        for (int i = 0; i < D; i++) out[(size_t)b * D + i] = (float)(x[i] / n);
        norm[b] = (float)n;
    }
}

void l2norm_backward_ref(float *dinp, const float *dout, const float *out, const float *norm,
                         int B, int D) {
    for (int b = 0; b < B; b++) {
        const float *y = out + (size_t)b * D;
        const float *dy = dout + (size_t)b * D;
        double n = norm[b], yd = 0.0;
        if (n > L2NORM_FLOOR)
            for (int i = 0; i < D; i++) yd += (double)y[i] * dy[i];
        for (int i = 0; i < D; i++)
            dinp[(size_t)b * D + i] += (float)((dy[i] - (double)y[i] * yd) / n);
    }
}
