/* infonce.c — this rank's block of the global symmetric InfoNCE loss (CLIP).
 *
 * The rank owns global rows offset..offset+B-1. u, v (B, D) are its
 * L2-normalised image / text embeddings, U, V (G, D) the all-gathered ones.
 * With s = exp(t), c = 1 / (2G) and target g_b = offset + b:
 *   image->text: l0[b, g] = s u_b . V_g,  p0 = softmax_g(l0[b])
 *   text->image: l1[b, g] = s v_b . U_g,  p1 = softmax_g(l1[b])
 *   loss = c sum_b [(lse(l0[b]) - l0[b, g_b]) + (lse(l1[b]) - l1[b, g_b])]
 * (max-shifted log-sum-exp). probs (2, B, G) saves p0 and p1.
 *
 * Backward with k = dloss c and dl[b, g] = k (p[b, g] - [g == g_b]):
 *   du_b += s sum_g dl0[b, g] V_g        dV_g += s sum_b dl0[b, g] u_b
 *   dv_b += s sum_g dl1[b, g] U_g        dU_g += s sum_b dl1[b, g] v_b
 *   dt   += sum_{d, b, g} dl_d[b, g] l_d[b, g]
 *        =  k sum_{d, b} (sum_g p log p - log p[b, g_b])   (softmax identity)
 * Summing dU, dV over ranks (reduce-scatter to their owners) and adding them
 * to du, dv gives the exact gradient of the global loss; docs/backward.md.
 *
 * Fast path: the B x G logits and the four gradient products are OpenBLAS
 * sgemm calls (single-threaded, split across the OpenMP pool along G or D),
 * fed with the saved probabilities directly, so no scratch is needed.
 * du may alias dU and dv may alias dV (B == G: one buffer per tower). */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <omp.h>

#include "common.h"
#include "ops.h"

/* OpenBLAS runs single-threaded inside the one OpenMP pool (DESIGN §6). */
void openblas_set_num_threads(int num_threads);
static int infonce_blas_single = 0;
static void infonce_blas_init(void) {
    if (!infonce_blas_single) {
        openblas_set_num_threads(1);
        infonce_blas_single = 1;
    }
}

static void infonce_check(int B, int G, int D, int offset) {
    FLIP_CHECK(B >= 1 && D >= 1 && G >= B && offset >= 0 && offset + B <= G,
               "infonce: rows [%d, %d) do not fit a global batch of %d (D %d)", offset,
               offset + B, G, D);
}

/* [lo, hi) of n split into near-equal parts for thread `id` of `nt` */
static void split_range(int n, int id, int nt, int *lo, int *hi) {
    *lo = (int)((long)n * id / nt);
    *hi = (int)((long)n * (id + 1) / nt);
}

/* logits (B, G) = s a (B, D) @ Bm (G, D)^T, then in-place softmax rows; returns
 * the sum of the B cross-entropies with targets offset + b (double). */
/* Fixed row blocks for deterministic sums (independent of thread count). */
#define INFONCE_BLOCKS 64
static int block_lo(int B, int k) { return (int)((long long)B * k / INFONCE_BLOCKS); }

static double infonce_direction(float *p, const float *a, const float *Bm, float s, int B,
                                int G, int D, int offset) {
#pragma omp parallel
    {
        int lo, hi;
        split_range(G, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        if (hi > lo)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, hi - lo, D, s, a, D,
                        Bm + (size_t)lo * D, D, 0.0f, p + lo, G);
    }
    /* row terms summed in fixed row blocks, then block sums in order: the
     * loss is bit-identical at any thread count (no OpenMP reduction) */
    double part[INFONCE_BLOCKS] = {0};
#pragma omp parallel for schedule(static)
    for (int k = 0; k < INFONCE_BLOCKS; k++) {
        for (int b = block_lo(B, k); b < block_lo(B, k + 1); b++) {
            float *row = p + (size_t)b * G;
            float mx = -INFINITY;
            for (int g = 0; g < G; g++) mx = row[g] > mx ? row[g] : mx;
            float target = row[offset + b];
            float sum = 0.0f;
            for (int g = 0; g < G; g++) {
                float e = expf(row[g] - mx);
                row[g] = e;
                sum += e;
            }
            float inv = 1.0f / sum;
            for (int g = 0; g < G; g++) row[g] *= inv;
            part[k] += (double)mx + log((double)sum) - (double)target;
        }
    }
    double ce = 0.0;
    for (int k = 0; k < INFONCE_BLOCKS; k++) ce += part[k];
    return ce;
}

void infonce_forward(float *loss, float *probs, const float *u, const float *v,
                     const float *U, const float *V, float t, int B, int G, int D, int offset) {
    // loss (1), probs (2, B, G), u/v (B, D), U/V (G, D)
    infonce_check(B, G, D, offset);
    infonce_blas_init();
    float s = expf(t);
    double ce = infonce_direction(probs, u, V, s, B, G, D, offset);
    ce += infonce_direction(probs + (size_t)B * G, v, U, s, B, G, D, offset);
    *loss = (float)(ce / (2.0 * G));
}

/* sum_g l[b, g] dl[b, g] / k for one row, from the saved softmax: E_p[l] - l_target.
 * When p[target] is denormal or 0 (a loss > ~87) the row's logits are recomputed. */
static double infonce_row_dt(const float *prow, const float *a, const float *Bm, float s,
                             int G, int D, int target) {
    if (prow[target] >= FLT_MIN) { /* normal float: log keeps full precision */
        /* p log p in float (relative error ~1e-7 per term), summed in double;
         * terms with p < 1e-30 contribute < 1e-28 each and are skipped */
        double h = 0.0;
        for (int g = 0; g < G; g++)
            if (prow[g] > 1e-30f) h += (double)(prow[g] * logf(prow[g]));
        return h - log((double)prow[target]);
    }
    double el = 0.0, lt = 0.0;
    for (int g = 0; g < G; g++) {
        double d = 0.0;
        for (int i = 0; i < D; i++) d += (double)a[i] * Bm[(size_t)g * D + i];
        el += (double)prow[g] * s * d;
        if (g == target) lt = s * d;
    }
    return el - lt;
}

/* one direction's gradient: da (B, D) += s k (P Bm - Bm[targets]),
 * dBm (G, D) += s k (P^T a - a at rows targets); returns the dt sum / k. */
static double infonce_direction_backward(float *da, float *dBm, const float *p,
                                         const float *a, const float *Bm, float s, float k,
                                         int B, int G, int D, int offset) {
    float alpha = s * k;
#pragma omp parallel
    {
        int id = omp_get_thread_num(), nt = omp_get_num_threads(), lo, hi;
        if (da) {
            split_range(D, id, nt, &lo, &hi);
            if (hi > lo) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, hi - lo, G, alpha, p,
                            G, Bm + lo, D, 1.0f, da + lo, D);
                for (int b = 0; b < B; b++)
                    for (int i = lo; i < hi; i++)
                        da[(size_t)b * D + i] -= alpha * Bm[(size_t)(offset + b) * D + i];
            }
        }
        /* da may alias dBm (single process: du and dU in one buffer) */
#pragma omp barrier
        if (dBm) {
            split_range(G, id, nt, &lo, &hi);
            if (hi > lo)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hi - lo, D, B, alpha,
                            p + lo, G, a, D, 1.0f, dBm + (size_t)lo * D, D);
            for (int b = 0; b < B; b++) {
                int g = offset + b;
                if (g < lo || g >= hi) continue;
                for (int i = 0; i < D; i++) dBm[(size_t)g * D + i] -= alpha * a[(size_t)b * D + i];
            }
        }
    }
    double part[INFONCE_BLOCKS] = {0};
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < INFONCE_BLOCKS; blk++)
        for (int b = block_lo(B, blk); b < block_lo(B, blk + 1); b++)
            part[blk] += infonce_row_dt(p + (size_t)b * G, a + (size_t)b * D, Bm, s, G, D, offset + b);
    double dt = 0.0;
    for (int blk = 0; blk < INFONCE_BLOCKS; blk++) dt += part[blk];
    return dt;
}

void infonce_backward(float *du, float *dv, float *dU, float *dV, float *dt, float dloss,
                      const float *probs, const float *u, const float *v, const float *U,
                      const float *V, float t, int B, int G, int D, int offset) {
    infonce_check(B, G, D, offset);
    infonce_blas_init();
    float s = expf(t);
    float k = (float)((double)dloss / (2.0 * G));
    double sdt = infonce_direction_backward(du, dV, probs, u, V, s, k, B, G, D, offset);
    sdt += infonce_direction_backward(dv, dU, probs + (size_t)B * G, v, U, s, k, B, G, D, offset);
    if (dt) *dt += (float)(sdt * k);
}

/* ---- reference: plain loops, double accumulation ---- */

static double ref_dot(const float *a, const float *b, int D) {
    double d = 0.0;
    for (int i = 0; i < D; i++) d += (double)a[i] * b[i];
    return d;
}

void infonce_forward_ref(float *loss, float *probs, const float *u, const float *v,
                         const float *U, const float *V, float t, int B, int G, int D,
                         int offset) {
    infonce_check(B, G, D, offset);
    double s = exp((double)t), ce = 0.0;
    for (int dir = 0; dir < 2; dir++) {
        const float *a = dir == 0 ? u : v;
        const float *Bm = dir == 0 ? V : U;
        float *p = probs + (size_t)dir * B * G;
        for (int b = 0; b < B; b++) {
            const float *ab = a + (size_t)b * D;
            double mx = -INFINITY;
            for (int g = 0; g < G; g++) {
                double l = s * ref_dot(ab, Bm + (size_t)g * D, D);
                if (l > mx) mx = l;
            }
            double sum = 0.0;
            for (int g = 0; g < G; g++) sum += exp(s * ref_dot(ab, Bm + (size_t)g * D, D) - mx);
            for (int g = 0; g < G; g++)
                p[(size_t)b * G + g] =
                    (float)(exp(s * ref_dot(ab, Bm + (size_t)g * D, D) - mx) / sum);
            double lt = s * ref_dot(ab, Bm + (size_t)(offset + b) * D, D);
            ce += mx + log(sum) - lt;
        }
    }
    *loss = (float)(ce / (2.0 * G));
}

void infonce_backward_ref(float *du, float *dv, float *dU, float *dV, float *dt, float dloss,
                          const float *probs, const float *u, const float *v, const float *U,
                          const float *V, float t, int B, int G, int D, int offset) {
    infonce_check(B, G, D, offset);
    double s = exp((double)t), k = (double)dloss / (2.0 * G), sdt = 0.0;
    for (int dir = 0; dir < 2; dir++) {
        const float *a = dir == 0 ? u : v;
        const float *Bm = dir == 0 ? V : U;
        float *da = dir == 0 ? du : dv;
        float *dBm = dir == 0 ? dV : dU;
        const float *p = probs + (size_t)dir * B * G;
        for (int b = 0; b < B; b++)
            for (int g = 0; g < G; g++) {
                double dl = k * ((double)p[(size_t)b * G + g] - (g == offset + b ? 1.0 : 0.0));
                sdt += dl * s * ref_dot(a + (size_t)b * D, Bm + (size_t)g * D, D);
            }
        if (da) {
            for (int b = 0; b < B; b++)
                for (int i = 0; i < D; i++) {
                    double acc = 0.0;
                    for (int g = 0; g < G; g++) {
                        double dl = k * ((double)p[(size_t)b * G + g] - (g == offset + b ? 1.0 : 0.0));
                        acc += dl * Bm[(size_t)g * D + i];
                    }
                    da[(size_t)b * D + i] += (float)(s * acc);
                }
        }
        if (dBm) {
            for (int g = 0; g < G; g++)
                for (int i = 0; i < D; i++) {
                    double acc = 0.0;
                    for (int b = 0; b < B; b++) {
                        double dl = k * ((double)p[(size_t)b * G + g] - (g == offset + b ? 1.0 : 0.0));
                        acc += dl * a[(size_t)b * D + i];
                    }
                    dBm[(size_t)g * D + i] += (float)(s * acc);
                }
        }
    }
    if (dt) *dt += (float)sdt;
}
