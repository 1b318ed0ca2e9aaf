/* bench_prep.c — flip-prep throughput in images/s.
 *
 *   bench_prep [N_IMAGES (200)] [WIDTH (640)] [HEIGHT (480)]
 *
 * Writes N synthetic JPEGs (quality 90, smooth gradients + noise, so decode
 * cost is like a photo's) and a csv table into a temp dir, then reports:
 *   - decode only (image_decode with the DCT pre-shrink hint for S = 224),
 *   - resize only (image_resize_crop of a full-size decode to 224),
 *   - the whole flip-prep shards run (read, decode, resize, tokenize, zstd,
 *     HDF5) at --workers 1 and --workers 2 (the machine's cores),
 * each as images/s. The temp dir is removed at the end. */
#include "../tests/dataset/imgwrite.h"

#include "common.h"
#include "image.h"
#include "prep.h"
#include "rng.h"
#include "sources.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 200, w = argc > 2 ? atoi(argv[2]) : 640, h = argc > 3 ? atoi(argv[3]) : 480;
    FLIP_CHECK(n > 0 && w > 0 && h > 0 && w <= 8192 && h <= 8192, "usage: bench_prep [N] [W] [H]");
    char dir[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/flip_bench_prep_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    FLIP_CHECK(mkdtemp(dir), "mkdtemp failed");
    uint8_t *px = flip_malloc((size_t)w * h * 3, "image");
    char path[512], csv[512];
    snprintf(csv, sizeof csv, "%s/pairs.csv", dir);
    FILE *table = fopen(csv, "w");
    FLIP_CHECK(table, "cannot write %s", csv);
    fprintf(table, "filepath,caption\n");
    Rng r;
    rng_init(&r, 1, FLIP_RNG_TEST, 0, 0);
    size_t total_bytes = 0;
    for (int i = 0; i < n; i++) {
        int fx = 1 + i % 7, fy = 1 + i % 5;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < 3; c++) {
                    int v = (int)(127 + 100 * ((double)((x * fx + y * fy * (c + 1)) % w) / w - 0.5) * 2) +
                            (int)rng_below(&r, 24) - 12;
                    px[((size_t)y * w + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
        MemBuf b = imgw_jpeg(px, w, h, 3, JCS_RGB, 90);
        snprintf(path, sizeof path, "%s/img%05d.jpg", dir, i);
        FLIP_CHECK(imgw_save(path, &b) == 0, "cannot write %s", path);
        total_bytes += b.n;
        free(b.data);
        fprintf(table, "img%05d.jpg,a synthetic photo number %d with some colour gradients\n", i, i);
    }
    fclose(table);
    flip_free(px);
    printf("bench_prep: %d JPEGs of %dx%d (q90, %.0f KB each on average)\n", n, w, h, total_bytes / 1024.0 / n);

    /* decode only, and resize only */
    const int S = 224;
    double t_dec = 0, t_dec_full = 0, t_rs = 0;
    uint8_t *out = flip_malloc((size_t)S * S * 3, "out");
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/img%05d.jpg", dir, i);
        size_t nb;
        int e;
        uint8_t *data = source_read_file(path, &nb, &e);
        FLIP_CHECK(data, "cannot read %s", path);
        Image img;
        char err[256];
        double t0 = now_s();
        FLIP_CHECK(image_decode(&img, data, nb, 3, S, err, sizeof err) == IMAGE_OK, "%s", err);
        t_dec += now_s() - t0;
        image_free(&img);
        t0 = now_s();
        FLIP_CHECK(image_decode(&img, data, nb, 3, 0, err, sizeof err) == IMAGE_OK, "%s", err);
        double t1 = now_s();
        image_resize_crop(out, S, img.pixels, img.w, img.h, 3);
        t_rs += now_s() - t1;
        t_dec_full += t1 - t0;
        image_free(&img);
        flip_free(data);
    }
    flip_free(out);
    printf("bench_prep: decode (DCT pre-shrink for S=%d): %.0f images/s; full-size decode: %.0f images/s; "
           "resize+crop %dx%d -> %d: %.0f images/s (one thread)\n",
           S, n / t_dec, n / t_dec_full, w, h, S, n / t_rs);

    /* the whole program */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int worker_counts[2] = {1, cores > 1 ? (int)cores : 2};
    for (int k = 0; k < 2; k++) {
        char outdir[512], workers[16];
        snprintf(outdir, sizeof outdir, "%s/out%d", dir, k);
        snprintf(workers, sizeof workers, "%d", worker_counts[k]);
        char *args[] = {"flip-prep", "shards", "--source", "csv", "--input", csv, "--output", outdir,
                        "--learn-vocab", "200", "--image-size", "224", "--workers", workers, NULL};
        double t0 = now_s();
        int rc = prep_main((int)(sizeof args / sizeof args[0]) - 1, args);
        double dt = now_s() - t0;
        FLIP_CHECK(rc == 0, "flip-prep failed (rc %d)", rc);
        printf("bench_prep: flip-prep shards, --workers %d: %.1f s, %.0f images/s (incl. vocab learning)\n",
               worker_counts[k], dt, n / dt);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench_prep: could not remove %s\n", dir);
    return 0;
}
