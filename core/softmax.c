/* softmax.c — row softmax over n columns, max-shifted:
 *   p_j = exp(x_j - max x) / sum_k exp(x_k - max x)
 * In place (out == inp) is allowed. Backward (docs/backward.md):
 *   dx_j += p_j (dy_j - sum_k dy_k p_k)
 * Fast path: rows in parallel (OpenMP). */
#include <math.h>

#include "ops.h"

void softmax_forward(float *out, const float *inp, int M, int n) {
    // out (M, n), inp (M, n)
#pragma omp parallel for schedule(static)
    for (int r = 0; r < M; r++) {
        const float *x = inp + (size_t)r * n;
        float *y = out + (size_t)r * n;
        float mx = -INFINITY;
        for (int j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;
        float s = 0.0f;
        for (int j = 0; j < n; j++) {
            float e = expf(x[j] - mx);
            y[j] = e;
            s += e;
        }
        float inv = 1.0f / s;
        for (int j = 0; j < n; j++) y[j] *= inv;
    }
}

void softmax_backward(float *dinp, const float *dout, const float *out, int M, int n) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < M; r++) {
        const float *dy = dout + (size_t)r * n;
        const float *p = out + (size_t)r * n;
        float *dx = dinp + (size_t)r * n;
        float s = 0.0f;
        for (int j = 0; j < n; j++) s += dy[j] * p[j];
        for (int j = 0; j < n; j++) dx[j] += p[j] * (dy[j] - s);
    }
}

void softmax_forward_ref(float *out, const float *inp, int M, int n) {
    for (int r = 0; r < M; r++) {
        const float *x = inp + (size_t)r * n;
        float *y = out + (size_t)r * n;
        double mx = -INFINITY;
        for (int j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;
        double s = 0.0;
        for (int j = 0; j < n; j++) s += exp(x[j] - mx);
        /* read x before writing y: in-place use is allowed */
        for (int j = 0; j < n; j++) y[j] = (float)(exp(x[j] - mx) / s);
    }
}

void softmax_backward_ref(float *dinp, const float *dout, const float *out, int M, int n) {
    for (int r = 0; r < M; r++) {
        const float *dy = dout + (size_t)r * n;
        const float *p = out + (size_t)r * n;
        double s = 0.0;
        for (int j = 0; j < n; j++) s += (double)dy[j] * p[j];
        for (int j = 0; j < n; j++) dinp[(size_t)r * n + j] += (float)(p[j] * (dy[j] - s));
    }
}
