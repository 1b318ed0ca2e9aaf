/* prof.c — exclusive-time section stack behind prof.h. */
#include "prof.h"

#include <stdio.h>
#include <time.h>

#include "common.h"

int flip_prof_enabled = 0;

enum { DEPTH_MAX = 8 };
static double g_acc[FLIP_PROF_N];
static struct { int cls; double t0, child; } g_stack[DEPTH_MAX];
static int g_depth = 0;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void flip_prof_enable(int on) { flip_prof_enabled = on; g_depth = 0; }

void flip_prof_reset(void) {
    for (int i = 0; i < FLIP_PROF_N; i++) g_acc[i] = 0.0;
    g_depth = 0;
}

double flip_prof_seconds(FlipProfClass c) { return c >= 0 && c < FLIP_PROF_N ? g_acc[c] : 0.0; }

const char *flip_prof_name(FlipProfClass c) {
    static const char *names[FLIP_PROF_N] = {"matmul", "attention", "layernorm", "gelu",
                                             "loss", "optimizer", "embed/pool/residual", "bf16 convert",
                                             "comm wait", "data wait"};
    return c >= 0 && c < FLIP_PROF_N ? names[c] : "?";
}

void flip_prof_begin_(FlipProfClass c) {
    FLIP_CHECK(g_depth < DEPTH_MAX, "flip_prof: sections nested deeper than %d", DEPTH_MAX);
    g_stack[g_depth].cls = (int)c;
    g_stack[g_depth].child = 0.0;
    g_stack[g_depth].t0 = now();
    g_depth++;
}

void flip_prof_end_(void) {
    if (g_depth == 0) return; /* enabled mid-section: nothing to close */
    g_depth--;
    double dt = now() - g_stack[g_depth].t0;
    g_acc[g_stack[g_depth].cls] += dt - g_stack[g_depth].child;
    if (g_depth > 0) g_stack[g_depth - 1].child += dt;
}

void flip_prof_format(char *buf, size_t n, long steps, double step_seconds) {
    size_t used = 0;
    double sum = 0.0, per = steps > 0 ? 1e3 / (double)steps : 0.0;
    double pct = step_seconds > 0 ? 100.0 / step_seconds : 0.0;
    if (n) buf[0] = '\0';
    for (int c = 0; c < FLIP_PROF_N; c++) {
        sum += g_acc[c];
        if (g_acc[c] <= 0.0 || used >= n) continue;
        int k = snprintf(buf + used, n - used, "%s %.1f (%.1f%%), ", flip_prof_name((FlipProfClass)c),
                         g_acc[c] * per, g_acc[c] * pct);
        if (k > 0) used += (size_t)k;
    }
    if (used < n)
        snprintf(buf + used, n - used, "other %.1f (%.1f%%)", (step_seconds - sum) * per, (step_seconds - sum) * pct);
}
