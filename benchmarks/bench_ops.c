/* bench_ops.c — GFLOP/s of flip's matmul ops (linear fwd/bwd, linear+GELU,
 * attention fwd/bwd) on the transformer-block shapes of the ViT-S/16 and tiny
 * presets at mask ratios 0 / 0.5 / 0.75, and of their text towers (rows
 * s16-text, tiny-txt: all T tokens valid, no key padding mask), next to an
 * sgemm peak of the same machine (oneDNN f32 matmul 2048^3 through the same
 * primitive cache, and OpenBLAS cblas_sgemm 2048^3).
 *
 * FLOPs counted: linear fwd 2 M IC OC, bwd 4 M IC OC (dinp + dweight; the
 * bias sum and GELU are not counted); attention fwd 4 B T^2 C (S and P v),
 * bwd 8 B T^2 C (dV, dP, dQ, dK); softmax / dS loops not counted but timed.
 *
 * Columns fwd%pk / bwd%pk: the rate as % of a oneDNN 1024^3 matmul measured
 * just before the row (pk1024); BLOCK rows use the mean of their rows' peaks.
 *
 * Usage: bench_ops [--seconds S] [--preset all|vit-s16|tiny] [--no-blas] [--cpu-clock]
 *                  [--precision fp32|bf16] [--matmul-impl auto|gemm|brgemm]
 * --matmul-impl gemm|brgemm: every f32-destination matmul on oneDNN's gemm:jit
 * (where offered) or on its first choice (brgemm), instead of flip's default choice per
 * product (auto; flip_matmul_set_impl in dnnl_util.h); the peak rows use the
 * same choice.
 * --precision bf16: the linear rows (and the oneDNN peak) run flip's bf16
 * matmul path, conversions included (dnnl_util.h); the attention rows run
 * attention_forward_b / _backward_b (bf16 qkv, out, dqkv; f32 dout) twice:
 * "att-bf16" with the bf16 arithmetic kernel (what training uses; counted in
 * BLOCK) and "att-widen" with it disabled (bf16 widened to f32, f32 kernel).
 * --cpu-clock times with process CPU time instead of wall time: with
 * OMP_NUM_THREADS=1 this is robust to other processes on a shared machine.
 * Run with OMP_NUM_THREADS set to the cores to use (2 here); other load on the
 * machine shifts absolute numbers, so compare ratios within one run.
 */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "dnnl_util.h"
#include "ops.h"
#include "rng.h"

/* wall clock, or process CPU time with --cpu-clock (robust to other load on a
 * shared machine, meaningful with OMP_NUM_THREADS=1 only) */
static clockid_t g_clock = CLOCK_MONOTONIC;

static double now(void) {
    struct timespec ts;
    clock_gettime(g_clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fill(float *x, size_t n, uint64_t a, double sd) {
    Rng r;
    rng_init(&r, 77, FLIP_RNG_TEST, a, 0);
    for (size_t i = 0; i < n; i++) x[i] = (float)(sd * (rng_uniform(&r) * 2.0 - 1.0));
}

typedef void (*BenchFn)(void *ctx);

/* seconds per call: one warm-up (creates primitives), then best of 3 trials,
 * each repeating the call until budget/3 seconds have passed */
static double time_op(BenchFn fn, void *ctx, double budget) {
    fn(ctx);
    double best = 1e30;
    for (int trial = 0; trial < 3; trial++) {
        int reps = 0;
        double t0 = now(), t;
        do {
            fn(ctx);
            reps++;
            t = now();
        } while (t - t0 < budget / 3.0);
        double per = (t - t0) / reps;
        if (per < best) best = per;
    }
    return best;
}

/* ---- linear ---- */
typedef struct {
    int M, IC, OC, gelu;
    float *x, *w, *b, *y, *pre, *dy, *dx, *dw, *db, *scr;
} LinCtx;

static void lin_fwd(void *p) {
    LinCtx *c = p;
    if (c->gelu) linear_gelu_forward(c->y, c->pre, c->x, c->w, c->b, c->M, c->IC, c->OC);
    else linear_forward(c->y, c->x, c->w, c->b, c->M, c->IC, c->OC);
}

static void lin_bwd(void *p) {
    LinCtx *c = p;
    if (c->gelu)
        linear_gelu_backward(c->dx, c->dw, c->db, c->scr, c->dy, c->pre, c->x, c->w, c->M, c->IC, c->OC);
    else linear_backward(c->dx, c->dw, c->db, c->dy, c->x, c->w, c->M, c->IC, c->OC);
}

/* ---- attention ---- */
typedef struct {
    int B, T, C, H;
    float *qkv, *out, *dout, *dqkv, *scr;
    uint16_t *qkv_b, *out_b, *dqkv_b; /* --precision bf16 */
    size_t n_scr;
} AttCtx;

static void att_fwd(void *p) {
    AttCtx *c = p;
    attention_forward(c->out, NULL, c->scr, c->n_scr, c->qkv, NULL, c->B, c->T, c->C, c->H);
}

static void att_bwd(void *p) {
    AttCtx *c = p;
    attention_backward(c->dqkv, c->scr, c->n_scr, c->dout, c->qkv, NULL, c->B, c->T, c->C, c->H);
}

static void att_fwd_b(void *p) {
    AttCtx *c = p;
    attention_forward_b(c->out_b, NULL, c->scr, c->n_scr, c->qkv_b, NULL, c->B, c->T, c->C, c->H);
}

static void att_bwd_b(void *p) {
    AttCtx *c = p;
    attention_backward_b(c->dqkv_b, c->scr, c->n_scr, c->dout, c->qkv_b, NULL, c->B, c->T, c->C, c->H);
}

/* ---- peaks ---- */
typedef struct {
    int n;
    float *a, *b, *c;
} GemmCtx;

static void peak_dnnl_gemm(void *p) {
    GemmCtx *g = p;
    FlipMatmulSpec s;
    flip_matmul_spec_init(&s, 2);
    s.src_dims[0] = s.src_dims[1] = g->n;
    s.wei_dims[0] = s.wei_dims[1] = g->n;
    s.dst_dims[0] = s.dst_dims[1] = g->n;
    s.src_strides[0] = s.wei_strides[0] = s.dst_strides[0] = g->n;
    s.src_strides[1] = s.wei_strides[1] = s.dst_strides[1] = 1;
    flip_matmul(&s, g->c, g->a, g->b, NULL);
}

static void peak_blas_gemm(void *p) {
    GemmCtx *g = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->n, g->n, g->n, 1.0f, g->a, g->n,
                g->b, g->n, 0.0f, g->c, g->n);
}

/* GFLOP/s of a oneDNN 1024^3 matmul measured right before each row: the
 * machine is shared, so each row's rates are also given as % of this local
 * peak (adjacent in time, hence comparable across rows under varying load). */
static GemmCtx g_local;
static double g_local_peak, g_peak_sum;
static int g_peak_n;

static void measure_local_peak(double budget) {
    double t = time_op(peak_dnnl_gemm, &g_local, budget / 2);
    g_local_peak = 2.0 * g_local.n * g_local.n * (double)g_local.n / t * 1e-9;
    g_peak_sum += g_local_peak;
    g_peak_n++;
}

static void row(const char *preset, double mask, const char *op, const char *shape, double flops_f,
                double tf, double flops_b, double tb) {
    double gf = flops_f / tf * 1e-9, gb = flops_b / tb * 1e-9;
    printf("%-8s %5.2f  %-10s %-22s %9.3f %8.1f %9.3f %8.1f %6.0f %6.0f %6.1f\n", preset, mask, op, shape,
           tf * 1e3, gf, tb * 1e3, gb, 100.0 * gf / g_local_peak, 100.0 * gb / g_local_peak,
           g_local_peak);
}

/* text: the text tower's blocks (T tokens per caption, never masked) */
static void bench_preset(const char *preset, int B, int Np, int C, int H, int text, double budget) {
    const double masks[3] = {0.0, 0.5, 0.75};
    for (int mi = 0; mi < (text ? 1 : 3); mi++) {
        int N = (int)((double)Np * (1.0 - masks[mi]));
        int M = B * N;
        g_peak_sum = 0;
        g_peak_n = 0;
        double tot_f = 0, tot_b = 0, tot_ff = 0, tot_fb = 0;
        /* the four linears of a block */
        struct { const char *name; int IC, OC, gelu; } L[4] = {
            {"qkv", C, 3 * C, 0}, {"proj", C, C, 0}, {"fc1+gelu", C, 4 * C, 1}, {"fc2", 4 * C, C, 0}};
        for (int li = 0; li < 4; li++) {
            LinCtx c = {M, L[li].IC, L[li].OC, L[li].gelu, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
            size_t nx = (size_t)M * c.IC, nw = (size_t)c.OC * c.IC, ny = (size_t)M * c.OC;
            c.x = flip_malloc(nx * 4, "x"); c.w = flip_malloc(nw * 4, "w");
            c.b = flip_malloc((size_t)c.OC * 4, "b"); c.y = flip_malloc(ny * 4, "y");
            c.pre = flip_malloc(ny * 4, "pre"); c.dy = flip_malloc(ny * 4, "dy");
            c.dx = flip_malloc(nx * 4, "dx"); c.dw = flip_malloc(nw * 4, "dw");
            c.db = flip_malloc((size_t)c.OC * 4, "db"); c.scr = flip_malloc(ny * 4, "scr");
            fill(c.x, nx, 1, 1.0); fill(c.w, nw, 2, 0.05); fill(c.b, c.OC, 3, 0.1);
            fill(c.dy, ny, 4, 1.0); fill(c.dx, nx, 5, 0.0); fill(c.dw, nw, 6, 0.0);
            fill(c.db, c.OC, 7, 0.0);
            lin_fwd(&c);
            measure_local_peak(budget);
            double tf = time_op(lin_fwd, &c, budget), tb = time_op(lin_bwd, &c, budget);
            double ff = 2.0 * M * c.IC * c.OC, fb = 2 * ff;
            char shape[64];
            snprintf(shape, sizeof shape, "%dx%d->%d", M, c.IC, c.OC);
            row(preset, masks[mi], L[li].name, shape, ff, tf, fb, tb);
            tot_f += tf; tot_b += tb; tot_ff += ff; tot_fb += fb;
            float *bufs[] = {c.x, c.w, c.b, c.y, c.pre, c.dy, c.dx, c.dw, c.db, c.scr};
            for (int i = 0; i < 10; i++) flip_free(bufs[i]);
        }
        {
            AttCtx c = {B, N, C, H, 0, 0, 0, 0, 0, 0, 0, 0, 0};
            size_t nq = (size_t)B * N * 3 * C, no = (size_t)B * N * C;
            c.n_scr = attention_scratch_floats(N, C, H, omp_get_max_threads());
            c.qkv = flip_malloc(nq * 4, "qkv"); c.out = flip_malloc(no * 4, "out");
            c.dout = flip_malloc(no * 4, "dout");
            c.dqkv = flip_malloc(nq * 4, "dqkv"); c.scr = flip_malloc(c.n_scr * 4, "scr");
            fill(c.qkv, nq, 8, 1.0); fill(c.dout, no, 9, 1.0); fill(c.dqkv, nq, 10, 0.0);
            /* model flops: backward's recompute of S (ff / 2) is not counted */
            double ff = 4.0 * B * (double)N * N * C, fb = 2 * ff;
            char shape[64];
            snprintf(shape, sizeof shape, "B%d T%d C%d H%d", B, N, C, H);
            if (flip_get_precision() == FLIP_PRECISION_BF16) {
                c.qkv_b = flip_malloc(nq * 2, "qkv_b"); c.out_b = flip_malloc(no * 2, "out_b");
                c.dqkv_b = flip_malloc(nq * 2, "dqkv_b");
                for (size_t i = 0; i < nq; i++) c.qkv_b[i] = flip_bf16_round(c.qkv[i]);
                /* the widen path first, then the kernel (counted in BLOCK) */
                int prev = attention_set_bf16_kernel(0);
                measure_local_peak(budget);
                double tf = time_op(att_fwd_b, &c, budget), tb = time_op(att_bwd_b, &c, budget);
                row(preset, masks[mi], "att-widen", shape, ff, tf, fb, tb);
                attention_set_bf16_kernel(1);
                measure_local_peak(budget);
                tf = time_op(att_fwd_b, &c, budget);
                tb = time_op(att_bwd_b, &c, budget);
                row(preset, masks[mi], attention_bf16_kernel_used(N, C, H) ? "att-bf16" : "att-bf16?", shape, ff, tf,
                    fb, tb);
                attention_set_bf16_kernel(prev);
                tot_f += tf; tot_b += tb; tot_ff += ff; tot_fb += fb;
                flip_free(c.qkv_b); flip_free(c.out_b); flip_free(c.dqkv_b);
            } else {
                measure_local_peak(budget);
                double tf = time_op(att_fwd, &c, budget), tb = time_op(att_bwd, &c, budget);
                row(preset, masks[mi], "attention", shape, ff, tf, fb, tb);
                tot_f += tf; tot_b += tb; tot_ff += ff; tot_fb += fb;
            }
            float *bufs[] = {c.qkv, c.out, c.dout, c.dqkv, c.scr};
            for (int i = 0; i < 5; i++) flip_free(bufs[i]);
        }
        g_local_peak = g_peak_sum / g_peak_n; /* the block's rows' mean local peak */
        row(preset, masks[mi], "BLOCK", "(all of the above)", tot_ff, tot_f, tot_fb, tot_b);
    }
}

int main(int argc, char **argv) {
    double budget = 0.6;
    const char *which = "all";
    int blas = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) budget = atof(argv[++i]);
        else if (!strcmp(argv[i], "--preset") && i + 1 < argc) which = argv[++i];
        else if (!strcmp(argv[i], "--no-blas")) blas = 0;
        else if (!strcmp(argv[i], "--cpu-clock")) g_clock = CLOCK_PROCESS_CPUTIME_ID;
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) {
            int pr = flip_precision_parse(argv[++i]);
            FLIP_CHECK(pr >= 0, "bench_ops: --precision '%s' unknown (use fp32 or bf16)", argv[i]);
            flip_set_precision((FlipPrecision)pr);
        }
        else if (!strcmp(argv[i], "--matmul-impl") && i + 1 < argc) {
            const char *v = argv[++i];
            int mi = flip_matmul_impl_parse(v);
            FLIP_CHECK(mi >= 0, "bench_ops: --matmul-impl '%s' unknown (use auto, gemm or brgemm)", v);
            flip_matmul_set_impl((FlipMatmulImpl)mi);
        }
        else FLIP_FATAL("bench_ops: unknown argument '%s'; usage: bench_ops [--seconds S] [--preset all|vit-s16|tiny] [--no-blas] [--cpu-clock] [--precision fp32|bf16] [--matmul-impl auto|gemm|brgemm]", argv[i]);
    }
    FLIP_CHECK(budget > 0, "bench_ops: --seconds must be > 0");
    FLIP_CHECK(g_clock == CLOCK_MONOTONIC || omp_get_max_threads() == 1,
               "bench_ops: --cpu-clock needs OMP_NUM_THREADS=1 (CPU time sums over threads)");
    printf("# bench_ops: OMP threads %d, %.2f s per measurement (best of 3 trials), %s clock\n",
           omp_get_max_threads(), budget, g_clock == CLOCK_MONOTONIC ? "wall" : "process CPU");

    GemmCtx g = {2048, 0, 0, 0};
    size_t n2 = (size_t)g.n * g.n;
    g.a = flip_malloc(n2 * 4, "A"); g.b = flip_malloc(n2 * 4, "B"); g.c = flip_malloc(n2 * 4, "C");
    fill(g.a, n2, 11, 1.0); fill(g.b, n2, 12, 1.0);
    double fl = 2.0 * g.n * g.n * (double)g.n;
    double td = time_op(peak_dnnl_gemm, &g, budget);
    printf("# peak: oneDNN f32 matmul %d^3: %.1f GFLOP/s\n", g.n, fl / td * 1e-9);
    if (blas) {
        double tbl = time_op(peak_blas_gemm, &g, budget);
        printf("# peak: OpenBLAS cblas_sgemm %d^3 (its own threads): %.1f GFLOP/s\n", g.n, fl / tbl * 1e-9);
    }
    flip_free(g.a); flip_free(g.b); flip_free(g.c);

    g_local.n = 1024;
    size_t n1 = (size_t)g_local.n * g_local.n;
    g_local.a = flip_malloc(n1 * 4, "A1"); g_local.b = flip_malloc(n1 * 4, "B1");
    g_local.c = flip_malloc(n1 * 4, "C1");
    fill(g_local.a, n1, 13, 1.0); fill(g_local.b, n1, 14, 1.0);
    printf("%-8s %5s  %-10s %-22s %9s %8s %9s %8s %6s %6s %6s\n", "preset", "mask", "op", "shape", "fwd ms",
           "GFLOP/s", "bwd ms", "GFLOP/s", "fwd%pk", "bwd%pk", "pk1024");
    if (!strcmp(which, "all") || !strcmp(which, "vit-s16")) {
        bench_preset("vit-s16", 64, 196, 384, 6, 0, budget);
        bench_preset("s16-text", 64, 32, 256, 4, 1, budget);
    }
    if (!strcmp(which, "all") || !strcmp(which, "tiny")) {
        bench_preset("tiny", 256, 64, 192, 3, 0, budget);
        bench_preset("tiny-txt", 256, 32, 128, 2, 1, budget);
    }
    flip_free(g_local.a); flip_free(g_local.b); flip_free(g_local.c);
    return 0;
}
