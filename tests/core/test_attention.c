/* test_attention.c — multi-head attention core: fast path vs the double
 * reference. Shapes cover both fast paths: the AVX-512 kernel (hd % 16 == 0,
 * T <= 256: T in {1, 2, 15, 16, 17, 31, 32, 33, 49, 50, 64, 65, 197}, hd 16,
 * 32, 64 and 80 (vit-h14), chunk-boundary lengths L = 1, 15, 16, 17, 32, 33,
 * L = T) and the oneDNN sgemm fallback (hd 8, T = 260). Checks: masked keys get
 * exactly zero probability and exactly zero dK / dV, padded key values do not
 * influence the output, rows of P sum to 1, the optional P output changes
 * nothing, backward (which recomputes P) stores (=) every element of a
 * NaN-prefilled dqkv (fast and ref; the same values as into a zeroed dqkv,
 * padded keys' dK / dV exactly 0), results are bitwise the same with 1 and 2 OpenMP threads, central
 * finite differences in double on the reference path, trust checks, a scratch
 * too small for the thread count is a fatal error. The bf16 entry points
 * (attention_forward_b / _backward_b): on the widen path (bf16 kernel
 * disabled) against the f32 ones on the widened inputs, bitwise the bf16
 * rounding of their results, every element stored; the bf16 kernel (VDPBF16PS)
 * against the double reference on the widened inputs within TOL_ATT_BF16_*
 * (P within the fp32 tolerance), T in {1, 16, 17, 49, 50, 64, 197, 256}, hd 32
 * and 64, ragged lengths (L = 1, odd L, tail keys), every element stored (NaN
 * prefill), padded keys' dK / dV exactly 0, bitwise equal with 2 and 1
 * threads and when called again; hd 80 checks it falls back. */
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
    rng_init(&r, 4321, FLIP_RNG_TEST, a, 0);
    for (size_t i = 0; i < n; i++) x[i] = (float)(sd * rng_normal(&r));
}

static void nan_fill(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

static float *falloc(size_t n) { return flip_malloc((n ? n : 1) * sizeof(float), "test buffer"); }

/* scratch for the fast ops at the current thread count (NaN: never read before written) */
static float *scratch_for(int T, int C, int H, size_t *n) {
    *n = attention_scratch_floats(T, C, H, omp_get_max_threads());
    float *s = falloc(*n);
    nan_fill(s, *n);
    return s;
}

static void check_shape(int B, int T, int C, int H, const int *lens, uint64_t seed) {
    int hd = C / H;
    size_t C3 = 3 * (size_t)C;
    size_t nqkv = (size_t)B * T * C3, nout = (size_t)B * T * C, natt = (size_t)B * H * T * T;
    float *qkv = falloc(nqkv), *dout = falloc(nout), *pre = falloc(nqkv);
    float *out = falloc(nout), *outr = falloc(nout), *att = falloc(natt), *attr = falloc(natt);
    float *dq = falloc(nqkv), *dq0 = falloc(nqkv);
    size_t nscr, nscr2 = attention_scratch_floats(T, C, H, 1);
    float *scr = scratch_for(T, C, H, &nscr), *scr2 = falloc(nscr2);
    fill(qkv, nqkv, seed + 1, 1.0);
    fill(dout, nout, seed + 2, 1.0);
    nan_fill(pre, nqkv);
    /* outputs and scratch start as NaN: the fast path must never read them */
    nan_fill(out, nout);
    nan_fill(att, natt);
    char what[200];
    char tag[96];
    snprintf(tag, sizeof tag, "B=%d T=%d C=%d H=%d hd=%d lens=%s", B, T, C, H, hd, lens ? "yes" : "NULL");

    attention_forward(out, att, scr, nscr, qkv, lens, B, T, C, H);
    attention_forward_ref(outr, attr, scr2, nscr2, qkv, lens, B, T, C, H);
    snprintf(what, sizeof what, "attention fwd att %s", tag);
    test_close_f(what, att, attr, natt, TOL_OP_ATOL, TOL_OP_RTOL);
    snprintf(what, sizeof what, "attention fwd out %s", tag);
    test_close_f(what, out, outr, nout, TOL_OP_ATOL, TOL_OP_RTOL);

    /* masked probabilities exactly 0 (fast and ref), rows sum to 1 */
    size_t n_masked_nonzero = 0, n_masked = 0;
    double worst_sum = 0.0;
    for (int b = 0; b < B; b++) {
        int L = lens ? lens[b] : T;
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                const float *p = att + (((size_t)b * H + h) * T + i) * T;
                const float *pr = attr + (((size_t)b * H + h) * T + i) * T;
                double s = 0.0;
                for (int j = 0; j < T; j++) {
                    s += p[j];
                    if (j >= L) {
                        n_masked++;
                        if (p[j] != 0.0f || pr[j] != 0.0f) n_masked_nonzero++;
                    }
                }
                if (fabs(s - 1.0) > worst_sum) worst_sum = fabs(s - 1.0);
            }
    }
    TEST_CHECK(n_masked_nonzero == 0, "attention masked keys have P == 0 exactly %s: %zu of %zu nonzero",
               tag, n_masked_nonzero, n_masked);
    TEST_CHECK(worst_sum < 1e-5, "attention rows of P sum to 1 %s: worst |sum-1| %.3g", tag, worst_sum);

    /* without the optional P output: the same bits (fast and ref) */
    {
        float *o2 = falloc(nout), *o3 = falloc(nout);
        attention_forward(o2, NULL, scr, nscr, qkv, lens, B, T, C, H);
        attention_forward_ref(o3, NULL, scr2, nscr2, qkv, lens, B, T, C, H);
        TEST_CHECK(memcmp(o2, out, nout * sizeof(float)) == 0 && memcmp(o3, outr, nout * sizeof(float)) == 0,
                   "attention fwd out without the P output is bitwise the same %s", tag);
        flip_free(o2); flip_free(o3);
    }

    /* padded keys' k and v do not influence anything */
    if (lens) {
        float *qkv2 = falloc(nqkv), *out2 = falloc(nout), *att2 = falloc(natt);
        memcpy(qkv2, qkv, nqkv * sizeof(float));
        for (int b = 0; b < B; b++)
            for (int t = lens[b]; t < T; t++)
                for (size_t c = C; c < C3; c++) qkv2[((size_t)b * T + t) * C3 + c] = 1e3f;
        attention_forward(out2, att2, scr, nscr, qkv2, lens, B, T, C, H);
        int same = memcmp(out2, out, nout * sizeof(float)) == 0 && memcmp(att2, att, natt * sizeof(float)) == 0;
        TEST_CHECK(same, "attention output independent of padded keys/values %s", tag);
        flip_free(qkv2); flip_free(out2); flip_free(att2);
    }

    /* backward stores: fast and ref into NaN-prefilled dqkv (test_close and
     * the trust check below fail on any NaN left, i.e. an element not written) */
    memcpy(dq, pre, nqkv * sizeof(float));
    memcpy(dq0, pre, nqkv * sizeof(float));
    nan_fill(scr, nscr);
    attention_backward(dq, scr, nscr, dout, qkv, lens, B, T, C, H);
    attention_backward_ref(dq0, scr2, nscr2, dout, qkv, lens, B, T, C, H);
    double *e = flip_malloc(nqkv * sizeof(double), "expected");
    for (size_t i = 0; i < nqkv; i++) e[i] = (double)dq0[i];
    snprintf(what, sizeof what, "attention bwd dqkv (stored into NaN) %s", tag);
    test_close(what, dq, e, nqkv, TOL_OP_ATOL, TOL_OP_RTOL);
    /* stored over a zeroed dqkv: the same values as over NaN (nothing is read back) */
    {
        float *z = flip_calloc(nqkv, sizeof(float), "dq zeroed");
        attention_backward(z, scr, nscr, dout, qkv, lens, B, T, C, H);
        size_t n_diff = 0;
        for (size_t i = 0; i < nqkv; i++) n_diff += !(z[i] == dq[i]);
        TEST_CHECK(n_diff == 0, "attention bwd into NaN == into zeros %s: %zu differ", tag, n_diff);
        flip_free(z);
    }
    /* structural zeros of dqkv: k and v rows of padded keys; and with a single
     * valid key (L == 1) P is constant, so that sample's dQ and dK vanish */
    size_t n_struct = 0;
    for (int b = 0; b < B; b++) {
        int L = lens ? lens[b] : T;
        n_struct += (size_t)(T - L) * 2 * C;
        if (L == 1) n_struct += (size_t)T * C + C;
    }
    double zero_frac = (double)n_struct / (double)nqkv + 0.01;
    snprintf(what, sizeof what, "attention bwd ref dqkv %s", tag);
    test_trust_grad(what, dq0, nqkv, zero_frac);
    size_t n_bad = 0, n_chk = 0;
    for (int b = 0; b < B; b++)
        for (int t = lens ? lens[b] : T; t < T; t++)
            for (size_t c = C; c < C3; c++) {
                size_t i = ((size_t)b * T + t) * C3 + c;
                n_chk++;
                if (dq[i] != 0.0f || dq0[i] != 0.0f) n_bad++;
            }
    if (lens)
        TEST_CHECK(n_bad == 0, "attention padded keys get exactly zero dK, dV %s: %zu of %zu changed",
                   tag, n_bad, n_chk);
    /* queries at padded positions still get gradient (they produce output) */
    if (lens) {
        size_t nz = 0, n = 0;
        for (int b = 0; b < B; b++)
            for (int t = lens[b] > 1 ? lens[b] : T; t < T; t++)
                for (int c = 0; c < C; c++) {
                    n++;
                    if (dq0[((size_t)b * T + t) * C3 + c] != 0.0f) nz++;
                }
        TEST_CHECK(n == 0 || nz > n / 2, "attention padded queries still get dQ %s: %zu of %zu nonzero", tag, nz, n);
    }
    flip_free(e);
    float *bufs[] = {qkv, dout, pre, out, outr, att, attr, dq, dq0, scr, scr2};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) flip_free(bufs[i]);
}

static double ref_loss(const float *qkv, const float *R, float *out, float *scr, size_t nscr,
                       const int *lens, int B, int T, int C, int H) {
    attention_forward_ref(out, NULL, scr, nscr, qkv, lens, B, T, C, H);
    double L = 0.0;
    for (size_t i = 0; i < (size_t)B * T * C; i++) L += (double)out[i] * (double)R[i];
    return L;
}

static void check_fd(int B, int T, int C, int H, const int *lens) {
    size_t C3 = 3 * (size_t)C;
    size_t nqkv = (size_t)B * T * C3, nout = (size_t)B * T * C, nscr = attention_scratch_floats(T, C, H, 1);
    float *qkv = falloc(nqkv), *R = falloc(nout), *out = falloc(nout);
    float *scr = falloc(nscr), *g = flip_calloc(nqkv, sizeof(float), "dqkv");
    fill(qkv, nqkv, 900, 1.0);
    fill(R, nout, 901, 1.0);
    attention_backward_ref(g, scr, nscr, R, qkv, lens, B, T, C, H);
    Rng r;
    rng_init(&r, 11, FLIP_RNG_TEST, 902, 0);
    const float h = 1e-2f;
    const char *part[3] = {"q", "k", "v"};
    for (int k = 0; k < 3; k++) {
        int n_bad = 0, n_tried = 0;
        double worst = 0.0;
        for (int s = 0; s < 30; s++) {
            size_t row = rng_below(&r, (uint32_t)(B * T));
            size_t i = row * C3 + (size_t)k * C + rng_below(&r, (uint32_t)C);
            float orig = qkv[i];
            float xp = orig + h, xm = orig - h;
            qkv[i] = xp;
            double Lp = ref_loss(qkv, R, out, scr, nscr, lens, B, T, C, H);
            qkv[i] = xm;
            double Lm = ref_loss(qkv, R, out, scr, nscr, lens, B, T, C, H);
            qkv[i] = orig;
            double fd = (Lp - Lm) / ((double)xp - (double)xm);
            double an = g[i];
            double err = fabs(fd - an);
            double rel = err / (fabs(an) + 1e-12);
            if (rel > worst && fabs(an) > TOL_FD_ATOL) worst = rel;
            if (err > TOL_FD_ATOL + TOL_FD_RTOL * fabs(an)) n_bad++;
            n_tried++;
        }
        TEST_CHECK(n_bad == 0, "attention finite differences d%s (B=%d T=%d C=%d H=%d lens=%s): %d/%d bad, worst rel %.3g",
                   part[k], B, T, C, H, lens ? "yes" : "NULL", n_bad, n_tried, worst);
    }
    float *bufs[] = {qkv, R, out, scr, g};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) flip_free(bufs[i]);
}

/* bf16 entry points on the widen-to-f32 path vs the f32 ones on the widened bf16 inputs */
static void check_bf16(int B, int T, int C, int H, const int *lens, uint64_t seed) {
    int prev = attention_set_bf16_kernel(0);
    size_t C3 = 3 * (size_t)C, nqkv = (size_t)B * T * C3, nout = (size_t)B * T * C, nscr;
    float *qkv = falloc(nqkv), *dout = falloc(nout), *out = falloc(nout);
    float *dq = falloc(nqkv);
    float *scr = scratch_for(T, C, H, &nscr);
    nan_fill(dq, nqkv);
    uint16_t *qkv_b = flip_malloc(nqkv * 2, "qkv_b"), *out_b = flip_malloc(nout * 2, "out_b");
    uint16_t *dq_b = flip_malloc(nqkv * 2, "dq_b");
    fill(qkv, nqkv, seed + 1, 1.0);
    fill(dout, nout, seed + 2, 1.0);
    for (size_t i = 0; i < nqkv; i++) {
        qkv_b[i] = flip_bf16_round(qkv[i]);
        qkv[i] = flip_bf16_widen(qkv_b[i]);
    }
    memset(out_b, 0xff, nout * 2); /* NaN patterns: every element must be stored */
    memset(dq_b, 0xff, nqkv * 2);
    attention_forward(out, NULL, scr, nscr, qkv, lens, B, T, C, H);
    attention_forward_b(out_b, NULL, scr, nscr, qkv_b, lens, B, T, C, H);
    attention_backward(dq, scr, nscr, dout, qkv, lens, B, T, C, H);
    attention_backward_b(dq_b, scr, nscr, dout, qkv_b, lens, B, T, C, H);
    size_t bad_o = 0, bad_d = 0;
    for (size_t i = 0; i < nout; i++) bad_o += out_b[i] != flip_bf16_round(out[i]);
    for (size_t i = 0; i < nqkv; i++) bad_d += dq_b[i] != flip_bf16_round(dq[i]);
    TEST_CHECK(bad_o == 0 && bad_d == 0,
               "attention bf16 I/O == bf16(f32 path) bitwise (B=%d T=%d C=%d H=%d lens=%s): %zu out, %zu dqkv differ",
               B, T, C, H, lens ? "yes" : "NULL", bad_o, bad_d);
    flip_free(qkv); flip_free(dout); flip_free(out); flip_free(dq); flip_free(scr);
    flip_free(qkv_b); flip_free(out_b); flip_free(dq_b);
    attention_set_bf16_kernel(prev);
}

/* |got - ref| <= TOL_ATT_BF16_ATOL * max|ref| + TOL_ATT_BF16_RTOL |ref| over the
 * n elements of column part [c0, c0 + nc) of rows of width ld (got bf16) */
static void close_bf16(const char *what, const uint16_t *got, const float *ref, size_t rows, size_t ld, size_t c0,
                       size_t nc) {
    size_t n = rows * nc;
    float *g = falloc(n);
    double *r = flip_malloc(n * sizeof(double), "ref");
    double mx = 0.0;
    for (size_t i = 0; i < rows; i++)
        for (size_t c = 0; c < nc; c++) {
            g[i * nc + c] = flip_bf16_widen(got[i * ld + c0 + c]);
            r[i * nc + c] = ref[i * ld + c0 + c];
            if (fabs(r[i * nc + c]) > mx) mx = fabs(r[i * nc + c]);
        }
    char w[240];
    snprintf(w, sizeof w, "%s (max|ref| %.3g)", what, mx);
    test_close(w, g, r, n, TOL_ATT_BF16_ATOL * mx, TOL_ATT_BF16_RTOL);
    flip_free(g);
    flip_free(r);
}

/* the bf16 arithmetic kernel (attention_forward_b / _backward_b where
 * attention_bf16_kernel_used) vs the double reference on the widened bf16 qkv
 * (dout f32): the kernel rounds P, dout, dS to bf16 and its results on store */
static void check_bf16_kernel(int B, int T, int C, int H, const int *lens, uint64_t seed) {
    int hd = C / H;
    size_t C3 = 3 * (size_t)C, nqkv = (size_t)B * T * C3, nout = (size_t)B * T * C, natt = (size_t)B * H * T * T;
    size_t nscr2 = attention_scratch_floats(T, C, H, 1);
    int nt0 = omp_get_max_threads();
    omp_set_num_threads(2);
    size_t nscr = attention_scratch_floats(T, C, H, 2);
    float *qkv = falloc(nqkv), *dout = falloc(nout), *outr = falloc(nout), *dqr = falloc(nqkv);
    float *att = falloc(natt), *attr = falloc(natt), *scr = falloc(nscr), *scr2 = falloc(nscr2);
    uint16_t *qkv_b = flip_malloc(nqkv * 2, "qkv_b"), *out_b[2], *dq_b[2], *again = flip_malloc(nqkv * 2, "again");
    for (int r = 0; r < 2; r++) {
        out_b[r] = flip_malloc(nout * 2, "out_b");
        dq_b[r] = flip_malloc(nqkv * 2, "dq_b");
        memset(out_b[r], 0xff, nout * 2); /* NaN patterns: every element must be stored */
        memset(dq_b[r], 0xff, nqkv * 2);
    }
    fill(qkv, nqkv, seed + 1, 1.0);
    fill(dout, nout, seed + 2, 1.0);
    for (size_t i = 0; i < nqkv; i++) {
        qkv_b[i] = flip_bf16_round(qkv[i]);
        qkv[i] = flip_bf16_widen(qkv_b[i]);
    }
    char tag[96], what[200];
    snprintf(tag, sizeof tag, "B=%d T=%d C=%d H=%d hd=%d lens=%s", B, T, C, H, hd, lens ? "yes" : "NULL");
    int want = hd % 32 == 0 && T <= 256 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
    TEST_CHECK(attention_bf16_kernel_used(T, C, H) == want, "attention bf16 kernel used where the CPU has it %s: %d",
               tag, want);
    /* 2 threads, then 1: bitwise the same */
    for (int r = 0; r < 2; r++) {
        omp_set_num_threads(2 - r);
        nan_fill(scr, nscr);
        attention_forward_b(out_b[r], r == 0 ? att : NULL, scr, nscr, qkv_b, lens, B, T, C, H);
        attention_backward_b(dq_b[r], scr, nscr, dout, qkv_b, lens, B, T, C, H);
    }
    TEST_CHECK(memcmp(out_b[0], out_b[1], nout * 2) == 0 && memcmp(dq_b[0], dq_b[1], nqkv * 2) == 0,
               "attention bf16 kernel fwd/bwd bitwise equal with 2 and 1 threads %s", tag);
    /* called again: the same bits */
    memset(again, 0xff, nqkv * 2);
    attention_forward_b(again, NULL, scr, nscr, qkv_b, lens, B, T, C, H);
    TEST_CHECK(memcmp(again, out_b[0], nout * 2) == 0, "attention bf16 kernel fwd twice bitwise %s", tag);
    memset(again, 0xff, nqkv * 2);
    attention_backward_b(again, scr, nscr, dout, qkv_b, lens, B, T, C, H);
    TEST_CHECK(memcmp(again, dq_b[0], nqkv * 2) == 0, "attention bf16 kernel bwd twice bitwise %s", tag);
    omp_set_num_threads(nt0);

    attention_forward_ref(outr, attr, scr2, nscr2, qkv, lens, B, T, C, H);
    attention_backward_ref(dqr, scr2, nscr2, dout, qkv, lens, B, T, C, H);
    /* P: f32 scores from exact bf16 products, f32 softmax: fp32 tolerance */
    snprintf(what, sizeof what, "attention bf16 kernel P %s", tag);
    test_close_f(what, att, attr, natt, TOL_OP_ATOL, TOL_OP_RTOL);
    snprintf(what, sizeof what, "attention bf16 kernel out %s", tag);
    close_bf16(what, out_b[0], outr, (size_t)B * T, (size_t)C, 0, (size_t)C);
    const char *part[3] = {"dq", "dk", "dv"};
    for (int k = 0; k < 3; k++) {
        snprintf(what, sizeof what, "attention bf16 kernel %s %s", part[k], tag);
        close_bf16(what, dq_b[0], dqr, (size_t)B * T, C3, (size_t)k * C, (size_t)C);
    }
    size_t n_bad = 0, n_chk = 0;
    for (int b = 0; b < B; b++)
        for (int t = lens ? lens[b] : T; t < T; t++)
            for (size_t c = C; c < C3; c++) {
                n_chk++;
                n_bad += dq_b[0][((size_t)b * T + t) * C3 + c] != 0;
            }
    TEST_CHECK(n_bad == 0, "attention bf16 kernel padded keys' dK, dV exactly 0 %s: %zu of %zu not", tag, n_bad, n_chk);
    float *bufs[] = {qkv, dout, outr, dqr, att, attr, scr, scr2};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) flip_free(bufs[i]);
    for (int r = 0; r < 2; r++) { flip_free(out_b[r]); flip_free(dq_b[r]); }
    flip_free(qkv_b); flip_free(again);
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

static void check_fatal(void) {
    static float buf[2 * 4 * 3 * 8], att[2 * 2 * 4 * 4];
    static const int bad0[2] = {4, 0}, bad5[2] = {5, 1};
    size_t nscr;
    float *scr = scratch_for(4, 8, 2, &nscr);
    EXPECT_FATAL("attention_forward length 0", attention_forward(buf, att, scr, nscr, buf, bad0, 2, 4, 8, 2));
    EXPECT_FATAL("attention_forward length > T", attention_forward(buf, att, scr, nscr, buf, bad5, 2, 4, 8, 2));
    EXPECT_FATAL("attention_backward C not a multiple of H",
                 attention_backward(buf, scr, nscr, buf, buf, NULL, 2, 4, 8, 3));
    EXPECT_FATAL("attention_forward_ref length 0",
                 attention_forward_ref(buf, att, scr, nscr, buf, bad0, 2, 4, 8, 2));
    /* scratch planned for fewer threads than the call runs with */
    int nt0 = omp_get_max_threads();
    size_t n1 = attention_scratch_floats(4, 8, 2, 1);
    omp_set_num_threads(2);
    EXPECT_FATAL("attention_forward scratch for 1 thread, run with 2",
                 attention_forward(buf, NULL, scr, n1, buf, NULL, 2, 4, 8, 2));
    EXPECT_FATAL("attention_backward scratch one float short",
                 attention_backward(buf, scr, attention_scratch_floats(4, 8, 2, 2) - 1, buf, buf, NULL, 2, 4, 8, 2));
    omp_set_num_threads(nt0);
    flip_free(scr);
}

/* fast forward + backward bitwise identical with 1 and 2 OpenMP threads */
static void check_threads(int B, int T, int C, int H, const int *lens) {
    size_t C3 = 3 * (size_t)C;
    size_t nqkv = (size_t)B * T * C3, nout = (size_t)B * T * C, natt = (size_t)B * H * T * T;
    size_t nscr = attention_scratch_floats(T, C, H, 2);
    float *qkv = falloc(nqkv), *dout = falloc(nout), *scr = falloc(nscr);
    float *out[2], *att[2], *dq[2];
    fill(qkv, nqkv, 700, 1.0);
    fill(dout, nout, 701, 1.0);
    int nt0 = omp_get_max_threads();
    for (int r = 0; r < 2; r++) {
        out[r] = falloc(nout); att[r] = falloc(natt);
        dq[r] = flip_calloc(nqkv, sizeof(float), "dq");
        omp_set_num_threads(r + 1);
        attention_forward(out[r], att[r], scr, nscr, qkv, lens, B, T, C, H);
        attention_backward(dq[r], scr, nscr, dout, qkv, lens, B, T, C, H);
    }
    omp_set_num_threads(nt0);
    int same = memcmp(out[0], out[1], nout * sizeof(float)) == 0 &&
               memcmp(att[0], att[1], natt * sizeof(float)) == 0 &&
               memcmp(dq[0], dq[1], nqkv * sizeof(float)) == 0;
    TEST_CHECK(same, "attention fwd/bwd bitwise equal with 1 and 2 threads (B=%d T=%d C=%d H=%d)", B, T, C, H);
    for (int r = 0; r < 2; r++) { flip_free(out[r]); flip_free(att[r]); flip_free(dq[r]); }
    flip_free(qkv); flip_free(dout); flip_free(scr);
}

int main(void) {
    static const int lens_a[2] = {5, 3};
    static const int lens_b[3] = {1, 5, 2};
    static const int lens_text[4] = {32, 7, 19, 1};
    static const int lens_2[2] = {1, 2};
    static const int lens_15[3] = {15, 1, 8};
    static const int lens_17[3] = {17, 16, 1};
    static const int lens_31[2] = {31, 17};
    static const int lens_33[2] = {33, 32};
    static const int lens_64[4] = {64, 63, 48, 1};
    static const int lens_65[2] = {65, 49};
    static const int lens_197[2] = {197, 100};
    static const int lens_1[3] = {1, 1, 1};
    static const int lens_80[2] = {17, 5};
    /* oneDNN sgemm fallback: hd not a multiple of 16, or T > 256 (hd 80: the kernel) */
    check_shape(2, 5, 8, 1, lens_a, 10);        /* T = 5 padded, H = 1, hd 8 */
    check_shape(2, 17, 160, 2, lens_80, 11);    /* hd 80 (vit-h14), L = 17 = T and 5 */
    check_shape(2, 33, 24, 3, lens_33, 12);     /* hd 8, T = 33 */
    check_shape(1, 260, 32, 2, NULL, 13);       /* hd 16, T = 260 > 256 */
    /* AVX-512 kernel (on a CPU with AVX-512F; else the fallback again) */
    check_shape(3, 5, 64, 2, lens_b, 20);       /* hd 32, a length-1 sample */
    check_shape(2, 13, 128, 2, NULL, 30);       /* hd 64, odd T */
    check_shape(1, 1, 64, 1, NULL, 40);         /* T = 1 */
    check_shape(3, 1, 32, 2, lens_1, 41);       /* T = 1, hd 16, L = 1 = T */
    check_shape(2, 2, 32, 2, lens_2, 42);       /* T = 2, hd 16 */
    check_shape(3, 15, 128, 2, lens_15, 43);    /* T = 15, hd 64 */
    check_shape(2, 16, 48, 3, NULL, 44);        /* T = 16, hd 16 */
    check_shape(3, 17, 192, 3, lens_17, 45);    /* T = 17, L 17/16/1 (tail column) */
    check_shape(2, 31, 64, 4, lens_31, 46);     /* T = 31, hd 16 */
    check_shape(4, 32, 192, 6, lens_text, 50);  /* text: T = 32, hd 32, padding */
    check_shape(2, 33, 128, 2, lens_33, 51);    /* T = 33, L 33/32 */
    check_shape(2, 49, 384, 6, NULL, 60);       /* ViT-S at mask 0.75, hd 64 */
    check_shape(2, 50, 384, 6, NULL, 61);       /* T = 50 (2 tail columns) */
    check_shape(4, 64, 32, 2, lens_64, 62);     /* T = 64, hd 16, L 64/63/48/1 */
    check_shape(2, 65, 128, 2, lens_65, 63);    /* T = 65, hd 64 */
    check_shape(2, 197, 128, 2, lens_197, 64);  /* T = 197 (5 past 192: padded chunk), L 100 (4: tail) */
    check_bf16(2, 5, 8, 1, lens_a, 70);         /* fallback, hd 8 */
    check_bf16(2, 17, 160, 2, lens_80, 71);     /* hd 80 */
    check_bf16(1, 260, 32, 2, NULL, 72);        /* fallback, T > 256 (hd 16: vector widening) */
    check_bf16(3, 17, 192, 3, lens_17, 73);     /* kernel, tail column */
    check_bf16(2, 49, 384, 6, NULL, 74);        /* ViT-S at mask 0.75 */
    check_bf16(4, 32, 192, 6, lens_text, 75);   /* text padding */
    check_bf16(2, 197, 128, 2, lens_197, 76);   /* T = 197 */
    /* bf16 arithmetic kernel: T in {1, 16, 17, 49, 50, 64, 197, 256}, hd 64 and 32 */
    static const int lensk_1[2] = {1, 1};
    static const int lensk_16[3] = {16, 1, 9};
    static const int lensk_17[3] = {17, 16, 5};
    static const int lensk_49[2] = {49, 33};
    static const int lensk_64[3] = {64, 63, 1};
    static const int lensk_197[2] = {197, 100};
    static const int lensk_256[2] = {256, 129};
    check_bf16_kernel(2, 1, 128, 2, lensk_1, 80);    /* T = 1, hd 64 */
    check_bf16_kernel(3, 16, 96, 3, lensk_16, 81);   /* hd 32, L 16/1/9 */
    check_bf16_kernel(3, 17, 128, 2, lensk_17, 82);  /* odd T, L 17 (tail) / 16 / 5 */
    check_bf16_kernel(2, 49, 384, 6, lensk_49, 83);  /* ViT-S mask 0.75, L 33 (tail) */
    check_bf16_kernel(2, 50, 384, 6, NULL, 84);      /* T = 50 (2 tail keys) */
    check_bf16_kernel(3, 64, 64, 2, lensk_64, 85);   /* hd 32, L 64/63/1 */
    check_bf16_kernel(2, 197, 128, 2, lensk_197, 86); /* T = 197, L 100 (4 tail keys) */
    check_bf16_kernel(2, 256, 64, 1, lensk_256, 87); /* T = 256, L 129 */
    check_bf16_kernel(2, 32, 160, 2, NULL, 88);      /* hd 80: the widen path */
    check_threads(3, 50, 192, 3, NULL);
    check_threads(4, 32, 192, 3, lens_text);
    check_threads(2, 17, 160, 2, NULL);         /* fallback */
    check_fd(2, 5, 8, 2, lens_a);
    check_fd(2, 4, 12, 3, NULL);
    check_fatal();
    return test_finish();
}
