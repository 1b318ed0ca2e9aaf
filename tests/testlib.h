/* testlib.h — shared checks for flip's C tests. A test's exit code is the
 * verdict: test_finish() returns 1 if any check failed. Header-only.
 *
 * Tolerances live in tests/tolerances.h, one table with a reason each. */
#ifndef FLIP_TESTLIB_H
#define FLIP_TESTLIB_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int test_n_pass = 0, test_n_fail = 0;

static void test_report(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3), unused));
static void test_report(int ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(ok ? stdout : stderr, ok ? "  ok    " : "  FAIL  ");
    vfprintf(ok ? stdout : stderr, fmt, ap);
    fprintf(ok ? stdout : stderr, "\n");
    va_end(ap);
    if (ok) test_n_pass++; else test_n_fail++;
}

#define TEST_CHECK(cond, ...) test_report((cond) ? 1 : 0, __VA_ARGS__)

/* |got - ref| <= atol + rtol |ref| elementwise; reports max abs/rel error and
 * the worst index; NaN/Inf in got always fails. Returns 1 if all within. */
static int test_close(const char *what, const float *got, const double *ref, size_t n,
                      double atol, double rtol) __attribute__((unused));
static int test_close(const char *what, const float *got, const double *ref, size_t n,
                      double atol, double rtol) {
    double max_abs = 0, max_rel = 0;
    size_t worst = 0, n_bad = 0;
    for (size_t i = 0; i < n; i++) {
        double g = got[i], r = ref[i], e = fabs(g - r);
        if (!isfinite(g) || e > atol + rtol * fabs(r)) {
            if (n_bad == 0) worst = i;
            n_bad++;
        }
        if (e > max_abs) { max_abs = e; if (n_bad == 0) worst = i; }
        double rel = e / (fabs(r) + 1e-30);
        if (rel > max_rel && fabs(r) > atol) max_rel = rel;
    }
    test_report(n_bad == 0, "%s: n=%zu max_abs=%.3g max_rel=%.3g bad=%zu (worst [%zu] got %.8g ref %.8g)",
                what, n, max_abs, max_rel, n_bad, worst, n ? (double)got[worst] : 0.0,
                n ? ref[worst] : 0.0);
    return n_bad == 0;
}

/* Same for float references. */
static int test_close_f(const char *what, const float *got, const float *ref, size_t n,
                        double atol, double rtol) __attribute__((unused));
static int test_close_f(const char *what, const float *got, const float *ref, size_t n,
                        double atol, double rtol) {
    double *r = malloc((n ? n : 1) * sizeof(double));
    if (!r) { fprintf(stderr, "out of memory\n"); exit(2); }
    for (size_t i = 0; i < n; i++) r[i] = ref[i];
    int ok = test_close(what, got, r, n, atol, rtol);
    free(r);
    return ok;
}

/* Trust check: a gradient that is all zero, mostly exactly zero (more than
 * max_zero_frac of entries), or has NaN/Inf fails. */
static int test_trust_grad(const char *what, const float *g, size_t n, double max_zero_frac)
    __attribute__((unused));
static int test_trust_grad(const char *what, const float *g, size_t n, double max_zero_frac) {
    size_t zeros = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(g[i])) bad++;
        else if (g[i] == 0.0f) zeros++;
    }
    int ok = n > 0 && bad == 0 && zeros < n && (double)zeros <= max_zero_frac * (double)n;
    test_report(ok, "%s trust: n=%zu zeros=%zu nonfinite=%zu", what, n, zeros, bad);
    return ok;
}

/* Runs child(arg) in a forked process with its stderr on a pipe (the child
 * exits 0 if child returns); returns the child's exit code (128 + signal if it
 * was killed) and its stderr in err (NUL-terminated, cut at cap - 1 bytes). */
static int test_run_child(void (*child)(void *), void *arg, char *err, size_t cap) __attribute__((unused));
static int test_run_child(void (*child)(void *), void *arg, char *err, size_t cap) {
    int pfd[2];
    if (pipe(pfd) != 0) {
        fprintf(stderr, "test_run_child: pipe failed\n");
        exit(1);
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "test_run_child: fork failed\n");
        exit(1);
    }
    if (pid == 0) {
        close(pfd[0]);
        dup2(pfd[1], 2);
        child(arg);
        _exit(0);
    }
    close(pfd[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(pfd[0], err + n, cap - 1 - n)) > 0) n += (size_t)r;
    err[n] = '\0';
    close(pfd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Prints the closing line ctest logs show and returns the exit code. */
static int test_finish(void) __attribute__((unused));
static int test_finish(void) {
    printf("%d passed, %d failed\n", test_n_pass, test_n_fail);
    return test_n_fail ? 1 : 0;
}

#endif
