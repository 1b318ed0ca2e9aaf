/* test_mask.c — FLIP patch masks (flip_mask_keep, DESIGN §2 step 3 and §3):
 * sorted unique indices in [0, Np), exactly N of them; a pure function of
 * (seed, step, global index) — independent of call order and of other calls;
 * different streams differ; every patch is kept with probability N/Np
 * (uniform permutation prefix); N = Np is the identity; grids above the
 * on-stack limit work; num_kept = floor(Np (1 - r)) clamped to [1, Np]. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "model.h"
#include "testlib.h"

static int valid_keep(const int32_t *k, int Np, int N) {
    for (int i = 0; i < N; i++) {
        if (k[i] < 0 || k[i] >= Np) return 0;
        if (i > 0 && k[i] <= k[i - 1]) return 0; /* strictly ascending: sorted and unique */
    }
    return 1;
}

int main(void) {
    int32_t a[5000], b[5000];

    /* validity over many shapes */
    static const int shapes[][2] = {{1, 1}, {16, 1}, {16, 8}, {16, 4}, {64, 32}, {64, 16},
                                    {196, 98}, {196, 49}, {256, 64}, {64, 64}, {5000, 1250}};
    int n_ok = 0, n_all = 0;
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
        for (uint64_t idx = 0; idx < 50; idx++) {
            flip_mask_keep(a, 7, (long)idx % 5, idx, shapes[s][0], shapes[s][1]);
            n_ok += valid_keep(a, shapes[s][0], shapes[s][1]);
            n_all++;
        }
    TEST_CHECK(n_ok == n_all, "masks sorted, unique, in range: %d of %d (incl. Np 5000, heap path)", n_ok, n_all);

    /* N == Np: identity */
    flip_mask_keep(a, 3, 2, 11, 64, 64);
    int ident = 1;
    for (int i = 0; i < 64; i++) ident &= a[i] == i;
    TEST_CHECK(ident, "N == Np keeps every patch in order");

    /* pure function of (seed, step, index): same name, same mask, whatever ran in between */
    flip_mask_keep(a, 42, 17, 123456789012ull, 196, 49);
    for (int i = 0; i < 10; i++) flip_mask_keep(b, (uint64_t)i, i, (uint64_t)i, 196, 98);
    flip_mask_keep(b, 42, 17, 123456789012ull, 196, 49);
    TEST_CHECK(memcmp(a, b, 49 * sizeof(int32_t)) == 0, "same (seed, step, index) gives the same mask after other calls");

    /* each coordinate of the name matters */
    int32_t c[64];
    flip_mask_keep(a, 42, 17, 5, 196, 49);
    flip_mask_keep(b, 43, 17, 5, 196, 49);
    TEST_CHECK(memcmp(a, b, 49 * sizeof(int32_t)) != 0, "seed changes the mask");
    flip_mask_keep(b, 42, 18, 5, 196, 49);
    TEST_CHECK(memcmp(a, b, 49 * sizeof(int32_t)) != 0, "step changes the mask");
    flip_mask_keep(b, 42, 17, 6, 196, 49);
    TEST_CHECK(memcmp(a, b, 49 * sizeof(int32_t)) != 0, "global index changes the mask");
    /* a shorter prefix of the same permutation: N=16 is the sorted first 16
     * draws, so it is a subset of N=32's set */
    flip_mask_keep(c, 9, 4, 77, 64, 32);
    flip_mask_keep(a, 9, 4, 77, 64, 16);
    int subset = 1;
    for (int i = 0; i < 16; i++) {
        int found = 0;
        for (int j = 0; j < 32; j++) found |= c[j] == a[i];
        subset &= found;
    }
    TEST_CHECK(subset, "N=16 mask is a subset of the N=32 mask of the same stream (one permutation, prefixes)");

    /* uniformity: Np 64, N 16, 20000 samples: each patch kept 5000 +- 61 (1
     * sigma, binomial); 5 sigma = 306 bounds the max deviation (64 patches) */
    static int counts[64];
    memset(counts, 0, sizeof(counts));
    for (uint64_t idx = 0; idx < 20000; idx++) {
        flip_mask_keep(a, 1, 3, idx, 64, 16);
        for (int i = 0; i < 16; i++) counts[a[i]]++;
    }
    int worst = 0;
    for (int i = 0; i < 64; i++) {
        int d = abs(counts[i] - 5000);
        if (d > worst) worst = d;
    }
    TEST_CHECK(worst <= 306, "each of 64 patches kept 5000 +- %d times in 20000 masks of 16 (bound 306 = 5 sigma)", worst);

    /* num_kept */
    FlipConfig cfg;
    if (flip_config_preset(&cfg, "tiny") != 0) FLIP_FATAL("tiny preset missing");
    TEST_CHECK(flip_config_num_patches(&cfg) == 64 && flip_config_num_kept(&cfg, 0.0f) == 64 &&
                   flip_config_num_kept(&cfg, 0.5f) == 32 && flip_config_num_kept(&cfg, 0.75f) == 16 &&
                   flip_config_num_kept(&cfg, 1.0f) == 1,
               "tiny: Np 64, kept 64/32/16 at mask 0/0.5/0.75, clamped to 1 at mask 1");
    if (flip_config_preset(&cfg, "vit-s16") != 0) FLIP_FATAL("vit-s16 preset missing");
    TEST_CHECK(flip_config_num_patches(&cfg) == 196 && flip_config_num_kept(&cfg, 0.5f) == 98 &&
                   flip_config_num_kept(&cfg, 0.75f) == 49,
               "vit-s16: Np 196, kept 98/49 at mask 0.5/0.75");
    return test_finish();
}
