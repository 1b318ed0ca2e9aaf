/* test_bf16.c — --precision bf16 (dnnl_util.h): the bf16 matmul path of the
 * linear layer and the model trained in bf16 against fp32.
 *
 * 1. linear_forward / linear_backward in bf16 against the double reference
 *    run on the operands rounded to bf16: equal up to fp32 accumulation, which
 *    proves the fast path multiplies exactly the bf16-rounded operands with
 *    f32 accumulation (and keeps bias, dbias, sum post-op in f32).
 * 2. The same outputs against the exact (unrounded) reference within the
 *    bf16 rounding bound |err_i| <= TOL_BF16_PRODUCT_REL * sum_k |x_ik w_k|.
 * 3. A narrowed tiny model (width 96/64, 2+2 blocks, so it stays fast) trained 50 AdamW steps in
 *    bf16 and in fp32 from the same seed on the same batch: the loss curves
 *    agree within TOL_BF16_LOSS_ATOL at every step, the loss falls in both,
 *    and the bf16 curve is not bit-identical (bf16 really ran).
 * Needs a CPU with AVX512-BF16 (the project's target machine); elsewhere it
 * fails saying so. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "dnnl_util.h"
#include "model.h"
#include "ops.h"
#include "rng.h"
#include "synth_pairs.h"
#include "testlib.h"
#include "tolerances.h"

static float round_bf16(float x) {
    uint16_t b;
    flip_f32_to_bf16(&b, &x, 1);
    uint32_t u = (uint32_t)b << 16;
    float y;
    memcpy(&y, &u, sizeof y);
    return y;
}

/* bf16 of x by the definition: round to nearest even on the upper 16 bits,
 * NaN quiet */
static uint16_t bf16_by_definition(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* flip_f32_to_bf16 on long arrays (the vectorised, threaded path the matmul
 * operands take) equals the definition element by element: random bit
 * patterns (every exponent), exact ties, +-inf, NaN, and a tail that is not a
 * multiple of the vector width */
static void test_convert(void) {
    enum { N = 200003 };
    float *x = flip_malloc(N * sizeof(float), "x");
    uint16_t *b = flip_malloc(N * sizeof(uint16_t), "b");
    Rng r;
    rng_init(&r, 9, FLIP_RNG_TEST, 2, 0);
    for (size_t i = 0; i < N; i++) {
        uint32_t u = (uint32_t)(rng_uniform(&r) * 4294967296.0);
        if (i % 7 == 0) u = (u & 0xffff0000u) | 0x8000u; /* exact tie */
        if (i % 11 == 0) u = (u & 0xffff0000u) | 0x7fffu; /* just below a tie */
        memcpy(&x[i], &u, sizeof u);
    }
    x[0] = INFINITY;
    x[1] = -INFINITY;
    x[2] = NAN;
    x[3] = 0.0f;
    x[4] = -0.0f;
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        memset(b, 0, N * sizeof(uint16_t));
        flip_f32_to_bf16(b, x, N);
        size_t bad = 0, first = N;
        for (size_t i = 0; i < N; i++) {
            uint16_t want = bf16_by_definition(x[i]);
            int nan_ok = isnan(x[i]) && (b[i] & 0x7f80u) == 0x7f80u && (b[i] & 0x7fu) != 0;
            /* a denormal input may also flush to zero (the hardware rule) */
            int denorm_ok = fpclassify(x[i]) == FP_SUBNORMAL && (b[i] & 0x7fffu) == 0;
            if (b[i] != want && !nan_ok && !denorm_ok) {
                bad++;
                if (first == N) first = i;
            }
        }
        TEST_CHECK(bad == 0, "flip_f32_to_bf16 (%d threads) matches round-to-nearest-even: %zu of %d differ (first at %zu)",
                   threads, bad, N, first);
    }
    omp_set_num_threads(1);
    flip_free(x);
    flip_free(b);
}

static void fill(float *x, size_t n, Rng *r) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(2.0 * rng_uniform(r) - 1.0);
}

static float *rounded(const float *x, size_t n) {
    float *y = flip_malloc(n * sizeof(float), "rounded");
    for (size_t i = 0; i < n; i++) y[i] = round_bf16(x[i]);
    return y;
}

/* |got - ref| <= rel * bound_i elementwise (bound_i = sum_k |a_ik b_kj|) */
static void check_bound(const char *what, const float *got, const float *ref, const double *bound, size_t n,
                        double rel) {
    size_t bad = 0;
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (double)ref[i]);
        if (!isfinite(got[i]) || e > rel * bound[i] + 1e-6) bad++;
        if (bound[i] > 0 && e / bound[i] > worst) worst = e / bound[i];
    }
    TEST_CHECK(bad == 0, "%s: |bf16 - exact| <= %.3g sum|products|: worst %.3g of the bound, %zu over", what,
               rel, worst, bad);
}

/* the bf16-activation ops (model.c's bf16 path) against the f32 ops on the
 * same values: bitwise where the same primitive / element function runs */
static size_t n_diff_f(const float *a, const float *b, size_t n) {
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return d;
}

static void test_bf16_activation_ops(void) {
    enum { M = 130, IC = 96, OC = 200 };
    Rng r;
    rng_init(&r, 11, FLIP_RNG_TEST, 3, 0);
    size_t nx = (size_t)M * IC, ny = (size_t)M * OC, nw = (size_t)OC * IC;
    float *x = flip_malloc(nx * sizeof(float), "x"), *w = flip_malloc(nw * sizeof(float), "w");
    float *bias = flip_malloc(OC * sizeof(float), "bias"), *g = flip_malloc(ny * sizeof(float), "g");
    uint16_t *xb = flip_malloc(nx * sizeof(uint16_t), "xb"), *yb = flip_malloc(ny * sizeof(uint16_t), "yb");
    float *xw = flip_malloc(nx * sizeof(float), "xw"), *y1 = flip_malloc(ny * sizeof(float), "y1");
    float *y2 = flip_malloc(ny * sizeof(float), "y2");
    fill(x, nx, &r);
    fill(w, nw, &r);
    fill(bias, OC, &r);
    fill(g, ny, &r);
    for (size_t i = 0; i < nx; i++) x[i] *= 3.0f;
    flip_f32_to_bf16(xb, x, nx);
    for (size_t i = 0; i < nx; i++) xw[i] = flip_bf16_widen(xb[i]);
    flip_set_precision(FLIP_PRECISION_BF16);

    /* linear: bf16 input == f32 input holding the same values (same primitive) */
    linear_forward(y1, xw, w, bias, M, IC, OC);
    linear_forward_b(y2, NULL, xb, w, bias, M, IC, OC);
    TEST_CHECK(n_diff_f(y1, y2, ny) == 0, "linear_forward_b (f32 out) == linear_forward on the widened input, bitwise");
    linear_forward_b(NULL, yb, xb, w, bias, M, IC, OC);
    size_t far = 0;
    for (size_t i = 0; i < ny; i++) {
        float v = flip_bf16_widen(yb[i]);
        if (!(fabsf(v - y1[i]) <= fabsf(y1[i]) * (1.0f / 256.0f) + 1e-30f)) far++;
    }
    TEST_CHECK(far == 0, "linear_forward_b (bf16 out) within 2^-8 relative (one bf16 ulp) of the f32 result: %zu off", far);
    float *dx1 = flip_calloc(nx, sizeof(float), "dx1"), *dx2 = flip_calloc(nx, sizeof(float), "dx2");
    float *dw1 = flip_calloc(nw, sizeof(float), "dw1"), *dw2 = flip_calloc(nw, sizeof(float), "dw2");
    float *db1 = flip_calloc(OC, sizeof(float), "db1"), *db2 = flip_calloc(OC, sizeof(float), "db2");
    linear_backward(dx1, dw1, db1, g, xw, w, M, IC, OC);
    for (size_t i = 0; i < nx; i++) dx2[i] = NAN; /* _b stores dinp: the prefill must not matter */
    linear_backward_b(dx2, dw2, db2, g, xb, w, M, IC, OC);
    TEST_CHECK(n_diff_f(dx1, dx2, nx) == 0 && n_diff_f(dw1, dw2, nw) == 0 && n_diff_f(db1, db2, OC) == 0,
               "linear_backward_b == linear_backward (dinp zeroed) on the widened input, bitwise (dinp stored over NaN, "
               "dweight, dbias)");

    /* LayerNorm: the f32 forward rounded; same mean / rstd */
    float lw[IC], lb[IC], mean1[M], rstd1[M], mean2[M], rstd2[M];
    fill(lw, IC, &r);
    fill(lb, IC, &r);
    layernorm_forward(xw, mean1, rstd1, x, lw, lb, M, IC);
    layernorm_forward_b(xb, mean2, rstd2, x, lw, lb, M, IC);
    size_t bad = 0;
    for (size_t i = 0; i < nx; i++) bad += xb[i] != flip_bf16_round(xw[i]);
    TEST_CHECK(bad == 0 && n_diff_f(mean1, mean2, M) == 0 && n_diff_f(rstd1, rstd2, M) == 0,
               "layernorm_forward_b == bf16(layernorm_forward), same mean/rstd: %zu differ", bad);

    /* GELU: the f32 element functions on the widened values, rounded */
    for (size_t i = 0; i < nx; i++) xw[i] = flip_bf16_widen(xb[i]) * 2.0f;
    flip_f32_to_bf16(xb, xw, nx);
    for (size_t i = 0; i < nx; i++) xw[i] = flip_bf16_widen(xb[i]);
    uint16_t *hb = flip_malloc(nx * sizeof(uint16_t), "hb");
    float *h = flip_malloc(nx * sizeof(float), "h");
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        gelu_forward(h, xw, nx);
        gelu_forward_b(hb, xb, nx);
        bad = 0;
        for (size_t i = 0; i < nx; i++) bad += hb[i] != flip_bf16_round(h[i]);
        TEST_CHECK(bad == 0, "gelu_forward_b == bf16(gelu_forward) (%d threads): %zu differ", threads, bad);
        gelu_backward_store(dx1, xw, xw, nx);
        gelu_backward_store_b(dx2, xw, xb, nx);
        TEST_CHECK(n_diff_f(dx1, dx2, nx) == 0, "gelu_backward_store_b == gelu_backward_store, bitwise (%d threads)",
                   threads);
    }
    omp_set_num_threads(1);
    flip_set_precision(FLIP_PRECISION_FP32);
    flip_free(x); flip_free(w); flip_free(bias); flip_free(g); flip_free(xb); flip_free(yb); flip_free(xw);
    flip_free(y1); flip_free(y2); flip_free(dx1); flip_free(dx2); flip_free(dw1); flip_free(dw2); flip_free(db1);
    flip_free(db2); flip_free(hb); flip_free(h);
}

static void test_linear(void) {
    enum { M = 200, IC = 384, OC = 256 };
    Rng r;
    rng_init(&r, 5, FLIP_RNG_TEST, 1, 0);
    float *x = flip_malloc(M * IC * sizeof(float), "x"), *w = flip_malloc(OC * IC * sizeof(float), "w");
    float *bias = flip_malloc(OC * sizeof(float), "b"), *g = flip_malloc(M * OC * sizeof(float), "g");
    fill(x, M * IC, &r);
    fill(w, OC * IC, &r);
    fill(bias, OC, &r);
    fill(g, M * OC, &r);
    float *xr = rounded(x, M * IC), *wr = rounded(w, OC * IC), *gr = rounded(g, M * OC);

    float *out = flip_malloc(M * OC * sizeof(float), "out"), *ref = flip_malloc(M * OC * sizeof(float), "ref");
    float *refx = flip_malloc(M * OC * sizeof(float), "refx");
    double *bound = flip_malloc(M * OC * sizeof(double), "bound");
    flip_set_precision(FLIP_PRECISION_BF16);
    for (size_t i = 0; i < M * OC; i++) out[i] = NAN;
    linear_forward(out, x, w, bias, M, IC, OC);
    linear_forward_ref(ref, xr, wr, bias, M, IC, OC);
    linear_forward_ref(refx, x, w, bias, M, IC, OC);
    test_close_f("bf16 forward vs ref on bf16-rounded operands", out, ref, M * OC, TOL_BF16_ACC_ATOL,
                 TOL_BF16_ACC_RTOL);
    for (int m = 0; m < M; m++)
        for (int o = 0; o < OC; o++) {
            double s = 0;
            for (int i = 0; i < IC; i++) s += fabs((double)x[m * IC + i] * w[o * IC + i]);
            bound[m * OC + o] = s;
        }
    check_bound("bf16 forward vs exact fp32", out, refx, bound, M * OC, TOL_BF16_PRODUCT_REL);
    int differs = 0;
    for (size_t i = 0; i < M * OC; i++) differs |= out[i] != refx[i];
    TEST_CHECK(differs, "bf16 forward differs from the fp32 reference somewhere (bf16 really used)");

    /* backward: dinp += g W, dweight += g^T x (accumulating onto nonzero start), dbias in f32 */
    float *dx = flip_malloc(M * IC * sizeof(float), "dx"), *dxr = flip_malloc(M * IC * sizeof(float), "dxr");
    float *dw = flip_malloc(OC * IC * sizeof(float), "dw"), *dwr = flip_malloc(OC * IC * sizeof(float), "dwr");
    float *db = flip_malloc(OC * sizeof(float), "db"), *dbr = flip_malloc(OC * sizeof(float), "dbr");
    for (size_t i = 0; i < M * IC; i++) dx[i] = dxr[i] = 0.5f;
    for (size_t i = 0; i < OC * IC; i++) dw[i] = dwr[i] = -0.25f;
    for (size_t i = 0; i < OC; i++) db[i] = dbr[i] = 1.0f;
    linear_backward(dx, dw, db, g, x, w, M, IC, OC);
    linear_backward_ref(dxr, dwr, NULL, gr, xr, wr, M, IC, OC);
    linear_backward_ref(NULL, NULL, dbr, g, x, w, M, IC, OC);
    test_close_f("bf16 dinp vs ref on bf16-rounded operands", dx, dxr, M * IC, TOL_BF16_ACC_ATOL, TOL_BF16_ACC_RTOL);
    test_close_f("bf16 dweight vs ref on bf16-rounded operands", dw, dwr, OC * IC, TOL_BF16_ACC_ATOL,
                 TOL_BF16_ACC_RTOL);
    test_close_f("dbias stays fp32 (unrounded dout)", db, dbr, OC, TOL_OP_ATOL, TOL_OP_RTOL);
    const char *impl;
    {
        FlipMatmulSpec s;
        flip_matmul_spec_init(&s, 2);
        s.src_dims[0] = M; s.src_dims[1] = IC; s.src_strides[0] = IC; s.src_strides[1] = 1;
        s.wei_dims[0] = IC; s.wei_dims[1] = OC; s.wei_strides[0] = 1; s.wei_strides[1] = IC;
        s.dst_dims[0] = M; s.dst_dims[1] = OC; s.dst_strides[0] = OC; s.dst_strides[1] = 1;
        s.has_bias = 1;
        impl = flip_matmul_impl(&s);
    }
    printf("# bf16 linear forward runs on oneDNN '%s'\n", impl);
    TEST_CHECK(strstr(impl, "ref") == NULL, "bf16 matmul uses an optimised oneDNN kernel ('%s'), not ref", impl);
    flip_set_precision(FLIP_PRECISION_FP32);
    for (size_t i = 0; i < M * OC; i++) out[i] = NAN;
    linear_forward(out, x, w, bias, M, IC, OC);
    test_close_f("back in fp32: forward vs exact ref", out, refx, M * OC, TOL_OP_ATOL * 10, TOL_OP_RTOL);

    float *bufs[] = {x, w, bias, g, xr, wr, gr, out, ref, refx, dx, dxr, dw, dwr, db, dbr};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) flip_free(bufs[i]);
    flip_free(bound);
}

/* ---- bf16 gradients (_bb ops): dout / dinp held as bf16 ---- */

/* bf16 bits of random values: uniform in [-scale, scale), rounded */
static void fill_b(uint16_t *x, size_t n, Rng *r, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = bf16_by_definition(scale * (float)(2.0 * rng_uniform(r) - 1.0));
}

/* gelu_backward_store_bb == bf16(gelu_backward_store_b) bitwise, the rounding
 * taken by the test's own definition (not the library's flip_bf16_round):
 * sizes around GELU_PAR_MIN (32768, the serial / threaded switch) and the
 * 16-float thread boundaries; inputs with every sign, +-0, +-inf, NaN, large
 * |x| (GELU' = 1 or -0) and dout spanning magnitudes down to denormal products.
 * gelu_forward_backward_bb (both in one pass) == gelu_forward_b and
 * gelu_backward_store_bb, bitwise, on the same inputs. */
static void test_gelu_bb(void) {
    static const size_t sizes[] = {1, 15, 17, 1000, 32767, 32768, 32768 + 17, 65536 + 33, 100003};
    enum { NMAX = 100003 };
    Rng r;
    rng_init(&r, 21, FLIP_RNG_TEST, 4, 0);
    uint16_t *x = flip_malloc(NMAX * sizeof(uint16_t), "x"), *got = flip_malloc(NMAX * sizeof(uint16_t), "got");
    float *g = flip_malloc(NMAX * sizeof(float), "g"), *ref = flip_malloc(NMAX * sizeof(float), "ref");
    uint16_t *fo = flip_malloc(NMAX * sizeof(uint16_t), "fused out"), *fd = flip_malloc(NMAX * sizeof(uint16_t), "fused dinp");
    uint16_t *ho = flip_malloc(NMAX * sizeof(uint16_t), "gelu_forward_b out");
    size_t n_fused_fail = 0;
    fill_b(x, NMAX, &r, 6.0f);
    for (size_t i = 0; i < NMAX; i++) {
        double u = rng_uniform(&r);
        /* |dout| from 1e-38 to 10: products reach the denormal range */
        g[i] = (float)((u < 0.5 ? -1.0 : 1.0) * pow(10.0, -38.0 + 39.0 * rng_uniform(&r)));
        if (i % 13 == 0) g[i] = (float)(2.0 * rng_uniform(&r) - 1.0);
    }
    static const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 20.0f, -20.0f, 13.0f, -13.0f, 1e-30f};
    for (size_t k = 0; k < sizeof special / sizeof special[0]; k++) x[3 + 7 * k] = bf16_by_definition(special[k]);
    g[0] = NAN;
    g[1] = INFINITY;
    size_t n_den = 0, n_fail = 0, n_zero = 0;
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            size_t n = sizes[si];
            for (size_t i = 0; i < n; i++) got[i] = 0xdeadu;
            gelu_backward_store_b(ref, g, x, n);
            gelu_backward_store_bb(got, g, x, n);
            size_t bad = 0, first = n;
            for (size_t i = 0; i < n; i++) {
                if (got[i] != bf16_by_definition(ref[i])) {
                    if (!bad) first = i;
                    bad++;
                }
                if (threads == 1 && n == NMAX) {
                    n_den += fpclassify(ref[i]) == FP_SUBNORMAL;
                    n_zero += (got[i] & 0x7fffu) == 0;
                }
            }
            /* the fused op against both separate ops (every element written) */
            for (size_t i = 0; i < n; i++) fo[i] = fd[i] = 0xdeadu;
            gelu_forward_b(ho, x, n);
            gelu_forward_backward_bb(fo, fd, g, x, n);
            /* out bitwise (backward's recompute must give forward's h); dinp the
             * same formula evaluated in another loop, where a build whose loops
             * vectorise differently (seen under ASan+UBSan: 1 element in 32k) may
             * contract one FMA differently: within one bf16 ulp */
            size_t fbad = 0, ff = 0;
            for (size_t i = 0; i < n; i++) {
                int both_nan = (fd[i] & 0x7fffu) > 0x7f80u && (got[i] & 0x7fffu) > 0x7f80u;
                int ulp = (fd[i] ^ got[i]) < 0x8000u && abs((int)fd[i] - (int)got[i]) <= 1;
                if (fo[i] != ho[i] || !(ulp || both_nan)) {
                    if (!fbad) ff = i;
                    fbad++;
                }
            }
            if (fbad) {
                n_fused_fail++;
                TEST_CHECK(0, "gelu_forward_backward_bb == gelu_forward_b + gelu_backward_store_bb, n %zu, %d threads: %zu differ "
                           "(first [%zu]: x 0x%04x dout %a: out 0x%04x vs 0x%04x, dinp 0x%04x vs 0x%04x)",
                           n, threads, fbad, ff, x[ff], (double)g[ff], fo[ff], ho[ff], fd[ff], got[ff]);
            }
            if (bad) {
                n_fail++;
                TEST_CHECK(0, "gelu_backward_store_bb == bf16(gelu_backward_store_b), n %zu, %d threads: %zu differ (first [%zu]: 0x%04x, want 0x%04x)",
                           n, threads, bad, first, got[first], bf16_by_definition(ref[first]));
            }
        }
    }
    TEST_CHECK(n_fail == 0, "gelu_backward_store_bb == bf16(gelu_backward_store_b) bitwise: %zu sizes x 1, 2 threads",
               sizeof sizes / sizeof sizes[0]);
    TEST_CHECK(n_fused_fail == 0,
               "gelu_forward_backward_bb: out == gelu_forward_b bitwise, dinp within 1 bf16 ulp of gelu_backward_store_bb: %zu sizes x 1, 2 threads",
               sizeof sizes / sizeof sizes[0]);
    TEST_CHECK(n_den > 10 && n_zero < NMAX / 10, "the gelu inputs reach denormal products (%zu) and are mostly nonzero (%zu zeros)",
               n_den, n_zero);
    omp_set_num_threads(1);
    flip_free(x); flip_free(got); flip_free(g); flip_free(ref);
    flip_free(fo); flip_free(fd); flip_free(ho);
}

/* One shape of linear_backward_bb against linear_backward_b on the widened dout
 * (same oneDNN primitive once dout is converted, and bias_grad's order),
 * accumulating onto random prefilled gradients, every NULL combination
 * (masks: bit 0 dinp, bit 1 dweight, bit 2 dbias), at 1 and 2 threads.
 * dout holds no bf16 denormals (linear_backward_b's hardware conversion would
 * flush them; bb feeds them to oneDNN as they are). */
static void test_linear_bb_shape(int M, int IC, int OC, int all_masks, int check_ref) {
    Rng r;
    rng_init(&r, 31, FLIP_RNG_TEST, (uint64_t)M, (uint64_t)OC);
    size_t nx = (size_t)M * IC, ny = (size_t)M * OC, nw = (size_t)OC * IC;
    uint16_t *xb = flip_malloc(nx * sizeof(uint16_t), "xb"), *gb = flip_malloc(ny * sizeof(uint16_t), "gb");
    float *gw = flip_malloc(ny * sizeof(float), "gw"), *w = flip_malloc(nw * sizeof(float), "w");
    float *dx0 = flip_malloc(nx * sizeof(float), "dx0"), *dw0 = flip_malloc(nw * sizeof(float), "dw0");
    float *db0 = flip_malloc((size_t)OC * sizeof(float), "db0");
    float *dx1 = flip_malloc(nx * sizeof(float), "dx1"), *dw1 = flip_malloc(nw * sizeof(float), "dw1");
    float *db1 = flip_malloc((size_t)OC * sizeof(float), "db1");
    float *dx2 = flip_malloc(nx * sizeof(float), "dx2"), *dw2 = flip_malloc(nw * sizeof(float), "dw2");
    float *db2 = flip_malloc((size_t)OC * sizeof(float), "db2");
    float *db_t1 = flip_malloc((size_t)OC * sizeof(float), "db_t1");
    fill_b(xb, nx, &r, 3.0f);
    fill_b(gb, ny, &r, 0.01f); /* gradient-sized dout */
    for (size_t i = 0; i < ny; i += 17) gb[i] = bf16_by_definition(-0.0f);
    for (size_t i = 0; i < ny; i++) gw[i] = flip_bf16_widen(gb[i]);
    fill(w, nw, &r);
    fill(dx0, nx, &r);
    fill(dw0, nw, &r);
    fill(db0, (size_t)OC, &r);
    flip_set_precision(FLIP_PRECISION_BF16);
    int n_masks = 0, n_bad = 0, n_dead = 0;
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        for (int mask = all_masks ? 0 : 7; mask <= 7; mask++) {
            int hx = mask & 1, hw = mask & 2, hb = mask & 4;
            memcpy(dx1, dx0, nx * sizeof(float)); memcpy(dx2, dx0, nx * sizeof(float));
            memcpy(dw1, dw0, nw * sizeof(float)); memcpy(dw2, dw0, nw * sizeof(float));
            memcpy(db1, db0, (size_t)OC * sizeof(float)); memcpy(db2, db0, (size_t)OC * sizeof(float));
            linear_backward_b(hx ? dx1 : NULL, hw ? dw1 : NULL, hb ? db1 : NULL, gw, xb, w, M, IC, OC);
            linear_backward_bb(hx ? dx2 : NULL, hw ? dw2 : NULL, hb ? db2 : NULL, gb, xb, w, M, IC, OC);
            size_t dx_diff = n_diff_f(dx1, dx2, nx), dw_diff = n_diff_f(dw1, dw2, nw), db_diff = n_diff_f(db1, db2, (size_t)OC);
            /* each requested output moved off its prefill (almost) everywhere; the others were not passed */
            size_t dx_moved = n_diff_f(dx2, dx0, nx), dw_moved = n_diff_f(dw2, dw0, nw), db_moved = n_diff_f(db2, db0, (size_t)OC);
            int dead = (hx && dx_moved < nx * 9 / 10) || (hw && dw_moved < nw * 9 / 10) ||
                       (hb && db_moved < (size_t)OC * 9 / 10) || (!hx && dx_moved) || (!hw && dw_moved) || (!hb && db_moved);
            n_masks++;
            if (dx_diff || dw_diff || db_diff) {
                n_bad++;
                TEST_CHECK(0, "linear_backward_bb == linear_backward_b, M %d IC %d OC %d, mask %d, %d threads: %zu dinp, %zu dweight, %zu dbias differ",
                           M, IC, OC, mask, threads, dx_diff, dw_diff, db_diff);
            }
            if (dead) {
                n_dead++;
                TEST_CHECK(0, "linear_backward_bb M %d IC %d OC %d mask %d: outputs moved %zu/%zu dinp, %zu/%zu dweight, %zu/%d dbias",
                           M, IC, OC, mask, dx_moved, nx, dw_moved, nw, db_moved, OC);
            }
            if (hb && threads == 1) memcpy(db_t1, db2, (size_t)OC * sizeof(float));
            if (hb && threads == 2)
                TEST_CHECK(n_diff_f(db_t1, db2, (size_t)OC) == 0,
                           "linear_backward_bb dbias the same at 1 and 2 threads, bitwise (M %d OC %d mask %d)", M, OC, mask);
        }
    }
    TEST_CHECK(n_bad == 0 && n_dead == 0,
               "linear_backward_bb == linear_backward_b on the widened dout, bitwise, M %d IC %d OC %d: %d (mask, threads) runs",
               M, IC, OC, n_masks);
    omp_set_num_threads(1);
    if (check_ref) {
        /* and against the double reference on the operands it multiplies:
         * dout and inp exactly (widened), W rounded to bf16 for dinp */
        float *xw = flip_malloc(nx * sizeof(float), "xw"), *wr = rounded(w, nw);
        for (size_t i = 0; i < nx; i++) xw[i] = flip_bf16_widen(xb[i]);
        memcpy(dx1, dx0, nx * sizeof(float)); memcpy(dx2, dx0, nx * sizeof(float));
        memcpy(dw1, dw0, nw * sizeof(float)); memcpy(dw2, dw0, nw * sizeof(float));
        memcpy(db1, db0, (size_t)OC * sizeof(float)); memcpy(db2, db0, (size_t)OC * sizeof(float));
        linear_backward_bb(dx2, dw2, db2, gb, xb, w, M, IC, OC);
        memset(dx1, 0, nx * sizeof(float)); /* _bb stores dinp; the ref adds */
        linear_backward_ref(dx1, NULL, NULL, gw, xw, wr, M, IC, OC);
        linear_backward_ref(NULL, dw1, db1, gw, xw, w, M, IC, OC);
        test_close_f("linear_backward_bb dinp vs ref (bf16 W)", dx2, dx1, nx, TOL_BF16_ACC_ATOL, TOL_BF16_ACC_RTOL);
        test_close_f("linear_backward_bb dweight vs ref", dw2, dw1, nw, TOL_BF16_ACC_ATOL, TOL_BF16_ACC_RTOL);
        test_close_f("linear_backward_bb dbias vs ref", db2, db1, (size_t)OC, TOL_OP_ATOL, TOL_OP_RTOL);
        flip_free(xw);
        flip_free(wr);
    }
    /* M = 0: nothing to do, nothing touched */
    memcpy(dx2, dx0, nx * sizeof(float)); memcpy(dw2, dw0, nw * sizeof(float)); memcpy(db2, db0, (size_t)OC * sizeof(float));
    linear_backward_bb(dx2, dw2, db2, gb, xb, w, 0, IC, OC);
    TEST_CHECK(n_diff_f(dx2, dx0, nx) == 0 && n_diff_f(dw2, dw0, nw) == 0 && n_diff_f(db2, db0, (size_t)OC) == 0,
               "linear_backward_bb with M = 0 leaves every gradient untouched");
    flip_set_precision(FLIP_PRECISION_FP32);
    flip_free(xb); flip_free(gb); flip_free(gw); flip_free(w); flip_free(dx0); flip_free(dw0); flip_free(db0);
    flip_free(dx1); flip_free(dw1); flip_free(db1); flip_free(dx2); flip_free(dw2); flip_free(db2); flip_free(db_t1);
}

static void test_linear_bb(void) {
    test_linear_bb_shape(37, 24, 40, 1, 1);
    test_linear_bb_shape(1, 16, 33, 1, 0);
    test_linear_bb_shape(3136, 384, 1152, 0, 0); /* vit-s16 qkv of 16 images, mask 0.75 */
}

/* errors: the bb ops fail like their _b siblings, in a child process */
typedef struct {
    int which;
    const char *want;
} BadCall;

static void bad_call(void *arg) {
    const BadCall *c = arg;
    static uint16_t xb[64], gb[64];
    static float w[64], dx[64], dw[64], db[64];
    flip_set_precision(c->which < 2 ? FLIP_PRECISION_FP32 : FLIP_PRECISION_BF16);
    switch (c->which) {
    case 0: linear_backward_bb(dx, dw, db, gb, xb, w, 4, 4, 4); break;
    case 1: linear_backward_b(dx, dw, db, w, xb, w, 4, 4, 4); break;
    case 2: linear_backward_bb(dx, dw, db, gb, xb, w, 4, 0, 4); break;
    default: linear_backward_bb(dx, dw, db, gb, xb, w, -1, 4, 4); break;
    }
}

static void test_bb_errors(void) {
    static const BadCall calls[] = {
        {0, "linear_backward_bb: needs precision bf16"},
        {1, "linear_backward_b: needs precision bf16"},
        {2, "linear_backward_bb: bad dims M=4 IC=0 OC=4"},
        {3, "linear_backward_bb: bad dims M=-1 IC=4 OC=4"},
    };
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        char err[1024];
        int code = test_run_child(bad_call, (void *)&calls[i], err, sizeof err);
        TEST_CHECK(code == 1 && strstr(err, calls[i].want) != NULL, "fails with exit 1 and '%s' (got %d: %.200s)",
                   calls[i].want, code, err);
    }
}

/* ---- loss curves: the synthetic matched pairs of test_model_train.c ---- */
#define NB SYNTH_NB
#define STEPS 50

static void train(const FlipConfig *cfg, const SynthPairs *d, float *losses) {
    FlipModel m;
    flip_model_init(&m, cfg, 7);
    int N = flip_config_num_kept(cfg, 0.5f);
    flip_model_plan(&m, NB, N);
    int32_t *keep = flip_malloc((size_t)NB * N * sizeof(int32_t), "keep");
    AdamWConfig opt = {1e-3f, 0.9f, 0.98f, 1e-6f, 0.1f};
    for (int s = 0; s < STEPS; s++) {
        for (int b = 0; b < NB; b++) flip_mask_keep(keep + (size_t)b * N, 2024, s, (uint64_t)b, m.Np, N);
        opt.lr = s < 5 ? 1e-3f * (float)(s + 1) / 5.0f : 1e-3f;
        losses[s] = flip_model_loss_and_grad(&m, d->images, keep, d->tokens, d->lens);
        flip_model_adamw(&m, &opt, 1.0f, s + 1);
    }
    flip_free(keep);
    flip_model_free(&m);
}

static void test_loss_curve(void) {
    FlipConfig cfg;
    if (flip_config_preset(&cfg, "tiny") != 0) FLIP_FATAL("tiny preset missing");
    cfg.width = 96; /* a narrowed tiny: 50 steps x 2 runs stay well under 20 s */
    cfg.depth = 2;
    cfg.text_width = 64;
    cfg.text_depth = 2;
    cfg.embed_dim = 64;
    cfg.vocab = 512;
    SynthPairs d;
    synth_pairs_make(&d, &cfg);
    float l32[STEPS], l16[STEPS];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    flip_set_precision(FLIP_PRECISION_FP32);
    train(&cfg, &d, l32);
    flip_set_precision(FLIP_PRECISION_BF16);
    train(&cfg, &d, l16);
    flip_set_precision(FLIP_PRECISION_FP32);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double max_d = 0.0;
    int worst = 0, finite = 1, identical = 1;
    for (int s = 0; s < STEPS; s++) {
        double e = fabs((double)l16[s] - (double)l32[s]);
        if (e > max_d) { max_d = e; worst = s; }
        finite &= isfinite(l16[s]) && isfinite(l32[s]);
        identical &= l16[s] == l32[s];
    }
    printf("# tiny narrowed (96/64 wide, 2+2 blocks), B %d, mask 0.5, %d steps x 2 in %.1f s\n# step: fp32 bf16\n", NB, STEPS,
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    for (int s = 0; s < STEPS; s += 7) printf("#  %2d: %.4f %.4f\n", s, (double)l32[s], (double)l16[s]);
    if ((STEPS - 1) % 7) printf("#  %2d: %.4f %.4f\n", STEPS - 1, (double)l32[STEPS - 1], (double)l16[STEPS - 1]);
    TEST_CHECK(finite, "all losses finite");
    TEST_CHECK(max_d <= TOL_BF16_LOSS_ATOL, "bf16 loss curve tracks fp32: max |diff| %.4f (step %d) <= %.3f",
               max_d, worst, TOL_BF16_LOSS_ATOL);
    TEST_CHECK(l32[STEPS - 1] < 0.5f * l32[0] && l16[STEPS - 1] < 0.5f * l16[0],
               "both runs learn: fp32 %.3f -> %.3f, bf16 %.3f -> %.3f (below half)", (double)l32[0],
               (double)l32[STEPS - 1], (double)l16[0], (double)l16[STEPS - 1]);
    TEST_CHECK(!identical, "bf16 losses are not bit-identical to fp32 (bf16 really ran)");
    flip_free(d.images);
}

int main(void) {
    /* one OpenMP thread: the checks do not depend on the thread count, and on
     * the shared 2-core machine 2-thread regions stall under load */
    omp_set_num_threads(1);
    if (!flip_cpu_has_bf16()) {
        /* 77: ctest reports the test as skipped (not passed) on such a CPU */
        printf("skipped: this CPU has no AVX512-BF16 (avx512_bf16 not in /proc/cpuinfo)\n");
        return 77;
    }
    test_convert();
    test_bf16_activation_ops();
    test_linear();
    test_bb_errors();
    test_gelu_bb();
    test_linear_bb();
    test_loss_curve();
    return test_finish();
}
