/* adamw.c — AdamW (Loshchilov & Hutter) with bias-corrected moments and
 * decoupled weight decay, the update of torch.optim.AdamW:
 *   g = grad_scale grad
 *   m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
 *   mhat = m / (1 - b1^step); vhat = v / (1 - b2^step)
 *   param -= lr (mhat / (sqrt(vhat) + eps) + wd param)
 * step counts from 1. sumsq: sum of squares in double (gradient norms).
 *
 * Speed: the update streams 7 floats per element and is memory bound once it
 * vectorises. sqrtf cannot vectorise under the default -fmath-errno (it may set
 * errno), so the fast path takes the square roots of a small block with SSE
 * sqrtps (correctly rounded, bit-identical to sqrtf) and keeps the remaining
 * loops call-free; other targets use sqrtf. */
#include <math.h>
#include <omp.h>
#if defined(__SSE__)
#include <immintrin.h>
#endif

#include "common.h"
#include "ops.h"

/* elements per block of the fast path (block arrays live on the stack) */
#define ADAMW_BLOCK 256
/* blocks below which the update stays single-threaded (16 K floats) */
#define ADAMW_PAR_MIN_BLOCKS 64

/* x[i] = sqrt(x[i]) for i < n */
static void adamw_sqrt_block(float *x, int n) {
    int i = 0;
#if defined(__SSE__)
    for (; i + 4 <= n; i += 4) _mm_storeu_ps(x + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
#endif
    for (; i < n; i++) x[i] = sqrtf(x[i]);
}

void adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                  float beta1, float beta2, float eps, float wd, float grad_scale, long step) {
    FLIP_CHECK(step >= 1, "adamw_update: step %ld; steps count from 1", step);
    const float inv_bc1 = (float)(1.0 / (1.0 - pow((double)beta1, (double)step)));
    const float inv_bc2 = (float)(1.0 / (1.0 - pow((double)beta2, (double)step)));
    const float a1 = 1.0f - beta1, a2 = 1.0f - beta2;
    size_t n_blocks = (n + ADAMW_BLOCK - 1) / ADAMW_BLOCK;
    /* small tensors (biases, LayerNorm) run on the calling thread: a parallel
     * region costs more than their update; the result is the same either way */
#pragma omp parallel for schedule(static) if (n_blocks >= ADAMW_PAR_MIN_BLOCKS)
    for (size_t blk = 0; blk < n_blocks; blk++) {
        size_t i0 = blk * ADAMW_BLOCK;
        int len = (int)(n - i0 < ADAMW_BLOCK ? n - i0 : ADAMW_BLOCK);
        float *p = param + i0, *mb = m + i0, *vb = v + i0;
        const float *gb = grad + i0;
        float den[ADAMW_BLOCK];
        for (int j = 0; j < len; j++) {
            float g = gb[j] * grad_scale;
            float mi = beta1 * mb[j] + a1 * g;
            float vi = beta2 * vb[j] + a2 * g * g;
            mb[j] = mi;
            vb[j] = vi;
            den[j] = vi * inv_bc2;
        }
        adamw_sqrt_block(den, len);
        for (int j = 0; j < len; j++)
            p[j] -= lr * (mb[j] * inv_bc1 / (den[j] + eps) + wd * p[j]);
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

/* Deterministic at any thread count: the n elements are cut into a fixed
 * number of blocks (independent of threads), each summed serially with 8
 * independent double accumulators (no single add-chain latency bound), and
 * the block sums are added in block order. So the gradient norm — and with it
 * clipping — is bit-identical across thread counts, runs and resumes. */
#define SUMSQ_BLOCKS 64
double sumsq(const float *x, size_t n) {
    double part[SUMSQ_BLOCKS];
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int k = 0; k < SUMSQ_BLOCKS; k++) {
        size_t lo = n * (size_t)k / SUMSQ_BLOCKS, hi = n * (size_t)(k + 1) / SUMSQ_BLOCKS;
        double acc[8] = {0};
        size_t i = lo;
        for (; i + 8 <= hi; i += 8)
            for (int j = 0; j < 8; j++) acc[j] += (double)x[i + j] * x[i + j];
        for (; i < hi; i++) acc[0] += (double)x[i] * x[i];
        part[k] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    }
    double s = 0.0;
    for (int k = 0; k < SUMSQ_BLOCKS; k++) s += part[k];
    return s;
}
