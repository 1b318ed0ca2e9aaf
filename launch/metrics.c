/* metrics.c — peak measurement and logging for flip-train (see metrics.h). */
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "ops.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double metrics_peak_gflops(double seconds) {
    const int n = 2048; /* large enough for oneDNN to reach its plateau (1024: ~20 % lower here) */
    size_t count = (size_t)n * n;
    float *a = flip_calloc(count, sizeof(float), "peak matmul A");
    float *w = flip_calloc(count, sizeof(float), "peak matmul W");
    float *c = flip_calloc(count, sizeof(float), "peak matmul C");
    for (size_t i = 0; i < count; i++) {
        a[i] = (float)((i * 7) % 13) * 0.01f;
        w[i] = (float)((i * 5) % 11) * 0.01f;
    }
    linear_forward(c, a, w, NULL, n, n, n); /* primitive creation, warm caches */
    /* the best of 4 windows: on a shared machine the others' load only ever
     * lowers a window's rate, so the maximum is the closest to the peak */
    double best = 0;
    for (int win = 0; win < 4; win++) {
        long reps = 0;
        double t0 = now_s(), t = t0;
        while (t - t0 < seconds / 4 || reps < 1) {
            linear_forward(c, a, w, NULL, n, n, n);
            reps++;
            t = now_s();
        }
        double g = 2.0 * n * (double)n * n * (double)reps / (t - t0) / 1e9;
        if (g > best) best = g;
    }
    double gflops = best;
    flip_free(a);
    flip_free(w);
    flip_free(c);
    return gflops;
}

/* step of a metrics.jsonl line ({"step":N,...}), or -1 */
static long line_step(const char *line) {
    long s;
    return sscanf(line, "{\"step\":%ld", &s) == 1 ? s : -1;
}

void metrics_drop_after(const char *run_dir, long step) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *in = fopen(path, "r");
    if (!in) return; /* no log yet */
    FILE *out = fopen(tmp, "w");
    FLIP_CHECK(out != NULL, "cannot create %s: %s (is the --logs folder writable?)", tmp, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    long dropped = 0;
    while (getline(&line, &cap, in) >= 0) {
        if (line_step(line) > step) {
            dropped++;
            continue;
        }
        FLIP_CHECK(fputs(line, out) >= 0, "write to %s failed: %s", tmp, strerror(errno));
    }
    free(line); /* getline's buffer */
    fclose(in);
    FLIP_CHECK(fclose(out) == 0, "write to %s failed: %s", tmp, strerror(errno));
    FLIP_CHECK(rename(tmp, path) == 0, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (dropped)
        fprintf(stderr, "flip-train: %s: dropped %ld lines after step %ld (those steps are trained again)\n", path,
                dropped, step);
}

void metrics_open(Metrics *mt, const char *run_dir, int rank) {
    mt->jsonl = NULL;
    if (rank != 0) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    mt->jsonl = fopen(path, "a");
    FLIP_CHECK(mt->jsonl != NULL, "cannot open %s for appending: %s", path, strerror(errno));
}

void metrics_close(Metrics *mt) {
    if (mt->jsonl) fclose(mt->jsonl);
    mt->jsonl = NULL;
}

static void fmt_eta(char *buf, size_t n, double s) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

/* JSON has no NaN/Infinity: non-finite values are written as null */
static void json_num(char *buf, size_t n, double x) {
    if (isfinite(x)) snprintf(buf, n, "%.9g", x);
    else snprintf(buf, n, "null");
}

void metrics_log_step(Metrics *mt, const MetricsRow *r) {
    if (!mt->jsonl) return;
    char eta[32];
    fmt_eta(eta, sizeof eta, r->eta_s);
    fprintf(stderr,
            "step %ld/%ld (%.1f%%) samples %ld loss %.4f lr %.3e scale %.2f grad %.3f | %.1f img/s "
            "MFU %.1f%% mask %.2f comm-wait %.1f ms | ETA %s%s\n",
            r->step, r->total_steps, 100.0 * (double)r->step / (double)(r->total_steps ? r->total_steps : 1),
            r->samples, r->loss, r->lr, r->logit_scale, r->grad_norm, r->images_per_s, 100.0 * r->mfu,
            r->mask_ratio, 1e3 * r->comm_wait_s, eta, r->skipped ? " (skipped steps!)" : "");
    char loss[32], gn[32];
    json_num(loss, sizeof loss, r->loss);
    json_num(gn, sizeof gn, r->grad_norm);
    fprintf(mt->jsonl,
            "{\"step\":%ld,\"total_steps\":%ld,\"samples\":%ld,\"loss\":%s,\"lr\":%.9g,\"logit_scale\":%.9g,"
            "\"grad_norm\":%s,\"images_per_s\":%.6g,\"mfu\":%.6g,\"mask_ratio\":%.6g,"
            "\"comm_wait_s\":%.6g,\"skipped\":%ld,\"eta_s\":%.3f}\n",
            r->step, r->total_steps, r->samples, loss, r->lr, r->logit_scale, gn, r->images_per_s, r->mfu,
            r->mask_ratio, r->comm_wait_s, r->skipped, r->eta_s);
    fflush(mt->jsonl);
}

void metrics_log_eval(Metrics *mt, long step, const char *kind, const char *fields, const char *human) {
    if (!mt->jsonl) return;
    fprintf(stderr, "eval %s at step %ld: %s\n", kind, step, human);
    fprintf(mt->jsonl, "{\"step\":%ld,\"eval\":\"%s\",%s}\n", step, kind, fields);
    fflush(mt->jsonl);
}
