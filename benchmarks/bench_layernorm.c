/* bench_layernorm.c — ms per call of the LayerNorm kernels (core/layernorm.c)
 * on token rows: layernorm_forward, layernorm_forward_b, layernorm_apply_b
 * (the backward's recompute from saved mean/rstd) and layernorm_backward.
 *
 * The kernels run interleaved, round after round; each reports its best
 * round, so load from other processes hits all of them alike.
 *
 * Usage: bench_layernorm [--rows M] [--cols C] [--rounds R]
 * (default M 3136 = 16 x 196 vit-s16 tokens, C 384, R 15). Run with
 * OMP_NUM_THREADS=1 for per-core figures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "ops.h"
#include "rng.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fill(float *x, size_t n, uint64_t stream, double sd) {
    Rng r;
    rng_init(&r, 5, FLIP_RNG_TEST, stream, 0);
    for (size_t i = 0; i < n; i++) x[i] = (float)(sd * rng_normal(&r));
}

enum { K_FWD, K_FWD_B, K_APPLY_B, K_BWD, K_COUNT };
static const char *const K_NAME[K_COUNT] = {"layernorm_forward", "layernorm_forward_b",
                                             "layernorm_apply_b", "layernorm_backward (+=)"};

int main(int argc, char **argv) {
    int M = 3136, C = 384, rounds = 15;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--rows") == 0) M = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--cols") == 0) C = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--rounds") == 0) rounds = atoi(argv[++i]);
        else FLIP_FATAL("bench_layernorm: unknown argument '%s'; usage: bench_layernorm [--rows M] [--cols C] [--rounds R]", argv[i]);
    }
    FLIP_CHECK(M > 0 && C > 0 && rounds > 0, "bench_layernorm: --rows, --cols and --rounds must be positive");
    size_t n = (size_t)M * (size_t)C;
    float *x = flip_malloc(n * sizeof(float), "x"), *y = flip_malloc(n * sizeof(float), "y");
    float *dy = flip_malloc(n * sizeof(float), "dy"), *dx = flip_calloc(n, sizeof(float), "dx");
    float *w = flip_malloc((size_t)C * sizeof(float), "w"), *b = flip_malloc((size_t)C * sizeof(float), "b");
    float *dw = flip_calloc((size_t)C, sizeof(float), "dw"), *db = flip_calloc((size_t)C, sizeof(float), "db");
    float *mean = flip_malloc((size_t)M * sizeof(float), "mean"), *rstd = flip_malloc((size_t)M * sizeof(float), "rstd");
    uint16_t *yb = flip_malloc(n * sizeof(uint16_t), "yb");
    fill(x, n, 1, 2.0);
    fill(dy, n, 2, 1.0);
    fill(w, (size_t)C, 3, 1.0);
    fill(b, (size_t)C, 4, 0.5);
    double best[K_COUNT];
    for (int k = 0; k < K_COUNT; k++) best[k] = 1e30;
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < K_COUNT; k++) {
            double t0 = now();
            switch (k) {
                case K_FWD: layernorm_forward(y, mean, rstd, x, w, b, M, C); break;
                case K_FWD_B: layernorm_forward_b(yb, mean, rstd, x, w, b, M, C); break;
                case K_APPLY_B: layernorm_apply_b(yb, x, mean, rstd, w, b, M, C); break;
                default: layernorm_backward(dx, dw, db, dy, x, mean, rstd, w, M, C); break;
            }
            double t = now() - t0;
            if (t < best[k]) best[k] = t;
        }
    printf("# bench_layernorm: M %d C %d, best of %d interleaved rounds\n", M, C, rounds);
    for (int k = 0; k < K_COUNT; k++) printf("%-26s %8.3f ms\n", K_NAME[k], 1e3 * best[k]);
    flip_free(x); flip_free(y); flip_free(dy); flip_free(dx); flip_free(w); flip_free(b);
    flip_free(dw); flip_free(db); flip_free(mean); flip_free(rstd); flip_free(yb);
    return 0;
}
