/* gelu.c — exact GELU: y = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), never the
 * tanh approximation. dy/dx = Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi).
 *
 * Fast path. With a = |x|, e = exp(-a^2/2) and the scaled Mills ratio
 * R(a) = Phi(-a) exp(a^2/2) (so Phi(-a) = e R(a), R(0) = 1/2, R ~ 1/(a sqrt(2 pi))):
 *   g = a Phi(-a) = a e R(a)          GELU(x)  = x - g (x >= 0),  -g (x < 0)
 *   d = e (a / sqrt(2 pi) - R(a))     GELU'(x) = 1 + d (x >= 0),  -d (x < 0)
 * (x Phi(x) = x (1 - Phi(-a)) for x >= 0 and -a Phi(-a) for x < 0; likewise for
 * the derivative.) Only the small terms g, d carry approximation error, and for
 * x < 0 the result keeps its relative accuracy down to 1e-37 (no 1 + erf
 * cancellation). No libm call:
 *   R(a) = P4(a) / Q5(a) on [0, GELU_CUT], all coefficients positive (Horner in
 *     a >= 0 adds no cancellation); fitted for least relative error (Lawson-
 *     weighted linear least squares on 4000 Chebyshev points of [0, 12.9]
 *     against mpmath at 40 digits): 4.7e-9 relative in exact arithmetic.
 *   e = 2^(-a^2 log2(e) / 2): n = round, 2^f (|f| <= 1/2) by a degree-6
 *     polynomial (relative minimax, 2.0e-9), 2^n from the exponent bits.
 *   a > GELU_CUT (12.9): g = d = 0, so GELU(x) = x or -0 and GELU'(x) = 1 or -0
 *     (true |g|, |d| < 4e-36 there); this also gives GELU(+-inf) = inf / -0 and
 *     GELU'(+-inf) = 1 / -0 (where the erf formula gives NaN). NaN in -> NaN out.
 * The range kernels are compiled for AVX-512 / AVX2 / baseline (FLIP_SIMD_CLONES)
 * and GCC vectorises them (#pragma omp simd); the AVX2/AVX-512 clones fuse
 * multiply-adds into FMAs (-ffp-contract=fast, CMakeLists.txt), the baseline clone has none.
 *
 * Measured error against the exact value (double erfc/exp, unrounded) on EVERY
 * finite float x (4.3e9 values; AVX-512 clone = AVX2 clone; baseline clone in []):
 *   GELU   abs <= 1.32e-7 [1.36e-7] for |x| < 4; for x >= 4 only the final
 *          rounding (<= 0.5 ulp, 2.4e-7 at 4 <= x < 8); exactly x for x > 5.35;
 *          x < 0: relative <= 1.0e-5 [1.5e-5] down to x = -12.9 (-2.9e-37),
 *          then -0 (abs error < 3e-37).
 *   GELU'  abs <= 1.42e-7 [1.43e-7] everywhere; exactly 1 for x > 5.92.
 * Speed, one core of the AMD EPYC (Zen 4) test machine, 4 Mi elements
 * (benchmarks/bench_gelu.c): forward 0.50 ns/element (oneDNN eltwise gelu_erf
 * 0.71), backward store 0.61 (oneDNN 1.67), memory-bound residual_forward 0.53.
 *
 * Threading: one contiguous range per OpenMP thread (multiples of 16 floats),
 * serial below GELU_PAR_MIN elements. gelu_backward adds (+=) into dinp;
 * gelu_backward_store writes dinp = GELU'(inp) dout (no read of dinp).
 * bf16 activations (_b: bf16 inp; _bb: bf16 inp and bf16 dinp): the same
 * element functions on the widened values, rounded to nearest even
 * (flip_bf16_round) where the output is bf16.
 * Reference twins: double erf/exp from libm. The bf16 variants have no _ref
 * twin: tests/core/test_bf16.c checks them bitwise against the f32 ops on the
 * widened values (which are checked against the _ref twins). */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "common.h"
#include "dnnl_util.h"
#include "ops.h"

#define GELU_INV_SQRT2 0.70710678118654752440
#define GELU_INV_SQRT_2PI 0.39894228040143267794
#define GELU_MHALF_LOG2E (-0.72134752044448170368f) /* -log2(e)/2: exp(-a^2/2) = 2^(a^2 this) */
#define GELU_CUT 12.9f           /* phi(12.9) = 3e-37: beyond, g and d are 0 */
#define GELU_PAR_MIN 32768       /* below: one thread (fork/join costs more) */

/* 2^w for -126 <= w <= 0 (relative error 2e-9 + rounding); w < -126 gives
 * garbage that the callers select away (a > GELU_CUT); NaN -> NaN.
 * n = round(w) by the 1.5 2^23 trick, 2^(w - n) by a degree-6 polynomial
 * (relative minimax on [-1/2, 1/2], constant term exactly 1), 2^n from the
 * exponent bits. */
static inline float gelu_exp2_neg(float w) {
    float t = w + 12582912.0f; /* 1.5 2^23 + n: n in the low mantissa bits */
    float n = t - 12582912.0f;
    float f = w - n;
    float p = 1.535336118284302e-4f;
    p = p * f + 1.339887466447669e-3f;
    p = p * f + 9.618437362578966e-3f;
    p = p * f + 5.550332470333672e-2f;
    p = p * f + 2.402264791355642e-1f;
    p = p * f + 6.931472028555654e-1f;
    p = p * f + 1.0f;
    uint32_t tb;
    memcpy(&tb, &t, sizeof tb);
    uint32_t bits = (tb - 0x4B400000u + 127u) << 23; /* (n + 127) << 23 */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* R(a) = Phi(-a) exp(a^2 / 2) for 0 <= a <= GELU_CUT, relative error 4.7e-9 (exact arithmetic) */
static inline float gelu_mills(float a) {
    float p = 3.9859938547207084e-3f;
    p = p * a + 3.9751943412929334e-2f;
    p = p * a + 1.806143738784417e-1f;
    p = p * a + 4.3474536845022654e-1f;
    p = p * a + 5.000000023247069e-1f;
    float q = 9.991252365664446e-3f;
    q = q * a + 9.965108745795026e-2f;
    q = q * a + 4.6255315166956257e-1f;
    q = q * a + 1.1915981094419072f;
    q = q * a + 1.667375634696496f;
    q = q * a + 1.0f;
    return p / q;
}

/* The range kernels let GCC fuse a * b + c into one FMA where the clone has
 * FMA (x86-64-v3/v4): CMakeLists.txt compiles this file with
 * -ffp-contract=fast (C11 mode is otherwise -ffp-contract=off). Every fusion
 * only drops an intermediate rounding; both forms are measured in the header.
 * The baseline clone has no FMA and keeps mul + add. */

/* GELU(x) and GELU'(x) from the terms both share: a = |x|,
 * e = exp(-a^2 / 2), m = R(a); gelu_value / gelu_deriv below and the fused
 * bf16 backward evaluate the same expressions, so they agree bitwise */
static inline float gelu_value_from(float x, float a, float e, float m) {
    float g = a * (e * m);
    g = a > GELU_CUT ? 0.0f : g;
    return x >= 0.0f ? x - g : -g;
}

static inline float gelu_deriv_from(float x, float a, float e, float m) {
    float d = e * (a * (float)GELU_INV_SQRT_2PI - m);
    d = a > GELU_CUT ? 0.0f : d;
    return x >= 0.0f ? 1.0f + d : -d;
}

static inline float gelu_value(float x) {
    float a = fabsf(x);
    return gelu_value_from(x, a, gelu_exp2_neg((a * a) * GELU_MHALF_LOG2E), gelu_mills(a));
}

/* elements [0, n) of one thread's range */
FLIP_SIMD_CLONES
static void gelu_forward_range(float *out, const float *inp, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) out[i] = gelu_value(inp[i]);
}

/* bf16 in, bf16 out (rounded to nearest even) */
FLIP_SIMD_CLONES
static void gelu_forward_b_range(uint16_t *out, const uint16_t *inp, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) out[i] = flip_bf16_round(gelu_value(flip_bf16_widen(inp[i])));
}

/* GELU'(x) for the backward ranges */
static inline float gelu_deriv(float x) {
    float a = fabsf(x);
    return gelu_deriv_from(x, a, gelu_exp2_neg((a * a) * GELU_MHALF_LOG2E), gelu_mills(a));
}

FLIP_SIMD_CLONES
static void gelu_backward_range(float *dinp, const float *dout, const float *inp, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * gelu_deriv(inp[i]);
}

FLIP_SIMD_CLONES
static void gelu_backward_store_range(float *dinp, const float *dout, const float *inp, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * gelu_deriv(inp[i]);
}

FLIP_SIMD_CLONES
static void gelu_backward_store_b_range(float *dinp, const float *dout, const uint16_t *inp, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * gelu_deriv(flip_bf16_widen(inp[i]));
}

/* bf16 gradient out: the product of gelu_backward_store_b_range, rounded to
 * nearest even (flip_bf16_round, the rounding of gelu_forward_b_range; it
 * vectorises here and keeps denormals, unlike the hardware VCVTNE2PS2BF16) */
FLIP_SIMD_CLONES
static void gelu_backward_store_bb_range(uint16_t *dinp, const float *dout, const uint16_t *inp, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) dinp[i] = flip_bf16_round(dout[i] * gelu_deriv(flip_bf16_widen(inp[i])));
}

/* both at once (the bf16 block backward's recompute of GELU's output and its
 * backward): e and R(a) evaluated once per element */
FLIP_SIMD_CLONES
static void gelu_forward_backward_bb_range(uint16_t *out, uint16_t *dinp, const float *dout, const uint16_t *inp,
                                           size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float x = flip_bf16_widen(inp[i]), a = fabsf(x);
        float e = gelu_exp2_neg((a * a) * GELU_MHALF_LOG2E), m = gelu_mills(a);
        out[i] = flip_bf16_round(gelu_value_from(x, a, e, m));
        dinp[i] = flip_bf16_round(dout[i] * gelu_deriv_from(x, a, e, m));
    }
}

/* [*lo, *hi) of thread t of nt: contiguous, boundaries on multiples of 16 floats */
static void gelu_range(size_t n, int t, int nt, size_t *lo, size_t *hi) {
    size_t chunk = (n + (size_t)nt - 1) / (size_t)nt;
    chunk = (chunk + 15) / 16 * 16;
    size_t a = (size_t)t * chunk, b = a + chunk;
    *lo = a < n ? a : n;
    *hi = b < n ? b : n;
}

/* Runs CALL (an expression in lo_, len_) over [0, n): in one piece below
 * GELU_PAR_MIN, else one contiguous gelu_range piece per OpenMP thread. */
#define GELU_SPLIT(n, CALL)                                                                 \
    do {                                                                                    \
        if ((n) < GELU_PAR_MIN) {                                                           \
            size_t lo_ = 0, len_ = (n);                                                     \
            CALL;                                                                           \
        } else {                                                                            \
            _Pragma("omp parallel")                                                         \
            {                                                                               \
                size_t lo_, hi_;                                                            \
                gelu_range((n), omp_get_thread_num(), omp_get_num_threads(), &lo_, &hi_);   \
                size_t len_ = hi_ - lo_;                                                    \
                CALL;                                                                       \
            }                                                                               \
        }                                                                                   \
    } while (0)

void gelu_forward(float *out, const float *inp, size_t n) {
    GELU_SPLIT(n, gelu_forward_range(out + lo_, inp + lo_, len_));
}

void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    GELU_SPLIT(n, gelu_backward_range(dinp + lo_, dout + lo_, inp + lo_, len_));
}

void gelu_backward_store(float *dinp, const float *dout, const float *inp, size_t n) {
    GELU_SPLIT(n, gelu_backward_store_range(dinp + lo_, dout + lo_, inp + lo_, len_));
}

void gelu_forward_b(uint16_t *out, const uint16_t *inp, size_t n) {
    GELU_SPLIT(n, gelu_forward_b_range(out + lo_, inp + lo_, len_));
}

void gelu_backward_store_b(float *dinp, const float *dout, const uint16_t *inp, size_t n) {
    GELU_SPLIT(n, gelu_backward_store_b_range(dinp + lo_, dout + lo_, inp + lo_, len_));
}

void gelu_backward_store_bb(uint16_t *dinp, const float *dout, const uint16_t *inp, size_t n) {
    GELU_SPLIT(n, gelu_backward_store_bb_range(dinp + lo_, dout + lo_, inp + lo_, len_));
}

void gelu_forward_backward_bb(uint16_t *out, uint16_t *dinp, const float *dout, const uint16_t *inp, size_t n) {
    GELU_SPLIT(n, gelu_forward_backward_bb_range(out + lo_, dinp + lo_, dout + lo_, inp + lo_, len_));
}

void gelu_forward_ref(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double x = inp[i];
        out[i] = (float)(0.5 * x * (1.0 + erf(x * GELU_INV_SQRT2)));
    }
}

void gelu_backward_ref(float *dinp, const float *dout, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double x = inp[i];
        double cdf = 0.5 * (1.0 + erf(x * GELU_INV_SQRT2));
        double pdf = GELU_INV_SQRT_2PI * exp(-0.5 * x * x);
        dinp[i] += (float)(dout[i] * (cdf + x * pdf));
    }
}

void gelu_backward_store_ref(float *dinp, const float *dout, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double x = inp[i];
        double cdf = 0.5 * (1.0 + erf(x * GELU_INV_SQRT2));
        double pdf = GELU_INV_SQRT_2PI * exp(-0.5 * x * x);
        dinp[i] = (float)(dout[i] * (cdf + x * pdf));
    }
}
