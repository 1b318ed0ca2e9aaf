/* pool.c — mean pool over the valid positions of each sample:
 *   out[b] = (1/n_b) sum_{t < n_b} inp[b, t],  n_b = lens[b] (lens NULL: T)
 * Backward: dinp[b, t] += dout[b] / n_b for t < n_b; padded rows get nothing.
 * lens[b] must be in [1, T] (fatal otherwise: a caption of length 0 or longer
 * than the context is a loader bug). */
#include "common.h"
#include "ops.h"

static int pool_len(const int *lens, int b, int T) {
    if (!lens) return T;
    int n = lens[b];
    FLIP_CHECK(n >= 1 && n <= T,
               "meanpool: lens[%d] = %d outside [1, %d]; every sample needs 1..T valid tokens",
               b, n, T);
    return n;
}

void meanpool_forward(float *out, const float *inp, const int *lens, int B, int T, int C) {
    // out (B, C), inp (B, T, C), lens (B)
    for (int b = 0; b < B; b++) (void)pool_len(lens, b, T);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        int n = lens ? lens[b] : T;
        float *y = out + (size_t)b * C;
        for (int c = 0; c < C; c++) y[c] = 0.0f;
        for (int t = 0; t < n; t++) {
            const float *x = inp + ((size_t)b * T + t) * C;
            for (int c = 0; c < C; c++) y[c] += x[c];
        }
        float inv = 1.0f / (float)n;
        for (int c = 0; c < C; c++) y[c] *= inv;
    }
}

void meanpool_backward(float *dinp, const float *dout, const int *lens, int B, int T, int C) {
    for (int b = 0; b < B; b++) (void)pool_len(lens, b, T);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        int n = lens ? lens[b] : T;
        float inv = 1.0f / (float)n;
        const float *dy = dout + (size_t)b * C;
        for (int t = 0; t < n; t++) {
            float *dx = dinp + ((size_t)b * T + t) * C;
            for (int c = 0; c < C; c++) dx[c] += dy[c] * inv;
        }
    }
}

void meanpool_forward_ref(float *out, const float *inp, const int *lens, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        int n = pool_len(lens, b, T);
        for (int c = 0; c < C; c++) {
            double s = 0.0;
            for (int t = 0; t < n; t++) s += inp[((size_t)b * T + t) * C + c];
            out[(size_t)b * C + c] = (float)(s / n);
        }
    }
}

void meanpool_backward_ref(float *dinp, const float *dout, const int *lens, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        int n = pool_len(lens, b, T);
        for (int t = 0; t < n; t++)
            for (int c = 0; c < C; c++)
                dinp[((size_t)b * T + t) * C + c] += (float)((double)dout[(size_t)b * C + c] / n);
    }
}
