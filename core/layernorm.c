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
 * skipped. The fast path is row-parallel (OpenMP): forward one row range per
 * thread; backward one pass per row for dinp and the row's dweight/dbias terms,
 * in 16 fixed row chunks whose partial sums are added in chunk order (no
 * races, thread-count independent). Row kernels are compiled for AVX-512 /
 * AVX2 / baseline (FLIP_SIMD_CLONES).
 *
 * layernorm_apply[_b] recompute the output from the saved mean / rstd (one
 * pass instead of three) with the forward's own row-output helper, in this
 * file (same clones, no FMA contraction: not built with -ffp-contract=fast),
 * so the result is bitwise what the forward wrote. */
#include <math.h>
#include <omp.h>

#include "common.h"
#include "dnnl_util.h"
#include "ops.h"

/* Row reductions with 32 independent partial sums: a single float add chain
 * is latency bound (and cannot be reordered without -ffast-math); 32 lanes
 * are 2 zmm (4 ymm) accumulators, so the vector adds overlap. Measured, 1
 * thread, M 3136 x C 384: layernorm_forward_b 1.10 ms with 8 lanes, 0.52 with
 * 32, 0.64 with 64 (`OMP_NUM_THREADS=1 build/bench_layernorm`, 0.56 today;
 * layernorm_apply_b 0.21). */
#define LN_LANES 32

/* below this many elements (M C) an op stays on the calling thread */
#define LN_PARALLEL_MIN 16384

/* every public function: M rows (0 allowed), C > 0 columns */
static void ln_check_dims(const char *fn, int M, int C) {
    FLIP_CHECK(M >= 0 && C > 0, "%s: bad dims M=%d C=%d (need M >= 0, C > 0)", fn, M, C);
}

/* one row's output y = (x - mu) rs w + b, f32 into y or rounded to bf16 into
 * yb (exactly one non-NULL). The forward and the apply both use this, so they
 * cannot drift apart: inlined into each caller's SIMD clone; without FMA
 * contraction every element is the same four rounded operations there. */
static inline void ln_output_row(float *y, uint16_t *yb, const float *x, float mu, float rs,
                                 const float *weight, const float *bias, int C) {
    if (yb) {
        for (int i = 0; i < C; i++) yb[i] = flip_bf16_round((x[i] - mu) * rs * weight[i] + bias[i]);
    } else {
        for (int i = 0; i < C; i++) y[i] = (x[i] - mu) * rs * weight[i] + bias[i];
    }
}

/* rows [r0, r1) of the forward; out_b non-NULL: the output rounded to bf16
 * there instead of out */
FLIP_SIMD_CLONES
static void ln_forward_rows(float *out, uint16_t *out_b, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int r0, int r1, int C) {
    const int C8 = C - C % LN_LANES;
    for (int r = r0; r < r1; r++) {
        const float *x = inp + (size_t)r * C;
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
        ln_output_row(out_b ? NULL : out + (size_t)r * C, out_b ? out_b + (size_t)r * C : NULL, x, mu,
                      rs, weight, bias, C);
        mean[r] = mu;
        rstd[r] = rs;
    }
}

/* [0, n) in `parts` near-equal contiguous pieces: piece k is [lo, hi) */
static void piece(int n, int parts, int k, int *lo, int *hi) {
    *lo = (int)((long long)n * k / parts);
    *hi = (int)((long long)n * (k + 1) / parts);
}

/* Runs CALL (an expression in rows [lo_, hi_)) over the M rows: in one piece
 * below LN_PARALLEL_MIN elements, else one contiguous piece per OpenMP thread
 * (row-wise results: any split gives the same bits). */
#define LN_ROW_SPLIT(M, C, CALL)                                                       \
    do {                                                                               \
        if ((size_t)(M) * (size_t)(C) < LN_PARALLEL_MIN) {                             \
            int lo_ = 0, hi_ = (M);                                                    \
            CALL;                                                                      \
        } else {                                                                       \
            _Pragma("omp parallel")                                                    \
            {                                                                          \
                int lo_, hi_;                                                          \
                piece((M), omp_get_num_threads(), omp_get_thread_num(), &lo_, &hi_);   \
                CALL;                                                                  \
            }                                                                          \
        }                                                                              \
    } while (0)

static void ln_forward(float *out, uint16_t *out_b, float *mean, float *rstd, const float *inp,
                       const float *weight, const float *bias, int M, int C) {
    LN_ROW_SPLIT(M, C, ln_forward_rows(out, out_b, mean, rstd, inp, weight, bias, lo_, hi_, C));
}

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *weight, const float *bias, int M, int C) {
    // out (M, C), mean (M), rstd (M), inp (M, C), weight (C), bias (C)
    ln_check_dims("layernorm_forward", M, C);
    ln_forward(out, NULL, mean, rstd, inp, weight, bias, M, C);
}

void layernorm_forward_b(uint16_t *out, float *mean, float *rstd, const float *inp,
                         const float *weight, const float *bias, int M, int C) {
    ln_check_dims("layernorm_forward_b", M, C);
    ln_forward(NULL, out, mean, rstd, inp, weight, bias, M, C);
}

/* rows [r0, r1) of the apply: the forward's output step from saved mean / rstd */
FLIP_SIMD_CLONES
static void ln_apply_rows(float *out, uint16_t *out_b, const float *inp, const float *mean,
                          const float *rstd, const float *weight, const float *bias, int r0, int r1,
                          int C) {
    for (int r = r0; r < r1; r++)
        ln_output_row(out_b ? NULL : out + (size_t)r * C, out_b ? out_b + (size_t)r * C : NULL,
                      inp + (size_t)r * C, mean[r], rstd[r], weight, bias, C);
}

static void ln_apply(float *out, uint16_t *out_b, const float *inp, const float *mean,
                     const float *rstd, const float *weight, const float *bias, int M, int C) {
    LN_ROW_SPLIT(M, C, ln_apply_rows(out, out_b, inp, mean, rstd, weight, bias, lo_, hi_, C));
}

void layernorm_apply(float *out, const float *inp, const float *mean, const float *rstd,
                     const float *weight, const float *bias, int M, int C) {
    // out (M, C), inp (M, C), mean (M), rstd (M), weight (C), bias (C)
    ln_check_dims("layernorm_apply", M, C);
    ln_apply(out, NULL, inp, mean, rstd, weight, bias, M, C);
}

void layernorm_apply_b(uint16_t *out, const float *inp, const float *mean, const float *rstd,
                       const float *weight, const float *bias, int M, int C) {
    ln_check_dims("layernorm_apply_b", M, C);
    ln_apply(NULL, out, inp, mean, rstd, weight, bias, M, C);
}

/* Backward in LN_CHUNKS fixed row chunks (independent of the thread count):
 * one pass per row computes dinp and adds the row's dweight / dbias terms into
 * its chunk's partial sums; the chunks' partials are then summed in chunk
 * order, so the result is the same at any thread count. */
#define LN_CHUNKS 16

/* rows [r0, r1); pw / pb (C) receive this chunk's dweight / dbias partials */
FLIP_SIMD_CLONES
static void ln_backward_rows(float *dinp, float *pw, float *pb, const float *dout, const float *inp,
                             const float *mean, const float *rstd, const float *weight, int r0,
                             int r1, int C) {
    const int C8 = C - C % LN_LANES;
    if (pw)
        for (int i = 0; i < C; i++) pw[i] = pb[i] = 0.0f;
    for (int r = r0; r < r1; r++) {
        const float *x = inp + (size_t)r * C;
        const float *dy = dout + (size_t)r * C;
        float mu = mean[r], rs = rstd[r];
        if (pw) {
            for (int i = 0; i < C; i++) {
                pw[i] += dy[i] * ((x[i] - mu) * rs);
                pb[i] += dy[i];
            }
        }
        if (!dinp) continue;
        float *dx = dinp + (size_t)r * C;
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

/* grow-only partial sums (LN_CHUNKS x 2 x C floats): sized by the first call
 * of the widest LayerNorm, never in steady state; lives until process exit */
static float *g_partials;
static size_t g_partials_cap;

void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *mean, const float *rstd,
                        const float *weight, int M, int C) {
    // dinp (M, C), dweight (C), dbias (C), dout (M, C), inp (M, C), mean/rstd (M)
    ln_check_dims("layernorm_backward", M, C);
    int want_params = dweight || dbias;
    size_t need = want_params ? (size_t)LN_CHUNKS * 2 * (size_t)C : 0;
    if (need > g_partials_cap) {
        flip_free(g_partials);
        g_partials = flip_malloc(need * sizeof(float), "layernorm backward partial sums");
        g_partials_cap = need;
    }
    float *part = want_params ? g_partials : NULL;
#pragma omp parallel for schedule(static) if ((size_t)M * (size_t)C >= LN_PARALLEL_MIN)
    for (int k = 0; k < LN_CHUNKS; k++) {
        int lo, hi;
        piece(M, LN_CHUNKS, k, &lo, &hi);
        float *pw = part ? part + (size_t)k * 2 * C : NULL, *pb = part ? pw + C : NULL;
        ln_backward_rows(dinp, pw, pb, dout, inp, mean, rstd, weight, lo, hi, C);
    }
    if (!want_params) return;
    for (int i = 0; i < C; i++) {
        float aw = 0.0f, ab = 0.0f;
        for (int k = 0; k < LN_CHUNKS; k++) {
            aw += part[(size_t)k * 2 * C + i];
            ab += part[(size_t)k * 2 * C + C + i];
        }
        if (dweight) dweight[i] += aw;
        if (dbias) dbias[i] += ab;
    }
}

void layernorm_forward_ref(float *out, float *mean, float *rstd, const float *inp,
                           const float *weight, const float *bias, int M, int C) {
    ln_check_dims("layernorm_forward_ref", M, C);
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

void layernorm_apply_ref(float *out, const float *inp, const float *mean, const float *rstd,
                         const float *weight, const float *bias, int M, int C) {
    ln_check_dims("layernorm_apply_ref", M, C);
    for (int r = 0; r < M; r++) {
        const float *x = inp + (size_t)r * C;
        double mu = mean[r], rs = rstd[r];
        for (int i = 0; i < C; i++)
            out[(size_t)r * C + i] = (float)(((double)x[i] - mu) * rs * weight[i] + bias[i]);
    }
}

void layernorm_backward_ref(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *mean, const float *rstd,
                            const float *weight, int M, int C) {
    ln_check_dims("layernorm_backward_ref", M, C);
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
