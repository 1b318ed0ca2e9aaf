/* bench_loader.c — loader throughput (images/s) on one prefetch thread, at
 * 224x224x3 and 32x32x3, with and without augmentation.
 *
 * Writes temporary shards of synthetic images with realistic compressibility
 * (per-image smooth colour gradients + two low-frequency waves + uniform noise
 * of +-3 levels, i.e. photo-like zstd ratios rather than all-noise or
 * all-flat), then times:
 *   read    shard_read_sample on the calling thread (HDF5 + zstd, no loader)
 *   loader  loader_next with an idle consumer: the prefetch thread's rate
 *   +aug    the same with random resized crop + flip
 * usage: bench_loader [--quick] [--dir DIR]   (DIR default: a new folder in /tmp)
 * Prints one human line per case and one JSON object per case on stdout, each
 * with the wall-clock rate and the rate per CPU-second (robust to a loaded
 * machine; equal to the wall rate when the prefetch core is not shared). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "loader.h"
#include "rng.h"
#include "shard.h"

#define BENCH_TWO_PI 6.283185307179586

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of the whole process: with an idle consumer this is the prefetch
 * thread's time, a rate that stays meaningful on a shared, loaded machine */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void synth_image(uint8_t *img, int H, int W, int C, uint64_t g) {
    Rng r;
    rng_init(&r, 2024, FLIP_RNG_TEST, g, 0);
    double base[3], gx[3], gy[3], amp[3];
    for (int c = 0; c < C; c++) {
        base[c] = 40 + 170 * rng_uniform(&r);
        gx[c] = (rng_uniform(&r) - 0.5) * 120;
        gy[c] = (rng_uniform(&r) - 0.5) * 120;
        amp[c] = 10 + 30 * rng_uniform(&r);
    }
    double fx = 0.5 + 3 * rng_uniform(&r), fy = 0.5 + 3 * rng_uniform(&r), ph = BENCH_TWO_PI * rng_uniform(&r);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double u = (double)x / W, v = (double)y / H;
            double wave = sin(BENCH_TWO_PI * fx * u + ph) * cos(BENCH_TWO_PI * fy * v);
            uint32_t noise = rng_u32(&r);
            for (int c = 0; c < C; c++) {
                double val = base[c] + gx[c] * (u - 0.5) + gy[c] * (v - 0.5) + amp[c] * wave +
                             (double)((int)((noise >> (8 * c)) % 7) - 3);
                img[((size_t)y * W + x) * C + c] = (uint8_t)(val < 0 ? 0 : val > 255 ? 255 : val);
            }
        }
}

typedef struct {
    int S, n_shards, per_shard, B;
} Case;

static void run_case(const char *dir, const Case *k, int quick) {
    const int H = k->S, W = k->S, C = 3, T = 32, V = 30522;
    ShardMeta m;
    memset(&m, 0, sizeof m);
    m.H = H;
    m.W = W;
    m.C = C;
    m.T = T;
    m.vocab_size = V;
    memset(m.vocab_sha256, 'a', 64);
    snprintf(m.tokenizer, sizeof m.tokenizer, "wordpiece");
    snprintf(m.source, sizeof m.source, "bench_loader synthetic");
    for (int c = 0; c < 3; c++) {
        m.mean[c] = 0.45f;
        m.std[c] = 0.25f;
    }
    size_t img_bytes = (size_t)H * W * C;
    uint8_t *img = flip_malloc(img_bytes, "bench image");
    int32_t tok[32];
    double t0 = now_s(), c0 = cpu_s();
    long total = 0;
    for (int s = 0; s < k->n_shards; s++) {
        char path[600];
        snprintf(path, sizeof path, "%s/b%d-%03d.h5", dir, k->S, s);
        ShardWriter *w = shard_writer_open(path, &m, 3, 0, 0);
        for (int i = 0; i < k->per_shard; i++, total++) {
            synth_image(img, H, W, C, (uint64_t)total);
            int len = 8 + (int)(total % 20);
            for (int t = 0; t < len; t++) tok[t] = (int32_t)((total * 131 + t * 7) % V);
            shard_writer_add(w, img, tok, len, NULL, 0);
        }
        shard_writer_close(w);
    }
    double t_write = now_s() - t0, c_write = cpu_s() - c0;
    /* compression ratio from file sizes */
    double stored = 0;
    for (int s = 0; s < k->n_shards; s++) {
        char path[600];
        snprintf(path, sizeof path, "%s/b%d-%03d.h5", dir, k->S, s);
        FILE *f = fopen(path, "rb");
        if (f) {
            fseek(f, 0, SEEK_END);
            stored += (double)ftell(f);
            fclose(f);
        }
    }
    double ratio = (double)total * (double)img_bytes / stored;
    printf("%dx%dx3: %ld images in %d shards, %.1f MB stored (zstd-3 ratio %.2f), synthesized + written at %.0f "
           "images/s wall, %.0f per CPU-s\n",
           H, W, total, k->n_shards, stored / 1e6, ratio, (double)total / t_write, (double)total / c_write);

    /* direct reads on this thread */
    char spec[700], err[1200];
    {
        Shard sh;
        snprintf(spec, sizeof spec, "%s/b%d-000.h5", dir, k->S);
        FLIP_CHECK(shard_open(&sh, spec, NULL, err, sizeof err) == 0, "%s", err);
        long n = quick ? sh.n / 4 : sh.n;
        double t1 = now_s(), c1 = cpu_s();
        for (long i = 0; i < n; i++) {
            int len;
            FLIP_CHECK(shard_read_sample(&sh, (i * 7919) % sh.n, img, tok, &len, NULL, err, sizeof err) == 0, "%s",
                       err);
        }
        double dt = now_s() - t1, dc = cpu_s() - c1;
        printf("  read       %8.0f images/s wall, %8.0f per CPU-s  (%.1f MB/s decompressed)\n", (double)n / dt,
               (double)n / dc, (double)n * img_bytes / dt / 1e6);
        printf("{\"bench\": \"loader\", \"size\": %d, \"mode\": \"read\", \"images_per_s\": %.1f, "
               "\"images_per_cpu_s\": %.1f, \"ratio\": %.3f}\n",
               H, (double)n / dt, (double)n / dc, ratio);
        shard_close(&sh);
    }
    snprintf(spec, sizeof spec, "%s/b%d-{000..%03d}.h5", dir, k->S, k->n_shards - 1);
    for (int aug = 0; aug <= 1; aug++) {
        LoaderConfig cfg = {.spec = spec, .batch_size = k->B, .world = 1, .seed = 1, .augment = aug, .prefetch = 2};
        Loader *l = loader_open(&cfg, err, sizeof err);
        FLIP_CHECK(l, "%s", err);
        long steps = loader_steps_per_epoch(l);
        if (quick) steps = steps / 4 > 2 ? steps / 4 : 2;
        loader_next(l); /* warm: thread started, first batch ready */
        double t1 = now_s(), c1 = cpu_s();
        for (long s = 1; s < steps; s++) loader_next(l);
        double dt = now_s() - t1, dc = cpu_s() - c1;
        double ips = (double)(steps - 1) * k->B / dt, ipc = (double)(steps - 1) * k->B / dc;
        printf("  loader%s %8.0f images/s wall, %8.0f per CPU-s  (B=%d, %ld batches, one prefetch thread)\n",
               aug ? "+aug   " : "       ", ips, ipc, k->B, steps - 1);
        printf("{\"bench\": \"loader\", \"size\": %d, \"mode\": \"%s\", \"batch\": %d, \"images_per_s\": %.1f, "
               "\"images_per_cpu_s\": %.1f}\n",
               H, aug ? "loader_augment" : "loader", k->B, ips, ipc);
        loader_close(l);
    }
    flip_free(img);
}

int main(int argc, char **argv) {
    int quick = 0;
    const char *dir_arg = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) dir_arg = argv[++i];
        else {
            fprintf(stderr, "bench_loader: unknown argument '%s' (usage: bench_loader [--quick] [--dir DIR])\n", argv[i]);
            return 2;
        }
    }
    char dir[512];
    if (dir_arg) snprintf(dir, sizeof dir, "%s", dir_arg);
    else {
        snprintf(dir, sizeof dir, "/tmp/flip_bench_loader_XXXXXX");
        FLIP_CHECK(mkdtemp(dir), "bench_loader: cannot create a folder in /tmp");
    }
    Case cases[2] = {{224, 4, quick ? 64 : 256, 64}, {32, 4, quick ? 1024 : 4096, 256}};
    for (int i = 0; i < 2; i++) run_case(dir, &cases[i], quick);
    if (!dir_arg) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) flip_warn("could not remove %s", dir);
    }
    return 0;
}
