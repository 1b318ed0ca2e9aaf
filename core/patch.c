/* patch.c — image patches, FLIP's kept-patch gather, fixed 2-D sin-cos
 * position embedding (MAE).
 *
 * patchify: images uint8 (B, S, S, Ci) -> (B, Np, P), Np = (S/p)^2,
 *   P = p*p*Ci, patch n = py*(S/p) + px, within a patch order (dy, dx, c),
 *   value (x/255 - mean[c]) / std[c]. No backward (pixels carry no gradient).
 * patchify_kept: the same for the N kept patches keep[b, 0..N) only, which is
 *   all the model ever embeds (dropped patches cost nothing).
 * keep_gather: out[b, n] = inp[b, keep[b, n]]; backward dinp[b, keep[b, n]] +=
 *   dout[b, n] (the adjoint; kept indices are distinct, so no races per b).
 * posemb_sincos_2d: row n = (py, px) of a gh x gw grid,
 *   omega_k = 10000^(-k / (C/4)), k < C/4,
 *   [sin(px omega) | cos(px omega) | sin(py omega) | cos(py omega)].
 * A NULL keep means "all patches, in order" (N must equal Np). */
#include <math.h>

#include "common.h"
#include "ops.h"

static void patch_check_dims(int S, int Ci, int p) {
    FLIP_CHECK(p > 0 && S > 0 && S % p == 0,
               "patchify: image size %d is not a multiple of the patch size %d", S, p);
    FLIP_CHECK(Ci >= 1, "patchify: %d channels; need at least 1", Ci);
}

/* one patch (py, px) of image img (S, S, Ci) into dst (P) */
static void patch_one(float *dst, const uint8_t *img, const float *scale, const float *shift,
                      int S, int Ci, int p, int py, int px) {
    for (int dy = 0; dy < p; dy++) {
        const uint8_t *src = img + ((size_t)(py * p + dy) * S + (size_t)px * p) * Ci;
        float *d = dst + (size_t)dy * p * Ci;
        for (int dx = 0; dx < p; dx++)
            for (int c = 0; c < Ci; c++)
                d[dx * Ci + c] = (float)src[dx * Ci + c] * scale[c] + shift[c];
    }
}

/* (x/255 - mean)/std = x * (1/(255 std)) + (-mean/std); Ci <= 4 handled here */
#define PATCH_MAX_CI 4

static void patch_affine(float *scale, float *shift, const float *mean, const float *std,
                         int Ci) {
    FLIP_CHECK(Ci <= PATCH_MAX_CI, "patchify: %d channels; at most %d supported", Ci,
               PATCH_MAX_CI);
    for (int c = 0; c < Ci; c++) {
        FLIP_CHECK(std[c] > 0.0f, "patchify: std[%d] = %g must be > 0", c, (double)std[c]);
        scale[c] = (float)(1.0 / (255.0 * std[c]));
        shift[c] = (float)(-(double)mean[c] / std[c]);
    }
}

void patchify_forward(float *out, const uint8_t *images, const float *mean, const float *std,
                      int B, int S, int Ci, int p) {
    // out (B, Np, P), images (B, S, S, Ci), mean/std (Ci)
    patch_check_dims(S, Ci, p);
    float scale[PATCH_MAX_CI], shift[PATCH_MAX_CI];
    patch_affine(scale, shift, mean, std, Ci);
    int g = S / p, Np = g * g;
    size_t P = (size_t)p * p * Ci;
#pragma omp parallel for schedule(static)
    for (int bn = 0; bn < B * Np; bn++) {
        int b = bn / Np, n = bn % Np;
        patch_one(out + (size_t)bn * P, images + (size_t)b * S * S * Ci, scale, shift, S, Ci,
                  p, n / g, n % g);
    }
}

void patchify_forward_ref(float *out, const uint8_t *images, const float *mean,
                          const float *std, int B, int S, int Ci, int p) {
    patch_check_dims(S, Ci, p);
    int g = S / p, Np = g * g;
    for (int b = 0; b < B; b++)
        for (int n = 0; n < Np; n++) {
            int py = n / g, px = n % g;
            for (int dy = 0; dy < p; dy++)
                for (int dx = 0; dx < p; dx++)
                    for (int c = 0; c < Ci; c++) {
                        size_t src = (((size_t)b * S + py * p + dy) * S + px * p + dx) * Ci + c;
                        size_t dst = ((size_t)b * Np + n) * p * p * Ci +
                                     ((size_t)dy * p + dx) * Ci + c;
                        out[dst] = (float)(((double)images[src] / 255.0 - mean[c]) / std[c]);
                    }
        }
}

static void keep_check(const int32_t *keep, int B, int Np, int N) {
    FLIP_CHECK(N >= 1 && N <= Np, "keep: %d kept patches of %d; need 1..Np", N, Np);
    if (!keep) {
        FLIP_CHECK(N == Np, "keep: NULL keep list needs N == Np (got N %d, Np %d)", N, Np);
        return;
    }
    for (int b = 0; b < B; b++)
        for (int n = 0; n < N; n++) {
            int32_t k = keep[(size_t)b * N + n];
            FLIP_CHECK(k >= 0 && k < Np && (n == 0 || k > keep[(size_t)b * N + n - 1]),
                       "keep: sample %d entry %d = %d is not an ascending index in [0, %d)", b,
                       n, (int)k, Np);
        }
}

void patchify_kept_forward(float *out, const uint8_t *images, const int32_t *keep,
                           const float *mean, const float *std, int B, int S, int Ci, int p,
                           int N) {
    // out (B, N, P), images (B, S, S, Ci), keep (B, N)
    patch_check_dims(S, Ci, p);
    float scale[PATCH_MAX_CI], shift[PATCH_MAX_CI];
    patch_affine(scale, shift, mean, std, Ci);
    int g = S / p, Np = g * g;
    keep_check(keep, B, Np, N);
    size_t P = (size_t)p * p * Ci;
#pragma omp parallel for schedule(static)
    for (int bn = 0; bn < B * N; bn++) {
        int b = bn / N;
        int k = keep ? keep[bn] : bn % N;
        patch_one(out + (size_t)bn * P, images + (size_t)b * S * S * Ci, scale, shift, S, Ci,
                  p, k / g, k % g);
    }
}

void keep_gather_forward(float *out, const float *inp, const int32_t *keep, int B, int Np,
                         int N, int X) {
    // out (B, N, X), inp (B, Np, X), keep (B, N)
    keep_check(keep, B, Np, N);
#pragma omp parallel for schedule(static)
    for (int bn = 0; bn < B * N; bn++) {
        int b = bn / N;
        int k = keep ? keep[bn] : bn % N;
        const float *src = inp + ((size_t)b * Np + k) * X;
        float *dst = out + (size_t)bn * X;
        for (int x = 0; x < X; x++) dst[x] = src[x];
    }
}

void keep_gather_backward(float *dinp, const float *dout, const int32_t *keep, int B, int Np,
                          int N, int X) {
    if (!dinp) return;
    keep_check(keep, B, Np, N);
    /* kept indices of one sample are distinct (ascending): rows never collide */
#pragma omp parallel for schedule(static)
    for (int bn = 0; bn < B * N; bn++) {
        int b = bn / N;
        int k = keep ? keep[bn] : bn % N;
        float *dst = dinp + ((size_t)b * Np + k) * X;
        const float *src = dout + (size_t)bn * X;
        for (int x = 0; x < X; x++) dst[x] += src[x];
    }
}

void keep_gather_forward_ref(float *out, const float *inp, const int32_t *keep, int B, int Np,
                             int N, int X) {
    keep_check(keep, B, Np, N);
    for (int b = 0; b < B; b++)
        for (int n = 0; n < N; n++) {
            int k = keep ? keep[(size_t)b * N + n] : n;
            for (int x = 0; x < X; x++)
                out[((size_t)b * N + n) * X + x] = inp[((size_t)b * Np + k) * X + x];
        }
}

void keep_gather_backward_ref(float *dinp, const float *dout, const int32_t *keep, int B,
                              int Np, int N, int X) {
    if (!dinp) return;
    keep_check(keep, B, Np, N);
    for (int b = 0; b < B; b++)
        for (int n = 0; n < N; n++) {
            int k = keep ? keep[(size_t)b * N + n] : n;
            for (int x = 0; x < X; x++)
                dinp[((size_t)b * Np + k) * X + x] += dout[((size_t)b * N + n) * X + x];
        }
}

void posemb_sincos_2d(float *table, int gh, int gw, int C) {
    // table (gh*gw, C)
    FLIP_CHECK(C > 0 && C % 4 == 0,
               "posemb_sincos_2d: width %d is not a multiple of 4; choose a width divisible by 4",
               C);
    FLIP_CHECK(gh > 0 && gw > 0, "posemb_sincos_2d: empty %d x %d grid", gh, gw);
    int q = C / 4;
    for (int py = 0; py < gh; py++)
        for (int px = 0; px < gw; px++) {
            float *row = table + ((size_t)py * gw + px) * C;
            for (int k = 0; k < q; k++) {
                double omega = 1.0 / pow(10000.0, (double)k / q);
                row[k] = (float)sin(px * omega);
                row[q + k] = (float)cos(px * omega);
                row[2 * q + k] = (float)sin(py * omega);
                row[3 * q + k] = (float)cos(py * omega);
            }
        }
}

void posemb_add_kept(float *x, const float *table, const int32_t *keep, int B, int N, int C) {
    // x (B, N, C), table (Np, C), keep (B, N) (NULL: row n uses table row n)
#pragma omp parallel for schedule(static)
    for (int bn = 0; bn < B * N; bn++) {
        int k = keep ? keep[bn] : bn % N;
        const float *src = table + (size_t)k * C;
        float *dst = x + (size_t)bn * C;
        for (int c = 0; c < C; c++) dst[c] += src[c];
    }
}
