/* mask.c — FLIP patch masking (DESIGN §2 step 3, §3 invariance).
 *
 * A sample keeps the first N entries of a random permutation of its Np patch
 * indices (Fisher–Yates driven by the counter RNG stream
 * (seed, FLIP_RNG_MASK, a = global sample index, b = step)), sorted ascending.
 * The mask therefore depends on (seed, step, global index) only — never on the
 * rank count, the local batch position or the call order. */
#include "model.h"

#include <stdlib.h>

#include "common.h"
#include "rng.h"

/* Permutation scratch lives on the stack up to this many patches (all presets
 * have <= 256); larger grids take one checked heap allocation per call. */
#define MASK_STACK_PATCHES 4096

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

void flip_mask_keep(int32_t *keep, uint64_t seed, long step, uint64_t global_index, int Np,
                    int N) {
    FLIP_CHECK(Np >= 1 && N >= 1 && N <= Np, "flip_mask_keep: need 1 <= N (%d) <= Np (%d)", N, Np);
    int32_t stack_perm[MASK_STACK_PATCHES];
    int32_t *perm = Np <= MASK_STACK_PATCHES
                        ? stack_perm
                        : flip_malloc(flip_mul_size((size_t)Np, sizeof(int32_t), "mask permutation"),
                                      "mask permutation");
    for (int i = 0; i < Np; i++) perm[i] = i;
    Rng r;
    rng_init(&r, seed, FLIP_RNG_MASK, global_index, (uint64_t)step);
    for (int i = 0; i < N; i++) { /* partial Fisher–Yates: perm[0..N) is a uniform prefix */
        int j = i + (int)rng_below(&r, (uint32_t)(Np - i));
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int i = 0; i < N; i++) keep[i] = perm[i];
    qsort(keep, (size_t)N, sizeof(int32_t), cmp_i32);
    if (perm != stack_perm) flip_free(perm);
}
