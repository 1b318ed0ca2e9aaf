/* linear.c — fully connected layer, nn.Linear layout: out (M, OC) = inp (M, IC)
 * @ weight (OC, IC)^T + bias (OC), and the fused linear + exact GELU of the MLP.
 *
 * Fast path: one oneDNN matmul per product (cached per shape, dnnl_util.h):
 *   forward   out    = inp W^T + b     W read through transposed strides (no copy),
 *                                     bias fused as the matmul bias
 *   backward  dinp   = dout W          stored: the model writes each input gradient
 *                                     once, so no zeroing pass and no read of dinp
 *                                     (a sum post-op costs 5-10 % of the product on
 *                                     tiny's shapes, besides the memset)
 *             dweight += dout^T inp    dout read through transposed strides, sum post-op
 *             dbias += column sums of dout (OpenMP, one column block per thread)
 * linear_gelu: a GELU post-op would lose the pre-activation backward needs, so
 * forward computes pre = inp W^T + b (one matmul) and out = GELU(pre) with
 * gelu.c's vectorised exact-erf kernel (gelu_forward; 1.4x faster than oneDNN's
 * eltwise gelu_erf on one core); backward writes dpre = GELU'(pre) * dout into
 * scratch in one pass (gelu_backward_store; 2.7x faster than the eltwise
 * backward), then linear_backward.
 * linear_gelu_activation: out = GELU(pre) alone, the exact function forward
 * uses (linear_gelu_forward calls it), so the model can drop `out` after
 * forward and recompute it bit for bit in backward (activation memory):
 * gelu_forward is elementwise, so thread count and split never change a bit.
 * bf16 activations (precision bf16): _b takes a bf16 inp, _bb also a bf16
 * dout (dweight then multiplies two bf16 operands with no conversion at all;
 * dbias sums the widened dout in bias_grad's order). Results equal the f32
 * ops in bf16 precision on the widened values, bitwise.
 * Reference twins: plain loops with double accumulation. The bf16 variants
 * have none: tests/core/test_bf16.c checks them bitwise against the f32 ops
 * on the widened values (which are checked against the _ref twins).
 */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "common.h"
#include "dnnl_util.h"
#include "ops.h"
#include "prof.h"

static void check_dims(const char *fn, int M, int IC, int OC) {
    FLIP_CHECK(M >= 0 && IC > 0 && OC > 0, "%s: bad dims M=%d IC=%d OC=%d", fn, M, IC, OC);
}

/* 2-D spec: dst (m, n) dense = src (m, k) @ wei (k, n), with given element strides */
static void spec2(FlipMatmulSpec *s, dnnl_dim_t m, dnnl_dim_t k, dnnl_dim_t n,
                  dnnl_dim_t src_rs, dnnl_dim_t src_cs, dnnl_dim_t wei_rs, dnnl_dim_t wei_cs) {
    flip_matmul_spec_init(s, 2);
    s->src_dims[0] = m; s->src_dims[1] = k;
    s->src_strides[0] = src_rs; s->src_strides[1] = src_cs;
    s->wei_dims[0] = k; s->wei_dims[1] = n;
    s->wei_strides[0] = wei_rs; s->wei_strides[1] = wei_cs;
    s->dst_dims[0] = m; s->dst_dims[1] = n;
    s->dst_strides[0] = n; s->dst_strides[1] = 1;
}

void linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                    int M, int IC, int OC) {
    check_dims("linear_forward", M, IC, OC);
    if (M == 0) return;
    FlipMatmulSpec s;
    /* out (M, OC) = inp (M, IC) @ W^T (IC, OC); W^T element (i, o) at o*IC + i */
    spec2(&s, M, IC, OC, IC, 1, 1, IC);
    s.has_bias = bias != NULL;
    flip_matmul(&s, out, inp, weight, bias);
}

/* dbias (OC) += sum over rows of dout (M, OC): each thread owns one column
 * block (as wide as OC / threads, so rows are streamed in long contiguous
 * segments) and walks all rows; every column is summed in row order, so the
 * result does not depend on the thread count. Exactly one of dout (f32) and
 * dout_b (bf16, widened exactly) is given: the same sums in the same order, so
 * bf16 values give bitwise what their widened f32 copy gives. */
static void bias_grad(float *dbias, const float *dout, const uint16_t *dout_b, int M, int OC) {
    enum { CB_MAX = 2048 };
    int nt = omp_get_max_threads();
    int cb = (OC + nt - 1) / nt;
    cb = (cb + 15) / 16 * 16;
    if (cb > CB_MAX) cb = CB_MAX;
    int n_blocks = (OC + cb - 1) / cb;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < n_blocks; blk++) {
        int c0 = blk * cb, n = OC - c0 < cb ? OC - c0 : cb;
        float acc[CB_MAX];
        for (int c = 0; c < n; c++) acc[c] = 0.0f;
        if (dout_b) {
            for (int m = 0; m < M; m++) {
                const uint16_t *row = dout_b + (size_t)m * OC + c0;
                for (int c = 0; c < n; c++) acc[c] += flip_bf16_widen(row[c]);
            }
        } else {
            for (int m = 0; m < M; m++) {
                const float *row = dout + (size_t)m * OC + c0;
                for (int c = 0; c < n; c++) acc[c] += row[c];
            }
        }
        for (int c = 0; c < n; c++) dbias[c0 + c] += acc[c];
    }
}

/* The backward of linear_backward / _b / _bb: dout f32 (dout) or bf16
 * (dout_b), inp f32 or bf16 (inp_bf16).
 *   dinp (M, IC) = dout (M, OC) @ W (OC, IC)   (stored)
 *   dweight (OC, IC) += dout^T (OC, M) @ inp (M, IC); dout^T (o, m) at m*OC + o
 *   dbias (OC) += column sums of dout */
static void backward(float *dinp, float *dweight, float *dbias, const float *dout,
                     const uint16_t *dout_b, const void *inp, int inp_bf16, const float *weight, int M,
                     int IC, int OC) {
    const void *g = dout_b ? (const void *)dout_b : (const void *)dout;
    FlipMatmulSpec s;
    if (dinp) {
        spec2(&s, M, OC, IC, OC, 1, IC, 1);
        s.src_bf16 = dout_b != NULL;
        flip_matmul_mixed(&s, dinp, g, weight, NULL);
    }
    if (dweight) {
        spec2(&s, OC, M, IC, 1, OC, IC, 1);
        s.accumulate = 1;
        s.src_bf16 = dout_b != NULL;
        s.wei_bf16 = inp_bf16;
        if (dinp && !dout_b) flip_matmul_src_unchanged(); /* bf16: dout was just converted for dinp */
        flip_matmul_mixed(&s, dweight, g, inp, NULL);
    }
    if (dbias) bias_grad(dbias, dout, dout_b, M, OC);
}

void linear_backward(float *dinp, float *dweight, float *dbias,
                     const float *dout, const float *inp, const float *weight,
                     int M, int IC, int OC) {
    check_dims("linear_backward", M, IC, OC);
    if (M == 0) return;
    backward(dinp, dweight, dbias, dout, NULL, inp, 0, weight, M, IC, OC);
}

/* ---- bf16 activations (precision bf16): inp holds bf16 values ---- */
static void require_bf16(const char *fn) {
    FLIP_CHECK(flip_get_precision() == FLIP_PRECISION_BF16, "%s: needs precision bf16 (flip_set_precision)", fn);
}

void linear_forward_b(float *out, uint16_t *out_b, const uint16_t *inp, const float *weight,
                      const float *bias, int M, int IC, int OC) {
    check_dims("linear_forward_b", M, IC, OC);
    require_bf16("linear_forward_b");
    FLIP_CHECK((out == NULL) != (out_b == NULL), "linear_forward_b: give exactly one of out, out_b");
    if (M == 0) return;
    FlipMatmulSpec s;
    spec2(&s, M, IC, OC, IC, 1, 1, IC);
    s.has_bias = bias != NULL;
    s.src_bf16 = 1;
    s.dst_bf16 = out_b != NULL;
    flip_matmul_mixed(&s, out_b ? (void *)out_b : (void *)out, inp, weight, bias);
}

void linear_backward_b(float *dinp, float *dweight, float *dbias, const float *dout,
                       const uint16_t *inp, const float *weight, int M, int IC, int OC) {
    check_dims("linear_backward_b", M, IC, OC);
    require_bf16("linear_backward_b");
    if (M == 0) return;
    backward(dinp, dweight, dbias, dout, NULL, inp, 1, weight, M, IC, OC);
}

/* dout already bf16: nothing converted for dweight (both operands bf16), only
 * the f32 weight for dinp */
void linear_backward_bb(float *dinp, float *dweight, float *dbias, const uint16_t *dout,
                        const uint16_t *inp, const float *weight, int M, int IC, int OC) {
    check_dims("linear_backward_bb", M, IC, OC);
    require_bf16("linear_backward_bb");
    if (M == 0) return;
    backward(dinp, dweight, dbias, NULL, dout, inp, 1, weight, M, IC, OC);
}

void linear_forward_ref(float *out, const float *inp, const float *weight, const float *bias,
                        int M, int IC, int OC) {
    check_dims("linear_forward_ref", M, IC, OC);
    for (int m = 0; m < M; m++) {
        const float *x = inp + (size_t)m * IC;
        for (int o = 0; o < OC; o++) {
            const float *w = weight + (size_t)o * IC;
            double acc = bias ? (double)bias[o] : 0.0;
            for (int i = 0; i < IC; i++) acc += (double)x[i] * (double)w[i];
            out[(size_t)m * OC + o] = (float)acc;
        }
    }
}

void linear_backward_ref(float *dinp, float *dweight, float *dbias,
                         const float *dout, const float *inp, const float *weight,
                         int M, int IC, int OC) {
    check_dims("linear_backward_ref", M, IC, OC);
    if (dinp) {
        for (int m = 0; m < M; m++) {
            const float *g = dout + (size_t)m * OC;
            for (int i = 0; i < IC; i++) {
                double acc = 0.0;
                for (int o = 0; o < OC; o++) acc += (double)g[o] * (double)weight[(size_t)o * IC + i];
                dinp[(size_t)m * IC + i] = (float)acc;
            }
        }
    }
    if (dweight) {
        for (int o = 0; o < OC; o++) {
            for (int i = 0; i < IC; i++) {
                double acc = 0.0;
                for (int m = 0; m < M; m++)
                    acc += (double)dout[(size_t)m * OC + o] * (double)inp[(size_t)m * IC + i];
                dweight[(size_t)o * IC + i] += (float)acc;
            }
        }
    }
    if (dbias) {
        for (int o = 0; o < OC; o++) {
            double acc = 0.0;
            for (int m = 0; m < M; m++) acc += (double)dout[(size_t)m * OC + o];
            dbias[o] += (float)acc;
        }
    }
}

/* ---- linear + GELU ---- */
void linear_gelu_activation(float *out, const float *pre, size_t n) {
    FLIP_PROF_BEGIN(FLIP_PROF_GELU);
    gelu_forward(out, pre, n);
    FLIP_PROF_END();
}

void linear_gelu_forward(float *out, float *pre, const float *inp, const float *weight,
                         const float *bias, int M, int IC, int OC) {
    linear_forward(pre, inp, weight, bias, M, IC, OC);
    linear_gelu_activation(out, pre, (size_t)M * OC);
}

void linear_gelu_backward(float *dinp, float *dweight, float *dbias, float *scratch,
                          const float *dout, const float *pre, const float *inp,
                          const float *weight, int M, int IC, int OC) {
    check_dims("linear_gelu_backward", M, IC, OC);
    if (M == 0) return;
    FLIP_PROF_BEGIN(FLIP_PROF_GELU);
    gelu_backward_store(scratch, dout, pre, (size_t)M * OC);
    FLIP_PROF_END();
    linear_backward(dinp, dweight, dbias, scratch, inp, weight, M, IC, OC);
}

static const double INV_SQRT2 = 0.70710678118654752440;
static const double INV_SQRT_2PI = 0.39894228040143267794;

void linear_gelu_activation_ref(float *out, const float *pre, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double x = pre[i];
        out[i] = (float)(0.5 * x * (1.0 + erf(x * INV_SQRT2)));
    }
}

void linear_gelu_forward_ref(float *out, float *pre, const float *inp, const float *weight,
                             const float *bias, int M, int IC, int OC) {
    linear_forward_ref(pre, inp, weight, bias, M, IC, OC);
    linear_gelu_activation_ref(out, pre, (size_t)M * OC);
}

void linear_gelu_backward_ref(float *dinp, float *dweight, float *dbias, float *scratch,
                              const float *dout, const float *pre, const float *inp,
                              const float *weight, int M, int IC, int OC) {
    size_t n = (size_t)M * OC;
    for (size_t i = 0; i < n; i++) {
        double x = pre[i];
        double d = 0.5 * (1.0 + erf(x * INV_SQRT2)) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
        scratch[i] = (float)(d * (double)dout[i]);
    }
    linear_backward_ref(dinp, dweight, dbias, scratch, inp, weight, M, IC, OC);
}
