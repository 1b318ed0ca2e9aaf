/* common.c — the one fatal-error path and checked allocation (see common.h). */
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_rank = -1;
static void (*g_abort_hook)(int code) = NULL;

void flip_set_rank(int rank) { g_rank = rank; }
int flip_get_rank(void) { return g_rank; }
void flip_set_abort_hook(void (*hook)(int code)) { g_abort_hook = hook; }

static void print_prefix(void) {
    if (g_rank >= 0) fprintf(stderr, "[rank %d] ", g_rank);
}

_Noreturn void flip_fatal(const char *file, int line, const char *fmt, ...) {
    /* one line, assembled first so ranks do not interleave mid-line */
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    print_prefix();
    fprintf(stderr, "%s:%d: %s\n", base, line, msg);
    fflush(stderr);
    if (g_abort_hook) g_abort_hook(1);
    exit(1);
}

void flip_warn(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    print_prefix();
    fprintf(stderr, "warning: %s\n", msg);
    fflush(stderr);
}

size_t flip_mul_size(size_t count, size_t size, const char *what) {
    if (size != 0 && count > SIZE_MAX / size)
        flip_fatal(__FILE__, __LINE__, "size overflow allocating %s (%zu x %zu)", what, count, size);
    return count * size;
}

void *flip_malloc(size_t n_bytes, const char *what) {
    size_t rounded = (n_bytes + 63) & ~(size_t)63;
    if (rounded == 0) rounded = 64;
    void *p = aligned_alloc(64, rounded);
    if (!p)
        flip_fatal(__FILE__, __LINE__, "out of memory allocating %s (%zu bytes); reduce --batch-size or the model size", what, n_bytes);
    return p;
}

void *flip_calloc(size_t count, size_t size, const char *what) {
    size_t n_bytes = flip_mul_size(count, size, what);
    void *p = flip_malloc(n_bytes, what);
    memset(p, 0, n_bytes);
    return p;
}

void flip_free(void *p) { free(p); }
