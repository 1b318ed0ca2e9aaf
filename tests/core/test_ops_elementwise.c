/* test_ops_elementwise.c — layernorm, gelu, softmax, residual, meanpool,
 * l2norm, embedding, patchify / keep_gather / sin-cos position embedding.
 *
 * For every op: fast path vs _ref over several shapes (odd M, B = 1, T = 1,
 * padded lens), backward accumulation (+=) from a non-zero start, NULL
 * gradient outputs skipped; central finite differences in double on the _ref
 * path of a random linear functional of the outputs at sampled coordinates;
 * adjoint check for keep_gather; trust checks on every gradient; the fatal
 * paths for bad token ids and widths through a longjmp abort hook. */
#include <float.h>
#include <omp.h>
#include <setjmp.h>
#include <string.h>

#include "common.h"
#include "ops.h"
#include "rng.h"
#include "testlib.h"
#include "tolerances.h"

/* ---- helpers ---- */

static Rng g_rng;

static float *fbuf(size_t n) { return flip_calloc(n ? n : 1, sizeof(float), "test buffer"); }
static double *dbuf(size_t n) { return flip_calloc(n ? n : 1, sizeof(double), "test buffer"); }

static void fill_normal(float *x, size_t n, double scale) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * rng_normal(&g_rng));
}

static double dot_fd(const float *r, const float *y, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)r[i] * y[i];
    return s;
}

/* (a - base) for the accumulation checks, as double */
static void diff_to_double(double *out, const float *a, const float *base, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = (double)a[i] - (double)base[i];
}

/* Central finite differences of f at n_samples coordinates of x (all if
 * n <= n_samples); compares the analytic gradient g at the same coordinates. */
typedef double (*FdFn)(void *ctx);

static void fd_check(const char *what, float *x, size_t n, const float *g, int n_samples,
                     double h, FdFn f, void *ctx) {
    size_t m = n <= (size_t)n_samples ? n : (size_t)n_samples;
    float *got = fbuf(m);
    double *want = dbuf(m);
    for (size_t j = 0; j < m; j++) {
        size_t i = n <= (size_t)n_samples ? j : rng_below(&g_rng, (uint32_t)n);
        float x0 = x[i];
        float xp = (float)(x0 + h), xm = (float)(x0 - h);
        x[i] = xp;
        double fp = f(ctx);
        x[i] = xm;
        double fm = f(ctx);
        x[i] = x0;
        want[j] = (fp - fm) / ((double)xp - (double)xm);
        got[j] = g[i];
    }
    char name[160];
    snprintf(name, sizeof name, "FD %s", what);
    test_close(name, got, want, m, TOL_FD_ATOL, TOL_FD_RTOL);
    flip_free(got);
    flip_free(want);
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

/* ---- layernorm ---- */

typedef struct {
    float *x, *w, *b, *y, *mean, *rstd, *r;
    int M, C;
} LnCtx;

static double ln_f(void *p) {
    LnCtx *c = p;
    layernorm_forward_ref(c->y, c->mean, c->rstd, c->x, c->w, c->b, c->M, c->C);
    return dot_fd(c->r, c->y, (size_t)c->M * c->C);
}

static void test_layernorm(int M, int C) {
    size_t n = (size_t)M * C;
    float *x = fbuf(n), *w = fbuf(C), *b = fbuf(C), *y = fbuf(n), *yr = fbuf(n);
    float *mean = fbuf(M), *rstd = fbuf(M), *meanr = fbuf(M), *rstdr = fbuf(M);
    float *dy = fbuf(n), *dx = fbuf(n), *dw = fbuf(C), *db = fbuf(C);
    float *dxr = fbuf(n), *dwr = fbuf(C), *dbr = fbuf(C);
    float *base_x = fbuf(n), *base_w = fbuf(C), *base_b = fbuf(C);
    double *tmp = dbuf(n);
    fill_normal(x, n, 2.0);
    for (size_t i = 0; i < n; i++) x[i] += 3.0f; /* non-zero mean */
    fill_normal(w, C, 1.0);
    fill_normal(b, C, 0.5);
    fill_normal(dy, n, 1.0);
    char what[128];

    layernorm_forward(y, mean, rstd, x, w, b, M, C);
    layernorm_forward_ref(yr, meanr, rstdr, x, w, b, M, C);
    snprintf(what, sizeof what, "layernorm fwd M=%d C=%d out", M, C);
    test_close_f(what, y, yr, n, TOL_OP_ATOL, TOL_OP_RTOL);
    snprintf(what, sizeof what, "layernorm fwd M=%d C=%d mean", M, C);
    test_close_f(what, mean, meanr, M, TOL_OP_ATOL, TOL_OP_RTOL);
    snprintf(what, sizeof what, "layernorm fwd M=%d C=%d rstd", M, C);
    test_close_f(what, rstd, rstdr, M, TOL_OP_ATOL, TOL_OP_RTOL);

    /* fast backward starts from a non-zero gradient: it must add */
    fill_normal(base_x, n, 1.0);
    fill_normal(base_w, C, 1.0);
    fill_normal(base_b, C, 1.0);
    memcpy(dx, base_x, n * sizeof(float));
    memcpy(dw, base_w, C * sizeof(float));
    memcpy(db, base_b, C * sizeof(float));
    layernorm_backward(dx, dw, db, dy, x, mean, rstd, w, M, C);
    layernorm_backward_ref(dxr, dwr, dbr, dy, x, meanr, rstdr, w, M, C);
    diff_to_double(tmp, dx, base_x, n);
    /* compare (fast - base) against ref from zero: tolerance relative to the ref */
    {
        float *gx = fbuf(n);
        for (size_t i = 0; i < n; i++) gx[i] = (float)tmp[i];
        snprintf(what, sizeof what, "layernorm bwd M=%d C=%d dinp (+=)", M, C);
        test_close_f(what, gx, dxr, n, TOL_OP_ATOL * 10, TOL_OP_RTOL);
        flip_free(gx);
    }
    float gw[4096], gb[4096];
    for (int i = 0; i < C; i++) {
        gw[i] = dw[i] - base_w[i];
        gb[i] = db[i] - base_b[i];
    }
    snprintf(what, sizeof what, "layernorm bwd M=%d C=%d dweight (+=)", M, C);
    test_close_f(what, gw, dwr, C, TOL_OP_ATOL * 10, TOL_OP_RTOL);
    snprintf(what, sizeof what, "layernorm bwd M=%d C=%d dbias (+=)", M, C);
    test_close_f(what, gb, dbr, C, TOL_OP_ATOL * 10, TOL_OP_RTOL);

    /* NULL outputs are skipped: dweight alone equals the full call's dweight */
    {
        float *dw2 = fbuf(C);
        layernorm_backward(NULL, dw2, NULL, dy, x, mean, rstd, w, M, C);
        snprintf(what, sizeof what, "layernorm bwd M=%d C=%d NULL dinp/dbias", M, C);
        test_close_f(what, dw2, dwr, C, TOL_OP_ATOL * 10, TOL_OP_RTOL);
        flip_free(dw2);
    }
    if (C > 1) {
        snprintf(what, sizeof what, "layernorm M=%d C=%d dinp", M, C);
        test_trust_grad(what, dxr, n, 0.01);
        snprintf(what, sizeof what, "layernorm M=%d C=%d dweight", M, C);
        test_trust_grad(what, dwr, C, 0.01);
    }
    snprintf(what, sizeof what, "layernorm M=%d C=%d dbias", M, C);
    test_trust_grad(what, dbr, C, 0.01);

    /* finite differences (ref path) w.r.t. x, weight, bias */
    LnCtx c = {x, w, b, yr, meanr, rstdr, dy, M, C};
    snprintf(what, sizeof what, "layernorm M=%d C=%d d/dx", M, C);
    fd_check(what, x, n, dxr, 24, 5e-2, ln_f, &c);
    snprintf(what, sizeof what, "layernorm M=%d C=%d d/dweight", M, C);
    fd_check(what, w, C, dwr, 12, 1e-2, ln_f, &c);
    snprintf(what, sizeof what, "layernorm M=%d C=%d d/dbias", M, C);
    fd_check(what, b, C, dbr, 12, 1e-2, ln_f, &c);

    float *bufs[] = {x, w, b, y, yr, mean, rstd, meanr, rstdr, dy, dx, dw, db, dxr, dwr, dbr,
                     base_x, base_w, base_b};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) flip_free(bufs[i]);
    flip_free(tmp);
}

/* layernorm_apply[_b]: the output from layernorm_forward[_b]'s saved mean /
 * rstd is bitwise what the forward wrote (1 and 2 threads, M just below and
 * at / above the parallel threshold), every element written (NaN prefill),
 * and within the op tolerance of layernorm_apply_ref. */
static size_t n_diff_bytes(const void *a, const void *b, size_t n, size_t size) {
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += memcmp((const char *)a + i * size, (const char *)b + i * size, size) != 0;
    return d;
}

static void test_layernorm_apply(int M, int C) {
    size_t n = (size_t)M * C;
    float *x = fbuf(n), *w = fbuf(C), *b = fbuf(C), *y = fbuf(n), *ya = fbuf(n), *yr = fbuf(n);
    float *mean = fbuf(M), *rstd = fbuf(M), *mean_b = fbuf(M), *rstd_b = fbuf(M);
    float *mean_t = fbuf(M), *rstd_t = fbuf(M), *y_t = fbuf(n);
    uint16_t *yb = flip_malloc((n ? n : 1) * sizeof(uint16_t), "test buffer");
    uint16_t *yab = flip_malloc((n ? n : 1) * sizeof(uint16_t), "test buffer");
    fill_normal(x, n, 2.0);
    for (size_t i = 0; i < n; i++) x[i] += 3.0f; /* non-zero mean */
    fill_normal(w, C, 1.0);
    fill_normal(b, C, 0.5);
    char what[160];
    int nt0 = omp_get_max_threads();

    /* reference bits: the forwards at 1 thread */
    omp_set_num_threads(1);
    layernorm_forward(y, mean, rstd, x, w, b, M, C);
    layernorm_forward_b(yb, mean_b, rstd_b, x, w, b, M, C);
    size_t n_nonfinite = 0;
    for (size_t i = 0; i < n; i++) n_nonfinite += !isfinite(y[i]);
    snprintf(what, sizeof what, "layernorm_apply M=%d C=%d: forward output finite, _b stats == f32 stats (%zu non-finite)",
             M, C, n_nonfinite);
    TEST_CHECK(n_nonfinite == 0 && n_diff_bytes(mean, mean_b, M, sizeof(float)) == 0 &&
                   n_diff_bytes(rstd, rstd_b, M, sizeof(float)) == 0,
               "%s", what);

    for (int t = 1; t <= 2; t++) {
        omp_set_num_threads(t);
        /* the forward at t threads is the same (so apply at t matches forward at t) */
        layernorm_forward(y_t, mean_t, rstd_t, x, w, b, M, C);
        size_t d_fwd = n_diff_bytes(y_t, y, n, sizeof(float)) + n_diff_bytes(mean_t, mean, M, sizeof(float)) +
                       n_diff_bytes(rstd_t, rstd, M, sizeof(float));
        for (size_t i = 0; i < n; i++) ya[i] = NAN;
        layernorm_apply(ya, x, mean, rstd, w, b, M, C);
        size_t n_nan = 0;
        for (size_t i = 0; i < n; i++) n_nan += isnan(ya[i]);
        size_t d = n_diff_bytes(ya, y, n, sizeof(float));
        TEST_CHECK(d == 0 && n_nan == 0 && d_fwd == 0,
                   "layernorm_apply M=%d C=%d %d thread(s) == layernorm_forward out bitwise: %zu differ, %zu left NaN "
                   "(forward at %d vs 1 thread: %zu differ)",
                   M, C, t, d, n_nan, t, d_fwd);
        for (size_t i = 0; i < n; i++) yab[i] = 0xffffu; /* a bf16 NaN: never an output here */
        layernorm_apply_b(yab, x, mean_b, rstd_b, w, b, M, C);
        size_t n_nan_b = 0;
        for (size_t i = 0; i < n; i++) n_nan_b += yab[i] == 0xffffu;
        size_t d_b = n_diff_bytes(yab, yb, n, sizeof(uint16_t));
        TEST_CHECK(d_b == 0 && n_nan_b == 0,
                   "layernorm_apply_b M=%d C=%d %d thread(s) == layernorm_forward_b out bitwise: %zu differ, %zu left NaN",
                   M, C, t, d_b, n_nan_b);
    }
    omp_set_num_threads(nt0);

    for (size_t i = 0; i < n; i++) yr[i] = NAN;
    layernorm_apply_ref(yr, x, mean, rstd, w, b, M, C);
    snprintf(what, sizeof what, "layernorm_apply M=%d C=%d vs layernorm_apply_ref", M, C);
    test_close_f(what, ya, yr, n, TOL_OP_ATOL, TOL_OP_RTOL);

    float *bufs[] = {x, w, b, y, ya, yr, mean, rstd, mean_b, rstd_b, mean_t, rstd_t, y_t};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) flip_free(bufs[i]);
    flip_free(yb);
    flip_free(yab);
}

/* statistics that are not the row's own: apply follows the formula with the
 * given mean / rstd (not recomputed ones) */
static void test_layernorm_apply_given_stats(void) {
    enum { M = 5, C = 17 };
    float x[M * C], w[C], b[C], mean[M], rstd[M], y[M * C], yr[M * C];
    fill_normal(x, (size_t)M * C, 1.0);
    fill_normal(w, C, 1.0);
    fill_normal(b, C, 0.5);
    for (int r = 0; r < M; r++) {
        mean[r] = 0.25f * (float)(r + 1);
        rstd[r] = 0.5f + (float)r;
    }
    layernorm_apply(y, x, mean, rstd, w, b, M, C);
    layernorm_apply_ref(yr, x, mean, rstd, w, b, M, C);
    size_t bad = 0;
    for (int r = 0; r < M; r++)
        for (int i = 0; i < C; i++) {
            double want = ((double)x[r * C + i] - mean[r]) * rstd[r] * w[i] + b[i];
            bad += fabs(y[r * C + i] - want) > TOL_OP_ATOL + TOL_OP_RTOL * fabs(want) ||
                   fabs(yr[r * C + i] - want) > TOL_OP_ATOL + TOL_OP_RTOL * fabs(want);
        }
    TEST_CHECK(bad == 0, "layernorm_apply / _ref use the given mean, rstd: (x - mean) rstd w + b (%zu off)", bad);
    /* M = 0: nothing to do, no error */
    layernorm_apply(y, x, mean, rstd, w, b, 0, C);
    layernorm_apply_b(NULL, x, mean, rstd, w, b, 0, C);
    layernorm_apply_ref(y, x, mean, rstd, w, b, 0, C);
    TEST_CHECK(1, "layernorm_apply[_b|_ref] with M = 0 return without error");
}

/* ---- gelu ---- */

typedef struct {
    float *x, *y, *r;
    size_t n;
} GeluCtx;

static double gelu_f(void *p) {
    GeluCtx *c = p;
    gelu_forward_ref(c->y, c->x, c->n);
    return dot_fd(c->r, c->y, c->n);
}

static void test_gelu(size_t n) {
    float *x = fbuf(n), *y = fbuf(n), *yr = fbuf(n), *dy = fbuf(n), *dx = fbuf(n),
          *dxr = fbuf(n), *base = fbuf(n);
    fill_normal(x, n, 2.0);
    const float special[] = {0.0f, -10.0f, 10.0f, -3.0f, 1e-4f};
    for (size_t i = 0; i < n && i < sizeof special / sizeof *special; i++) x[i] = special[i];
    fill_normal(dy, n, 1.0);
    fill_normal(base, n, 1.0);
    char what[128];
    gelu_forward(y, x, n);
    gelu_forward_ref(yr, x, n);
    snprintf(what, sizeof what, "gelu fwd n=%zu", n);
    test_close_f(what, y, yr, n, TOL_OP_ATOL, TOL_OP_RTOL);
    /* known values: GELU(0) = 0, GELU(1) = Phi(1) = 0.841344746..., GELU(-10) ~ -7.6e-23 */
    if (n >= 5) {
        float k[1] = {0};
        double kv[1] = {0.8413447460685429};
        float one = 1.0f;
        gelu_forward(k, &one, 1);
        test_close("gelu(1) = Phi(1)", k, kv, 1, 0.0, 1e-6);
        TEST_CHECK(y[0] == 0.0f && fabsf(y[1]) < 1e-20f && y[2] == 10.0f,
                   "gelu(0) = 0, gelu(-10) ~ 0, gelu(10) = 10 (got %g %g %g)", (double)y[0],
                   (double)y[1], (double)y[2]);
    }
    memcpy(dx, base, n * sizeof(float));
    gelu_backward(dx, dy, x, n);
    gelu_backward_ref(dxr, dy, x, n);
    for (size_t i = 0; i < n; i++) dx[i] -= base[i];
    snprintf(what, sizeof what, "gelu bwd n=%zu (+=)", n);
    test_close_f(what, dx, dxr, n, TOL_OP_ATOL * 10, TOL_OP_RTOL);
    snprintf(what, sizeof what, "gelu n=%zu dinp", n);
    test_trust_grad(what, dxr, n, 0.2);
    GeluCtx c = {x, yr, dy, n};
    snprintf(what, sizeof what, "gelu n=%zu d/dx", n);
    fd_check(what, x, n, dxr, 32, 1e-3, gelu_f, &c);
    float *bufs[] = {x, y, yr, dy, dx, dxr, base};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) flip_free(bufs[i]);
}

/* ---- gelu: the fast kernel against the exact value ----
 * Exact GELU and GELU' in double through erfc (no 1 + erf cancellation for
 * x < 0): 0.5 x erfc(-x / sqrt 2) and 0.5 erfc(-x / sqrt 2) + x phi(x). */
static double gelu_exact(double x) { return 0.5 * x * erfc(-x * 0.70710678118654752440); }
static double gelu_deriv_exact(double x) {
    return 0.5 * erfc(-x * 0.70710678118654752440) + x * 0.39894228040143267794 * exp(-0.5 * x * x);
}

/* x: a dense sweep of [-12, 12], random N(0, 9) values and special inputs
 * (+-0, subnormals, tiny, the 12.9 cut-off, huge, FLT_MAX); n = 2^20 + 61,
 * not a multiple of 16. Checks GELU, GELU' (gelu_backward_store with dout 1)
 * and gelu_backward (+=) against the exact value with TOL_GELU_*; the large-x
 * limits exactly; +-inf and NaN; every result independent of the position in
 * the array (vector body vs remainder) and of the thread count. */
static void test_gelu_exact(void) {
    const size_t n_sweep = (size_t)1 << 20, n_rand = 40;
    const float special[] = {0.0f, -0.0f, 1e-40f, -1e-40f, 1.4e-45f, -1.4e-45f, 1e-30f, -1e-30f,
                             1e-8f, -1e-8f, 0.75179f, -0.75179f, 5.5f, -5.5f, 12.9f, -12.9f,
                             12.900001f, -12.900001f, 13.5f, -13.5f, 100.0f, -100.0f, 1e10f,
                             -1e10f, 3e38f, -3e38f, FLT_MAX, -FLT_MAX};
    const size_t n_special = sizeof special / sizeof *special;
    const size_t n = n_sweep + n_rand + n_special;
    float *x = fbuf(n), *y = fbuf(n), *gp = fbuf(n), *one = fbuf(n), *dx = fbuf(n), *s = fbuf(n),
          *base = fbuf(n), *dsign = fbuf(n);
    double *ry = dbuf(n), *rg = dbuf(n), *racc = dbuf(n);
    for (size_t i = 0; i < n_sweep; i++) x[i] = (float)(-12.0 + 24.0 * (double)i / (double)(n_sweep - 1));
    fill_normal(x + n_sweep, n_rand, 3.0);
    memcpy(x + n_sweep + n_rand, special, sizeof special);
    for (size_t i = 0; i < n; i++) one[i] = 1.0f;
    char what[160];

    gelu_forward(y, x, n);
    gelu_backward_store(gp, one, x, n);
    for (size_t i = 0; i < n; i++) {
        ry[i] = gelu_exact(x[i]);
        rg[i] = gelu_deriv_exact(x[i]);
    }
    snprintf(what, sizeof what, "gelu_forward vs exact (sweep [-12,12] + random + special, n=%zu)", n);
    test_close(what, y, ry, n, TOL_GELU_ATOL, TOL_GELU_RTOL);
    snprintf(what, sizeof what, "gelu_backward_store (dout 1) = GELU' vs exact, n=%zu", n);
    test_close(what, gp, rg, n, TOL_GELU_ATOL, TOL_GELU_RTOL);
    /* x < 0 keeps its relative accuracy (no 1 + erf cancellation) down to -12.9 */
    {
        double worst = 0.0;
        for (size_t i = 0; i < n; i++)
            if (x[i] < 0.0f && x[i] >= -12.9f && fabs(ry[i]) >= FLT_MIN)
                worst = fmax(worst, fabs((double)y[i] - ry[i]) / fabs(ry[i]));
        TEST_CHECK(worst <= TOL_GELU_NEG_RTOL, "gelu x in [-12.9, 0) relative error (outputs down to 3e-37): max %.3g", worst);
    }

    /* += semantics: dout +-1 or +-0.5 (exact products), prefilled dinp */
    fill_normal(base, n, 1.0);
    for (size_t i = 0; i < n; i++) {
        uint32_t k = rng_below(&g_rng, 4);
        dsign[i] = (k & 1 ? -1.0f : 1.0f) * (k & 2 ? 0.5f : 1.0f);
        racc[i] = (double)base[i] + (double)dsign[i] * rg[i];
    }
    memcpy(dx, base, n * sizeof(float));
    gelu_backward(dx, dsign, x, n);
    snprintf(what, sizeof what, "gelu_backward (+=, dout +-1/+-0.5) vs exact, n=%zu", n);
    test_close(what, dx, racc, n, TOL_GELU_ATOL, TOL_GELU_RTOL);
    /* fast vs _ref twin (float-rounded double), random dout */
    {
        float *dr = fbuf(n), *got = fbuf(n), *want = fbuf(n);
        fill_normal(dr, n, 1.0);
        gelu_backward_store(got, dr, x, n);
        gelu_backward_store_ref(want, dr, x, n);
        snprintf(what, sizeof what, "gelu_backward_store vs _ref, n=%zu", n);
        test_close_f(what, got, want, n, TOL_OP_ATOL, TOL_OP_RTOL);
        flip_free(dr);
        flip_free(got);
        flip_free(want);
    }
    /* the store variant never reads dinp */
    for (size_t i = 0; i < n; i++) s[i] = NAN;
    gelu_backward_store(s, dsign, x, n);
    size_t n_bad = 0;
    for (size_t i = 0; i < n; i++) n_bad += s[i] != dsign[i] * gp[i];
    TEST_CHECK(n_bad == 0, "gelu_backward_store into NaN-filled dinp = dout * GELU' (%zu differ)", n_bad);

    /* limits: GELU(x) == x and GELU'(x) == 1 for x >= 6 (|x Phi(-x)| < half an ulp
     * of x from 5.35 on); -0 / 0 below -12.9; signs of zero kept */
    n_bad = 0;
    size_t n_checked = 0;
    for (size_t i = 0; i < n; i++) {
        if (x[i] >= 6.0f) {
            n_checked++;
            n_bad += y[i] != x[i] || gp[i] != 1.0f;
        } else if (x[i] < -12.9f) {
            n_checked++;
            n_bad += y[i] != 0.0f || !signbit(y[i]) || gp[i] != 0.0f;
        }
    }
    TEST_CHECK(n_bad == 0 && n_checked > 1000,
               "gelu large |x|: x >= 6 -> (x, 1), x < -12.9 -> (-0, 0) exactly (%zu of %zu differ)",
               n_bad, n_checked);
    {
        const float zin[2] = {0.0f, -0.0f};
        float zo[2], zg[2];
        gelu_forward(zo, zin, 2);
        gelu_backward_store(zg, one, zin, 2);
        TEST_CHECK(zo[0] == 0.0f && !signbit(zo[0]) && zo[1] == 0.0f && signbit(zo[1]) &&
                       zg[0] == 0.5f && zg[1] == 0.5f,
                   "gelu(+0) = +0, gelu(-0) = -0, gelu'(+-0) = 0.5 (got %g %g %g %g)", (double)zo[0],
                   (double)zo[1], (double)zg[0], (double)zg[1]);
    }
    /* +-inf -> the limits; NaN -> NaN on every entry point */
    {
        const float sin_[4] = {INFINITY, -INFINITY, NAN, -NAN};
        float so[4], sg[4], sa[4] = {0, 0, 0, 0};
        gelu_forward(so, sin_, 4);
        gelu_backward_store(sg, one, sin_, 4);
        gelu_backward(sa, one, sin_, 4);
        TEST_CHECK(so[0] == INFINITY && so[1] == 0.0f && sg[0] == 1.0f && sg[1] == 0.0f &&
                       sa[0] == 1.0f && sa[1] == 0.0f,
                   "gelu(+inf) = inf, gelu(-inf) = 0, gelu'(+inf) = 1, gelu'(-inf) = 0 (got %g %g %g %g %g %g)",
                   (double)so[0], (double)so[1], (double)sg[0], (double)sg[1], (double)sa[0],
                   (double)sa[1]);
        TEST_CHECK(isnan(so[2]) && isnan(so[3]) && isnan(sg[2]) && isnan(sg[3]) && isnan(sa[2]) &&
                       isnan(sa[3]),
                   "gelu NaN in -> NaN out (forward, store, +=)");
    }

    /* position independence: a suffix x + k gives the same bits as the full
     * array (each element once through the 16-wide body, once through the
     * remainder code), and a single element too */
    {
        const size_t m = 4096 + 13;
        float *z = fbuf(m), *zg = fbuf(m);
        size_t n_diff = 0;
        for (size_t k = 1; k <= 17; k++) {
            gelu_forward(z, x + 700000 + k, m - k);
            gelu_backward_store(zg, one, x + 700000 + k, m - k);
            n_diff += (size_t)memcmp(z, y + 700000 + k, (m - k) * sizeof(float)) != 0;
            n_diff += (size_t)memcmp(zg, gp + 700000 + k, (m - k) * sizeof(float)) != 0;
        }
        for (size_t i = n_sweep; i < n; i++) {
            gelu_forward(z, x + i, 1);
            gelu_backward_store(zg, one, x + i, 1);
            n_diff += memcmp(z, y + i, sizeof(float)) != 0 || memcmp(zg, gp + i, sizeof(float)) != 0;
        }
        TEST_CHECK(n_diff == 0, "gelu results independent of position in the array (%zu differ)", n_diff);
        flip_free(z);
        flip_free(zg);
    }
    /* thread count: 1, 2, 3 threads give the same bits (n above the parallel threshold) */
    {
        int nt0 = omp_get_max_threads();
        size_t n_diff = 0;
        for (int t = 1; t <= 3; t++) {
            omp_set_num_threads(t);
            gelu_forward(s, x, n);
            n_diff += (size_t)memcmp(s, y, n * sizeof(float)) != 0;
            gelu_backward_store(s, one, x, n);
            n_diff += (size_t)memcmp(s, gp, n * sizeof(float)) != 0;
            memcpy(s, base, n * sizeof(float));
            gelu_backward(s, dsign, x, n);
            n_diff += (size_t)memcmp(s, dx, n * sizeof(float)) != 0;
        }
        omp_set_num_threads(nt0);
        TEST_CHECK(n_diff == 0, "gelu 1, 2, 3 threads bit-identical (%zu of 9 runs differ)", n_diff);
    }
    float *bufs[] = {x, y, gp, one, dx, s, base, dsign};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) flip_free(bufs[i]);
    flip_free(ry);
    flip_free(rg);
    flip_free(racc);
}

/* ---- softmax ---- */

typedef struct {
    float *x, *y, *r;
    int M, n;
} SmCtx;

static double sm_f(void *p) {
    SmCtx *c = p;
    softmax_forward_ref(c->y, c->x, c->M, c->n);
    return dot_fd(c->r, c->y, (size_t)c->M * c->n);
}

static void test_softmax(int M, int n, double scale) {
    size_t N = (size_t)M * n;
    float *x = fbuf(N), *y = fbuf(N), *yr = fbuf(N), *dy = fbuf(N), *dx = fbuf(N),
          *dxr = fbuf(N), *base = fbuf(N), *inpl = fbuf(N);
    fill_normal(x, N, scale);
    fill_normal(dy, N, 1.0);
    fill_normal(base, N, 1.0);
    char what[128];
    softmax_forward(y, x, M, n);
    softmax_forward_ref(yr, x, M, n);
    snprintf(what, sizeof what, "softmax fwd M=%d n=%d scale=%g", M, n, scale);
    test_close_f(what, y, yr, N, TOL_OP_ATOL, TOL_OP_RTOL);
    int rows_ok = 1;
    for (int r = 0; r < M; r++) {
        double s = 0.0;
        for (int j = 0; j < n; j++) {
            s += y[(size_t)r * n + j];
            if (!isfinite(y[(size_t)r * n + j])) rows_ok = 0;
        }
        if (fabs(s - 1.0) > 1e-5) rows_ok = 0;
    }
    TEST_CHECK(rows_ok, "softmax M=%d n=%d scale=%g: rows finite and sum to 1", M, n, scale);
    memcpy(inpl, x, N * sizeof(float));
    softmax_forward(inpl, inpl, M, n);
    snprintf(what, sizeof what, "softmax fwd M=%d n=%d in place", M, n);
    test_close_f(what, inpl, yr, N, TOL_OP_ATOL, TOL_OP_RTOL);
    memcpy(dx, base, N * sizeof(float));
    softmax_backward(dx, dy, y, M, n);
    softmax_backward_ref(dxr, dy, yr, M, n);
    for (size_t i = 0; i < N; i++) dx[i] -= base[i];
    snprintf(what, sizeof what, "softmax bwd M=%d n=%d (+=)", M, n);
    test_close_f(what, dx, dxr, N, TOL_OP_ATOL * 10, TOL_OP_RTOL);
    if (n > 1 && scale <= 3.0) {
        snprintf(what, sizeof what, "softmax M=%d n=%d dinp", M, n);
        test_trust_grad(what, dxr, N, 0.01);
        SmCtx c = {x, yr, dy, M, n};
        snprintf(what, sizeof what, "softmax M=%d n=%d d/dx", M, n);
        fd_check(what, x, N, dxr, 24, 1e-3, sm_f, &c);
    }
    float *bufs[] = {x, y, yr, dy, dx, dxr, base, inpl};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) flip_free(bufs[i]);
}

/* ---- residual ---- */

static void test_residual(size_t n) {
    float *a = fbuf(n), *b = fbuf(n), *y = fbuf(n), *yr = fbuf(n), *dy = fbuf(n);
    float *da = fbuf(n), *db = fbuf(n), *dar = fbuf(n), *dbr = fbuf(n), *base = fbuf(n);
    fill_normal(a, n, 1.0);
    fill_normal(b, n, 1.0);
    fill_normal(dy, n, 1.0);
    fill_normal(base, n, 1.0);
    char what[96];
    residual_forward(y, a, b, n);
    residual_forward_ref(yr, a, b, n);
    snprintf(what, sizeof what, "residual fwd n=%zu", n);
    test_close_f(what, y, yr, n, 0.0, 1e-7);
    memcpy(da, base, n * sizeof(float));
    memcpy(db, base, n * sizeof(float));
    residual_backward(da, db, dy, n);
    residual_backward_ref(dar, dbr, dy, n);
    for (size_t i = 0; i < n; i++) {
        da[i] -= base[i];
        db[i] -= base[i];
    }
    snprintf(what, sizeof what, "residual bwd n=%zu da (+=)", n);
    test_close_f(what, da, dar, n, TOL_OP_ATOL, TOL_OP_RTOL);
    snprintf(what, sizeof what, "residual bwd n=%zu db (+=)", n);
    test_close_f(what, db, dbr, n, TOL_OP_ATOL, TOL_OP_RTOL);
    /* reference: both grads equal dout exactly; NULL da skipped */
    snprintf(what, sizeof what, "residual bwd_ref n=%zu da == dout", n);
    test_close_f(what, dar, dy, n, 0.0, 0.0);
    memset(db, 0, n * sizeof(float));
    residual_backward(NULL, db, dy, n);
    snprintf(what, sizeof what, "residual bwd n=%zu NULL da", n);
    test_close_f(what, db, dy, n, 0.0, 0.0);
    snprintf(what, sizeof what, "residual n=%zu da", n);
    test_trust_grad(what, dar, n, 0.01);
    /* in place out == a */
    memcpy(y, a, n * sizeof(float));
    residual_forward(y, y, b, n);
    snprintf(what, sizeof what, "residual fwd n=%zu in place", n);
    test_close_f(what, y, yr, n, 0.0, 1e-7);
    float *bufs[] = {a, b, y, yr, dy, da, db, dar, dbr, base};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) flip_free(bufs[i]);
}

/* ---- meanpool ---- */

typedef struct {
    float *x, *y, *r;
    const int *lens;
    int B, T, C;
} PoolCtx;

static double pool_f(void *p) {
    PoolCtx *c = p;
    meanpool_forward_ref(c->y, c->x, c->lens, c->B, c->T, c->C);
    return dot_fd(c->r, c->y, (size_t)c->B * c->C);
}

static void test_meanpool(int B, int T, int C, int padded) {
    size_t n = (size_t)B * T * C, no = (size_t)B * C;
    int *lens = flip_calloc(B, sizeof(int), "lens");
    size_t valid = 0;
    for (int b = 0; b < B; b++) {
        lens[b] = padded ? 1 + (int)rng_below(&g_rng, (uint32_t)T) : T;
        valid += (size_t)lens[b] * C;
    }
    if (padded && B > 1) lens[B - 1] = T; /* one full row */
    valid = 0;
    for (int b = 0; b < B; b++) valid += (size_t)lens[b] * C;
    const int *lp = padded ? lens : NULL;
    float *x = fbuf(n), *y = fbuf(no), *yr = fbuf(no), *dy = fbuf(no), *dx = fbuf(n),
          *dxr = fbuf(n), *base = fbuf(n);
    fill_normal(x, n, 1.0);
    fill_normal(dy, no, 1.0);
    fill_normal(base, n, 1.0);
    char what[128];
    meanpool_forward(y, x, lp, B, T, C);
    meanpool_forward_ref(yr, x, lp, B, T, C);
    snprintf(what, sizeof what, "meanpool fwd B=%d T=%d C=%d padded=%d", B, T, C, padded);
    test_close_f(what, y, yr, no, TOL_OP_ATOL, TOL_OP_RTOL);
    /* padded positions must not leak: poison them and compare */
    if (padded) {
        float *xp = fbuf(n), *yp = fbuf(no);
        memcpy(xp, x, n * sizeof(float));
        for (int b = 0; b < B; b++)
            for (int t = lens[b]; t < T; t++)
                for (int c = 0; c < C; c++) xp[((size_t)b * T + t) * C + c] = 1e30f;
        meanpool_forward(yp, xp, lp, B, T, C);
        snprintf(what, sizeof what, "meanpool B=%d T=%d C=%d ignores padded rows", B, T, C);
        test_close_f(what, yp, yr, no, TOL_OP_ATOL, TOL_OP_RTOL);
        flip_free(xp);
        flip_free(yp);
    }
    memcpy(dx, base, n * sizeof(float));
    meanpool_backward(dx, dy, lp, B, T, C);
    meanpool_backward_ref(dxr, dy, lp, B, T, C);
    for (size_t i = 0; i < n; i++) dx[i] -= base[i];
    snprintf(what, sizeof what, "meanpool bwd B=%d T=%d C=%d padded=%d (+=)", B, T, C, padded);
    test_close_f(what, dx, dxr, n, TOL_OP_ATOL, TOL_OP_RTOL);
    size_t pad_nonzero = 0;
    for (int b = 0; b < B; b++)
        for (int t = lens[b]; padded && t < T; t++)
            for (int c = 0; c < C; c++)
                if (dxr[((size_t)b * T + t) * C + c] != 0.0f) pad_nonzero++;
    TEST_CHECK(pad_nonzero == 0, "meanpool B=%d T=%d C=%d: padded rows get no gradient (%zu)",
               B, T, C, pad_nonzero);
    snprintf(what, sizeof what, "meanpool B=%d T=%d C=%d dinp", B, T, C);
    test_trust_grad(what, dxr, n, 1.0 - (double)valid / (double)n + 0.01);
    PoolCtx c = {x, yr, dy, lp, B, T, C};
    snprintf(what, sizeof what, "meanpool B=%d T=%d C=%d d/dx", B, T, C);
    fd_check(what, x, n, dxr, 24, 1e-2, pool_f, &c);
    float *bufs[] = {x, y, yr, dy, dx, dxr, base};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) flip_free(bufs[i]);
    flip_free(lens);
}

/* ---- l2norm ---- */

typedef struct {
    float *x, *y, *norm, *r;
    int B, D;
} L2Ctx;

static double l2_f(void *p) {
    L2Ctx *c = p;
    l2norm_forward_ref(c->y, c->norm, c->x, c->B, c->D);
    return dot_fd(c->r, c->y, (size_t)c->B * c->D);
}

static void test_l2norm(int B, int D) {
    size_t n = (size_t)B * D;
    float *x = fbuf(n), *y = fbuf(n), *yr = fbuf(n), *nm = fbuf(B), *nmr = fbuf(B);
    float *dy = fbuf(n), *dx = fbuf(n), *dxr = fbuf(n), *base = fbuf(n);
    fill_normal(x, n, 1.5);
    fill_normal(dy, n, 1.0);
    fill_normal(base, n, 1.0);
    char what[96];
    l2norm_forward(y, nm, x, B, D);
    l2norm_forward_ref(yr, nmr, x, B, D);
    snprintf(what, sizeof what, "l2norm fwd B=%d D=%d out", B, D);
    test_close_f(what, y, yr, n, TOL_OP_ATOL, TOL_OP_RTOL);
    snprintf(what, sizeof what, "l2norm fwd B=%d D=%d norm", B, D);
    test_close_f(what, nm, nmr, B, TOL_OP_ATOL, TOL_OP_RTOL);
    int unit = 1;
    for (int b = 0; b < B; b++) {
        double s = 0.0;
        for (int i = 0; i < D; i++) s += (double)y[(size_t)b * D + i] * y[(size_t)b * D + i];
        if (fabs(s - 1.0) > 1e-5) unit = 0;
    }
    TEST_CHECK(unit, "l2norm B=%d D=%d: rows have unit norm", B, D);
    memcpy(dx, base, n * sizeof(float));
    l2norm_backward(dx, dy, y, nm, B, D);
    l2norm_backward_ref(dxr, dy, yr, nmr, B, D);
    for (size_t i = 0; i < n; i++) dx[i] -= base[i];
    snprintf(what, sizeof what, "l2norm bwd B=%d D=%d (+=)", B, D);
    test_close_f(what, dx, dxr, n, TOL_OP_ATOL * 10, TOL_OP_RTOL);
    /* the gradient is orthogonal to the row (scale invariance) */
    double worst = 0.0;
    for (int b = 0; b < B; b++) {
        double s = 0.0, gn = 0.0;
        for (int i = 0; i < D; i++) {
            s += (double)dxr[(size_t)b * D + i] * x[(size_t)b * D + i];
            gn += (double)dxr[(size_t)b * D + i] * dxr[(size_t)b * D + i];
        }
        double rel = fabs(s) / (sqrt(gn) * nmr[b] + 1e-30);
        if (rel > worst) worst = rel;
    }
    TEST_CHECK(worst < 1e-5, "l2norm B=%d D=%d: dinp orthogonal to inp (cos %.2g)", B, D, worst);
    if (D > 1) {
        snprintf(what, sizeof what, "l2norm B=%d D=%d dinp", B, D);
        test_trust_grad(what, dxr, n, 0.01);
    }
    L2Ctx c = {x, yr, nmr, dy, B, D};
    snprintf(what, sizeof what, "l2norm B=%d D=%d d/dx", B, D);
    fd_check(what, x, n, dxr, 24, 1e-2, l2_f, &c);
    /* a zero row gives zeros, not NaN */
    memset(x, 0, (size_t)D * sizeof(float));
    l2norm_forward(y, nm, x, 1, D);
    int zeros = 1;
    for (int i = 0; i < D; i++)
        if (y[i] != 0.0f) zeros = 0;
    TEST_CHECK(zeros, "l2norm D=%d: zero row gives a zero row", D);
    float *bufs[] = {x, y, yr, nm, nmr, dy, dx, dxr, base};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) flip_free(bufs[i]);
}

/* ---- embedding ---- */

typedef struct {
    float *y, *wte, *wpe, *r;
    const int32_t *tok;
    int B, T, C, V;
} EmbCtx;

static double emb_f(void *p) {
    EmbCtx *c = p;
    embedding_forward_ref(c->y, c->tok, c->wte, c->wpe, c->B, c->T, c->C, c->V);
    return dot_fd(c->r, c->y, (size_t)c->B * c->T * c->C);
}

static void test_embedding(int B, int T, int C, int V) {
    size_t n = (size_t)B * T * C;
    int32_t *tok = flip_calloc((size_t)B * T, sizeof(int32_t), "tokens");
    for (size_t i = 0; i < (size_t)B * T; i++) tok[i] = (int32_t)rng_below(&g_rng, (uint32_t)V);
    tok[0] = V - 1;
    if (B * T > 1) tok[B * T - 1] = tok[0]; /* a repeated id */
    float *wte = fbuf((size_t)V * C), *wpe = fbuf((size_t)T * C), *y = fbuf(n), *yr = fbuf(n);
    float *dy = fbuf(n), *dwte = fbuf((size_t)V * C), *dwpe = fbuf((size_t)T * C);
    float *dwter = fbuf((size_t)V * C), *dwper = fbuf((size_t)T * C);
    fill_normal(wte, (size_t)V * C, 1.0);
    fill_normal(wpe, (size_t)T * C, 1.0);
    fill_normal(dy, n, 1.0);
    char what[128];
    embedding_forward(y, tok, wte, wpe, B, T, C, V);
    embedding_forward_ref(yr, tok, wte, wpe, B, T, C, V);
    snprintf(what, sizeof what, "embedding fwd B=%d T=%d C=%d V=%d", B, T, C, V);
    test_close_f(what, y, yr, n, TOL_OP_ATOL, TOL_OP_RTOL);
    for (size_t i = 0; i < (size_t)V * C; i++) dwte[i] = 0.25f;
    for (size_t i = 0; i < (size_t)T * C; i++) dwpe[i] = 0.25f;
    embedding_backward(dwte, dwpe, dy, tok, B, T, C, V);
    embedding_backward_ref(dwter, dwper, dy, tok, B, T, C, V);
    for (size_t i = 0; i < (size_t)V * C; i++) dwte[i] -= 0.25f;
    for (size_t i = 0; i < (size_t)T * C; i++) dwpe[i] -= 0.25f;
    snprintf(what, sizeof what, "embedding bwd B=%d T=%d C=%d dwte (+=)", B, T, C);
    test_close_f(what, dwte, dwter, (size_t)V * C, TOL_OP_ATOL, TOL_OP_RTOL);
    snprintf(what, sizeof what, "embedding bwd B=%d T=%d C=%d dwpe (+=)", B, T, C);
    test_close_f(what, dwpe, dwper, (size_t)T * C, TOL_OP_ATOL, TOL_OP_RTOL);
    /* dwte rows of ids that occur are non-zero, the rest exactly zero */
    size_t used_rows = 0, bad_rows = 0;
    for (int id = 0; id < V; id++) {
        int used = 0, nz = 0;
        for (size_t i = 0; i < (size_t)B * T; i++) used |= tok[i] == id;
        for (int c = 0; c < C; c++) nz |= dwter[(size_t)id * C + c] != 0.0f;
        used_rows += (size_t)used;
        if (used != nz) bad_rows++;
    }
    TEST_CHECK(bad_rows == 0, "embedding B=%d T=%d: dwte non-zero exactly on the %zu used ids",
               B, T, used_rows);
    snprintf(what, sizeof what, "embedding B=%d T=%d C=%d dwpe", B, T, C);
    test_trust_grad(what, dwper, (size_t)T * C, 0.01);
    float *dwn = fbuf((size_t)T * C);
    embedding_backward(NULL, dwn, dy, tok, B, T, C, V);
    snprintf(what, sizeof what, "embedding bwd B=%d T=%d NULL dwte", B, T);
    test_close_f(what, dwn, dwper, (size_t)T * C, TOL_OP_ATOL, TOL_OP_RTOL);
    flip_free(dwn);
    EmbCtx c = {yr, wte, wpe, dy, tok, B, T, C, V};
    snprintf(what, sizeof what, "embedding B=%d T=%d d/dwte", B, T);
    fd_check(what, wte + (size_t)tok[0] * C, (size_t)C, dwter + (size_t)tok[0] * C, 12, 1e-2,
             emb_f, &c);
    snprintf(what, sizeof what, "embedding B=%d T=%d d/dwpe", B, T);
    fd_check(what, wpe, (size_t)T * C, dwper, 16, 1e-2, emb_f, &c);

    tok[B * T - 1] = V; /* out of range */
    snprintf(what, sizeof what, "embedding_forward id %d >= V", V);
    EXPECT_FATAL(what, embedding_forward(y, tok, wte, wpe, B, T, C, V));
    tok[B * T - 1] = -1;
    EXPECT_FATAL("embedding_forward id -1", embedding_forward(y, tok, wte, wpe, B, T, C, V));
    float *bufs[] = {wte, wpe, y, yr, dy, dwte, dwpe, dwter, dwper};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) flip_free(bufs[i]);
    flip_free(tok);
}

/* ---- patches, keep gather, position embedding ---- */

static void make_keep(int32_t *keep, int B, int Np, int N) {
    /* a random N-subset per sample, ascending (partial Fisher-Yates) */
    int32_t *perm = flip_calloc((size_t)Np, sizeof(int32_t), "perm");
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < Np; i++) perm[i] = i;
        for (int i = 0; i < N; i++) {
            int j = i + (int)rng_below(&g_rng, (uint32_t)(Np - i));
            int32_t tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
        int32_t *k = keep + (size_t)b * N;
        int m = 0;
        for (int idx = 0; idx < Np; idx++)
            for (int i = 0; i < N; i++)
                if (perm[i] == idx) k[m++] = idx;
    }
    flip_free(perm);
}

static void test_patch(int B, int S, int Ci, int p, int N) {
    int g = S / p, Np = g * g, P = p * p * Ci;
    size_t n_img = (size_t)B * S * S * Ci, n_out = (size_t)B * Np * P;
    uint8_t *img = flip_calloc(n_img, 1, "images");
    for (size_t i = 0; i < n_img; i++) img[i] = (uint8_t)rng_below(&g_rng, 256);
    float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    float stdv[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    float *out = fbuf(n_out), *outr = fbuf(n_out);
    char what[128];
    patchify_forward(out, img, mean, stdv, B, S, Ci, p);
    patchify_forward_ref(outr, img, mean, stdv, B, S, Ci, p);
    snprintf(what, sizeof what, "patchify B=%d S=%d Ci=%d p=%d", B, S, Ci, p);
    test_close_f(what, out, outr, n_out, TOL_OP_ATOL, TOL_OP_RTOL);
    /* one explicit element: sample B-1, patch (py, px) = (g-1, 0), (dy, dx, c) = (p-1, 1 % p, Ci-1) */
    {
        int b = B - 1, py = g - 1, px = 0, dy = p - 1, dx = 1 % p, c = Ci - 1;
        uint8_t pix = img[(((size_t)b * S + py * p + dy) * S + px * p + dx) * Ci + c];
        double want = ((double)pix / 255.0 - mean[c]) / stdv[c];
        float got = outr[((size_t)b * Np + py * g + px) * P + ((size_t)dy * p + dx) * Ci + c];
        TEST_CHECK(fabs(got - want) < 1e-5, "patchify layout (n = py*g+px, (dy, dx, c)): %g vs %g",
                   (double)got, want);
    }
    /* kept patches == gather of all patches */
    int32_t *keep = flip_calloc((size_t)B * N, sizeof(int32_t), "keep");
    make_keep(keep, B, Np, N);
    float *kept = fbuf((size_t)B * N * P), *gath = fbuf((size_t)B * N * P),
          *gathr = fbuf((size_t)B * N * P);
    patchify_kept_forward(kept, img, keep, mean, stdv, B, S, Ci, p, N);
    keep_gather_forward(gath, outr, keep, B, Np, N, P);
    keep_gather_forward_ref(gathr, outr, keep, B, Np, N, P);
    snprintf(what, sizeof what, "patchify_kept B=%d N=%d == gather(patchify)", B, N);
    test_close_f(what, kept, gathr, (size_t)B * N * P, TOL_OP_ATOL, TOL_OP_RTOL);
    snprintf(what, sizeof what, "keep_gather fwd B=%d Np=%d N=%d", B, Np, N);
    test_close_f(what, gath, gathr, (size_t)B * N * P, 0.0, 0.0);

    /* adjoint: <dy, gather(x)> == <scatter(dy), x>, fast and ref, and += */
    int X = 5;
    size_t nx = (size_t)B * Np * X, ny = (size_t)B * N * X;
    float *x = fbuf(nx), *gx = fbuf(ny), *dy = fbuf(ny), *sx = fbuf(nx), *sxr = fbuf(nx),
          *base = fbuf(nx);
    fill_normal(x, nx, 1.0);
    fill_normal(dy, ny, 1.0);
    fill_normal(base, nx, 1.0);
    keep_gather_forward(gx, x, keep, B, Np, N, X);
    memcpy(sx, base, nx * sizeof(float));
    keep_gather_backward(sx, dy, keep, B, Np, N, X);
    for (size_t i = 0; i < nx; i++) sx[i] -= base[i];
    keep_gather_backward_ref(sxr, dy, keep, B, Np, N, X);
    double lhs = dot_fd(dy, gx, ny), rhs = dot_fd(sx, x, nx), rhsr = dot_fd(sxr, x, nx);
    TEST_CHECK(fabs(lhs - rhs) <= 1e-5 * (fabs(lhs) + 1.0) && fabs(lhs - rhsr) <= 1e-5 * (fabs(lhs) + 1.0),
               "keep_gather adjoint B=%d Np=%d N=%d: <dy, Jx> %.9g <J^T dy, x> %.9g (ref %.9g)",
               B, Np, N, lhs, rhs, rhsr);
    snprintf(what, sizeof what, "keep_gather bwd B=%d Np=%d N=%d (+=) vs ref", B, Np, N);
    test_close_f(what, sx, sxr, nx, TOL_OP_ATOL, TOL_OP_RTOL);
    snprintf(what, sizeof what, "keep_gather B=%d Np=%d N=%d dinp", B, Np, N);
    test_trust_grad(what, sxr, nx, 1.0 - (double)N / Np + 0.01);

    if (N == Np) { /* keep == NULL: all patches in order */
        patchify_kept_forward(kept, img, NULL, mean, stdv, B, S, Ci, p, N);
        snprintf(what, sizeof what, "patchify_kept keep=NULL B=%d == patchify", B);
        test_close_f(what, kept, outr, n_out, TOL_OP_ATOL, TOL_OP_RTOL);
        keep_gather_forward(gath, outr, NULL, B, Np, N, P);
        test_close_f("keep_gather keep=NULL is a copy", gath, outr, n_out, 0.0, 0.0);
        memset(sx, 0, nx * sizeof(float));
        keep_gather_backward(sx, x, NULL, B, Np, N, X);
        test_close_f("keep_gather_backward keep=NULL adds dout", sx, x, nx, 0.0, 0.0);
    }
    float *bufs[] = {out, outr, kept, gath, gathr, x, gx, dy, sx, sxr, base};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) flip_free(bufs[i]);
    flip_free(keep);
    flip_free(img);
}

static void test_posemb(int gh, int gw, int C) {
    int Np = gh * gw, q = C / 4;
    float *tab = fbuf((size_t)Np * C);
    posemb_sincos_2d(tab, gh, gw, C);
    double worst = 0.0;
    for (int n = 0; n < Np; n++) {
        int py = n / gw, px = n % gw;
        for (int k = 0; k < q; k++) {
            double w = pow(10000.0, -(double)k / q);
            double want[4] = {sin(px * w), cos(px * w), sin(py * w), cos(py * w)};
            for (int j = 0; j < 4; j++) {
                double e = fabs(tab[(size_t)n * C + j * q + k] - want[j]);
                if (e > worst) worst = e;
            }
        }
    }
    TEST_CHECK(worst < 1e-6, "posemb_sincos_2d %dx%d C=%d matches the formula (max err %.2g)", gh,
               gw, C, worst);
    /* row 0 = [0 .. | 1 .. | 0 .. | 1 ..]; row (0, 1) first entry sin(1) */
    TEST_CHECK(tab[0] == 0.0f && tab[q] == 1.0f && tab[2 * q] == 0.0f && tab[3 * q] == 1.0f &&
                   (gw < 2 || fabs(tab[C] - sin(1.0)) < 1e-7),
               "posemb_sincos_2d: known rows (origin, px = 1)");
    /* add_kept */
    int B = 3, N = Np > 2 ? Np / 2 : 1;
    int32_t *keep = flip_calloc((size_t)B * N, sizeof(int32_t), "keep");
    make_keep(keep, B, Np, N);
    float *x = fbuf((size_t)B * N * C), *want = fbuf((size_t)B * N * C);
    fill_normal(x, (size_t)B * N * C, 1.0);
    for (int b = 0; b < B; b++)
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
                want[((size_t)b * N + n) * C + c] =
                    x[((size_t)b * N + n) * C + c] + tab[(size_t)keep[b * N + n] * C + c];
    posemb_add_kept(x, tab, keep, B, N, C);
    char what[96];
    snprintf(what, sizeof what, "posemb_add_kept %dx%d C=%d", gh, gw, C);
    test_close_f(what, x, want, (size_t)B * N * C, 0.0, 0.0);
    /* keep == NULL: sample b row n gets table row n */
    float *xa = fbuf((size_t)2 * Np * C), *wa = fbuf((size_t)2 * Np * C);
    for (size_t i = 0; i < (size_t)2 * Np * C; i++) wa[i] = tab[i % ((size_t)Np * C)];
    posemb_add_kept(xa, tab, NULL, 2, Np, C);
    snprintf(what, sizeof what, "posemb_add_kept keep=NULL %dx%d C=%d", gh, gw, C);
    test_close_f(what, xa, wa, (size_t)2 * Np * C, 0.0, 0.0);
    flip_free(xa);
    flip_free(wa);
    flip_free(keep);
    flip_free(x);
    flip_free(want);
    flip_free(tab);
}

int main(void) {
    rng_init(&g_rng, 1234, FLIP_RNG_TEST, 1, 0);

    test_layernorm(1, 8);
    test_layernorm(7, 33);
    test_layernorm(33, 64);
    test_layernorm(130, 384);
    test_layernorm(5, 1000);
    test_layernorm(3001, 192); /* many rows: every backward chunk, uneven chunk sizes */
    /* apply: M one row below and at / above the parallel threshold (16384 elements) */
    {
        const int cs[] = {1, 7, 8, 17, 384, 512, 768};
        for (size_t k = 0; k < sizeof cs / sizeof *cs; k++) {
            int m_par = (16384 + cs[k] - 1) / cs[k];
            test_layernorm_apply(m_par - 1, cs[k]);
            test_layernorm_apply(m_par, cs[k]);
        }
        test_layernorm_apply(3, 768);
        test_layernorm_apply_given_stats();
            float t1[4] = {0}, t2[4] = {0};
        uint16_t tb[4];
        EXPECT_FATAL("layernorm_apply C=0", layernorm_apply(t1, t2, t2, t2, t2, t2, 1, 0));
        EXPECT_FATAL("layernorm_apply M=-1", layernorm_apply(t1, t2, t2, t2, t2, t2, -1, 4));
        EXPECT_FATAL("layernorm_apply_b C=-3", layernorm_apply_b(tb, t2, t2, t2, t2, t2, 1, -3));
        EXPECT_FATAL("layernorm_apply_ref C=0", layernorm_apply_ref(t1, t2, t2, t2, t2, t2, 1, 0));
        EXPECT_FATAL("layernorm_forward C=0", layernorm_forward(t1, t2, t2, t2, t2, t2, 1, 0));
        EXPECT_FATAL("layernorm_backward M=-2", layernorm_backward(t1, NULL, NULL, t2, t2, t2, t2, t2, -2, 4));
    }

    test_gelu(1);
    test_gelu(17);
    test_gelu(1000);
    test_gelu(100003);
    test_gelu_exact();

    test_softmax(1, 1, 1.0);
    test_softmax(3, 7, 1.0);
    test_softmax(37, 50, 2.0);
    test_softmax(64, 197, 3.0);
    test_softmax(9, 33, 60.0); /* large logits: max shift needed */

    test_residual(1);
    test_residual(1001);
    test_residual(65536 + 3);

    test_meanpool(1, 1, 4, 0);
    test_meanpool(3, 5, 7, 0);
    test_meanpool(4, 32, 48, 1);
    test_meanpool(17, 9, 64, 1);
    test_meanpool(1, 32, 16, 1);

    test_l2norm(1, 1);
    test_l2norm(1, 16);
    test_l2norm(7, 33);
    test_l2norm(64, 512);

    test_embedding(1, 1, 8, 5);
    test_embedding(2, 7, 16, 30);
    test_embedding(5, 32, 100, 300);

    test_patch(1, 8, 1, 4, 1);
    test_patch(2, 12, 3, 4, 5);
    test_patch(3, 32, 3, 8, 4);
    test_patch(2, 28, 1, 7, 16); /* N == Np */

    test_posemb(1, 1, 4);
    test_posemb(2, 3, 8);
    test_posemb(14, 14, 192);

    EXPECT_FATAL("posemb_sincos_2d C=6 (not a multiple of 4)",
                 do { float t6[6]; posemb_sincos_2d(t6, 1, 1, 6); } while (0));
    {
        float pin[2 * 3 * 4] = {0}, pout[2 * 4];
        int bad_lens[2] = {3, 0};
        EXPECT_FATAL("meanpool lens[1] = 0", meanpool_forward(pout, pin, bad_lens, 2, 3, 4));
        int32_t bad_keep[2 * 2] = {0, 2, 3, 1}; /* sample 1 not ascending */
        float gin[2 * 4 * 1] = {0}, gout[2 * 2 * 1];
        EXPECT_FATAL("keep_gather keep not ascending",
                     keep_gather_forward(gout, gin, bad_keep, 2, 4, 2, 1));
        int32_t far_keep[2] = {0, 4}; /* index == Np */
        EXPECT_FATAL("keep_gather keep index >= Np",
                     keep_gather_forward(gout, gin, far_keep, 1, 4, 2, 1));
    }
    return test_finish();
}
