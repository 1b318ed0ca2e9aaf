/* common.h — what every part of flip shares: dimension letters, the one error
 * idiom, checked allocation.
 *
 * Dimension letters (used in every shape comment):
 *   B local batch (this rank), G global batch (B x ranks), Np patches per image,
 *   N kept patches, P pixels per patch (p*p*C_img), T text length, C width,
 *   H heads, L layers, D joint embedding, V vocab, M rows of a flattened matrix.
 *
 * Gradient convention: every backward ADDS (+=) into parameter gradients and
 * input gradients; the training step zeroes the gradient arena once per step.
 *
 * Errors: every call into oneDNN, MPI, HDF5, zstd, libjpeg/png and every
 * allocation is checked; a failure ends in flip_fatal(), which prints
 * "[rank r] file:line: message" to stderr and calls the abort hook (comm/
 * installs MPI_Abort) or exit(1) when no hook is set. Never exit() elsewhere.
 */
#ifndef FLIP_COMMON_H
#define FLIP_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define FLIP_PRINTF(a, b) __attribute__((format(printf, a, b)))

_Noreturn void flip_fatal(const char *file, int line, const char *fmt, ...) FLIP_PRINTF(3, 4);
/* a warning line "[rank r] warning: ..." on stderr; never stops anything */
void flip_warn(const char *fmt, ...) FLIP_PRINTF(1, 2);

/* FLIP_SIMD_CLONES before a hot loop function: GCC compiles it for AVX-512
 * (x86-64-v4), AVX2 (v3) and baseline and picks one at load time, so the
 * default (portable, not -march=native) build still vectorises wide. Put it on
 * a function called INSIDE a parallel region (a per-row-range kernel). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FLIP_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FLIP_SIMD_CLONES
#endif

#define FLIP_FATAL(...) flip_fatal(__FILE__, __LINE__, __VA_ARGS__)
/* FLIP_CHECK(cond, "what was wrong, where, what to do", args...) */
#define FLIP_CHECK(cond, ...) \
    do { if (!(cond)) flip_fatal(__FILE__, __LINE__, __VA_ARGS__); } while (0)

/* The rank shown in error prefixes (-1: no MPI world, prefix omitted). */
void flip_set_rank(int rank);
int flip_get_rank(void);
/* Called by flip_fatal after printing; must not return (MPI_Abort). NULL: exit(1). */
void flip_set_abort_hook(void (*hook)(int code));

/* Checked allocations, 64-byte aligned; `what` names the buffer in the error.
 * flip_free(NULL) is a no-op. Owners free what they _init. */
void *flip_malloc(size_t n_bytes, const char *what);
void *flip_calloc(size_t count, size_t size, const char *what); /* zeroed; overflow-checked */
void flip_free(void *p);
/* count * size with overflow check (fatal on overflow, naming `what`) */
size_t flip_mul_size(size_t count, size_t size, const char *what);

#endif
