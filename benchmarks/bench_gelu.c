/* bench_gelu.c — ns per element of the exact-GELU kernels: flip's own
 * (core/gelu.c: gelu_forward, gelu_backward_store, gelu_backward) next to
 * oneDNN's eltwise gelu_erf (flip_gelu_forward_dnnl / _backward_dnnl, what
 * linear_gelu used before) and a memory-bound reference pass
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

static void run(int v, float *out, float *dinp, const float *x, const float *dout, size_t n) {
    switch (v) {
    case V_DNNL_FWD: flip_gelu_forward_dnnl(out, x, n); break;
    case V_FLIP_FWD: gelu_forward(out, x, n); break;
    case V_DNNL_BWD: flip_gelu_backward_dnnl(dinp, dout, x, n); break;
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
