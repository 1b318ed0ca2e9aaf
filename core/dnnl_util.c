/* dnnl_util.c — oneDNN engine/stream singletons, DNNL_CHECK's fatal path, and
 * the primitive cache (see dnnl_util.h).
 *
 * Cache: open-addressing hash table keyed by the raw bytes of a zero-padded
 * key struct (kind + matmul spec + precision), allocated at first use and
 * doubled when half full (only while new shapes appear: in the first step for
 * a given mask ratio, and the first time a batch's longest caption has a new
 * length, since the text tower runs on that many positions: at most context
 * values, about 12 matmul shapes each). Each entry owns its primitive and the
 * memory objects that wrap the caller's pointers; they live until process
 * exit.
 */
#include "dnnl_util.h"

#include "prof.h"

#include <oneapi/dnnl/dnnl_debug.h>
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Noreturn void flip_dnnl_fatal(const char *file, int line, const char *call, dnnl_status_t st) {
    flip_fatal(file, line, "oneDNN call %s failed: %s", call, dnnl_status2str(st));
}

static dnnl_engine_t g_engine = NULL;
static dnnl_stream_t g_stream = NULL;

dnnl_engine_t flip_dnnl_engine(void) {
    if (!g_engine) DNNL_CHECK(dnnl_engine_create(&g_engine, dnnl_cpu, 0));
    return g_engine;
}

dnnl_stream_t flip_dnnl_stream(void) {
    if (!g_stream) DNNL_CHECK(dnnl_stream_create(&g_stream, flip_dnnl_engine(), dnnl_stream_default_flags));
    return g_stream;
}

/* ---- cache ---- */
enum { KIND_MATMUL = 1 };

typedef struct {
    int kind;
    int bf16;  /* matmul: bf16 src/weights (FLIP_PRECISION_BF16) */
    int prefer_gemm; /* prefer_gemm() when created (pick_impl) */
    FlipMatmulSpec mm;
} PrimKey;

#define MAX_ARGS 4
typedef struct {
    int used;
    PrimKey key;
    dnnl_primitive_t prim;
    int n_args;
    int arg_ids[MAX_ARGS];
    dnnl_memory_t mem[MAX_ARGS];
    char impl[48];
    int gemm_jit;  /* runs oneDNN's gemm:jit: executed with async signals blocked */
} PrimEntry;

static PrimEntry *g_table = NULL;
static size_t g_cap = 0, g_count = 0;

int flip_dnnl_cache_count(void) { return (int)g_count; }

static uint64_t key_hash(const PrimKey *k) {
    const unsigned char *p = (const unsigned char *)k;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof *k; i++) { h ^= p[i]; h *= 1099511628211ull; }
    return h;
}

/* slot of key in table (empty slot if absent) */
static PrimEntry *table_slot(PrimEntry *table, size_t cap, const PrimKey *k) {
    size_t i = (size_t)(key_hash(k) & (cap - 1));
    for (;;) {
        PrimEntry *e = &table[i];
        if (!e->used || memcmp(&e->key, k, sizeof *k) == 0) return e;
        i = (i + 1) & (cap - 1);
    }
}

static void table_grow(void) {
    size_t new_cap = g_cap ? 2 * g_cap : 256;
    PrimEntry *t = flip_calloc(new_cap, sizeof(PrimEntry), "oneDNN primitive cache");
    for (size_t i = 0; i < g_cap; i++)
        if (g_table[i].used) *table_slot(t, new_cap, &g_table[i].key) = g_table[i];
    flip_free(g_table);
    g_table = t;
    g_cap = new_cap;
}

static void entry_finish(PrimEntry *e, dnnl_primitive_desc_t pd) {
    const char *impl = NULL;
    DNNL_CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
    snprintf(e->impl, sizeof e->impl, "%s", impl ? impl : "?");
    e->gemm_jit = impl && strstr(impl, "gemm:") != NULL; /* 3.x names it "x64:gemm:jit" */
    DNNL_CHECK(dnnl_primitive_create(&e->prim, pd));
    DNNL_CHECK(dnnl_primitive_desc_destroy(pd));
}

static void make_md(dnnl_memory_desc_t *md, int nd, const dnnl_dim_t *dims,
                    const dnnl_dim_t *strides, dnnl_data_type_t dt) {
    dnnl_dims_t d, st; /* the API takes full DNNL_MAX_NDIMS arrays */
    memset(d, 0, sizeof d);
    memset(st, 0, sizeof st);
    for (int i = 0; i < nd; i++) { d[i] = dims[i]; st[i] = strides[i]; }
    DNNL_CHECK(dnnl_memory_desc_init_by_strides(md, nd, d, dt, st));
}

/* Which oneDNN implementation runs a matmul. oneDNN 2.6 offers, in its order
 * of preference, brgemm ("brg:avx512_core[_bf16]"), then its GEMM-based
 * matmul ("gemm:jit", the tuned sgemm / gemm_bf16bf16f32 kernels), then
 * "ref:any". flip takes gemm:jit when it is offered for the spec and falls
 * back to oneDNN's first choice otherwise (FLIP_MATMUL_BRGEMM: always oneDNN's
 * first choice; FLIP_MATMUL_AUTO, the default, also keeps fp32 fc2-like
 * forwards on more than one thread there, see prefer_gemm). Not for a bf16
 * destination: gemm:jit then keeps an f32 copy of the whole M x N result in
 * its scratchpad (vit-s16 B 64 bf16 peak RSS +140 MiB at mask 0, +44 MiB at
 * 0.75), so those stay on brgemm. Measured on the 2-core Zen 4, 1 thread, CPU clock,
 * bench_ops (`--matmul-impl brgemm` vs `gemm`, two interleaved rounds), the
 * sum of a transformer block's linears:
 *   vit-s16 fp32 backward  mask 0: 1140 / 1072 -> 1016 / 1038 ms, 0.5: 541 /
 *                          529 -> 478 / 482, 0.75: 264 -> 240 (forward equal)
 *   vit-s16 bf16           fwd 0.75: 74 / 69 -> 66 / 66 ms, bwd 159 / 151 ->
 *                          134 / 136; mask 0 bwd 663 / 660 -> 615 / 580
 *   tiny fp32 backward     mask 0: 419 / 415 -> 372 / 373 ms
 * (brgemm reads the transposed dout of dweight through strides and loses
 * most there; the forward with its fused bias is about equal.) The choice is
 * fixed per spec, so results stay bitwise reproducible run to run. */
static FlipMatmulImpl g_matmul_impl = FLIP_MATMUL_AUTO;

void flip_matmul_set_impl(FlipMatmulImpl mode) { g_matmul_impl = mode; }

int flip_matmul_impl_parse(const char *name) {
    if (strcmp(name, "auto") == 0) return FLIP_MATMUL_AUTO;
    if (strcmp(name, "gemm") == 0) return FLIP_MATMUL_GEMM;
    if (strcmp(name, "brgemm") == 0) return FLIP_MATMUL_BRGEMM;
    return -1;
}

/* FLIP_MATMUL_AUTO: a linear layer's forward (x W^T: the weight operand read
 * transposed) whose input is wider than its output (K > N: the MLP's fc2) in
 * fp32 on more than one thread stays on oneDNN's first choice: gemm:jit splits
 * it poorly across 2 threads. Forward ms, gemm:jit -> this rule, each bench_ops
 * row's minimum over 3 interleaved rounds (`OMP_NUM_THREADS=2
 * benchmarks/ab_ops.sh --rounds 3 gemm auto`, wall clock, 2026-11-27):
 *   vit-s16 fc2 12544x1536->384  84.0 -> 69.8      3136x1536->384  21.4 -> 17.4
 *   vit-s16 text fc2 2048x1024->256  7.0 -> 5.0
 *   tiny fc2 16384x768->192  24.9 -> 23.6          4096x768->192    5.9 ->  5.9
 *   tiny text fc2 8192x512->128  6.2 -> 5.3
 * The other forwards do not gain (bench_ops `--matmul-impl gemm` vs `brgemm`
 * by hand, two interleaved rounds, shown as round 1 / round 2; ab_ops.sh
 * reruns such a comparison, also with `--cpu-clock` or `--precision bf16`;
 * qkv, N = 3K, loses 5-15 % on brgemm:
 * tiny 4096x192->576 4.8 / 4.6 -> 5.6 / 5.1; proj, K = N, goes either way),
 * on one thread gemm:jit's forward is as fast or 2-3 % faster (CPU clock,
 * vit-s16 block forwards at mask 0: 480 / 477 vs 495 / 493 ms), and in bf16
 * all forwards on brgemm were slower (vit-s16 mask 0.75 block: 33.9 / 33.9 vs
 * 36.8 / 35.4 ms), so those keep gemm:jit. The choice is in the cache key and
 * fixed per spec and thread count. Measured on fc2 shapes at 2 threads only;
 * the rule also moves the other narrowing forwards (patch embedding 768->384,
 * the output projections) and applies at any thread count above 1. */
static int prefer_gemm(const FlipMatmulSpec *s, int bf16) {
    if (s->dst_bf16 || g_matmul_impl == FLIP_MATMUL_BRGEMM) return 0;
    if (g_matmul_impl == FLIP_MATMUL_GEMM) return 1;
    int linear_forward = s->ndims == 2 && s->wei_strides[0] == 1 && s->wei_strides[1] != 1;
    int narrowing = s->src_dims[1] > s->dst_dims[1];
    return !(linear_forward && narrowing && !bf16 && omp_get_max_threads() > 1);
}

static dnnl_primitive_desc_t pick_impl(const dnnl_matmul_desc_t *desc, const_dnnl_primitive_attr_t attr,
                                       int prefer_gemm) {
    dnnl_engine_t eng = flip_dnnl_engine();
    dnnl_primitive_desc_t pd;
    if (prefer_gemm) {
        dnnl_primitive_desc_iterator_t it;
        DNNL_CHECK(dnnl_primitive_desc_iterator_create(&it, desc, attr, eng, NULL));
        do {
            dnnl_primitive_desc_t cand = dnnl_primitive_desc_iterator_fetch(it);
            FLIP_CHECK(cand != NULL, "oneDNN: dnnl_primitive_desc_iterator_fetch returned no descriptor");
            const char *impl = NULL;
            DNNL_CHECK(dnnl_primitive_desc_query(cand, dnnl_query_impl_info_str, 0, &impl));
            if (impl && strstr(impl, "gemm:") != NULL) {
                DNNL_CHECK(dnnl_primitive_desc_iterator_destroy(it));
                return cand;
            }
            DNNL_CHECK(dnnl_primitive_desc_destroy(cand));
        } while (dnnl_primitive_desc_iterator_next(it) == dnnl_success);
        DNNL_CHECK(dnnl_primitive_desc_iterator_destroy(it));
    }
    DNNL_CHECK(dnnl_primitive_desc_create(&pd, desc, attr, eng, NULL));
    return pd;
}

static void build_matmul(PrimEntry *e, const FlipMatmulSpec *s, int bf16, int prefer_gemm) {
    dnnl_engine_t eng = flip_dnnl_engine();
    int nd = s->ndims;
    dnnl_data_type_t in_dt = bf16 ? dnnl_bf16 : dnnl_f32;
    FLIP_CHECK(bf16 || !(s->src_bf16 || s->wei_bf16 || s->dst_bf16),
               "flip_matmul: bf16 operands need precision bf16 (flip_set_precision)");
    FLIP_CHECK(!(s->dst_bf16 && s->accumulate), "flip_matmul: a bf16 destination cannot accumulate");
    dnnl_memory_desc_t src_md, wei_md, dst_md, bias_md;
    make_md(&src_md, nd, s->src_dims, s->src_strides, in_dt);
    make_md(&wei_md, nd, s->wei_dims, s->wei_strides, in_dt);
    make_md(&dst_md, nd, s->dst_dims, s->dst_strides, s->dst_bf16 ? dnnl_bf16 : dnnl_f32);
    if (s->has_bias) {
        dnnl_dims_t bd = {1, 1, 1, 1}, bs = {0, 0, 0, 0};
        bd[nd - 1] = s->dst_dims[nd - 1];
        dnnl_dim_t stride = 1;
        for (int i = nd - 1; i >= 0; i--) { bs[i] = stride; stride *= bd[i]; }
        make_md(&bias_md, nd, bd, bs, dnnl_f32);
    }
    dnnl_matmul_desc_t desc;
    DNNL_CHECK(dnnl_matmul_desc_init(&desc, &src_md, &wei_md, s->has_bias ? &bias_md : NULL, &dst_md));

    dnnl_primitive_attr_t attr;
    DNNL_CHECK(dnnl_primitive_attr_create(&attr));
    if (s->alpha != 1.0f) DNNL_CHECK(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &s->alpha));
    if (s->accumulate || s->gelu) {
        dnnl_post_ops_t po;
        DNNL_CHECK(dnnl_post_ops_create(&po));
        if (s->accumulate) DNNL_CHECK(dnnl_post_ops_append_sum(po, 1.0f));
        if (s->gelu) DNNL_CHECK(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_gelu_erf, 0.0f, 0.0f));
        DNNL_CHECK(dnnl_primitive_attr_set_post_ops(attr, po));
        DNNL_CHECK(dnnl_post_ops_destroy(po));
    }
    dnnl_primitive_desc_t pd = pick_impl(&desc, attr, prefer_gemm);
    DNNL_CHECK(dnnl_primitive_attr_destroy(attr));
    entry_finish(e, pd);

    e->n_args = 0;
    const dnnl_memory_desc_t *mds[4] = {&src_md, &wei_md, &dst_md, &bias_md};
    const int ids[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS};
    for (int i = 0; i < (s->has_bias ? 4 : 3); i++) {
        DNNL_CHECK(dnnl_memory_create(&e->mem[i], mds[i], eng, DNNL_MEMORY_NONE));
        e->arg_ids[i] = ids[i];
        e->n_args++;
    }
}

static PrimEntry *cache_get(const PrimKey *k) {
    if (!g_table) table_grow();
    PrimEntry *e = table_slot(g_table, g_cap, k);
    if (e->used) return e;
    if (2 * (g_count + 1) > g_cap) {
        table_grow();
        e = table_slot(g_table, g_cap, k);
    }
    memset(e, 0, sizeof *e);
    e->key = *k;
    build_matmul(e, &k->mm, k->bf16, k->prefer_gemm);
    e->used = 1;
    g_count++;
    return e;
}

/* Signals and gemm:jit. oneDNN 2.6's JIT GEMM kernels point rsp into a heap
 * workspace while they run (fixed upstream in 2026, uxlfoundation/oneDNN
 * #4845 / #4855; Debian ships 2.6.3), so a signal handler running on a thread
 * inside such a kernel writes its frame into the heap. flip-train handles
 * SIGTERM / SIGUSR1 (Slurm preemption) and profilers send SIGPROF: measured,
 * 4 of 6 tiny runs killed with SIGTERM mid-training aborted with "corrupted
 * size vs. prev_size". Two layers:
 *  - flip-train calls flip_block_async_signals() in main before the OpenMP
 *    pool, the loader or oneDNN exist, so every thread that can run a kernel
 *    inherits the blocked mask; a dedicated thread takes the signals
 *    (launch/train.c). This covers every JIT GEMM, also dnnl_sgemm in the
 *    attention fallback.
 *  - for other programs, each gemm:jit matmul here runs with the async
 *    signals blocked in the calling thread and blocks them in the OpenMP
 *    workers of the current team size (best effort: libgomp may replace a
 *    worker after a smaller team, and that thread then starts with the
 *    caller's unblocked mask). ~1 us of syscalls per call.
 * tests/core/test_matmul_signals.c fires signals at every thread during
 * gemm:jit matmuls and checks heap and results. */
static sigset_t g_async_sigs;
static int g_async_sigs_ready = 0, g_blocked_team = 0;

static void async_sigset(void) {
    if (g_async_sigs_ready) return;
    sigfillset(&g_async_sigs);
    const int sync_sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};
    for (size_t i = 0; i < sizeof sync_sigs / sizeof sync_sigs[0]; i++) sigdelset(&g_async_sigs, sync_sigs[i]);
    g_async_sigs_ready = 1;
}

void flip_block_async_signals(void) {
    async_sigset();
    int rc = pthread_sigmask(SIG_BLOCK, &g_async_sigs, NULL);
    FLIP_CHECK(rc == 0, "pthread_sigmask failed: %s", strerror(rc));
}

/* each thread of a team of omp_get_max_threads() other than the caller blocks
 * the async signals for good (see above for the limits) */
static void block_signals_in_workers(void) {
    int nt = omp_get_max_threads();
    if (g_blocked_team >= nt) return;
#pragma omp parallel num_threads(nt)
    {
        if (omp_get_thread_num() != 0) pthread_sigmask(SIG_BLOCK, &g_async_sigs, NULL);
    }
    g_blocked_team = nt;
}

static void entry_run(PrimEntry *e, void *const *handles) {
    dnnl_exec_arg_t args[MAX_ARGS];
    for (int i = 0; i < e->n_args; i++) {
        DNNL_CHECK(dnnl_memory_set_data_handle(e->mem[i], handles[i]));
        args[i].arg = e->arg_ids[i];
        args[i].memory = e->mem[i];
    }
    dnnl_stream_t st = flip_dnnl_stream();
    sigset_t old;
    if (e->gemm_jit) {
        async_sigset();
        FLIP_CHECK(pthread_sigmask(SIG_BLOCK, &g_async_sigs, &old) == 0, "pthread_sigmask failed");
        block_signals_in_workers();
    }
    DNNL_CHECK(dnnl_primitive_execute(e->prim, st, e->n_args, args));
    DNNL_CHECK(dnnl_stream_wait(st));
    if (e->gemm_jit) FLIP_CHECK(pthread_sigmask(SIG_SETMASK, &old, NULL) == 0, "pthread_sigmask failed");
}

/* ---- precision ---- */
static FlipPrecision g_precision = FLIP_PRECISION_FP32;

void flip_set_precision(FlipPrecision p) {
    FLIP_CHECK(p == FLIP_PRECISION_FP32 || p == FLIP_PRECISION_BF16, "flip_set_precision: unknown precision %d", (int)p);
    if (p == FLIP_PRECISION_BF16)
        FLIP_CHECK(flip_cpu_has_bf16(),
                   "precision bf16 needs a CPU with AVX512-BF16 (avx512_bf16 in /proc/cpuinfo); use fp32 on this machine");
    g_precision = p;
}

FlipPrecision flip_get_precision(void) { return g_precision; }

int flip_precision_parse(const char *name) {
    if (strcmp(name, "fp32") == 0) return FLIP_PRECISION_FP32;
    if (strcmp(name, "bf16") == 0) return FLIP_PRECISION_BF16;
    return -1;
}

const char *flip_precision_name(FlipPrecision p) { return p == FLIP_PRECISION_BF16 ? "bf16" : "fp32"; }

int flip_cpu_has_bf16(void) {
    static int cached = -1;
    if (cached >= 0) return cached;
    cached = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return cached;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5) == 0) {
            cached = strstr(line, " avx512_bf16") != NULL;
            break;
        }
    }
    fclose(f);
    return cached;
}


/* The hardware conversion (VCVTNE2PS2BF16, AVX512-BF16): round to nearest
 * even like flip_bf16_round, NaN stays NaN; it flushes denormal inputs to zero,
 * which matmul operands never notice (oneDNN's own reorders do the same).
 * About 10x faster than the portable loop, which the baseline x86-64 build
 * cannot vectorise; the tail (< 32 elements) takes the portable loop. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define FLIP_HAVE_HW_BF16 1
__attribute__((target("avx512f,avx512bf16"))) static void bf16_convert_hw(uint16_t *dst, const float *src,
                                                                       size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 lo = _mm512_loadu_ps(src + i), hi = _mm512_loadu_ps(src + i + 16);
        __m512bh r = _mm512_cvtne2ps_pbh(hi, lo);
        _mm512_storeu_si512((void *)(dst + i), (__m512i)r);
    }
    for (; i < n; i++) dst[i] = flip_bf16_round(src[i]);
}
#else
#define FLIP_HAVE_HW_BF16 0
#endif

/* one thread's range */
static void bf16_convert_range(uint16_t *dst, const float *src, size_t n) {
#if FLIP_HAVE_HW_BF16
    if (flip_cpu_has_bf16()) {
        bf16_convert_hw(dst, src, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = flip_bf16_round(src[i]);
}

/* [0, n) split into one contiguous range per thread, multiples of 32 */
static void bf16_thread_range(size_t n, int tid, int nt, size_t *lo, size_t *len) {
    size_t per = (n + (size_t)nt - 1) / (size_t)nt;
    per = (per + 31) / 32 * 32;
    size_t a = per * (size_t)tid, b = a + per;
    if (a > n) a = n;
    if (b > n) b = n;
    *lo = a;
    *len = b - a;
}

void flip_f32_to_bf16(uint16_t *dst, const float *src, size_t n) {
    if (n < (size_t)1 << 16) {
        bf16_convert_range(dst, src, n);
        return;
    }
#pragma omp parallel
    {
        size_t lo, len;
        bf16_thread_range(n, omp_get_thread_num(), omp_get_num_threads(), &lo, &len);
        bf16_convert_range(dst + lo, src + lo, len);
    }
}

/* both matmul operands in ONE parallel region (each fork/join costs, and on a
 * shared machine a region can wait a time slice for its second thread);
 * a NULL src is skipped */
static void convert_operands(uint16_t *bs, const float *src, size_t ns, uint16_t *bw, const float *wei,
                             size_t nw) {
    if (ns + nw < (size_t)1 << 16) {
        bf16_convert_range(bs, src, ns);
        bf16_convert_range(bw, wei, nw);
        return;
    }
#pragma omp parallel
    {
        int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        size_t lo, len;
        bf16_thread_range(ns, tid, nt, &lo, &len);
        if (len) bf16_convert_range(bs + lo, src + lo, len);
        bf16_thread_range(nw, tid, nt, &lo, &len);
        if (len) bf16_convert_range(bw + lo, wei + lo, len);
    }
}

/* grow-only bf16 scratch for the matmul operands: grows only when a larger
 * shape appears (the first step, or a longer longest caption than so far);
 * lives until process exit */
static uint16_t *g_bf16_buf[2];
static size_t g_bf16_cap[2];

static uint16_t *bf16_scratch(int which, size_t n) {
    if (n > g_bf16_cap[which]) {
        flip_free(g_bf16_buf[which]);
        g_bf16_buf[which] = flip_malloc(flip_mul_size(n, sizeof(uint16_t), "bf16 scratch"), "bf16 scratch");
        g_bf16_cap[which] = n;
    }
    return g_bf16_buf[which];
}

static const float *g_last_src = NULL;
static size_t g_last_ns = 0;
static int g_src_unchanged = 0;

void flip_matmul_src_unchanged(void) { g_src_unchanged = 1; }

/* elements from the first to one past the last addressed by (dims, strides) */
static size_t span(int nd, const dnnl_dim_t *dims, const dnnl_dim_t *strides) {
    size_t last = 0;
    for (int i = 0; i < nd; i++) last += (size_t)(dims[i] - 1) * (size_t)strides[i];
    return last + 1;
}

/* ---- matmul ---- */
void flip_matmul_spec_init(FlipMatmulSpec *s, int ndims) {
    memset(s, 0, sizeof *s);
    FLIP_CHECK(ndims >= 2 && ndims <= 4, "flip_matmul: ndims %d not in 2..4", ndims);
    s->ndims = ndims;
    s->alpha = 1.0f;
}

static void matmul_key(PrimKey *k, const FlipMatmulSpec *s) {
    memset(k, 0, sizeof *k);
    k->kind = KIND_MATMUL;
    /* copy field by field so padding bytes of the key stay zero */
    k->mm.ndims = s->ndims;
    for (int i = 0; i < s->ndims; i++) {
        k->mm.src_dims[i] = s->src_dims[i]; k->mm.src_strides[i] = s->src_strides[i];
        k->mm.wei_dims[i] = s->wei_dims[i]; k->mm.wei_strides[i] = s->wei_strides[i];
        k->mm.dst_dims[i] = s->dst_dims[i]; k->mm.dst_strides[i] = s->dst_strides[i];
    }
    k->mm.has_bias = s->has_bias;
    k->mm.accumulate = s->accumulate;
    k->mm.gelu = s->gelu;
    k->mm.alpha = s->alpha;
    k->mm.src_bf16 = s->src_bf16;
    k->mm.wei_bf16 = s->wei_bf16;
    k->mm.dst_bf16 = s->dst_bf16;
    k->bf16 = g_precision == FLIP_PRECISION_BF16;
    k->prefer_gemm = prefer_gemm(s, k->bf16);
}

void flip_matmul_mixed(const FlipMatmulSpec *s, void *dst, const void *src, const void *wei,
                       const float *bias) {
    PrimKey k;
    matmul_key(&k, s);
    PrimEntry *e = cache_get(&k);
    void *h[4] = {(void *)src, (void *)wei, dst, (void *)bias};
    if (k.bf16 && !(s->src_bf16 && s->wei_bf16)) {
        FLIP_PROF_BEGIN(FLIP_PROF_BF16);
        size_t ns = s->src_bf16 ? 0 : span(s->ndims, s->src_dims, s->src_strides);
        size_t nw = s->wei_bf16 ? 0 : span(s->ndims, s->wei_dims, s->wei_strides);
        const float *fsrc = s->src_bf16 ? NULL : (const float *)src;
        int reuse = fsrc && g_src_unchanged && fsrc == g_last_src && ns == g_last_ns;
        uint16_t *bs = ns ? bf16_scratch(0, ns) : NULL, *bw = nw ? bf16_scratch(1, nw) : NULL;
        convert_operands(bs, reuse ? NULL : fsrc, reuse ? 0 : ns, bw, s->wei_bf16 ? NULL : (const float *)wei, nw);
        if (fsrc) {
            g_last_src = fsrc;
            g_last_ns = ns;
            h[0] = bs;
        }
        if (!s->wei_bf16) h[1] = bw;
        FLIP_PROF_END();
    }
    g_src_unchanged = 0;
    entry_run(e, h);
}

void flip_matmul(const FlipMatmulSpec *s, float *dst, const float *src, const float *wei,
                 const float *bias) {
    FLIP_CHECK(!(s->src_bf16 || s->wei_bf16 || s->dst_bf16), "flip_matmul: bf16 operands go to flip_matmul_mixed");
    flip_matmul_mixed(s, dst, src, wei, bias);
}

const char *flip_matmul_impl(const FlipMatmulSpec *s) {
    PrimKey k;
    matmul_key(&k, s);
    return cache_get(&k)->impl;
}
