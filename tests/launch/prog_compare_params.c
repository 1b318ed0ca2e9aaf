/* prog_compare_params.c — compares two raw float32 parameter dumps written by
 * flip-train --dump-params: |a - b| <= atol + rtol |b| everywhere, same size,
 * all finite, and not identically zero. Prints max errors; exit 0 iff within.
 * usage: launch_prog_compare_params A B ATOL RTOL */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

static float *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    FLIP_CHECK(f != NULL, "cannot open %s", path);
    FLIP_CHECK(fseek(f, 0, SEEK_END) == 0, "cannot seek %s", path);
    long bytes = ftell(f);
    FLIP_CHECK(bytes > 0 && bytes % 4 == 0, "%s: size %ld is not a float32 dump", path, bytes);
    rewind(f);
    *n = (size_t)bytes / 4;
    float *x = flip_malloc((size_t)bytes, "dump");
    FLIP_CHECK(fread(x, 4, *n, f) == *n, "cannot read %s", path);
    fclose(f);
    return x;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s A B ATOL RTOL\n", argv[0]);
        return 2;
    }
    size_t na, nb;
    float *a = read_all(argv[1], &na), *b = read_all(argv[2], &nb);
    double atol = atof(argv[3]), rtol = atof(argv[4]);
    if (na != nb) {
        fprintf(stderr, "FAIL: %s has %zu floats, %s has %zu\n", argv[1], na, argv[2], nb);
        return 1;
    }
    double max_abs = 0, max_rel = 0;
    size_t bad = 0, nonfinite = 0, nonzero = 0, differ = 0, worst = 0;
    for (size_t i = 0; i < na; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) { nonfinite++; continue; }
        if (b[i] != 0.0f) nonzero++;
        if (a[i] != b[i]) differ++;
        double e = fabs((double)a[i] - b[i]);
        if (e > max_abs) { max_abs = e; worst = i; }
        if (fabs(b[i]) > 1e-3 && e / fabs(b[i]) > max_rel) max_rel = e / fabs(b[i]);
        if (e > atol + rtol * fabs(b[i])) bad++;
    }
    int ok = bad == 0 && nonfinite == 0 && nonzero > 0;
    printf("%s: n=%zu differ=%zu max_abs=%.3g (at %zu: %.9g vs %.9g) max_rel=%.3g bad=%zu nonfinite=%zu (atol %g rtol %g)\n",
           ok ? "ok" : "FAIL", na, differ, max_abs, worst, (double)a[worst], (double)b[worst], max_rel, bad, nonfinite,
           atol, rtol);
    flip_free(a);
    flip_free(b);
    return ok ? 0 : 1;
}
