/* synth_pairs.h — the synthetic matched image-caption batch that the model
 * training tests (test_model_train, test_bf16) learn: SYNTH_NB samples of 4
 * colour classes (a = b % 4) striped with period 2 + b/4; caption token 0 =
 * 100 + a, token 1 = 200 + b/4, then 1-6 random tokens, padding 0. Fixed seed. */
#ifndef FLIP_TESTS_SYNTH_PAIRS_H
#define FLIP_TESTS_SYNTH_PAIRS_H

#include <stdint.h>

#include "common.h"
#include "model.h"
#include "rng.h"

#define SYNTH_NB 32

typedef struct {
    uint8_t *images; /* (SYNTH_NB, S, S, Ci), flip_free it */
    int32_t tokens[SYNTH_NB * 32];
    int lens[SYNTH_NB];
} SynthPairs;

static void synth_pairs_make(SynthPairs *d, const FlipConfig *c) {
    int S = c->image_size, Ci = c->channels, T = c->context;
    FLIP_CHECK(T <= 32, "test data assumes T <= 32");
    static const int colour[4][3] = {{220, 40, 40}, {40, 200, 60}, {50, 60, 230}, {230, 220, 60}};
    d->images = flip_malloc((size_t)SYNTH_NB * S * S * Ci, "synthetic images");
    Rng r;
    rng_init(&r, 11, FLIP_RNG_TEST, 3, 0);
    for (int b = 0; b < SYNTH_NB; b++) {
        int a = b % 4, per = 2 + b / 4;
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                for (int ch = 0; ch < Ci; ch++) {
                    int v = colour[a][ch] * ((y % per) < per / 2 ? 1 : 0) + 30 + (int)rng_below(&r, 20);
                    d->images[(((size_t)b * S + y) * S + x) * Ci + ch] = (uint8_t)(v > 255 ? 255 : v);
                }
        int len = 3 + (int)rng_below(&r, 6);
        d->lens[b] = len;
        for (int t = 0; t < T; t++)
            d->tokens[b * T + t] = t == 0 ? 100 + a : t == 1 ? 200 + b / 4 : t < len ? 300 + (int32_t)rng_below(&r, 50) : 0;
    }
}

#endif
