/* dnnl_util.h — flip's thin layer over oneDNN 2.6 (C API): the engine and
 * stream singletons, the DNNL_CHECK idiom, and a cache of f32 matmul
 * primitives keyed by (shapes, strides, variant) so each is created once and
 * reused; memory objects wrap the caller's pointers per call
 * (dnnl_memory_set_data_handle), no copies or reorders.
 *
 * Threading: oneDNN runs on the OpenMP pool; every call comes from the main
 * thread (the cache is not locked).
 */
#ifndef FLIP_DNNL_UTIL_H
#define FLIP_DNNL_UTIL_H

#include <oneapi/dnnl/dnnl.h>

#include <stdint.h>

#include "common.h"

/* Ends in flip_fatal naming the call and the oneDNN status. */
_Noreturn void flip_dnnl_fatal(const char *file, int line, const char *call, dnnl_status_t st);
#define DNNL_CHECK(call)                                                        \
    do {                                                                        \
        dnnl_status_t dnnl_check_st_ = (call);                                  \
        if (dnnl_check_st_ != dnnl_success)                                     \
            flip_dnnl_fatal(__FILE__, __LINE__, #call, dnnl_check_st_);         \
    } while (0)

/* The CPU engine and its stream, created at first use. */
dnnl_engine_t flip_dnnl_engine(void);
dnnl_stream_t flip_dnnl_stream(void);

/* One f32 matmul dst = alpha * src @ wei (+ bias) [+ dst if accumulate]
 * [then GELU if gelu], with arbitrary strides (elements) on every operand.
 * ndims 2..4; the last two dims are the matrix (src (.., m, k), wei (.., k, n),
 * dst (.., m, n)), leading dims are batch dims (equal in src, wei and dst).
 * bias (n) is broadcast over rows (2-D only here). Fill with
 * flip_matmul_spec_init so unused fields are zero (the spec is the cache key). */
typedef struct {
    int ndims;
    dnnl_dim_t src_dims[4], src_strides[4];
    dnnl_dim_t wei_dims[4], wei_strides[4];
    dnnl_dim_t dst_dims[4], dst_strides[4];
    int has_bias;     /* bias of n floats */
    int accumulate;   /* sum post-op: dst += result */
    int gelu;         /* exact (erf) GELU post-op after bias */
    float alpha;      /* output scale (1 when unused) */
    /* precision bf16 only: the operand already holds bf16 (uint16_t) data, so
     * it is not converted (src_bf16, wei_bf16), or the result is written as
     * bf16, rounded to nearest even (dst_bf16; not with accumulate) */
    int src_bf16, wei_bf16, dst_bf16;
} FlipMatmulSpec;

void flip_matmul_spec_init(FlipMatmulSpec *s, int ndims);
/* Runs the spec's primitive (created and cached on first use). */
void flip_matmul(const FlipMatmulSpec *s, float *dst, const float *src, const float *wei,
                 const float *bias);
/* The same with operands of the types the spec's *_bf16 flags name. */
void flip_matmul_mixed(const FlipMatmulSpec *s, void *dst, const void *src, const void *wei,
                       const float *bias);
/* oneDNN's implementation name chosen for a spec ("gemm:jit", "brg:avx512_core", ...) */
const char *flip_matmul_impl(const FlipMatmulSpec *s);
/* Which oneDNN implementation runs matmuls with an f32 destination (bf16
 * destinations always take oneDNN's first choice, brgemm):
 *   FLIP_MATMUL_AUTO (default): oneDNN's GEMM-based implementation
 *     ("gemm:jit") where offered, except fp32 linear forwards (weight read
 *     transposed) with more inputs than outputs (fc2, patch embedding, output
 *     projections) on more than one OpenMP thread, which take oneDNN's first
 *     choice (brgemm on AVX-512);
 *   FLIP_MATMUL_GEMM: gemm:jit wherever offered;
 *   FLIP_MATMUL_BRGEMM: always oneDNN's first choice.
 * Measured in dnnl_util.c; the cache keys on the outcome, so benchmarks can
 * compare the modes in one process. */
typedef enum { FLIP_MATMUL_AUTO, FLIP_MATMUL_GEMM, FLIP_MATMUL_BRGEMM } FlipMatmulImpl;
void flip_matmul_set_impl(FlipMatmulImpl mode);
/* "auto", "gemm", "brgemm" -> the mode; -1 for anything else */
int flip_matmul_impl_parse(const char *name);
/* Blocks the asynchronous signals (all but SIGSEGV, SIGBUS, SIGFPE, SIGILL,
 * SIGTRAP, SIGABRT, SIGSYS) in the calling thread; threads it creates later
 * inherit the mask. oneDNN 2.6's JIT GEMM kernels point rsp into the heap, so
 * a signal handler must never run on a thread inside one (dnnl_util.c): a
 * program that handles signals calls this in main before any thread that may
 * run a kernel exists, and takes the signals on a thread of its own. */
void flip_block_async_signals(void);

/* Matmul precision of flip_matmul (a process-wide switch, set once at start
 * by flip-train / bench_step --precision; the primitive cache keys on it).
 * FLIP_PRECISION_BF16: src and weights are rounded to bf16 (round to nearest
 * even) into grow-only scratch buffers owned here and multiplied by oneDNN's
 * bf16 matmul (avx512_core_bf16) with f32 accumulation, f32 bias and f32
 * output (and f32 sum post-op), so master weights, gradients, LayerNorm,
 * softmax and the loss stay fp32. The attention core has its own kernels
 * (core/attention.c; bf16 products with f32 accumulation and an f32 softmax
 * on AVX512-BF16 CPUs). flip_precision_parse returns -1 for an unknown name. */
typedef enum { FLIP_PRECISION_FP32 = 0, FLIP_PRECISION_BF16 = 1 } FlipPrecision;
void flip_set_precision(FlipPrecision p);
FlipPrecision flip_get_precision(void);
int flip_precision_parse(const char *name);         /* "fp32" | "bf16" */
const char *flip_precision_name(FlipPrecision p);
int flip_cpu_has_bf16(void);                        /* avx512_bf16 in /proc/cpuinfo */
/* bf16: lets the NEXT flip_matmul reuse the bf16 copy of src made by the
 * previous call when its src pointer and span are the same; the caller
 * guarantees the memory did not change in between (linear_backward: dout
 * feeds both dinp and dweight). No effect in fp32; applies to one call. */
void flip_matmul_src_unchanged(void);
/* dst[i] = bf16(src[i]) (round to nearest even, NaN kept NaN), as raw bits; on
 * AVX512-BF16 CPUs by the hardware instruction, which flushes denormals to 0 */
void flip_f32_to_bf16(uint16_t *dst, const float *src, size_t n);

/* One float <-> bf16 (raw bits): round to nearest even, NaN stays NaN (the
 * portable rule of flip_f32_to_bf16); widening is exact. Inline so element
 * loops (LayerNorm, GELU) vectorise them. */
static inline uint16_t flip_bf16_round(float x) {
    union { float f; uint32_t u; } v = {x};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40u);
    v.u += 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)(v.u >> 16);
}
static inline float flip_bf16_widen(uint16_t b) {
    union { uint32_t u; float f; } v = {(uint32_t)b << 16};
    return v.f;
}

/* Number of cached primitives (tests check reuse). */
int flip_dnnl_cache_count(void);

#endif
