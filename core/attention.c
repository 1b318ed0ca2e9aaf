/* attention.c — multi-head self-attention core (no projections), see ops.h.
 *
 * Per sample b and head h, with q, k, v (T, hd) the head's columns of qkv,
 * scale s = 1/sqrt(hd) and key mask j < lens[b]:
 *   S = s q k^T,  P = softmax over valid keys (masked P exactly 0),  out = P v
 * Backward (dout (T, hd) of the head):
 *   dV = P^T dout,  dP = dout V^T,  dS = P * (dP - rowsum(dP * P)),
 *   dQ = s dS K,    dK = s dS^T Q
 * Masked keys have P = 0, hence dS = 0 in their column: dK and dV of padded
 * positions are exactly zero. Backward STORES dqkv (=, every element written,
 * padded keys' dK / dV rows set to 0): the caller needs no zeroing pass.
 *
 * P is not kept between forward and backward: backward recomputes it, bit for
 * bit, with the forward's code (S rows, masked softmax) while the block's q, k
 * are in cache. Saving P cost B*H*T*T floats per block (at vit-s16 mask 0
 * 715 MiB a step, more than the block's qkv) and the memory traffic of writing
 * and re-reading it; the recompute is the forward's S product again (+1/6 of
 * attention's flops). Working buffers (k^T, v^T, S rows, P and dS of one
 * block) live in a per-thread slice of the caller's scratch, so the kernel
 * uses little stack and the scratch does not grow with the batch.
 *
 * Both fast paths: one OpenMP loop over the B*H (sample, head) blocks in
 * dynamic chunks of consecutive blocks; a block is computed by one thread in
 * a fixed order, so results do not depend on the thread count. Only the
 * L = lens[b] valid keys enter the products, so padding costs nothing;
 * padded keys' dK, dV rows are only zero-filled. Each block prefetches the next
 * block of its chunk into L2 (the heads' 64-float pieces of 3C-float rows
 * defeat the hardware prefetchers; 1.2-1.6x at T = 16 when qkv is not in L2).
 *
 * AVX-512 kernel (CPU with AVX-512F at run time, hd % 16 == 0, T <= 256;
 * compiled with a target attribute, no -march needed), per block:
 *   k (and v in backward) transposed to (hd, L) in scratch by 16x16 in-register
 *   transposes, s folded into k; then per tile of 3-4 query rows:
 *   S rows = q k^T as register tiles (up to 4 rows x 4 vectors of 16 keys,
 *   16 zmm accumulators, q by scalar broadcasts); 1-4 keys past a multiple of
 *   16 as dot products instead of a mostly-padding 16-key vector; masked
 *   softmax in zmm (exp_neg's reduction and polynomial with FMA, 2^n by
 *   scalef) in place; out rows = P v while P is in L1.
 *   Backward per row tile: S and P rows again (the same calls), dP rows =
 *   dout v^T, s dS rows, dQ rows = (s dS) k; then dV = P^T dout and
 *   dK = (s dS)^T q by the same tile kernel reading P / dS by columns.
 *   Accumulation is fp32 FMA in a fixed order (differences to the sgemm path
 *   are fp32 rounding).
 * oneDNN sgemm fallback (no AVX-512F, hd % 16 != 0 (e.g. 8), T > 256): the
 * products as single-threaded dnnl_sgemm calls on the head's columns read in
 * place (row stride 3C, transposes by flags), masked softmax / dS rows between
 * them while the (T, T) block is in cache, dqkv with beta = 0 (=); backward
 * recomputes P with the forward's two calls.
 * Measured, kernel vs the sgemm path (bench_ops 1 thread, CPU clock, runs
 * back to back on the shared 2-core Zen 4; B 64 ViT-S, B 256 tiny, data
 * mostly out of cache): fwd T 16: 2.9x, 32: 1.1-1.5x, 49: 1.15-1.4x,
 * 64: 1.1-1.2x, 98: 1.2x, 196: 1.05-1.2x; bwd T 16: 1.6-1.7x, 32: 1.2-1.35x,
 * 49-196: 1.0-1.05x (memory-bound there: qkv, dqkv, dout and the then saved P stream once;
 * with data in L2 the kernel's bwd is 1.15-1.25x and fwd 1.3-3x faster, up
 * to ~75 / ~90 GFLOP/s fwd / bwd of the ~95 GFLOP/s sgemm peak per core).
 * Recompute, measured (bench_ops 1 thread, vit-s16 B 64, back to back with the
 * P-saving version): forward 5-8 % faster (no P stores), backward 15-20 %
 * slower at T 49 and 196; a whole fp32 step unchanged within the noise
 * (`OMP_NUM_THREADS=1 bench_step --preset vit-s16 --batch 32`: 15.41 vs 15.44
 * user-s at mask 0.75, 45.8 vs 46.0 at 0); vit-s16 B 64 peak RSS 4022 -> 3285
 * MiB at mask 0 and 1401 -> 1353 at 0.75.
 * bf16 entry points (attention_forward_b / _backward_b): qkv arrives as bf16,
 * out and dqkv leave as bf16 (dqkv stored), dout is f32. Two paths:
 * bf16 kernel (CPU with AVX512_BF16 at run time, hd % 32 == 0, T <= 256;
 *   target attribute adds avx512bf16): bf16 products with f32 accumulation
 *   by VDPBF16PS, as PyTorch autocast computes attention. Values are rounded
 *   to bf16 (nearest even, VCVTNEPS2BF16) exactly at these points:
 *     S = s (q k^T)            q, k bf16 as given; f32 sums (pairs over d), times s in f32
 *     P = masked softmax(S)    f32 (the f32 kernel's softmax_rows)
 *     out = bf16( bf16(P) v )  P rounded; f32 sums over key pairs; rounded on store
 *   backward, P recomputed bitwise with the same calls:
 *     dP = bf16(dout) v^T      dout rounded; f32 sums
 *     dS = P * (dP - rowsum(dP * P))   f32
 *     dQ = bf16( s (bf16(dS) k) ),  dK = bf16( s (bf16(dS)^T q) ),
 *     dV = bf16( bf16(P)^T bf16(dout) )   f32 sums, s applied to the f32 sum
 *   Per block: k (v) rows transposed as 32-bit words (d pairs) by transpose16
 *   on the raw bits; k, v, q, bf16(dout) rows interleaved in row pairs
 *   (key/query pairs); P / dS rows rounded per row tile, and for P^T / dS^T
 *   written into row-pair interleaved buffers by masked 16-bit stores. The
 *   same register tiles (up to 4 rows x 4 zmm, the A operand a broadcast
 *   32-bit pair) and the same fixed order as the f32 kernel, so results do
 *   not depend on the thread count. Measured vs the widen path (bench_ops
 *   --precision bf16, 1 thread, CPU clock): vit-s16 B 64 fwd / bwd T 196
 *   2.0x / 1.8x, T 98 1.35x / 1.75x, T 49 2.1x / 1.45x; tiny B 256 T 64
 *   1.7x / 1.8x, T 32 2.1x / 1.8x, T 16 2.7x / 2.0x.
 * widen path (otherwise, or attention_set_bf16_kernel(0)): each head's
 *   q | k | v rows are widened into a contiguous f32 buffer of the slice, the
 *   f32 kernel (or sgemm) runs on it, and out / dqkv are rounded to bf16 on
 *   the way out. Bitwise the bf16 rounding of the f32 entry points' results on
 *   the widened qkv (tested).
 * Reference twins: plain loops with double accumulation; backward recomputes P
 * the same way.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <omp.h>

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

/* P (T, T): each row's scores -> probabilities over the first L keys, exact 0
 * after. One call per (b, h) block keeps the multi-versioned dispatch out of
 * the row loop. */
FLIP_ROW_CLONES
static void softmax_block_masked(float *P, int L, int T) {
    for (int i = 0; i < T; i++) {
        float *row = P + (size_t)i * T;
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
}

/* dS (T, T), row stride T, holds dP in its first L columns on entry and
 * dS = P * (dP - rowsum(dP * P)) there on exit (P is 0 beyond L) */
FLIP_ROW_CLONES
static void dsoftmax_block(float *dS, const float *P, int L, int T) {
    for (int i = 0; i < T; i++) {
        float *d = dS + (size_t)i * T;
        const float *p = P + (size_t)i * T;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int j = 0; j < L; j++) dot += p[j] * d[j];
#pragma omp simd
        for (int j = 0; j < L; j++) d[j] = p[j] * (d[j] - dot);
    }
}

/* oneDNN's row-major sgemm: C = alpha op(A) op(B) + beta C. Called inside the
 * OpenMP loop over (b, h), where it runs single-threaded on its thread. */
static void sgemm(char ta, char tb, int m, int n, int k, float alpha, const float *A, size_t lda,
                  const float *Bm, size_t ldb, float beta, float *Cm, size_t ldc) {
    DNNL_CHECK(dnnl_sgemm(ta, tb, m, n, k, alpha, A, (dnnl_dim_t)lda, Bm, (dnnl_dim_t)ldb, beta,
                          Cm, (dnnl_dim_t)ldc));
}

/* rows r0..r1 (n floats each, row stride ld) of x = 0 */
static void zero_rows(float *x, size_t ld, int r0, int r1, int n) {
    for (int r = r0; r < r1; r++) memset(x + (size_t)r * ld, 0, (size_t)n * sizeof(float));
}

#define ATT_MR 4            /* rows of a register tile */

/* Per-thread buffers, carved from a 64-byte aligned slice of the scratch:
 * kT, vT (hd, Tp); Sb (ATT_MR, Tp); P, dS (T, Tp) (the sgemm fallback uses
 * them as (T, T)); for the bf16 entry points xf (T, 3 hd): the head's q | k | v
 * rows widened to f32, and gf (T, 3 hd): its dq | dk | dv (forward: out). */
typedef struct {
    float *kT, *vT, *Sb, *P, *dS, *xf, *gf;
} AttBufs;

static size_t round16(size_t n) { return (n + 15) / 16 * 16; }

static AttBufs att_bufs(float *slice, int T, int hd) {
    size_t Tp = round16((size_t)T), x = round16((size_t)T * 3 * (size_t)hd);
    AttBufs w;
    w.kT = slice;
    w.vT = w.kT + (size_t)hd * Tp;
    w.Sb = w.vT + (size_t)hd * Tp;
    w.P = w.Sb + ATT_MR * Tp;
    w.dS = w.P + (size_t)T * Tp;
    w.xf = w.dS + (size_t)T * Tp;
    w.gf = w.xf + x;
    return w;
}

/* bf16 kernel buffers (see the bf16 kernel section), carved from the same slice */
typedef struct {
    uint32_t *kP, *vT, *kJ, *qI, *gI, *PI, *dSI;
    uint16_t *Pr, *gr;
    float *Sb, *Db;
} AttBufsB;

/* the bf16 kernel's per-thread buffers (words / floats, each a multiple of 16) */
static size_t slice_floats_b(int T, int hd) {
    size_t Tp = round16((size_t)T), Th = ((size_t)T + 1) / 2, h = (size_t)hd;
    return 2 * round16(h / 2 * Tp) + 3 * round16(Th * h) + 2 * Th * Tp + 2 * ATT_MR * Tp + ATT_MR * Tp / 2 +
           round16(ATT_MR * h / 2);
}

static AttBufsB att_bufs_b(float *slice, int T, int hd) {
    size_t Tp = round16((size_t)T), Th = ((size_t)T + 1) / 2, h = (size_t)hd;
    uint32_t *u = (uint32_t *)(void *)slice;
    AttBufsB w;
    w.kP = u;
    w.vT = w.kP + round16(h / 2 * Tp);
    w.kJ = w.vT + round16(h / 2 * Tp);
    w.qI = w.kJ + round16(Th * h);
    w.gI = w.qI + round16(Th * h);
    w.PI = w.gI + round16(Th * h);
    w.dSI = w.PI + Th * Tp;
    w.Sb = (float *)(void *)(w.dSI + Th * Tp);
    w.Db = w.Sb + ATT_MR * Tp;
    w.Pr = (uint16_t *)(void *)(w.Db + ATT_MR * Tp);
    w.gr = w.Pr + ATT_MR * Tp;
    return w;
}

static int g_att_bf16_kernel = 1;

int attention_set_bf16_kernel(int on) {
    int old = g_att_bf16_kernel;
    g_att_bf16_kernel = on != 0;
    return old;
}

/* floats of one thread's slice (att_bufs or att_bufs_b), plus 16 for aligning it to 64 bytes */
static size_t slice_floats(int T, int C, int H) {
    size_t Tp = round16((size_t)T), hd = (size_t)(C / H);
    size_t f32 = 2 * hd * Tp + ATT_MR * Tp + 2 * (size_t)T * Tp + 2 * round16((size_t)T * 3 * hd);
    size_t b16 = slice_floats_b(T, C / H);
    return (f32 > b16 ? f32 : b16) + 16;
}

/* ---- AVX-512 path ---- */
#if defined(__x86_64__) && defined(__GNUC__)
#define ATT_HAVE_AVX512 1
#include <immintrin.h>

#define ATT_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define ATT_INLINE static inline __attribute__((always_inline))
#define ATT_NR 4            /* 16-float vectors per tile row */
#define ATT_MAX_T 256       /* largest T the kernel takes (measured up to 197) */
#define ATT_TAIL 4           /* up to this many columns past a multiple of 16 by tail_cols */

/* exp_neg above, 16 lanes: same reduction and polynomial (with FMA), 2^n by scalef */
ATT_AVX512 ATT_INLINE __m512 exp_neg_ps(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* lanes l of the 16-float vector starting at column j0 with j0 + l < n */
ATT_INLINE __mmask16 lanes_below(int j0, int n) {
    int k = n - j0;
    return k >= 16 ? (__mmask16)0xFFFF : k <= 0 ? (__mmask16)0 : (__mmask16)((1u << k) - 1u);
}

/* One register tile: O[r][16c + l] = sum_{k<K} A[r*sr + k*sk] * Bm[k*ldb + 16c + l]
 * for r < R, c < NC (R, NC compile-time after inlining). A is read by scalar
 * broadcasts with any strides (rows of P, or columns of P for P^T), Bm by
 * rows of 16-float vectors. */
ATT_AVX512 ATT_INLINE void tile(float *O, size_t ldo, const float *A, size_t sr, size_t sk,
                                const float *Bm, size_t ldb, int K, const int R, const int NC) {
    __m512 acc[ATT_MR][ATT_NR];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) acc[r][c] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float *b = Bm + (size_t)k * ldb;
        const float *a = A + (size_t)k * sk;
        __m512 bv[ATT_NR];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) bv[c] = _mm512_loadu_ps(b + 16 * c);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 av = _mm512_set1_ps(a[(size_t)r * sr]);
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) acc[r][c] = _mm512_fmadd_ps(av, bv[c], acc[r][c]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            _mm512_storeu_ps(O + (size_t)r * ldo + 16 * c, acc[r][c]);
        }
}

/* rows of the next register tile when rem rows are left: tiles of 3 and 4 rows
 * only (a 1- or 2-row tile waits on FMA latency), e.g. 17 = 4 + 4 + 3 + 3 + 3 */
static inline int tile_rows(int rem) {
    static const int first[12] = {0, 1, 2, 3, 4, 3, 3, 4, 4, 3, 4, 4};
    return rem >= 12 ? ATT_MR : first[rem];
}

/* O (M, 16 n16) = A (M, K) Bm (K, 16 n16), A by strides (sr, sk), in tiles */
ATT_AVX512 static void tiles(float *O, size_t ldo, const float *A, size_t sr, size_t sk,
                             const float *Bm, size_t ldb, int K, int M, int n16) {
    for (int r0 = 0, R; r0 < M; r0 += R) {
        R = tile_rows(M - r0);
        for (int c0 = 0; c0 < n16; c0 += ATT_NR) {
            int NC = n16 - c0 < ATT_NR ? n16 - c0 : ATT_NR;
            float *o = O + (size_t)r0 * ldo + 16 * (size_t)c0;
            const float *a = A + (size_t)r0 * sr;
            const float *b = Bm + 16 * (size_t)c0;
#define ATT_TILE(r, c) case (r) * 8 + (c): tile(o, ldo, a, sr, sk, b, ldb, K, r, c); break
            switch (R * 8 + NC) {
                ATT_TILE(1, 1); ATT_TILE(1, 2); ATT_TILE(1, 3); ATT_TILE(1, 4);
                ATT_TILE(2, 1); ATT_TILE(2, 2); ATT_TILE(2, 3); ATT_TILE(2, 4);
                ATT_TILE(3, 1); ATT_TILE(3, 2); ATT_TILE(3, 3); ATT_TILE(3, 4);
                ATT_TILE(4, 1); ATT_TILE(4, 2); ATT_TILE(4, 3); ATT_TILE(4, 4);
                default: FLIP_FATAL("attention: bad register tile %dx%d", R, NC);
            }
#undef ATT_TILE
        }
    }
}

/* dst rows t < 16 (stride ldd) = alpha src[:n][t] for the 16 x 16 block src
 * (rows i < n, stride lds; rows n..15 read as zero); mul 0: no alpha, the raw
 * 32-bit patterns moved (bf16 pairs): unpack / shuffle /
 * 128-bit-lane shuffle network, 64 shuffles per 256 floats */
ATT_AVX512 static void transpose16(float *dst, size_t ldd, const float *src, size_t lds, int n,
                                   __m512 alpha, int mul) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) {
        __m512 x = i < n ? _mm512_loadu_ps(src + (size_t)i * lds) : _mm512_setzero_ps();
        r[i] = mul ? _mm512_mul_ps(alpha, x) : x;
    }
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 16; i += 8)
        for (int u = 0; u < 4; u++) {
            t[i + u] = _mm512_shuffle_f32x4(r[i + u], r[i + u + 4], 0x88);
            t[i + u + 4] = _mm512_shuffle_f32x4(r[i + u], r[i + u + 4], 0xDD);
        }
    for (int u = 0; u < 8; u++) {
        r[u] = _mm512_shuffle_f32x4(t[u], t[u + 8], 0x88);
        r[u + 8] = _mm512_shuffle_f32x4(t[u], t[u + 8], 0xDD);
    }
    for (int i = 0; i < 16; i++) _mm512_storeu_ps(dst + (size_t)i * ldd, r[i]);
}

/* xT (hd, Lp) = alpha x[:L]^T for x (L, hd) with row stride ld, hd % 16 == 0;
 * columns L..Lp zero */
ATT_AVX512 static void transpose_rows(float *xT, const float *x, size_t ld, int L, int Lp, int hd,
                                      float alpha) {
    __m512 va = _mm512_set1_ps(alpha);
    for (int j0 = 0; j0 < Lp; j0 += 16) {
        int n = L - j0 < 16 ? L - j0 : 16;
        for (int d0 = 0; d0 < hd; d0 += 16)
            transpose16(xT + (size_t)d0 * Lp + j0, (size_t)Lp, x + (size_t)j0 * ld + d0, ld, n, va, 1);
    }
}

static int att_fast_ok(int T, int hd) {
    return hd % 16 == 0 && T <= ATT_MAX_T && __builtin_cpu_supports("avx512f");
}

/* Prefetch into L2 the `rows` rows (n floats each, row stride ld) of the next
 * (b, h) block while this one computes: the heads' columns are 256-byte pieces
 * of 3C-float rows, a pattern the hardware prefetchers miss, so without this
 * the kernel waits on memory whenever qkv is not in L2 (measured 2-3x slower
 * at B = 256, T = 16). rw: 1 for rows about to be written. */
static inline void prefetch_rows(const float *p, size_t ld, int rows, int n, int rw) {
    for (int r = 0; r < rows; r++) {
        const float *row = p + (size_t)r * ld;
        for (int o = 0; o < n; o += 16) {
            if (rw) __builtin_prefetch(row + o, 1, 2);
            else __builtin_prefetch(row + o, 0, 2);
        }
        if (rw) __builtin_prefetch(row + n - 1, 1, 2);
        else __builtin_prefetch(row + n - 1, 0, 2);
    }
}

/* OpenMP chunk of (b, h) blocks: long enough that prefetching the next block
 * pays, short enough for dynamic balance (~8 chunks per thread). Results do
 * not depend on it: each block is computed by one thread in a fixed order. */
static int att_chunk(int n_blocks) {
    int ch = n_blocks / (8 * omp_get_max_threads());
    return ch < 1 ? 1 : ch > 64 ? 64 : ch;
}

/* Sb[r][j] = alpha a_r . b_j for r < R and the tail columns j0 <= j < L
 * (j0 = 16 floor(L / 16), L - j0 <= ATT_TAIL), as dot products with d in the
 * lanes: cheaper than a 16-column register chunk that is mostly padding
 * (T = 49: 13 of 16 lanes). Columns L..j0+16 of Sb are set to 0. */
ATT_AVX512 static void tail_cols(float *Sb, int lds, const float *A, size_t lda, const float *Bm,
                                 size_t ldb, int R, int j0, int L, int hd, float alpha) {
    for (int r = 0; r < R; r++) {
        float *row = Sb + (size_t)r * lds;
        const float *a = A + (size_t)r * lda;
        _mm512_store_ps(row + j0, _mm512_setzero_ps());
        for (int j = j0; j < L; j++) {
            const float *b = Bm + (size_t)j * ldb;
            __m512 acc = _mm512_mul_ps(_mm512_loadu_ps(a), _mm512_loadu_ps(b));
            for (int d = 16; d < hd; d += 16)
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + d), _mm512_loadu_ps(b + d), acc);
            row[j] = alpha * _mm512_reduce_add_ps(acc);
        }
    }
}

/* S rows (R, Lp) in Sb = (s q rows) k^T, kT = s k^T (hd, Lk) from transpose_rows,
 * the tail columns as dot products; columns L..Lp zero */
ATT_AVX512 static void score_rows(float *Sb, int Lp, const float *q, size_t C3, const float *kT,
                                  const float *k, int R, int L, int hd, float scale) {
    int j0 = L / 16 * 16, tail = L - j0 > 0 && L - j0 <= ATT_TAIL;
    int Lk = tail ? j0 : Lp;
    tiles(Sb, (size_t)Lp, q, C3, 1, kT, (size_t)Lk, hd, R, Lk / 16);
    if (tail) tail_cols(Sb, Lp, q, C3, k, C3, R, j0, L, hd, scale);
}

/* P rows (R, Lp) at dst (may be Sb itself) = masked softmax of the S rows in
 * Sb over the first L columns; columns L..Lp exactly 0. Forward and backward
 * call this with the same S rows, so the recomputed P is bitwise forward's. */
ATT_AVX512 static void softmax_rows(float *dst, const float *Sb, int Lp, int R, int L) {
    int nL = Lp / 16;
    for (int r = 0; r < R; r++) {
        const float *s = Sb + (size_t)r * Lp;
        float *p = dst + (size_t)r * Lp;
        __m512 mx = _mm512_set1_ps(-FLT_MAX);
        for (int c = 0; c < nL; c++)
            mx = _mm512_mask_max_ps(mx, lanes_below(16 * c, L), mx, _mm512_load_ps(s + 16 * c));
        __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        __m512 sum = _mm512_setzero_ps();
        for (int c = 0; c < nL; c++) {
            __m512 e = _mm512_maskz_mov_ps(lanes_below(16 * c, L),
                                           exp_neg_ps(_mm512_sub_ps(_mm512_load_ps(s + 16 * c), m)));
            sum = _mm512_add_ps(sum, e);
            _mm512_store_ps(p + 16 * c, e);
        }
        __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
        for (int c = 0; c < nL; c++) _mm512_store_ps(p + 16 * c, _mm512_mul_ps(_mm512_load_ps(p + 16 * c), inv));
    }
}

/* rows i0..i0+R of the optional P copy att (T, T) from the P rows in Sb (row
 * stride Lp); columns Lp..T 0 */
static void copy_p_rows(float *att, int T, const float *Sb, int Lp, int i0, int R) {
    for (int r = 0; r < R; r++) {
        float *p = att + (size_t)(i0 + r) * T;
        memcpy(p, Sb + (size_t)r * Lp, (size_t)(Lp < T ? Lp : T) * sizeof(float));
        for (int j = Lp; j < T; j++) p[j] = 0.0f;
    }
}

/* one row of alpha dS = (alpha P) * (dP - rowsum(dP * P)), 16 nL floats (P
 * is 0 past L, so is dS); ds may be dp (in place). alpha 1 multiplies exactly. */
ATT_AVX512 ATT_INLINE void ds_row(float *ds, const float *p, const float *dp, int nL, float alpha) {
    __m512 dot = _mm512_setzero_ps(), va = _mm512_set1_ps(alpha);
    for (int c = 0; c < nL; c++)
        dot = _mm512_fmadd_ps(_mm512_load_ps(p + 16 * c), _mm512_load_ps(dp + 16 * c), dot);
    __m512 rs = _mm512_set1_ps(_mm512_reduce_add_ps(dot));
    for (int c = 0; c < nL; c++) {
        __m512 pv = _mm512_load_ps(p + 16 * c);
        _mm512_store_ps(ds + 16 * c, _mm512_mul_ps(_mm512_mul_ps(pv, va), _mm512_sub_ps(_mm512_load_ps(dp + 16 * c), rs)));
    }
}

/* forward of one (b, h): q, k, v (T, hd) with row stride C3, o (T, hd) row
 * stride C; att (T, T) optional copy of P */
ATT_AVX512 static void fwd_block(float *o, size_t C, float *att, const float *q, const float *k,
                                 const float *v, size_t C3, int T, int L, int hd, float scale,
                                 const AttBufs *w) {
    int Lp = (L + 15) / 16 * 16;
    int j0 = L / 16 * 16, tail = L - j0 > 0 && L - j0 <= ATT_TAIL;
    transpose_rows(w->kT, k, C3, tail ? j0 : L, tail ? j0 : Lp, hd, scale);
    for (int i0 = 0, R; i0 < T; i0 += R) {
        R = tile_rows(T - i0);
        score_rows(w->Sb, Lp, q + (size_t)i0 * C3, C3, w->kT, k, R, L, hd, scale);
        softmax_rows(w->Sb, w->Sb, Lp, R, L);
        if (att) copy_p_rows(att, T, w->Sb, Lp, i0, R);
        /* out rows i0.. = P[:, :L] v[:L] */
        tiles(o + (size_t)i0 * C, C, w->Sb, (size_t)Lp, 1, v, C3, L, R, hd / 16);
    }
}

/* backward of one (b, h): dq, dk, dv (T, hd) row stride ldd (stored: every row
 * written, dk / dv rows L..T exactly 0), g = dout (T, hd) row stride C, q, k, v
 * row stride C3; P recomputed into w->P, s dS into w->dS (row stride Lp) */
ATT_AVX512 static void bwd_block(float *dq, float *dk, float *dv, size_t ldd, const float *g, size_t C,
                                 const float *q, const float *k, const float *v, size_t C3, int T,
                                 int L, int hd, float scale, const AttBufs *w) {
    int Lp = (L + 15) / 16 * 16, nL = Lp / 16;
    int j0 = L / 16 * 16, tail = L - j0 > 0 && L - j0 <= ATT_TAIL;
    int Lk = tail ? j0 : Lp; /* columns by register tiles */
    float *P = w->P, *dS = w->dS, *Sb = w->Sb;
    transpose_rows(w->kT, k, C3, tail ? j0 : L, Lk, hd, scale);
    transpose_rows(w->vT, v, C3, tail ? j0 : L, Lk, hd, 1.0f);
    for (int i0 = 0, R; i0 < T; i0 += R) {
        R = tile_rows(T - i0);
        /* P rows i0.., as forward computed them */
        score_rows(Sb, Lp, q + (size_t)i0 * C3, C3, w->kT, k, R, L, hd, scale);
        softmax_rows(P + (size_t)i0 * Lp, Sb, Lp, R, L);
        /* dP rows i0.. (R, Lp) = dout v^T */
        tiles(Sb, (size_t)Lp, g + (size_t)i0 * C, C, 1, w->vT, (size_t)Lk, hd, R, Lk / 16);
        if (tail) tail_cols(Sb, Lp, g + (size_t)i0 * C, C, v, C3, R, j0, L, hd, 1.0f);
        /* s dS = s P * (dP - rowsum(dP * P)); P is 0 beyond L, so is dS */
        for (int r = 0; r < R; r++)
            ds_row(dS + (size_t)(i0 + r) * Lp, P + (size_t)(i0 + r) * Lp, Sb + (size_t)r * Lp, nL, scale);
        /* dQ rows i0.. = (s dS)[:, :L] k[:L] */
        tiles(dq + (size_t)i0 * ldd, ldd, dS + (size_t)i0 * Lp, (size_t)Lp, 1, k, C3, L, R, hd / 16);
    }
    /* dV[:L] = P[:, :L]^T dout ; dK[:L] = (s dS)[:, :L]^T q ; padded keys 0 */
    tiles(dv, ldd, P, 1, (size_t)Lp, g, C, T, L, hd / 16);
    tiles(dk, ldd, dS, 1, (size_t)Lp, q, C3, T, L, hd / 16);
    zero_rows(dk, ldd, L, T, hd);
    zero_rows(dv, ldd, L, T, hd);
}

/* n (multiple of 16) floats -> bf16, round to nearest even, NaN stays NaN:
 * bitwise flip_bf16_round */
ATT_AVX512 static void round_bf16_16(uint16_t *dst, const float *src, int n) {
    const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
    const __m512i absm = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    const __m512i quiet = _mm512_set1_epi32(0x00400000);
    for (int i = 0; i < n; i += 16) {
        __m512i u = _mm512_castps_si512(_mm512_loadu_ps(src + i));
        __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(u, 16), one)));
        __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, absm), inf);
        r = _mm512_mask_or_epi32(r, nan, u, quiet);
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
    }
}

/* n (multiple of 16) bf16 -> f32 (exact) */
ATT_AVX512 static void widen_bf16_16(float *dst, const uint16_t *src, int n) {
    for (int i = 0; i < n; i += 16) {
        __m512i x = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(src + i)));
        _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(x, 16)));
    }
}

/* ---- bf16 kernel (AVX512_BF16: VDPBF16PS), for attention_forward_b / _backward_b ----
 * Operands of every product are bf16 pairs in 32-bit words; _mm512_dpbf16_ps
 * adds a[2l] b[2l] + a[2l+1] b[2l+1] to f32 lane l. The A operand is a scalar
 * word broadcast (two bf16 of one row), the B operand 16 words = 16 output
 * columns. Layouts (words; "pairs over x" = the two bf16 of a word are x, x+1):
 *   kP, vT (hd/2, Lk): k, v rows as hd/2 words, transposed (pairs over d)
 *   kJ (or vP) (ceil(L/2), hd): rows j, j+1 of k (v) interleaved (pairs over keys)
 *   qI, gI (ceil(T/2), hd): rows i, i+1 of q, bf16(dout) (pairs over queries)
 *   PI, dSI (ceil(T/2), Lp): bf16(P), bf16(dS) with rows i, i+1 interleaved,
 *     read by columns for P^T dout and dS^T q
 *   Pr (4, Lp) bf16, gr (4, hd) bf16: a row tile of bf16(P) / bf16(dS) / bf16(dout)
 * A missing odd row (odd L or T) is a zero bf16. Rounding to bf16 is
 * VCVTNEPS2BF16 (nearest even; denormals flush to 0). */
#define ATT_BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx512bf16")))


static inline uint32_t ld32(const void *p) {
    uint32_t x;
    memcpy(&x, p, sizeof x);
    return x;
}

static int att_bf16_ok(int T, int hd) {
    return g_att_bf16_kernel && hd % 32 == 0 && T <= ATT_MAX_T && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bf16");
}

/* 16 floats -> 16 bf16 (nearest even) zero-extended to 32-bit lanes */
ATT_BF16 ATT_INLINE __m512i bf16_lanes(__m512 x) {
    return _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(x));
}

/* One register tile: acc[r][c] = sum_{k<K} dot2(A[r*sr + k*sk], Bm[k*ldb + 16c + l]) for
 * r < R, c < NC, in order k = 0, 1, ...; stored as alpha * acc to O: f32
 * (obf 0) or bf16, nearest even (obf 1). A is read by 32-bit word broadcasts
 * with any strides (row words of P, or columns of PI for P^T). */
ATT_BF16 ATT_INLINE void tile_b(void *O, int obf, size_t ldo, const uint32_t *A, size_t sr, size_t sk,
                                const uint32_t *Bm, size_t ldb, int K, const int R, const int NC, float alpha) {
    __m512 acc[ATT_MR][ATT_NR];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) acc[r][c] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        const uint32_t *b = Bm + (size_t)k * ldb;
        const uint32_t *a = A + (size_t)k * sk;
        __m512bh bv[ATT_NR];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) bv[c] = (__m512bh)_mm512_loadu_si512(b + 16 * c);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)ld32(a + (size_t)r * sr));
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], av, bv[c]);
        }
    }
    __m512 va = _mm512_set1_ps(alpha);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            __m512 x = _mm512_mul_ps(va, acc[r][c]);
            if (obf)
                _mm256_storeu_si256((__m256i *)(void *)((uint16_t *)O + (size_t)r * ldo + 16 * (size_t)c),
                                    (__m256i)_mm512_cvtneps_pbh(x));
            else
                _mm512_storeu_ps((float *)O + (size_t)r * ldo + 16 * (size_t)c, x);
        }
}

/* O (M, 16 n16) = alpha A (M, K pairs) Bm (K pairs, 16 n16), in register tiles;
 * O f32 (obf 0) or bf16 (obf 1), row stride ldo elements */
ATT_BF16 static void tiles_b(void *O, int obf, size_t ldo, const uint32_t *A, size_t sr, size_t sk,
                             const uint32_t *Bm, size_t ldb, int K, int M, int n16, float alpha) {
    for (int r0 = 0, R; r0 < M; r0 += R) {
        R = tile_rows(M - r0);
        for (int c0 = 0; c0 < n16; c0 += ATT_NR) {
            int NC = n16 - c0 < ATT_NR ? n16 - c0 : ATT_NR;
            size_t oo = (size_t)r0 * ldo + 16 * (size_t)c0;
            void *o = obf ? (void *)((uint16_t *)O + oo) : (void *)((float *)O + oo);
            const uint32_t *a = A + (size_t)r0 * sr;
            const uint32_t *b = Bm + 16 * (size_t)c0;
#define ATT_TILE(r, c) case (r) * 8 + (c): tile_b(o, obf, ldo, a, sr, sk, b, ldb, K, r, c, alpha); break
            switch (R * 8 + NC) {
                ATT_TILE(1, 1); ATT_TILE(1, 2); ATT_TILE(1, 3); ATT_TILE(1, 4);
                ATT_TILE(2, 1); ATT_TILE(2, 2); ATT_TILE(2, 3); ATT_TILE(2, 4);
                ATT_TILE(3, 1); ATT_TILE(3, 2); ATT_TILE(3, 3); ATT_TILE(3, 4);
                ATT_TILE(4, 1); ATT_TILE(4, 2); ATT_TILE(4, 3); ATT_TILE(4, 4);
                default: FLIP_FATAL("attention: bad register tile %dx%d", R, NC);
            }
#undef ATT_TILE
        }
    }
}

/* xP (hd/2, Lk) words = the first L rows of x (bf16, row stride ld) viewed as
 * hd/2 words each, transposed (transpose16 on the raw bits); columns L..Lk 0 */
ATT_BF16 static void transpose_pairs(uint32_t *xP, const uint16_t *x, size_t ld, int L, int Lk, int hd) {
    __m512 one = _mm512_set1_ps(1.0f);
    for (int j0 = 0; j0 < Lk; j0 += 16) {
        int n = L - j0 < 16 ? L - j0 : 16;
        for (int d0 = 0; d0 < hd / 2; d0 += 16)
            transpose16((float *)(void *)(xP + (size_t)d0 * Lk + j0), (size_t)Lk,
                        (const float *)(const void *)(x + (size_t)j0 * ld + 2 * (size_t)d0), ld / 2, n, one, 0);
    }
}

/* dst (ceil(rows/2), n) words: word (i2, d) = x[2 i2][d] | x[2 i2 + 1][d] << 16
 * (a missing last odd row reads 0); x bf16 rows of stride ld, n % 16 == 0 */
ATT_BF16 static void pair_rows_u16(uint32_t *dst, const uint16_t *x, size_t ld, int rows, int n) {
    for (int i = 0; i < rows; i += 2) {
        const uint16_t *a = x + (size_t)i * ld, *b = i + 1 < rows ? a + ld : NULL;
        uint32_t *o = dst + (size_t)(i / 2) * n;
        for (int d = 0; d < n; d += 16) {
            __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(a + d)));
            if (b)
                u = _mm512_or_si512(u, _mm512_slli_epi32(_mm512_cvtepu16_epi32(
                                           _mm256_loadu_si256((const __m256i *)(const void *)(b + d))), 16));
            _mm512_storeu_si512(o + d, u);
        }
    }
}

/* the same for f32 rows, each value rounded to bf16 */
ATT_BF16 static void pair_rows_f32(uint32_t *dst, const float *x, size_t ld, int rows, int n) {
    for (int i = 0; i < rows; i += 2) {
        const float *a = x + (size_t)i * ld, *b = i + 1 < rows ? a + ld : NULL;
        uint32_t *o = dst + (size_t)(i / 2) * n;
        for (int d = 0; d < n; d += 16) {
            __m512i u = bf16_lanes(_mm512_loadu_ps(a + d));
            if (b) u = _mm512_or_si512(u, _mm512_slli_epi32(bf16_lanes(_mm512_loadu_ps(b + d)), 16));
            _mm512_storeu_si512(o + d, u);
        }
    }
}

/* dst (R, n) bf16, row stride ldd = bf16 of x (R, n) f32, row stride ldx; n % 16 == 0 */
ATT_BF16 static void round_rows_b(uint16_t *dst, size_t ldd, const float *x, size_t ldx, int R, int n) {
    for (int r = 0; r < R; r++)
        for (int c = 0; c < n; c += 16)
            _mm256_storeu_si256((__m256i *)(void *)(dst + (size_t)r * ldd + c),
                                (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + (size_t)r * ldx + c)));
}

/* row i of XI (ceil(T/2), Lp) words, rows i, i+1 interleaved: bf16 half i & 1 of
 * the words (i/2, j) = bf16(x[j]) for j < Lp; the other half untouched */
ATT_BF16 static void put_pair_row(uint32_t *XI, int Lp, int i, const float *x) {
    uint16_t *dst = (uint16_t *)(void *)(XI + (size_t)(i / 2) * Lp);
    __mmask32 m = (i & 1) ? 0xAAAAAAAAu : 0x55555555u;
    for (int c = 0; c < Lp; c += 16) {
        __m512i u = bf16_lanes(_mm512_load_ps(x + c));
        if (i & 1) u = _mm512_slli_epi32(u, 16);
        _mm512_mask_storeu_epi16(dst + 2 * c, m, u);
    }
}

/* tail_cols with bf16 rows: Sb[r][j] = alpha a_r . b_j for j0 <= j < L (d pairs in
 * the lanes, hd % 32 == 0, then a lane sum); columns L..j0+16 of Sb 0 */
ATT_BF16 static void tail_cols_b(float *Sb, int lds, const uint16_t *A, size_t lda, const uint16_t *Bm,
                                 size_t ldb, int R, int j0, int L, int hd, float alpha) {
    for (int r = 0; r < R; r++) {
        float *row = Sb + (size_t)r * lds;
        const uint16_t *a = A + (size_t)r * lda;
        _mm512_store_ps(row + j0, _mm512_setzero_ps());
        for (int j = j0; j < L; j++) {
            const uint16_t *b = Bm + (size_t)j * ldb;
            __m512 acc = _mm512_setzero_ps();
            for (int d = 0; d < hd; d += 32)
                acc = _mm512_dpbf16_ps(acc, (__m512bh)_mm512_loadu_si512(a + d), (__m512bh)_mm512_loadu_si512(b + d));
            row[j] = alpha * _mm512_reduce_add_ps(acc);
        }
    }
}

/* S rows (R, Lp) in Sb = s (q rows) k^T, q rows bf16 of stride C3, kP pair-packed
 * k^T (hd/2, Lk); keys past a multiple of 16 (<= ATT_TAIL) as dot products */
ATT_BF16 static void score_rows_b(float *Sb, int Lp, const uint16_t *q, size_t C3, const uint32_t *kP,
                                  const uint16_t *k, int R, int L, int hd, float scale) {
    int j0 = L / 16 * 16, tail = L - j0 > 0 && L - j0 <= ATT_TAIL;
    int Lk = tail ? j0 : Lp;
    tiles_b(Sb, 0, (size_t)Lp, (const uint32_t *)(const void *)q, C3 / 2, 1, kP, (size_t)Lk, hd / 2, R,
            Lk / 16, scale);
    if (tail) tail_cols_b(Sb, Lp, q, C3, k, C3, R, j0, L, hd, scale);
}

/* forward of one (b, h), bf16 q, k, v (T, hd) row stride C3, o (T, hd) bf16 row
 * stride C; att (T, T) optional copy of P */
ATT_BF16 static void fwd_block_b(uint16_t *o, size_t C, float *att, const uint16_t *q, const uint16_t *k,
                                 const uint16_t *v, size_t C3, int T, int L, int hd, float scale,
                                 const AttBufsB *w) {
    int Lp = (L + 15) / 16 * 16, Lh = (L + 1) / 2;
    int j0 = L / 16 * 16, tail = L - j0 > 0 && L - j0 <= ATT_TAIL;
    transpose_pairs(w->kP, k, C3, tail ? j0 : L, tail ? j0 : Lp, hd);
    uint32_t *vP = w->kJ; /* (ceil(L/2), hd): pairs over keys */
    pair_rows_u16(vP, v, C3, L, hd);
    for (int i0 = 0, R; i0 < T; i0 += R) {
        R = tile_rows(T - i0);
        score_rows_b(w->Sb, Lp, q + (size_t)i0 * C3, C3, w->kP, k, R, L, hd, scale);
        softmax_rows(w->Sb, w->Sb, Lp, R, L);
        if (att) copy_p_rows(att, T, w->Sb, Lp, i0, R);
        /* out rows i0.. = bf16(P) v */
        round_rows_b(w->Pr, (size_t)Lp, w->Sb, (size_t)Lp, R, Lp);
        tiles_b(o + (size_t)i0 * C, 1, C, (const uint32_t *)(const void *)w->Pr, (size_t)Lp / 2, 1, vP,
                (size_t)hd, Lh, R, hd / 16, 1.0f);
    }
}

/* backward of one (b, h): dq, dk, dv (T, hd) bf16 row stride ldd (stored; dk, dv
 * rows L..T 0), g = dout (T, hd) f32 row stride C, q, k, v bf16 row stride C3 */
ATT_BF16 static void bwd_block_b(uint16_t *dq, uint16_t *dk, uint16_t *dv, size_t ldd, const float *g, size_t C,
                                 const uint16_t *q, const uint16_t *k, const uint16_t *v, size_t C3, int T,
                                 int L, int hd, float scale, const AttBufsB *w) {
    int Lp = (L + 15) / 16 * 16, nL = Lp / 16, Lh = (L + 1) / 2, Th = (T + 1) / 2;
    int j0 = L / 16 * 16, tail = L - j0 > 0 && L - j0 <= ATT_TAIL;
    int Lk = tail ? j0 : Lp;
    float *Sb = w->Sb, *Db = w->Db;
    transpose_pairs(w->kP, k, C3, tail ? j0 : L, Lk, hd);
    transpose_pairs(w->vT, v, C3, tail ? j0 : L, Lk, hd);
    pair_rows_u16(w->kJ, k, C3, L, hd);
    pair_rows_u16(w->qI, q, C3, T, hd);
    pair_rows_f32(w->gI, g, C, T, hd);
    if (T & 1) { /* the missing row T of the last pair */
        memset(w->PI + (size_t)(Th - 1) * Lp, 0, (size_t)Lp * sizeof(uint32_t));
        memset(w->dSI + (size_t)(Th - 1) * Lp, 0, (size_t)Lp * sizeof(uint32_t));
    }
    for (int i0 = 0, R; i0 < T; i0 += R) {
        R = tile_rows(T - i0);
        /* P rows i0.., as forward computed them */
        score_rows_b(Sb, Lp, q + (size_t)i0 * C3, C3, w->kP, k, R, L, hd, scale);
        softmax_rows(Sb, Sb, Lp, R, L);
        /* dP rows (R, Lp) in Db = bf16(dout) v^T */
        round_rows_b(w->gr, (size_t)hd, g + (size_t)i0 * C, C, R, hd);
        tiles_b(Db, 0, (size_t)Lp, (const uint32_t *)(const void *)w->gr, (size_t)hd / 2, 1, w->vT,
                (size_t)Lk, hd / 2, R, Lk / 16, 1.0f);
        if (tail) tail_cols_b(Db, Lp, w->gr, (size_t)hd, v, C3, R, j0, L, hd, 1.0f);
        /* dS = P * (dP - rowsum(dP * P)) in f32, in place; P is 0 beyond L, so is dS */
        for (int r = 0; r < R; r++) {
            const float *p = Sb + (size_t)r * Lp;
            float *d = Db + (size_t)r * Lp;
            ds_row(d, p, d, nL, 1.0f);
            put_pair_row(w->PI, Lp, i0 + r, p);
            put_pair_row(w->dSI, Lp, i0 + r, d);
        }
        /* dQ rows i0.. = s bf16(dS) k */
        round_rows_b(w->Pr, (size_t)Lp, Db, (size_t)Lp, R, Lp);
        tiles_b(dq + (size_t)i0 * ldd, 1, ldd, (const uint32_t *)(const void *)w->Pr, (size_t)Lp / 2, 1,
                w->kJ, (size_t)hd, Lh, R, hd / 16, scale);
    }
    /* dV[:L] = bf16(P)^T bf16(dout) ; dK[:L] = s bf16(dS)^T q ; padded keys 0 */
    tiles_b(dv, 1, ldd, w->PI, 1, (size_t)Lp, w->gI, (size_t)hd, Th, L, hd / 16, 1.0f);
    tiles_b(dk, 1, ldd, w->dSI, 1, (size_t)Lp, w->qI, (size_t)hd, Th, L, hd / 16, scale);
    for (int j = L; j < T; j++) {
        memset(dk + (size_t)j * ldd, 0, (size_t)hd * sizeof(uint16_t));
        memset(dv + (size_t)j * ldd, 0, (size_t)hd * sizeof(uint16_t));
    }
}
#endif

int attention_bf16_kernel_used(int T, int C, int H) {
    FLIP_CHECK(T > 0 && C > 0 && H > 0 && C % H == 0, "attention_bf16_kernel_used: bad dims T=%d C=%d H=%d", T, C, H);
#ifdef ATT_HAVE_AVX512
    return att_bf16_ok(T, C / H);
#else
    return 0;
#endif
}

size_t attention_scratch_floats(int T, int C, int H, int threads) {
    FLIP_CHECK(T > 0 && C > 0 && H > 0 && C % H == 0 && threads > 0,
               "attention_scratch_floats: bad dims T=%d C=%d H=%d threads=%d", T, C, H, threads);
    return flip_mul_size(slice_floats(T, C, H), (size_t)threads, "attention scratch");
}

/* this thread's 64-byte aligned slice of the scratch */
static float *thread_slice(float *scratch, int T, int C, int H) {
    uintptr_t p = (uintptr_t)(scratch + slice_floats(T, C, H) * (size_t)omp_get_thread_num());
    return (float *)((p + 63) & ~(uintptr_t)63);
}

static void check_scratch(const char *fn, size_t n_scratch, int T, int C, int H, int threads) {
    size_t need = attention_scratch_floats(T, C, H, threads);
    FLIP_CHECK(n_scratch >= need,
               "%s: scratch of %zu floats, %zu needed for T=%d C=%d H=%d and %d threads "
               "(was the thread count raised after planning? plan again)",
               fn, n_scratch, need, T, C, H, threads);
}

/* One (b, h) block forward: q, k, v (T, hd) row stride lds, o (T, hd) row
 * stride ldo, Pa (T, T) optional copy of P. */
static void head_forward(int fast, float *o, size_t ldo, float *Pa, const float *q, const float *k,
                         const float *v, size_t lds, int T, int L, int hd, float scale, const AttBufs *w) {
#ifdef ATT_HAVE_AVX512
    if (fast) {
        fwd_block(o, ldo, Pa, q, k, v, lds, T, L, hd, scale, w);
        return;
    }
#else
    (void)fast;
#endif
    float *P = w->P; /* (T, T) */
    /* S[:, :L] = s q k[:L]^T */
    sgemm('N', 'T', T, L, hd, scale, q, lds, k, lds, 0.0f, P, T);
    softmax_block_masked(P, L, T);
    /* out = P[:, :L] v[:L] */
    sgemm('N', 'N', T, hd, L, 1.0f, P, T, v, lds, 0.0f, o, ldo);
    if (Pa) memcpy(Pa, P, (size_t)T * T * sizeof(float));
}

/* One (b, h) block backward: dq, dk, dv (T, hd) row stride ldd (stored, =; dk, dv
 * rows L..T exactly 0), g (T, hd) row stride ldg, q, k, v row stride lds; P
 * recomputed as head_forward made it. */
static void head_backward(int fast, float *dq, float *dk, float *dv, size_t ldd, const float *g, size_t ldg,
                          const float *q, const float *k, const float *v, size_t lds, int T, int L, int hd,
                          float scale, const AttBufs *w) {
#ifdef ATT_HAVE_AVX512
    if (fast) {
        bwd_block(dq, dk, dv, ldd, g, ldg, q, k, v, lds, T, L, hd, scale, w);
        return;
    }
#else
    (void)fast;
#endif
    float *P = w->P, *dS = w->dS; /* (T, T) each */
    sgemm('N', 'T', T, L, hd, scale, q, lds, k, lds, 0.0f, P, T);
    softmax_block_masked(P, L, T);
    /* dV[:L] = P[:, :L]^T dout */
    sgemm('T', 'N', L, hd, T, 1.0f, P, T, g, ldg, 0.0f, dv, ldd);
    /* dP[:, :L] = dout v[:L]^T, then dS in place */
    sgemm('N', 'T', T, L, hd, 1.0f, g, ldg, v, lds, 0.0f, dS, T);
    dsoftmax_block(dS, P, L, T);
    /* dQ = s dS[:, :L] k[:L] ; dK[:L] = s dS[:, :L]^T q ; padded keys 0 */
    sgemm('N', 'N', T, hd, L, scale, dS, T, k, lds, 0.0f, dq, ldd);
    sgemm('T', 'N', L, hd, T, scale, dS, T, q, lds, 0.0f, dk, ldd);
    zero_rows(dk, ldd, L, T, hd);
    zero_rows(dv, ldd, L, T, hd);
}

/* bf16 rows <-> f32 rows of n floats (n % 16 == 0 takes the AVX-512 loops) */
static void widen_row(float *dst, const uint16_t *src, int n, int fast) {
#ifdef ATT_HAVE_AVX512
    if (fast) {
        widen_bf16_16(dst, src, n);
        return;
    }
#else
    (void)fast;
#endif
    for (int i = 0; i < n; i++) dst[i] = flip_bf16_widen(src[i]);
}

static void round_row(uint16_t *dst, const float *src, int n, int fast) {
#ifdef ATT_HAVE_AVX512
    if (fast) {
        round_bf16_16(dst, src, n);
        return;
    }
#else
    (void)fast;
#endif
    for (int i = 0; i < n; i++) dst[i] = flip_bf16_round(src[i]);
}

/* The four entry points share one loop over the B*H (sample, head) blocks.
 * f32: q, k, v read in place from qkv (row stride 3C), out / dqkv written in
 * place. bf16: the head's rows of qkv_b widened into w.xf first (row stride
 * 3 hd), results computed into w.gf and rounded into out_b / dqkv_b. */
typedef struct {
    float *out, *att, *dqkv;
    uint16_t *out_b, *dqkv_b;
    const float *qkv, *dout;
    const uint16_t *qkv_b;
} AttIO;

static void attention_run(const char *fn, int backward, const AttIO *io, float *scratch, size_t n_scratch,
                          const int *lens, int B, int T, int C, int H) {
    check_dims(fn, lens, B, T, C, H);
    check_scratch(fn, n_scratch, T, C, H, omp_get_max_threads());
    int hd = C / H, n_bh = B * H, bf16 = io->qkv_b != NULL;
    size_t C3 = 3 * (size_t)C, hd3 = 3 * (size_t)hd;
    float scale = (float)(1.0 / sqrt((double)hd));
    int fast = 0, vec = 0, bfk = 0;
#ifdef ATT_HAVE_AVX512
    fast = att_fast_ok(T, hd);
    vec = hd % 16 == 0 && __builtin_cpu_supports("avx512f");
    bfk = bf16 && att_bf16_ok(T, hd);
#endif
    int ch = att_chunk(n_bh);
#pragma omp parallel for schedule(dynamic, ch)
    for (int bh = 0; bh < n_bh; bh++) {
        int b = bh / H, h = bh % H;
        int L = lens ? lens[b] : T;
        size_t off = (size_t)b * T * C3 + (size_t)h * hd;  /* head h's q of token 0 in qkv */
        size_t offo = (size_t)b * T * C + (size_t)h * hd;  /* and in out / dout */
        if ((bh + 1) % ch != 0 && bh + 1 < n_bh) { /* next block of this chunk: into L2 */
            int b1 = (bh + 1) / H, h1 = (bh + 1) % H;
            size_t off1 = (size_t)b1 * T * C3 + (size_t)h1 * hd, offo1 = (size_t)b1 * T * C + (size_t)h1 * hd;
            for (int part = 0; part < 3 && !bf16; part++) {
                prefetch_rows(io->qkv + off1 + (size_t)part * C, C3, T, hd, 0);
                if (backward) prefetch_rows(io->dqkv + off1 + (size_t)part * C, C3, T, hd, 1);
            }
            for (int part = 0; part < 3 && bfk; part++) { /* bf16 rows as hd/2 floats */
                prefetch_rows((const float *)(const void *)(io->qkv_b + off1 + (size_t)part * C), C3 / 2, T,
                              hd / 2, 0);
                if (backward)
                    prefetch_rows((const float *)(const void *)(io->dqkv_b + off1 + (size_t)part * C), C3 / 2,
                                  T, hd / 2, 1);
            }
            if (backward) prefetch_rows(io->dout + offo1, C, T, hd, 0);
            else if (bfk) prefetch_rows((const float *)(const void *)(io->out_b + offo1), C / 2, T, hd / 2, 1);
            else if (!bf16) prefetch_rows(io->out + offo1, C, T, hd, 1);
        }
#ifdef ATT_HAVE_AVX512
        if (bfk) { /* bf16 arithmetic on the bf16 rows in place */
            AttBufsB wb = att_bufs_b(thread_slice(scratch, T, C, H), T, hd);
            const uint16_t *qb = io->qkv_b + off;
            if (!backward) {
                float *Pa = io->att ? io->att + (size_t)bh * T * T : NULL;
                fwd_block_b(io->out_b + offo, (size_t)C, Pa, qb, qb + C, qb + 2 * (size_t)C, C3, T, L, hd, scale,
                            &wb);
            } else {
                uint16_t *db = io->dqkv_b + off;
                bwd_block_b(db, db + C, db + 2 * (size_t)C, C3, io->dout + offo, (size_t)C, qb, qb + C,
                            qb + 2 * (size_t)C, C3, T, L, hd, scale, &wb);
            }
            continue;
        }
#endif
        AttBufs w = att_bufs(thread_slice(scratch, T, C, H), T, hd);
        const float *q;
        size_t lds;
        if (bf16) {
            for (int t = 0; t < T; t++)
                for (int part = 0; part < 3; part++)
                    widen_row(w.xf + (size_t)t * hd3 + (size_t)part * hd,
                              io->qkv_b + off + (size_t)t * C3 + (size_t)part * C, hd, vec);
            q = w.xf;
            lds = hd3;
        } else {
            q = io->qkv + off;
            lds = C3;
        }
        size_t qk = bf16 ? (size_t)hd : (size_t)C; /* q -> k -> v within a row */
        const float *k = q + qk, *v = q + 2 * qk;
        if (!backward) {
            float *Pa = io->att ? io->att + (size_t)bh * T * T : NULL;
            if (!bf16) {
                head_forward(fast, io->out + offo, (size_t)C, Pa, q, k, v, lds, T, L, hd, scale, &w);
                continue;
            }
            head_forward(fast, w.gf, (size_t)hd, Pa, q, k, v, lds, T, L, hd, scale, &w);
            for (int t = 0; t < T; t++)
                round_row(io->out_b + offo + (size_t)t * C, w.gf + (size_t)t * hd, hd, vec);
            continue;
        }
        const float *g = io->dout + offo;
        if (!bf16) {
            float *dq = io->dqkv + off;
            head_backward(fast, dq, dq + C, dq + 2 * (size_t)C, C3, g, (size_t)C, q, k, v, lds, T, L, hd,
                          scale, &w);
            continue;
        }
        head_backward(fast, w.gf, w.gf + hd, w.gf + 2 * (size_t)hd, hd3, g, (size_t)C, q, k, v, lds, T, L,
                      hd, scale, &w);
        for (int t = 0; t < T; t++)
            for (int part = 0; part < 3; part++)
                round_row(io->dqkv_b + off + (size_t)t * C3 + (size_t)part * C,
                          w.gf + (size_t)t * hd3 + (size_t)part * hd, hd, vec);
    }
}

void attention_forward(float *out, float *att, float *scratch, size_t n_scratch, const float *qkv,
                       const int *lens, int B, int T, int C, int H) {
    AttIO io = {.out = out, .att = att, .qkv = qkv};
    attention_run("attention_forward", 0, &io, scratch, n_scratch, lens, B, T, C, H);
}

void attention_backward(float *dqkv, float *scratch, size_t n_scratch, const float *dout,
                        const float *qkv, const int *lens, int B, int T, int C, int H) {
    AttIO io = {.dqkv = dqkv, .dout = dout, .qkv = qkv};
    attention_run("attention_backward", 1, &io, scratch, n_scratch, lens, B, T, C, H);
}

void attention_forward_b(uint16_t *out_b, float *att, float *scratch, size_t n_scratch, const uint16_t *qkv_b,
                         const int *lens, int B, int T, int C, int H) {
    AttIO io = {.out_b = out_b, .att = att, .qkv_b = qkv_b};
    attention_run("attention_forward_b", 0, &io, scratch, n_scratch, lens, B, T, C, H);
}

void attention_backward_b(uint16_t *dqkv_b, float *scratch, size_t n_scratch, const float *dout,
                          const uint16_t *qkv_b, const int *lens, int B, int T, int C, int H) {
    AttIO io = {.dqkv_b = dqkv_b, .dout = dout, .qkv_b = qkv_b};
    attention_run("attention_backward_b", 1, &io, scratch, n_scratch, lens, B, T, C, H);
}

/* ---- reference ---- */
/* P (T, T) of head h of the sample at xb (T, 3C): probabilities from double
 * scores, stored as float; keys j >= L exactly 0 */
static void ref_probs(float *P, const float *xb, int T, int C, int hd, int h, int L) {
    size_t C3 = 3 * (size_t)C;
    double scale = 1.0 / sqrt((double)hd);
    for (int i = 0; i < T; i++) {
        const float *q = xb + i * C3 + (size_t)h * hd;
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
    }
}

void attention_forward_ref(float *out, float *att, float *scratch, size_t n_scratch, const float *qkv,
                           const int *lens, int B, int T, int C, int H) {
    check_dims("attention_forward_ref", lens, B, T, C, H);
    check_scratch("attention_forward_ref", n_scratch, T, C, H, 1);
    int hd = C / H;
    size_t C3 = 3 * (size_t)C;
    for (int b = 0; b < B; b++) {
        int L = lens ? lens[b] : T;
        const float *xb = qkv + (size_t)b * T * C3;
        for (int h = 0; h < H; h++) {
            float *P = att ? att + ((size_t)b * H + h) * T * T : scratch;
            ref_probs(P, xb, T, C, hd, h, L);
            for (int i = 0; i < T; i++)
                for (int d = 0; d < hd; d++) {
                    double acc = 0.0;
                    for (int j = 0; j < L; j++)
                        acc += (double)P[(size_t)i * T + j] * (double)xb[j * C3 + 2 * (size_t)C + (size_t)h * hd + d];
                    out[((size_t)b * T + i) * C + (size_t)h * hd + d] = (float)acc;
                }
        }
    }
}

void attention_backward_ref(float *dqkv, float *scratch, size_t n_scratch, const float *dout,
                            const float *qkv, const int *lens, int B, int T, int C, int H) {
    check_dims("attention_backward_ref", lens, B, T, C, H);
    check_scratch("attention_backward_ref", n_scratch, T, C, H, 1);
    int hd = C / H;
    size_t C3 = 3 * (size_t)C;
    double scale = 1.0 / sqrt((double)hd);
    float *P = scratch, *dS = scratch + (size_t)T * T; /* (T, T) each */
    for (int b = 0; b < B; b++) {
        int L = lens ? lens[b] : T;
        const float *xb = qkv + (size_t)b * T * C3;
        float *dxb = dqkv + (size_t)b * T * C3;
        const float *gb = dout + (size_t)b * T * C;
        for (int h = 0; h < H; h++) {
            ref_probs(P, xb, T, C, hd, h, L); /* as forward computed it */
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
                    dxb[t * C3 + ho + d] = (float)(scale * dq);
                    dxb[t * C3 + C + ho + d] = (float)(scale * dk);
                    dxb[t * C3 + 2 * (size_t)C + ho + d] = (float)dv;
                }
            }
        }
    }
}
