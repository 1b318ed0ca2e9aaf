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
 * Fast path: every product is one batched oneDNN matmul over (B, H) with 4-D
 * strided descriptors, so q, k, v are read in place from qkv (B, T, 3C) — dims
 * (B, H, T, hd), strides (T*3C, hd, 3C, 1) — k^T and P^T are transposed
 * strides, out and dqkv are written in place (dqkv with a sum post-op, i.e.
 * +=). The masked softmax and the dS step are OpenMP loops over rows.
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

/* Describes a (B, H, rows, cols) operand by its four strides. */
static void set4(dnnl_dim_t *dims, dnnl_dim_t *strides, int B, int H, int rows, int cols,
                 dnnl_dim_t sb, dnnl_dim_t sh, dnnl_dim_t sr, dnnl_dim_t sc) {
    dims[0] = B; dims[1] = H; dims[2] = rows; dims[3] = cols;
    strides[0] = sb; strides[1] = sh; strides[2] = sr; strides[3] = sc;
}

/* Operand layouts (element strides). */
typedef enum {
    LAY_QKV,    /* (B, H, T, hd) inside qkv / dqkv rows of 3C */
    LAY_QKV_T,  /* (B, H, hd, T) transposed view of the same */
    LAY_BTC,    /* (B, H, T, hd) inside out / dout rows of C */
    LAY_ATT,    /* (B, H, T, T) dense */
    LAY_ATT_T   /* (B, H, T, T) transposed */
} Layout;

static void set_layout(dnnl_dim_t *dims, dnnl_dim_t *strides, Layout lay, int B, int T, int C,
                       int H) {
    int hd = C / H;
    dnnl_dim_t C3 = 3 * (dnnl_dim_t)C, TT = (dnnl_dim_t)T * T;
    switch (lay) {
    case LAY_QKV: set4(dims, strides, B, H, T, hd, T * C3, hd, C3, 1); break;
    case LAY_QKV_T: set4(dims, strides, B, H, hd, T, T * C3, hd, 1, C3); break;
    case LAY_BTC: set4(dims, strides, B, H, T, hd, (dnnl_dim_t)T * C, hd, C, 1); break;
    case LAY_ATT: set4(dims, strides, B, H, T, T, H * TT, TT, T, 1); break;
    case LAY_ATT_T: set4(dims, strides, B, H, T, T, H * TT, TT, 1, T); break;
    }
}

/* dst = alpha * src @ wei (+= when accumulate), batched over (B, H). */
static void bmm(float *dst, Layout dl, const float *src, Layout sl, const float *wei, Layout wl,
                float alpha, int accumulate, int B, int T, int C, int H) {
    FlipMatmulSpec s;
    flip_matmul_spec_init(&s, 4);
    set_layout(s.src_dims, s.src_strides, sl, B, T, C, H);
    set_layout(s.wei_dims, s.wei_strides, wl, B, T, C, H);
    set_layout(s.dst_dims, s.dst_strides, dl, B, T, C, H);
    s.alpha = alpha;
    s.accumulate = accumulate;
    flip_matmul(&s, dst, src, wei, NULL);
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

/* row (T) of scores -> probabilities over the first L keys, exact 0 after */
FLIP_ROW_CLONES
static void softmax_row_masked(float *row, int L, int T) {
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

/* d (T) holds dP on entry, dS = p * (dP - sum(dP * p)) on exit */
FLIP_ROW_CLONES
static void dsoftmax_row(float *d, const float *p, int T) {
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int j = 0; j < T; j++) dot += p[j] * d[j];
#pragma omp simd
    for (int j = 0; j < T; j++) d[j] = p[j] * (d[j] - dot);
}

void attention_forward(float *out, float *att, const float *qkv, const int *lens,
                       int B, int T, int C, int H) {
    check_dims("attention_forward", lens, B, T, C, H);
    int hd = C / H;
    float scale = (float)(1.0 / sqrt((double)hd));
    /* S = s q k^T  -> att */
    bmm(att, LAY_ATT, qkv, LAY_QKV, qkv + C, LAY_QKV_T, scale, 0, B, T, C, H);
    /* masked softmax over keys, in place */
    long n_rows = (long)B * H * T;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < n_rows; r++) {
        int b = (int)(r / ((long)H * T));
        softmax_row_masked(att + (size_t)r * T, lens ? lens[b] : T, T);
    }
    /* out = P v, written into (B, T, C) */
    bmm(out, LAY_BTC, att, LAY_ATT, qkv + 2 * (size_t)C, LAY_QKV, 1.0f, 0, B, T, C, H);
}

void attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                        const float *att, const int *lens, int B, int T, int C, int H) {
    check_dims("attention_backward", lens, B, T, C, H);
    int hd = C / H;
    float scale = (float)(1.0 / sqrt((double)hd));
    /* dV += P^T dout */
    bmm(dqkv + 2 * (size_t)C, LAY_QKV, att, LAY_ATT_T, dout, LAY_BTC, 1.0f, 1, B, T, C, H);
    /* dP = dout V^T -> scratch */
    bmm(scratch, LAY_ATT, dout, LAY_BTC, qkv + 2 * (size_t)C, LAY_QKV_T, 1.0f, 0, B, T, C, H);
    /* dS = P * (dP - rowsum(dP * P)), in place; masked columns have P = 0 */
    long n_rows = (long)B * H * T;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < n_rows; r++) dsoftmax_row(scratch + (size_t)r * T, att + (size_t)r * T, T);
    /* dQ += s dS K ; dK += s dS^T Q */
    bmm(dqkv, LAY_QKV, scratch, LAY_ATT, qkv + C, LAY_QKV, scale, 1, B, T, C, H);
    bmm(dqkv + C, LAY_QKV, scratch, LAY_ATT_T, qkv, LAY_QKV, scale, 1, B, T, C, H);
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
