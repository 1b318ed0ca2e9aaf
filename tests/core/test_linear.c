/* test_linear.c — linear and linear+GELU: oneDNN fast path vs the double
 * reference on odd and model shapes, dinp stored over a NaN prefill (=) and
 * dweight / dbias accumulated (+=) against a zero-started reference, NULL gradients skipped, central finite differences in
 * double on the reference path, the adjoint identity <dy, L dx> = <L^T dy, dx>
 * on the fast path, trust checks, and primitive-cache reuse. */
#include <math.h>
#include <omp.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "dnnl_util.h"
#include "ops.h"
#include "rng.h"
#include "testlib.h"
#include "tolerances.h"

static void fill(float *x, size_t n, uint64_t a, double sd) {
    Rng r;
    rng_init(&r, 1234, FLIP_RNG_TEST, a, 0);
    for (size_t i = 0; i < n; i++) x[i] = (float)(sd * rng_normal(&r));
}

static void nan_fill(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

static float *falloc(size_t n) { return flip_malloc((n ? n : 1) * sizeof(float), "test buffer"); }

/* fast vs ref for forward and backward of linear (gelu = 0) or linear_gelu */
static void check_shape(int M, int IC, int OC, int with_bias, int gelu) {
    size_t nx = (size_t)M * IC, nw = (size_t)OC * IC, ny = (size_t)M * OC;
    float *x = falloc(nx), *w = falloc(nw), *b = falloc(OC), *dy = falloc(ny);
    float *y = falloc(ny), *yr = falloc(ny), *pre = falloc(ny), *prer = falloc(ny);
    float *scr = falloc(ny), *scr2 = falloc(ny);
    float *dx = falloc(nx), *dw = falloc(nw), *db = falloc(OC);
    float *dx0 = falloc(nx), *dw0 = falloc(nw), *db0 = falloc(OC); /* ref from zero */
    float *px = falloc(nx), *pw = falloc(nw), *pb = falloc(OC);    /* prefill */
    uint64_t s = (uint64_t)M * 1000003u + (uint64_t)IC * 1009u + (uint64_t)OC * 7u + (uint64_t)gelu;
    fill(x, nx, s + 1, 1.0);
    fill(w, nw, s + 2, 1.0 / sqrt((double)IC));
    fill(b, OC, s + 3, 0.5);
    fill(dy, ny, s + 4, 1.0);
    fill(px, nx, s + 5, 1.0);
    fill(pw, nw, s + 6, 1.0);
    fill(pb, OC, s + 7, 1.0);
    const float *bias = with_bias ? b : NULL;
    /* outputs and scratch start as NaN: the fast path must never read them */
    nan_fill(y, ny);
    nan_fill(pre, ny);
    nan_fill(scr, ny);
    char what[160];
    const char *nm = gelu ? "linear_gelu" : "linear";

    if (gelu) {
        linear_gelu_forward(y, pre, x, w, bias, M, IC, OC);
        linear_gelu_forward_ref(yr, prer, x, w, bias, M, IC, OC);
        snprintf(what, sizeof what, "%s fwd pre M=%d IC=%d OC=%d bias=%d", nm, M, IC, OC, with_bias);
        test_close_f(what, pre, prer, ny, TOL_OP_ATOL, TOL_OP_RTOL);
    } else {
        linear_forward(y, x, w, bias, M, IC, OC);
        linear_forward_ref(yr, x, w, bias, M, IC, OC);
    }
    snprintf(what, sizeof what, "%s fwd out M=%d IC=%d OC=%d bias=%d", nm, M, IC, OC, with_bias);
    test_close_f(what, y, yr, ny, TOL_OP_ATOL, TOL_OP_RTOL);

    /* backward: dinp stored over NaN (never read); dweight, dbias added into
     * prefilled grads; ref from zero (dinp from NaN too); expect prefill + ref */
    nan_fill(dx, nx);
    memcpy(dw, pw, nw * sizeof(float));
    memcpy(db, pb, OC * sizeof(float));
    nan_fill(dx0, nx);
    memset(dw0, 0, nw * sizeof(float));
    memset(db0, 0, OC * sizeof(float));
    if (gelu) {
        linear_gelu_backward(dx, dw, db, scr, dy, pre, x, w, M, IC, OC);
        linear_gelu_backward_ref(dx0, dw0, db0, scr2, dy, prer, x, w, M, IC, OC);
        snprintf(what, sizeof what, "%s bwd dpre M=%d IC=%d OC=%d", nm, M, IC, OC);
        test_close_f(what, scr, scr2, ny, TOL_OP_ATOL, TOL_OP_RTOL);
    } else {
        linear_backward(dx, dw, db, dy, x, w, M, IC, OC);
        linear_backward_ref(dx0, dw0, db0, dy, x, w, M, IC, OC);
    }
    snprintf(what, sizeof what, "%s bwd ref dinp M=%d IC=%d OC=%d", nm, M, IC, OC);
    test_trust_grad(what, dx0, nx, 0.01);
    snprintf(what, sizeof what, "%s bwd ref dweight M=%d IC=%d OC=%d", nm, M, IC, OC);
    test_trust_grad(what, dw0, nw, 0.01);
    snprintf(what, sizeof what, "%s bwd ref dbias M=%d IC=%d OC=%d", nm, M, IC, OC);
    test_trust_grad(what, db0, OC, 0.01);
    double *e = flip_malloc((nw > nx ? nw : nx) * sizeof(double), "expected");
    for (size_t i = 0; i < nx; i++) e[i] = (double)dx0[i];
    snprintf(what, sizeof what, "%s bwd dinp (stored over NaN) M=%d IC=%d OC=%d", nm, M, IC, OC);
    test_close(what, dx, e, nx, TOL_OP_ATOL, TOL_OP_RTOL);
    for (size_t i = 0; i < nw; i++) e[i] = (double)pw[i] + (double)dw0[i];
    snprintf(what, sizeof what, "%s bwd dweight (+= prefilled) M=%d IC=%d OC=%d", nm, M, IC, OC);
    test_close(what, dw, e, nw, TOL_OP_ATOL, TOL_OP_RTOL);
    for (int i = 0; i < OC; i++) e[i] = (double)pb[i] + (double)db0[i];
    snprintf(what, sizeof what, "%s bwd dbias (+= prefilled) M=%d IC=%d OC=%d", nm, M, IC, OC);
    test_close(what, db, e, OC, TOL_OP_ATOL, TOL_OP_RTOL);

    /* the reference stores dinp too: over a finite prefill the same as from NaN */
    memcpy(dx, px, nx * sizeof(float));
    if (gelu) linear_gelu_backward_ref(dx, NULL, NULL, scr2, dy, prer, x, w, M, IC, OC);
    else linear_backward_ref(dx, NULL, NULL, dy, x, w, M, IC, OC);
    for (size_t i = 0; i < nx; i++) e[i] = (double)dx0[i];
    snprintf(what, sizeof what, "%s ref bwd dinp (stored over a prefill) M=%d", nm, M);
    test_close(what, dx, e, nx, TOL_OP_ATOL, TOL_OP_RTOL);

    /* NULL gradient outputs are skipped; the others are still right */
    memcpy(dw, pw, nw * sizeof(float));
    if (gelu) linear_gelu_backward(NULL, dw, NULL, scr, dy, pre, x, w, M, IC, OC);
    else linear_backward(NULL, dw, NULL, dy, x, w, M, IC, OC);
    for (size_t i = 0; i < nw; i++) e[i] = (double)pw[i] + (double)dw0[i];
    snprintf(what, sizeof what, "%s bwd dweight only (dinp, dbias NULL) M=%d", nm, M);
    test_close(what, dw, e, nw, TOL_OP_ATOL, TOL_OP_RTOL);

    flip_free(e);
    float *bufs[] = {x, w, b, dy, y, yr, pre, prer, scr, scr2, dx, dw, db, dx0, dw0, db0, px, pw, pb};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) flip_free(bufs[i]);
}

/* loss = sum(out * R) on the reference path */
static double ref_loss(const float *x, const float *w, const float *b, const float *R, float *y,
                       float *pre, int M, int IC, int OC, int gelu) {
    if (gelu) linear_gelu_forward_ref(y, pre, x, w, b, M, IC, OC);
    else linear_forward_ref(y, x, w, b, M, IC, OC);
    double L = 0.0;
    for (size_t i = 0; i < (size_t)M * OC; i++) L += (double)y[i] * (double)R[i];
    return L;
}

/* central differences on sampled coordinates of inp, weight, bias */
static void check_fd(int M, int IC, int OC, int gelu) {
    size_t nx = (size_t)M * IC, nw = (size_t)OC * IC, ny = (size_t)M * OC;
    float *x = falloc(nx), *w = falloc(nw), *b = falloc(OC), *R = falloc(ny);
    float *y = falloc(ny), *pre = falloc(ny), *scr = falloc(ny);
    float *dx = flip_calloc(nx, sizeof(float), "dx"), *dw = flip_calloc(nw, sizeof(float), "dw");
    float *db = flip_calloc(OC, sizeof(float), "db");
    fill(x, nx, 101 + gelu, 1.0);
    fill(w, nw, 102 + gelu, 1.0 / sqrt((double)IC));
    fill(b, OC, 103 + gelu, 0.5);
    fill(R, ny, 104 + gelu, 1.0);
    ref_loss(x, w, b, R, y, pre, M, IC, OC, gelu);
    if (gelu) linear_gelu_backward_ref(dx, dw, db, scr, R, pre, x, w, M, IC, OC);
    else linear_backward_ref(dx, dw, db, R, x, w, M, IC, OC);

    struct { float *p, *g; size_t n; const char *name; } t[3] = {
        {x, dx, nx, "inp"}, {w, dw, nw, "weight"}, {b, db, (size_t)OC, "bias"}};
    Rng r;
    rng_init(&r, 7, FLIP_RNG_TEST, 500 + (uint64_t)gelu, 0);
    const float h = 1e-2f;
    for (int k = 0; k < 3; k++) {
        int n_bad = 0, n_tried = 0;
        double worst = 0.0;
        for (int s = 0; s < 24; s++) {
            size_t i = rng_below(&r, (uint32_t)t[k].n);
            float orig = t[k].p[i];
            float xp = orig + h, xm = orig - h;
            t[k].p[i] = xp;
            double Lp = ref_loss(x, w, b, R, y, pre, M, IC, OC, gelu);
            t[k].p[i] = xm;
            double Lm = ref_loss(x, w, b, R, y, pre, M, IC, OC, gelu);
            t[k].p[i] = orig;
            double fd = (Lp - Lm) / ((double)xp - (double)xm);
            double an = t[k].g[i];
            double err = fabs(fd - an);
            double rel = err / (fabs(an) + 1e-12);
            if (rel > worst && fabs(an) > TOL_FD_ATOL) worst = rel;
            if (err > TOL_FD_ATOL + TOL_FD_RTOL * fabs(an)) n_bad++;
            n_tried++;
        }
        TEST_CHECK(n_bad == 0, "%s finite differences d%s (M=%d IC=%d OC=%d): %d/%d bad, worst rel %.3g",
                   gelu ? "linear_gelu" : "linear", t[k].name, M, IC, OC, n_bad, n_tried, worst);
    }
    float *bufs[] = {x, w, b, R, y, pre, scr, dx, dw, db};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) flip_free(bufs[i]);
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

/* fast path: <dy, L dx> = <L^T dy, dx> for L: inp -> inp W^T and L: W -> inp W^T */
static void check_adjoint(int M, int IC, int OC) {
    size_t nx = (size_t)M * IC, nw = (size_t)OC * IC, ny = (size_t)M * OC;
    float *x = falloc(nx), *w = falloc(nw), *dxv = falloc(nx), *dwv = falloc(nw), *dy = falloc(ny);
    float *y = falloc(ny);
    float *gx = flip_calloc(nx, sizeof(float), "gx"), *gw = flip_calloc(nw, sizeof(float), "gw");
    fill(x, nx, 201, 1.0);
    fill(w, nw, 202, 1.0);
    fill(dxv, nx, 203, 1.0);
    fill(dwv, nw, 204, 1.0);
    fill(dy, ny, 205, 1.0);
    linear_backward(gx, gw, NULL, dy, x, w, M, IC, OC);
    /* in inp: L dx = dx W^T */
    linear_forward(y, dxv, w, NULL, M, IC, OC);
    double lhs = dot(dy, y, ny), rhs = dot(gx, dxv, nx);
    double rel = fabs(lhs - rhs) / (fabs(lhs) + fabs(rhs));
    TEST_CHECK(rel < TOL_ADJOINT_RTOL, "linear adjoint in inp (M=%d IC=%d OC=%d): <dy,L dx>=%.9g <L^T dy,dx>=%.9g rel %.3g",
               M, IC, OC, lhs, rhs, rel);
    /* in weight: L dW = x dW^T */
    linear_forward(y, x, dwv, NULL, M, IC, OC);
    lhs = dot(dy, y, ny);
    rhs = dot(gw, dwv, nw);
    rel = fabs(lhs - rhs) / (fabs(lhs) + fabs(rhs));
    TEST_CHECK(rel < TOL_ADJOINT_RTOL, "linear adjoint in weight (M=%d IC=%d OC=%d): <dy,L dW>=%.9g <L^T dy,dW>=%.9g rel %.3g",
               M, IC, OC, lhs, rhs, rel);
    float *bufs[] = {x, w, dxv, dwv, dy, y, gx, gw};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) flip_free(bufs[i]);
}

/* the same shape twice creates no new primitive; a new shape does */
static void check_cache(void) {
    int M = 9, IC = 24, OC = 40;
    float *x = falloc((size_t)(M + 1) * IC), *w = falloc((size_t)OC * IC), *y = falloc((size_t)(M + 1) * OC);
    fill(x, (size_t)(M + 1) * IC, 301, 1.0);
    fill(w, (size_t)OC * IC, 302, 1.0);
    linear_forward(y, x, w, NULL, M, IC, OC);
    int n1 = flip_dnnl_cache_count();
    for (int i = 0; i < 3; i++) linear_forward(y, x, w, NULL, M, IC, OC);
    int n2 = flip_dnnl_cache_count();
    linear_forward(y, x, w, NULL, M + 1, IC, OC);
    int n3 = flip_dnnl_cache_count();
    TEST_CHECK(n1 == n2 && n3 == n2 + 1, "primitive cache reuse: after first %d, repeats %d, new shape %d", n1, n2, n3);
    flip_free(x); flip_free(w); flip_free(y);
}

/* Fatal paths: flip_fatal calls the hook, which jumps back here. */
static jmp_buf g_fatal_jmp;
static _Noreturn void fatal_hook(int code) { longjmp(g_fatal_jmp, code ? code : 1); }

#define EXPECT_FATAL(what, stmt)                                          \
    do {                                                                  \
        flip_set_abort_hook(fatal_hook);                                  \
        if (setjmp(g_fatal_jmp) == 0) {                                   \
            stmt;                                                         \
            test_report(0, "%s: expected a fatal error, none raised", what); \
        } else {                                                          \
            test_report(1, "%s: fatal error raised as expected", what);   \
        }                                                                 \
        flip_set_abort_hook(NULL);                                        \
    } while (0)

/* bad dims and a failing oneDNN call end in flip_fatal (DNNL_CHECK) */
static void check_fatal(void) {
    float buf[64] = {0};
    EXPECT_FATAL("linear_forward IC = 0", linear_forward(buf, buf, buf, NULL, 2, 0, 4));
    EXPECT_FATAL("linear_backward negative M", linear_backward(buf, buf, NULL, buf, buf, buf, -1, 2, 2));
    /* inner dimensions disagree: dnnl_matmul_desc_init fails */
    FlipMatmulSpec s;
    flip_matmul_spec_init(&s, 2);
    s.src_dims[0] = 2; s.src_dims[1] = 3; s.src_strides[0] = 3; s.src_strides[1] = 1;
    s.wei_dims[0] = 4; s.wei_dims[1] = 2; s.wei_strides[0] = 2; s.wei_strides[1] = 1;
    s.dst_dims[0] = 2; s.dst_dims[1] = 2; s.dst_strides[0] = 2; s.dst_strides[1] = 1;
    int n_before = flip_dnnl_cache_count();
    EXPECT_FATAL("oneDNN matmul with mismatched inner dims (DNNL_CHECK)", flip_matmul(&s, buf, buf, buf, NULL));
    TEST_CHECK(flip_dnnl_cache_count() == n_before, "failed primitive not cached (%d -> %d)", n_before,
               flip_dnnl_cache_count());
    EXPECT_FATAL("flip_matmul_spec_init ndims 5", flip_matmul_spec_init(&s, 5));
}

/* linear_gelu on gelu.c's kernels: out of linear_gelu_forward is bit for bit
 * linear_gelu_activation(pre) (the model recomputes it in backward) for any
 * thread count; the dpre that linear_gelu_backward leaves in scratch is
 * gelu_backward_store(dout, pre), never read before written (scratch NaN), and
 * within TOL_GELU_* of dout GELU'(pre) computed in double. M*OC = 99 * 1000:
 * above the kernel's parallel threshold, not a multiple of 16. */
static void check_gelu_kernel(void) {
    const int M = 99, IC = 24, OC = 1000;
    size_t nx = (size_t)M * IC, nw = (size_t)OC * IC, ny = (size_t)M * OC;
    float *x = falloc(nx), *w = falloc(nw), *b = falloc(OC), *dy = falloc(ny), *y = falloc(ny);
    float *pre = falloc(ny), *h = falloc(ny), *scr = falloc(ny), *want = falloc(ny);
    float *dx = flip_calloc(nx, sizeof(float), "dx");
    fill(x, nx, 401, 1.0);
    fill(w, nw, 402, 3.0 / sqrt((double)IC)); /* pre ~ N(0, 9): both tails of GELU */
    fill(b, OC, 403, 0.5);
    fill(dy, ny, 404, 1.0);
    linear_gelu_forward(y, pre, x, w, b, M, IC, OC);
    int nt0 = omp_get_max_threads();
    size_t n_diff = 0;
    for (int t = 1; t <= 3; t++) {
        omp_set_num_threads(t);
        nan_fill(h, ny);
        linear_gelu_activation(h, pre, ny);
        n_diff += (size_t)(memcmp(h, y, ny * sizeof(float)) != 0);
    }
    omp_set_num_threads(nt0);
    TEST_CHECK(n_diff == 0, "linear_gelu_activation(pre) == linear_gelu_forward out bit for bit, 1-3 threads (%zu differ)",
               n_diff);
    nan_fill(scr, ny);
    linear_gelu_backward(dx, NULL, NULL, scr, dy, pre, x, w, M, IC, OC);
    gelu_backward_store(want, dy, pre, ny);
    TEST_CHECK(memcmp(scr, want, ny * sizeof(float)) == 0,
               "linear_gelu_backward dpre (NaN-filled scratch) == gelu_backward_store(dout, pre)");
    /* |dpre - dout GELU'| <= |dout| (ATOL + RTOL |GELU'|) + rounding of the product */
    size_t n_bad = 0;
    double worst = 0.0;
    for (size_t i = 0; i < ny; i++) {
        double p = pre[i];
        double gp = 0.5 * erfc(-p * 0.70710678118654752440) + p * 0.39894228040143267794 * exp(-0.5 * p * p);
        double ad = fabs((double)dy[i]), err = fabs((double)scr[i] - (double)dy[i] * gp);
        double bound = ad * (TOL_GELU_ATOL + TOL_GELU_RTOL * fabs(gp)) + TOL_GELU_RTOL * ad * fabs(gp);
        if (err > bound) n_bad++;
        if (ad > 0 && err / ad > worst) worst = err / ad;
    }
    TEST_CHECK(n_bad == 0, "linear_gelu dpre vs dout GELU'(pre) in double: max |err| / |dout| %.3g, %zu of %zu out of bound",
               worst, n_bad, ny);
    test_trust_grad("linear_gelu dpre", scr, ny, 0.01);

    /* in place (dinp == dout), as the model's block backward calls it: the
     * same bits as out of place */
    memcpy(h, dy, ny * sizeof(float));
    gelu_backward_store(h, h, pre, ny);
    TEST_CHECK(memcmp(h, want, ny * sizeof(float)) == 0, "gelu_backward_store in place (dinp == dout) bitwise");
    float *hr = falloc(ny);
    gelu_backward_store_ref(hr, dy, pre, ny);
    memcpy(h, dy, ny * sizeof(float));
    gelu_backward_store_ref(h, h, pre, ny);
    TEST_CHECK(memcmp(h, hr, ny * sizeof(float)) == 0, "gelu_backward_store_ref in place (dinp == dout) bitwise");
    float *bufs[] = {x, w, b, dy, y, pre, h, scr, want, dx, hr};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) flip_free(bufs[i]);
}

int main(void) {
    /* odd shapes */
    check_shape(1, 7, 5, 1, 0);
    check_shape(13, 33, 17, 1, 0);
    check_shape(13, 33, 17, 0, 0);
    check_shape(1, 16, 64, 1, 1);
    check_shape(13, 20, 80, 1, 1);
    /* model-like shapes (tiny: C=192, N=16 kept, B small; vit-s: C=384) */
    check_shape(64, 192, 576, 1, 0);
    check_shape(96, 192, 768, 1, 1);
    check_shape(49, 1536, 384, 1, 0);
    check_fd(5, 7, 6, 0);
    check_fd(5, 7, 6, 1);
    check_adjoint(13, 33, 17);
    check_adjoint(128, 384, 384);
    check_cache();
    check_fatal();
    check_gelu_kernel();
    return test_finish();
}
