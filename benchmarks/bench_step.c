/* bench_step.c — single-process FLIP training step throughput: masks +
 * forward + local InfoNCE + backward + AdamW (flip_model_loss_and_grad and
 * flip_model_adamw), as images/s and as MFU against an sgemm peak measured
 * in the same process: oneDNN f32 matmul 2048x2048x2048 through linear_forward
 * (the same primitive cache and OpenMP pool as the model; best of 5, measured
 * at start and again before and after every config — MFU uses the best of
 * the three, so load from other processes lowers MFU rather than inflating it).
 *
 * FLOPs: flip_config_train_flops (3 x forward matmul + attention FLOPs, kept
 * patches only — the same convention as ../shared/peers/torch_flip.py, minus
 * its B^2 D logits term, < 0.1 %).
 *
 * Usage: bench_step [--preset all|tiny|vit-s16|...] [--batch B] [--mask 0,0.5,0.75]
 *                   [--steps N] [--warmup N]
 *                   [--precision fp32|bf16] [--peak GFLOPS] [--peak-only]
 *                   [--matmul-impl auto|gemm|brgemm]
 * --precision bf16: linear-layer matmuls in bf16 with fp32 master weights
 * (dnnl_util.h); the measured peak is then the bf16 matmul's.
 * --matmul-impl gemm|brgemm: every f32-destination matmul on oneDNN's gemm:jit
 * (where offered) or on its first choice (brgemm), instead of flip's default choice per
 * product (auto; flip_matmul_set_impl in dnnl_util.h), for comparisons; the
 * peak is measured with the same choice.
 * Default (--preset all): tiny batch 256 and vit-s16 batch 64 at mask 0, 0.5,
 * 0.75 — the configurations of ../shared/peers/README.md. The PyTorch peer is
 * not quoted here: benchmarks/run measures it in the same run, side by side.
 * --peak G: use G GFLOP/s as the peak (no matmul measurement, so the peak
 * buffers stay out of the peak RSS); --peak-only: print the measured peak as
 * one JSON line and exit. Prints a table on stdout, one JSON line per config,
 * and the peak RSS. Run with OMP_NUM_THREADS = cores (2 here); other load on
 * the machine shifts absolute numbers.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common.h"
#include "dnnl_util.h"
#include "model.h"
#include "ops.h"
#include "prof.h"
#include "rng.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double peak_rss_mib(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1.0;
    return (double)ru.ru_maxrss / 1024.0; /* Linux: KiB */
}

/* oneDNN f32 matmul n^3 through linear_forward: best GFLOP/s of `reps`. */
static double measure_peak(int n, int reps) {
    size_t nn = (size_t)n * (size_t)n;
    float *a = flip_malloc(nn * sizeof(float), "peak a");
    float *w = flip_malloc(nn * sizeof(float), "peak w");
    float *c = flip_malloc(nn * sizeof(float), "peak c");
    Rng r;
    rng_init(&r, 1, FLIP_RNG_TEST, 0, 0);
    for (size_t i = 0; i < nn; i++) {
        a[i] = (float)(rng_uniform(&r) - 0.5);
        w[i] = (float)(rng_uniform(&r) - 0.5);
    }
    linear_forward(c, a, w, NULL, n, n, n); /* primitive creation, warm caches */
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
        double t0 = now();
        linear_forward(c, a, w, NULL, n, n, n);
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    flip_free(a);
    flip_free(w);
    flip_free(c);
    return 2.0 * (double)n * (double)n * (double)n / best * 1e-9;
}

typedef struct {
    double img_s_median, img_s_min, img_s_max, step_s_median, gflop_step, gflops, mfu;
    double first_loss, last_loss, acts_mib, params_m;
    char breakdown[1024]; /* prof.h classes over the timed steps (flip_prof_format) */
    int N, Np;
} Result;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static Result run_config(const char *preset, int B, float mask, int steps, int warmup, double peak) {
    FlipConfig cfg;
    FLIP_CHECK(flip_config_preset(&cfg, preset) == 0, "bench_step: unknown preset '%s' (use one of: %s)",
               preset, flip_config_preset_names());
    FlipModel m;
    flip_model_init(&m, &cfg, 1);
    int N = flip_config_num_kept(&cfg, mask);
    flip_model_plan(&m, B, N);
    int S = cfg.image_size, T = cfg.context;
    size_t img_bytes = (size_t)B * (size_t)S * (size_t)S * (size_t)cfg.channels;
    uint8_t *images = flip_malloc(img_bytes, "bench images");
    int32_t *tokens = flip_malloc((size_t)B * (size_t)T * sizeof(int32_t), "bench tokens");
    int *lens = flip_malloc((size_t)B * sizeof(int), "bench lens");
    int32_t *keep = flip_malloc((size_t)B * (size_t)N * sizeof(int32_t), "bench keep");
    Rng r;
    rng_init(&r, 2, FLIP_RNG_TEST, 0, 0);
    for (size_t i = 0; i < img_bytes; i++) images[i] = (uint8_t)rng_below(&r, 256);
    /* caption lengths in (T/2, T], the first one T: the text tower runs on the
     * longest caption of the batch (model.c), so every step computes all T
     * positions like the peer (whose captions fill the context) and the FLOP
     * count (which assumes T) is the work done */
    for (int b = 0; b < B; b++) {
        lens[b] = b == 0 ? T : T / 2 + (int)rng_below(&r, (uint32_t)(T - T / 2)) + 1;
        for (int t = 0; t < T; t++)
            tokens[(size_t)b * T + t] = t < lens[b] ? 1 + (int32_t)rng_below(&r, (uint32_t)(cfg.vocab - 1)) : 0;
    }
    AdamWConfig opt = {1e-4f, 0.9f, 0.98f, 1e-6f, 0.1f};
    double *times = flip_malloc((size_t)steps * sizeof(double), "times");
    Result res;
    memset(&res, 0, sizeof(res));
    double prof_step_s = 0.0;
    flip_prof_enable(1);
    for (int s = 0; s < warmup + steps; s++) {
        if (s == warmup) flip_prof_reset();
        double t0 = now();
        for (int b = 0; b < B; b++)
            flip_mask_keep(keep + (size_t)b * N, 1, s, (uint64_t)b, m.Np, N);
        float loss = flip_model_loss_and_grad(&m, images, N < m.Np ? keep : NULL, tokens, lens);
        flip_model_adamw(&m, &opt, 1.0f, s + 1);
        double dt = now() - t0;
        if (s == 0) res.first_loss = loss;
        res.last_loss = loss;
        if (s >= warmup) {
            times[s - warmup] = dt;
            prof_step_s += dt;
        }
        fprintf(stderr, "# %s B %d mask %.2f step %d: %.3f s, loss %.4f\n", preset, B, (double)mask, s, dt,
                (double)loss);
    }
    flip_prof_enable(0);
    flip_prof_format(res.breakdown, sizeof res.breakdown, steps, prof_step_s);
    qsort(times, (size_t)steps, sizeof(double), cmp_double);
    res.step_s_median = steps % 2 ? times[steps / 2] : 0.5 * (times[steps / 2 - 1] + times[steps / 2]);
    res.img_s_median = B / res.step_s_median;
    res.img_s_min = B / times[steps - 1];
    res.img_s_max = B / times[0];
    res.gflop_step = (double)B * flip_config_train_flops(&cfg, mask) * 1e-9;
    res.gflops = res.gflop_step / res.step_s_median;
    res.mfu = res.gflops / peak;
    res.acts_mib = (double)m.acts_arena.cap_bytes / (1024.0 * 1024.0);
    res.params_m = (double)m.n_params * 1e-6;
    res.N = N;
    res.Np = m.Np;
    flip_free(times);
    flip_free(images);
    flip_free(tokens);
    flip_free(lens);
    flip_free(keep);
    flip_model_free(&m);
    return res;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_step [--preset all|%s] [--batch B] [--mask 0,0.5,0.75] [--steps N] [--warmup N] [--precision fp32|bf16] [--peak GFLOPS] [--peak-only] [--matmul-impl auto|gemm|brgemm]\n",
            flip_config_preset_names());
}

int main(int argc, char **argv) {
    const char *preset = "all";
    int batch = 0, steps = 3, warmup = 1, peak_only = 0;
    double peak_given = 0.0;
    char masks_arg[128] = "0,0.5,0.75";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage();
            return 0;
        }
        if (strcmp(a, "--peak-only") == 0) {
            peak_only = 1;
            continue;
        }
        if (!v) {
            usage();
            FLIP_FATAL("bench_step: flag %s needs a value", a);
        }
        if (strcmp(a, "--preset") == 0) preset = v;
        else if (strcmp(a, "--batch") == 0) batch = atoi(v);
        else if (strcmp(a, "--mask") == 0) snprintf(masks_arg, sizeof(masks_arg), "%s", v);
        else if (strcmp(a, "--steps") == 0) steps = atoi(v);
        else if (strcmp(a, "--warmup") == 0) warmup = atoi(v);
        else if (strcmp(a, "--peak") == 0) peak_given = atof(v);
        else if (strcmp(a, "--precision") == 0) {
            int pr = flip_precision_parse(v);
            FLIP_CHECK(pr >= 0, "bench_step: --precision '%s' unknown (use fp32 or bf16)", v);
            flip_set_precision((FlipPrecision)pr);
        }
        else if (strcmp(a, "--matmul-impl") == 0) {
            int mi = flip_matmul_impl_parse(v);
            FLIP_CHECK(mi >= 0, "bench_step: --matmul-impl '%s' unknown (use auto, gemm or brgemm)", v);
            flip_matmul_set_impl((FlipMatmulImpl)mi);
        }
        else {
            usage();
            FLIP_FATAL("bench_step: unknown flag '%s'", a);
        }
        i++;
    }
    FLIP_CHECK(steps >= 1 && warmup >= 0, "bench_step: --steps %d must be >= 1 and --warmup %d >= 0", steps, warmup);
    FLIP_CHECK(batch >= 0, "bench_step: --batch %d must be positive", batch);
    float masks[8];
    int n_masks = 0;
    for (char *tok = strtok(masks_arg, ","); tok && n_masks < 8; tok = strtok(NULL, ",")) {
        char *end;
        double v = strtod(tok, &end);
        FLIP_CHECK(*end == '\0' && v >= 0.0 && v < 1.0, "bench_step: --mask '%s' is not a ratio in [0, 1)", tok);
        masks[n_masks++] = (float)v;
    }
    FLIP_CHECK(n_masks > 0, "bench_step: --mask needs at least one ratio");

    const char *presets[2];
    int batches[2], n_presets;
    if (strcmp(preset, "all") == 0) {
        presets[0] = "tiny";
        batches[0] = batch ? batch : 256;
        presets[1] = "vit-s16";
        batches[1] = batch ? batch : 64;
        n_presets = 2;
    } else {
        presets[0] = preset;
        batches[0] = batch ? batch : strcmp(preset, "tiny") == 0 ? 256 : 64;
        n_presets = 1;
    }

    const char *wait = getenv("OMP_WAIT_POLICY");
    FLIP_CHECK(peak_given >= 0.0, "bench_step: --peak %g must be a positive GFLOP/s figure", peak_given);
    if (peak_only) {
        double pk = measure_peak(2048, 5);
        printf("{\"bench\": \"peak\", \"precision\": \"%s\", \"threads\": %d, \"peak_gflops\": %.2f}\n",
               flip_precision_name(flip_get_precision()), omp_get_max_threads(), pk);
        return 0;
    }
    double peak = peak_given > 0.0 ? peak_given : measure_peak(2048, 5);
    printf("# precision %s; peak: %s oneDNN matmul 2048x2048x2048 (linear_forward), %d OpenMP threads: %.1f GFLOP/s\n",
           flip_precision_name(flip_get_precision()), peak_given > 0.0 ? "given (--peak)" : "measured (best of 5)", omp_get_max_threads(), peak);
    printf("# OMP_WAIT_POLICY=%s; steps %d after %d warm-up; step = masks + forward + InfoNCE + backward + AdamW\n",
           wait ? wait : "(unset)", steps, warmup);
    printf("%-8s %5s %5s %7s %9s %9s %8s %9s %6s %9s\n", "preset", "batch", "mask", "kept", "img/s",
           "step_s", "GFLOP", "GFLOP/s", "MFU", "vs_mask0");
    for (int p = 0; p < n_presets; p++) {
        double base = 0.0;
        for (int k = 0; k < n_masks; k++) {
            /* the machine may be shared: re-measure the peak around each
             * config and take the best, so MFU compares like with like */
            double pk = peak;
            if (peak_given <= 0.0) {
                double peak_before = measure_peak(2048, 5);
                if (peak_before > pk) pk = peak_before;
            }
            Result r = run_config(presets[p], batches[p], masks[k], steps, warmup, 1.0);
            if (peak_given <= 0.0) {
                double peak_after = measure_peak(2048, 5);
                if (peak_after > pk) pk = peak_after;
            }
            r.mfu = r.gflops / pk;
            if (masks[k] == 0.0f) base = r.img_s_median;
            char vs0[16] = "-";
            if (base > 0) snprintf(vs0, sizeof(vs0), "%.2fx", r.img_s_median / base);
            printf("%-8s %5d %5.2f %3d/%-3d %9.2f %9.3f %8.1f %9.1f %6.3f %9s\n", presets[p], batches[p],
                   (double)masks[k], r.N, r.Np, r.img_s_median, r.step_s_median, r.gflop_step, r.gflops, r.mfu,
                   vs0);
            printf("{\"bench\": \"step\", \"preset\": \"%s\", \"batch\": %d, \"mask\": %.2f, \"kept\": %d, "
                   "\"patches\": %d, \"precision\": \"%s\", \"threads\": %d, \"img_s_median\": %.3f, \"img_s_min\": %.3f, "
                   "\"img_s_max\": %.3f, \"step_s_median\": %.4f, \"train_gflop_per_step\": %.2f, "
                   "\"achieved_gflops\": %.2f, \"peak_gflops\": %.2f, \"mfu\": %.4f, \"params_M\": %.2f, "
                   "\"activations_MiB\": %.1f, \"first_loss\": %.4f, \"last_loss\": %.4f, "
                   "\"peak_rss_MiB\": %.1f}\n",
                   presets[p], batches[p], (double)masks[k], r.N, r.Np, flip_precision_name(flip_get_precision()), omp_get_max_threads(), r.img_s_median,
                   r.img_s_min, r.img_s_max, r.step_s_median, r.gflop_step, r.gflops, pk, r.mfu, r.params_m,
                   r.acts_mib, r.first_loss, r.last_loss, peak_rss_mib());
            /* per-op-class share of the timed steps (prof.h: exclusive wall-clock time);
             * "other" is the rest of the step: masks, gradient buffer zeroing, glue */
            printf("#   breakdown (ms/step, %% of step): %s\n", r.breakdown);
            fflush(stdout);
        }
    }
    printf("# peak RSS %.1f MiB\n", peak_rss_mib());
    return 0;
}
