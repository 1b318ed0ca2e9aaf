/* attention.c — multi-head self-attention core (no projections), see ops.h.
 *
 * Per sample b and head h, with q, k, v (T, hd) the head's columns of qkv,
 * scale s = 1/sqrt(hd) and key mask j < lens[b]:
 *   S = s q k^T,  P = softmax over valid keys (masked P exactly 0),  out = P v
 * Backward (dout (T, hd) of the head):
 *   dV = P^T dout,  dP = dout V^T,  dS = P * (dP - rowsum(dP * P)),
 *   dQ = s dS K,    dK = s dS^T Q
 * Masked keys have P = 0, hence dS = 0 in their column: dK and dV of padded
 * positions receive exactly zero.
 *
 * Fast path: one OpenMP loop over the B*H (sample, head) pairs; each pair runs
 * its products as oneDNN sgemm calls (single-threaded inside the loop) on the
 * head's columns read in place from qkv (B, T, 3C) — row stride 3C, k^T and
 * P^T by the transpose flags, no copies — with the masked softmax / dS rows in
 * between while the (T, T) block is still in cache; out and dqkv are written in
 * place (dqkv with beta = 1, i.e. +=). Only the L = lens[b] valid keys enter
 * the products, so padding costs nothing and padded keys' dK, dV are never
 * touched. Measured against one batched 4-D strided oneDNN matmul per product
 * (the first version): forward 0-16 %, backward 12-18 % faster (bench_ops,
 * 1 thread, CPU clock, ViT-S and tiny shapes), mostly from keeping S/P in
 * cache between the products.
 * Reference twins: plain loops with double accumulation.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common.h"
#include "dnnl_util.h"
#include "ops.h"

static void check_dims(const char *fn, const int *lens, int B, int T, int C, int H) {
    FLIP_CHECK(B > 0 && T > 0 && C > 0 && H > 0 && C % H == 0,
               "%s: bad dims B=%d T=%d C=%d H=%d (C must be a multiple of H)", fn, B, T, C, H);
    if (lens) {
        for (int b = 0; b < B; b++)
            FLIP_CHECK(lens[b] >= 1 && lens[b] <= T,
                       "%s: sample %d has length %d, outside [1, %d]; fix the token lengths",
                       fn, b, lens[b], T);
    }
}

/* Row kernels, compiled for AVX-512 / AVX2 / baseline and picked at load time
 * (GCC function multi-versioning), so they vectorise without -march=native.
 * exp: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, Cephes degree-6
 * polynomial (relative error ~1 ulp), 2^n by exponent bits; inputs are
 * x - max <= 0, clamped below at -87 (exp(-87) ~ 1.6e-38, negligible next to
 * the row sum >= 1). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FLIP_ROW_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FLIP_ROW_CLONES
#endif

static inline float exp_neg(float x) {
    x = x < -87.0f ? -87.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round(x / ln2) */
    float r = x - n * 0.693145751953125f;   /* ln2 high part: n * hi exact */
    r = r - n * 1.428606765330187045e-06f;  /* ln2 low part */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* P (T, T): each row's scores -> probabilities over the first L keys, exact 0
 * after. One call per (b, h) block keeps the multi-versioned dispatch out of
 * the row loop. */
FLIP_ROW_CLONES
static void softmax_block_masked(float *P, int L, int T) {
    for (int i = 0; i < T; i++) {
        float *row = P + (size_t)i * T;
        float mx = -FLT_MAX;
#pragma omp simd reduction(max : mx)
        for (int j = 0; j < L; j++) mx = row[j] > mx ? row[j] : mx;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < L; j++) {
            float e = exp_neg(row[j] - mx);
            row[j] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
#pragma omp simd
        for (int j = 0; j < L; j++) row[j] *= inv;
        for (int j = L; j < T; j++) row[j] = 0.0f;
    }
}

/* dS (T, T), row stride T, holds dP in its first L columns on entry and
 * dS = P * (dP - rowsum(dP * P)) there on exit (P is 0 beyond L) */
FLIP_ROW_CLONES
static void dsoftmax_block(float *dS, const float *P, int L, int T) {
    for (int i = 0; i < T; i++) {
        float *d = dS + (size_t)i * T;
        const float *p = P + (size_t)i * T;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int j = 0; j < L; j++) dot += p[j] * d[j];
#pragma omp simd
        for (int j = 0; j < L; j++) d[j] = p[j] * (d[j] - dot);
    }
}

/* oneDNN's row-major sgemm: C = alpha op(A) op(B) + beta C. Called inside the
 * OpenMP loop over (b, h), where it runs single-threaded on its thread. */
static void sgemm(char ta, char tb, int m, int n, int k, float alpha, const float *A, size_t lda,
                  const float *Bm, size_t ldb, float beta, float *Cm, size_t ldc) {
    DNNL_CHECK(dnnl_sgemm(ta, tb, m, n, k, alpha, A, (dnnl_dim_t)lda, Bm, (dnnl_dim_t)ldb, beta,
                          Cm, (dnnl_dim_t)ldc));
}

void attention_forward(float *out, float *att, const float *qkv, const int *lens,
                       int B, int T, int C, int H) {
    check_dims("attention_forward", lens, B, T, C, H);
    int hd = C / H;
    size_t C3 = 3 * (size_t)C;
    float scale = (float)(1.0 / sqrt((double)hd));
#pragma omp parallel for schedule(dynamic, 1)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        int L = lens ? lens[b] : T;
        const float *q = qkv + (size_t)b * T * C3 + (size_t)h * hd; /* (T, hd), row stride 3C */
        const float *k = q + C, *v = q + 2 * (size_t)C;
        float *P = att + (size_t)bh * T * T;                       /* (T, T) */
        /* S[:, :L] = s q k[:L]^T */
        sgemm('N', 'T', T, L, hd, scale, q, C3, k, C3, 0.0f, P, T);
        softmax_block_masked(P, L, T);
        /* out (T, hd), row stride C = P[:, :L] v[:L] */
        sgemm('N', 'N', T, hd, L, 1.0f, P, T, v, C3, 0.0f, out + (size_t)b * T * C + (size_t)h * hd, C);
    }
}

void attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                        const float *att, const int *lens, int B, int T, int C, int H) {
    check_dims("attention_backward", lens, B, T, C, H);
    int hd = C / H;
    size_t C3 = 3 * (size_t)C;
    float scale = (float)(1.0 / sqrt((double)hd));
#pragma omp parallel for schedule(dynamic, 1)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        int L = lens ? lens[b] : T;
        size_t off = (size_t)b * T * C3 + (size_t)h * hd;
        const float *q = qkv + off, *k = q + C, *v = q + 2 * (size_t)C;
        float *dq = dqkv + off, *dk = dq + C, *dv = dq + 2 * (size_t)C;
        const float *g = dout + (size_t)b * T * C + (size_t)h * hd; /* (T, hd), row stride C */
        const float *P = att + (size_t)bh * T * T;
        float *dS = scratch + (size_t)bh * T * T;
        /* dV[:L] += P[:, :L]^T dout */
        sgemm('T', 'N', L, hd, T, 1.0f, P, T, g, C, 1.0f, dv, C3);
        /* dP[:, :L] = dout v[:L]^T, then dS in place */
        sgemm('N', 'T', T, L, hd, 1.0f, g, C, v, C3, 0.0f, dS, T);
        dsoftmax_block(dS, P, L, T);
        /* dQ += s dS[:, :L] k[:L] ; dK[:L] += s dS[:, :L]^T q */
        sgemm('N', 'N', T, hd, L, scale, dS, T, k, C3, 1.0f, dq, C3);
        sgemm('T', 'N', L, hd, T, scale, dS, T, q, C3, 1.0f, dk, C3);
    }
}

/* ---- reference ---- */
void attention_forward_ref(float *out, float *att, const float *qkv, const int *lens,
                           int B, int T, int C, int H) {
    check_dims("attention_forward_ref", lens, B, T, C, H);
    int hd = C / H;
    size_t C3 = 3 * (size_t)C;
    double scale = 1.0 / sqrt((double)hd);
    for (int b = 0; b < B; b++) {
        int L = lens ? lens[b] : T;
        const float *xb = qkv + (size_t)b * T * C3;
        for (int h = 0; h < H; h++) {
            float *P = att + ((size_t)b * H + h) * T * T;
            for (int i = 0; i < T; i++) {
                const float *q = xb + i * C3 + (size_t)h * hd;
                /* scores in double, stored after normalisation */
                double mx = -INFINITY;
                for (int j = 0; j < L; j++) {
                    const float *k = xb + j * C3 + C + (size_t)h * hd;
                    double sc = 0.0;
                    for (int d = 0; d < hd; d++) sc += (double)q[d] * (double)k[d];
                    sc *= scale;
                    if (sc > mx) mx = sc;
                }
                double sum = 0.0;
                for (int j = 0; j < L; j++) {
                    const float *k = xb + j * C3 + C + (size_t)h * hd;
                    double sc = 0.0;
                    for (int d = 0; d < hd; d++) sc += (double)q[d] * (double)k[d];
                    sum += exp(sc * scale - mx);
                }
                for (int j = 0; j < T; j++) {
                    if (j >= L) { P[(size_t)i * T + j] = 0.0f; continue; }
                    const float *k = xb + j * C3 + C + (size_t)h * hd;
                    double sc = 0.0;
                    for (int d = 0; d < hd; d++) sc += (double)q[d] * (double)k[d];
                    P[(size_t)i * T + j] = (float)(exp(sc * scale - mx) / sum);
                }
                for (int d = 0; d < hd; d++) {
                    double acc = 0.0;
                    for (int j = 0; j < L; j++)
                        acc += (double)P[(size_t)i * T + j] * (double)xb[j * C3 + 2 * (size_t)C + (size_t)h * hd + d];
                    out[((size_t)b * T + i) * C + (size_t)h * hd + d] = (float)acc;
                }
            }
        }
    }
}

void attention_backward_ref(float *dqkv, float *scratch, const float *dout, const float *qkv,
                            const float *att, const int *lens, int B, int T, int C, int H) {
    check_dims("attention_backward_ref", lens, B, T, C, H);
    int hd = C / H;
    size_t C3 = 3 * (size_t)C;
    double scale = 1.0 / sqrt((double)hd);
    for (int b = 0; b < B; b++) {
        const float *xb = qkv + (size_t)b * T * C3;
        float *dxb = dqkv + (size_t)b * T * C3;
        const float *gb = dout + (size_t)b * T * C;
        for (int h = 0; h < H; h++) {
            const float *P = att + ((size_t)b * H + h) * T * T;
            float *dS = scratch + ((size_t)b * H + h) * T * T;
            size_t ho = (size_t)h * hd;
            /* dS = P * (dP - rowsum(dP * P)), dP_ij = dout_i . v_j */
            for (int i = 0; i < T; i++) {
                double rs = 0.0;
                for (int j = 0; j < T; j++) {
                    double dp = 0.0;
                    for (int d = 0; d < hd; d++)
                        dp += (double)gb[(size_t)i * C + ho + d] * (double)xb[j * C3 + 2 * (size_t)C + ho + d];
                    rs += dp * (double)P[(size_t)i * T + j];
                }
                for (int j = 0; j < T; j++) {
                    double dp = 0.0;
                    for (int d = 0; d < hd; d++)
                        dp += (double)gb[(size_t)i * C + ho + d] * (double)xb[j * C3 + 2 * (size_t)C + ho + d];
                    dS[(size_t)i * T + j] = (float)((double)P[(size_t)i * T + j] * (dp - rs));
                }
            }
            for (int t = 0; t < T; t++) {
                for (int d = 0; d < hd; d++) {
                    double dq = 0.0, dk = 0.0, dv = 0.0;
                    for (int u = 0; u < T; u++) {
                        dq += (double)dS[(size_t)t * T + u] * (double)xb[u * C3 + C + ho + d];
                        dk += (double)dS[(size_t)u * T + t] * (double)xb[u * C3 + ho + d];
                        dv += (double)P[(size_t)u * T + t] * (double)gb[(size_t)u * C + ho + d];
                    }
                    dxb[t * C3 + ho + d] += (float)(scale * dq);
                    dxb[t * C3 + C + ho + d] += (float)(scale * dk);
                    dxb[t * C3 + 2 * (size_t)C + ho + d] += (float)dv;
                }
            }
        }
    }
}
