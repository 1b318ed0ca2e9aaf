/* test_matmul_signals.c — signals arriving while oneDNN's gemm:jit kernels
 * run must not corrupt memory (dnnl_util.c: those kernels point rsp into the
 * heap, so a handler's frame would land there; flip runs them with the
 * asynchronous signals blocked).
 *
 * A firing thread sends SIGUSR1 (handled: a counter) to every OpenMP thread
 * and to the process as fast as it can while the main thread runs linear
 * forward / backward (gemm:jit where oneDNN offers it) many times, with
 * malloc/free churn in between (glibc aborts on a corrupted heap). Every
 * result must equal, bitwise, the one computed before the firing started, and
 * the signals must actually have been delivered. Without the blocking, this
 * aborted with "corrupted size vs. prev_size" or a bad free within the first
 * iterations. This covers dnnl_util.c's per-call blocking (the layer for
 * programs that did not call flip_block_async_signals); flip-train's
 * process-wide blocking with a signal thread is covered by
 * tests/launch/test_train_resume.sh (SIGTERM mid-run, then bit-exact resume). */
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "dnnl_util.h"
#include "ops.h"
#include "rng.h"
#include "testlib.h"

#define MAX_THREADS 64

static atomic_long g_delivered;
static atomic_int g_stop;
static pthread_t g_team[MAX_THREADS];
static int g_n_team;

static void on_usr1(int sig) {
    (void)sig;
    atomic_fetch_add(&g_delivered, 1);
}

static void *firer(void *arg) {
    (void)arg;
    struct timespec pause = {0, 20000}; /* 20 us */
    while (!atomic_load(&g_stop)) {
        for (int t = 0; t < g_n_team; t++) pthread_kill(g_team[t], SIGUSR1);
        kill(getpid(), SIGUSR1);
        nanosleep(&pause, NULL);
    }
    return NULL;
}

static void fill(float *x, size_t n, uint64_t a) {
    Rng r;
    rng_init(&r, 99, FLIP_RNG_TEST, a, 0);
    for (size_t i = 0; i < n; i++) x[i] = (float)(rng_uniform(&r) * 2.0 - 1.0);
}

typedef struct {
    int M, IC, OC;
    float *x, *w, *b, *y, *dx, *dw, *db;
} Job;

static void run(Job *j) {
    linear_forward(j->y, j->x, j->w, j->b, j->M, j->IC, j->OC);
    memset(j->dw, 0, (size_t)j->OC * j->IC * sizeof(float));
    memset(j->db, 0, (size_t)j->OC * sizeof(float));
    linear_backward(j->dx, j->dw, j->db, j->y, j->x, j->w, j->M, j->IC, j->OC);
}

static float *copy_of(const float *p, size_t n) {
    float *c = flip_malloc(n * sizeof(float), "copy");
    memcpy(c, p, n * sizeof(float));
    return c;
}

int main(void) {
    omp_set_num_threads(2);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    FLIP_CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction failed");

    Job j = {512, 192, 576, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    size_t nx = (size_t)j.M * j.IC, nw = (size_t)j.OC * j.IC, ny = (size_t)j.M * j.OC;
    j.x = flip_malloc(nx * sizeof(float), "x");
    j.w = flip_malloc(nw * sizeof(float), "w");
    j.b = flip_malloc((size_t)j.OC * sizeof(float), "b");
    j.y = flip_malloc(ny * sizeof(float), "y");
    j.dx = flip_malloc(nx * sizeof(float), "dx");
    j.dw = flip_malloc(nw * sizeof(float), "dw");
    j.db = flip_malloc((size_t)j.OC * sizeof(float), "db");
    fill(j.x, nx, 1);
    fill(j.w, nw, 2);
    fill(j.b, (size_t)j.OC, 3);
    run(&j); /* creates the primitives */
    FlipMatmulSpec s;
    flip_matmul_spec_init(&s, 2);
    s.src_dims[0] = j.M; s.src_dims[1] = j.OC; s.src_strides[0] = j.OC; s.src_strides[1] = 1;
    s.wei_dims[0] = j.OC; s.wei_dims[1] = j.IC; s.wei_strides[0] = j.IC; s.wei_strides[1] = 1;
    s.dst_dims[0] = j.M; s.dst_dims[1] = j.IC; s.dst_strides[0] = j.IC; s.dst_strides[1] = 1;
    const char *impl = flip_matmul_impl(&s);
    TEST_CHECK(strstr(impl, "gemm:") != NULL, "linear backward's dinp matmul runs oneDNN's gemm:jit (%s): the "
               "kernel this test is about", impl);
    float *y0 = copy_of(j.y, ny), *dx0 = copy_of(j.dx, nx), *dw0 = copy_of(j.dw, nw);

#pragma omp parallel
    {
#pragma omp critical
        if (g_n_team < MAX_THREADS) g_team[g_n_team++] = pthread_self();
    }
    pthread_t th;
    FLIP_CHECK(pthread_create(&th, NULL, firer, NULL) == 0, "pthread_create failed");
    int n_diff = 0, iters = 150;
    for (int it = 0; it < iters; it++) {
        void *churn[16];
        for (int k = 0; k < 16; k++) churn[k] = flip_malloc((size_t)(64 + 4096 * k), "churn");
        run(&j);
        for (int k = 0; k < 16; k++) flip_free(churn[k]);
        n_diff += memcmp(j.y, y0, ny * sizeof(float)) != 0 || memcmp(j.dx, dx0, nx * sizeof(float)) != 0 ||
                  memcmp(j.dw, dw0, nw * sizeof(float)) != 0;
    }
    atomic_store(&g_stop, 1);
    pthread_join(th, NULL);
    long got = atomic_load(&g_delivered);
    TEST_CHECK(got > 100, "signals delivered during the matmuls: %ld", got);
    TEST_CHECK(n_diff == 0, "%d linear fwd/bwd runs under signal fire: %d differ from the quiet run, heap intact",
               iters, n_diff);
    float *bufs[] = {j.x, j.w, j.b, j.y, j.dx, j.dw, j.db, y0, dx0, dw0};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) flip_free(bufs[i]);
    return test_finish();
}
