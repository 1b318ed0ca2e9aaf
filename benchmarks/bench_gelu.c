/* bench_gelu.c — ns per element of the exact-GELU kernels: flip's own
 * (core/gelu.c: gelu_forward, gelu_backward_store, gelu_backward) next to
 * oneDNN's eltwise gelu_erf (built here; what linear_gelu used before) and a memory-bound reference pass
 * (residual_forward: read 2, write 1).
 *
 * The variants run interleaved, round after round, and each reports its
 * median over the rounds, so load from other processes on a shared machine
 * hits all of them alike. Inputs N(0, 2) (the pre-activations of an MLP).
 *
 * Usage: bench_gelu [--n N] [--rounds R] [--cpu-clock]
 * Run with OMP_NUM_THREADS=1 for per-core figures. --cpu-clock times with
 * process CPU time (meaningful with one thread only). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "dnnl_util.h"
#include "ops.h"
#include "rng.h"

static clockid_t g_clock = CLOCK_MONOTONIC;

static double now(void) {
    struct timespec ts;
    clock_gettime(g_clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum { V_DNNL_FWD, V_FLIP_FWD, V_DNNL_BWD, V_FLIP_BWD_STORE, V_FLIP_BWD_ADD, V_RESIDUAL, V_COUNT };
static const char *const V_NAME[V_COUNT] = {
    "oneDNN gelu_erf forward", "flip gelu_forward", "oneDNN gelu_erf backward (store)",
    "flip gelu_backward_store", "flip gelu_backward (+=)", "residual_forward (r2 w1)"};

/* oneDNN's eltwise gelu_erf over n floats: forward dst = GELU(src), backward
 * dst = GELU'(src) * dout; primitives built on first use (one n per run) */
static void dnnl_gelu(int backward, float *dst, const float *src, const float *dout, size_t n) {
    static dnnl_primitive_t prim[2];
    static dnnl_memory_t mem[3];
    dnnl_engine_t eng = flip_dnnl_engine();
    if (!prim[0]) {
        dnnl_memory_desc_t md;
        dnnl_dims_t dims = {(dnnl_dim_t)n};
        DNNL_CHECK(dnnl_memory_desc_init_by_tag(&md, 1, dims, dnnl_f32, dnnl_a));
        dnnl_eltwise_desc_t fd, bd;
        DNNL_CHECK(dnnl_eltwise_forward_desc_init(&fd, dnnl_forward_training, dnnl_eltwise_gelu_erf, &md, 0.f, 0.f));
        DNNL_CHECK(dnnl_eltwise_backward_desc_init(&bd, dnnl_eltwise_gelu_erf, &md, &md, 0.f, 0.f));
        dnnl_primitive_desc_t fpd, bpd;
        DNNL_CHECK(dnnl_primitive_desc_create(&fpd, &fd, NULL, eng, NULL));
        DNNL_CHECK(dnnl_primitive_desc_create(&bpd, &bd, NULL, eng, fpd));
        DNNL_CHECK(dnnl_primitive_create(&prim[0], fpd));
        DNNL_CHECK(dnnl_primitive_create(&prim[1], bpd));
        DNNL_CHECK(dnnl_primitive_desc_destroy(fpd));
        DNNL_CHECK(dnnl_primitive_desc_destroy(bpd));
        for (int i = 0; i < 3; i++) DNNL_CHECK(dnnl_memory_create(&mem[i], &md, eng, DNNL_MEMORY_NONE));
    }
    DNNL_CHECK(dnnl_memory_set_data_handle(mem[0], (void *)src));
    DNNL_CHECK(dnnl_memory_set_data_handle(mem[1], dst));
    DNNL_CHECK(dnnl_memory_set_data_handle(mem[2], (void *)dout));
    dnnl_exec_arg_t fa[2] = {{DNNL_ARG_SRC, mem[0]}, {DNNL_ARG_DST, mem[1]}};
    dnnl_exec_arg_t ba[3] = {{DNNL_ARG_SRC, mem[0]}, {DNNL_ARG_DIFF_DST, mem[2]}, {DNNL_ARG_DIFF_SRC, mem[1]}};
    DNNL_CHECK(dnnl_primitive_execute(prim[backward], flip_dnnl_stream(), backward ? 3 : 2, backward ? ba : fa));
    DNNL_CHECK(dnnl_stream_wait(flip_dnnl_stream()));
}

static void run(int v, float *out, float *dinp, const float *x, const float *dout, size_t n) {
    switch (v) {
    case V_DNNL_FWD: dnnl_gelu(0, out, x, NULL, n); break;
    case V_FLIP_FWD: gelu_forward(out, x, n); break;
    case V_DNNL_BWD: dnnl_gelu(1, dinp, x, dout, n); break;
    case V_FLIP_BWD_STORE: gelu_backward_store(dinp, dout, x, n); break;
    case V_FLIP_BWD_ADD: gelu_backward(dinp, dout, x, n); break;
    default: residual_forward(out, x, dout, n); break;
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    size_t n = (size_t)1 << 22;
    int rounds = 15;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc) n = (size_t)strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cpu-clock")) g_clock = CLOCK_PROCESS_CPUTIME_ID;
        else {
            fprintf(stderr, "bench_gelu: unknown or incomplete flag '%s'; usage: bench_gelu "
                            "[--n N] [--rounds R] [--cpu-clock]\n", argv[i]);
            return 2;
        }
    }
    FLIP_CHECK(n > 0 && rounds > 0, "bench_gelu: --n and --rounds must be positive");
    float *x = flip_malloc(n * sizeof(float), "x");
    float *dout = flip_malloc(n * sizeof(float), "dout");
    float *out = flip_malloc(n * sizeof(float), "out");
    float *dinp = flip_calloc(n, sizeof(float), "dinp");
    Rng r;
    rng_init(&r, 5, FLIP_RNG_TEST, 1, 0);
    for (size_t i = 0; i < n; i++) x[i] = (float)(2.0 * rng_normal(&r));
    for (size_t i = 0; i < n; i++) dout[i] = (float)rng_normal(&r);
    double *t = flip_malloc((size_t)rounds * V_COUNT * sizeof(double), "times");
    for (int v = 0; v < V_COUNT; v++) run(v, out, dinp, x, dout, n); /* warm-up, primitives */
    /* repeat each call so one timing covers >= ~20 ms */
    int reps = (int)(5e6 / (double)n) + 1;
    for (int k = 0; k < rounds; k++) {
        for (int v = 0; v < V_COUNT; v++) {
            double t0 = now();
            for (int j = 0; j < reps; j++) run(v, out, dinp, x, dout, n);
            t[(size_t)v * rounds + k] = (now() - t0) / reps / (double)n * 1e9;
        }
    }
    printf("bench_gelu: n=%zu (%.1f MiB per array), %d rounds x %d calls, median ns/element\n", n,
           (double)n * 4.0 / 1048576.0, rounds, reps);
    for (int v = 0; v < V_COUNT; v++) {
        double *tv = t + (size_t)v * rounds;
        qsort(tv, (size_t)rounds, sizeof(double), cmp_double);
        printf("  %-34s %7.3f ns/elem  (min %.3f, max %.3f)\n", V_NAME[v], tv[rounds / 2], tv[0],
               tv[rounds - 1]);
    }
    flip_free(t);
    flip_free(x);
    flip_free(dout);
    flip_free(out);
    flip_free(dinp);
    return 0;
}
