/* test_determinism.c — sums that feed the loss, the temperature gradient and
 * the gradient norm (hence clipping) are bit-identical at any OpenMP thread
 * count, and a whole training step repeated at 2 threads is bit-identical.
 * This is what makes resume bit-exact and keeps ranks' clip factors equal
 * (DESIGN §3, §5). */
#include <omp.h>
#include <string.h>

#include "model.h"
#include "ops.h"
#include "rng.h"
#include "testlib.h"

static void fill(float *x, size_t n, uint64_t a) {
    Rng r;
    rng_init(&r, 7, FLIP_RNG_TEST, a, 0);
    for (size_t i = 0; i < n; i++) x[i] = (float)rng_normal(&r);
}

static void normalize_rows(float *x, int n, int D) {
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < D; j++) s += (double)x[i * D + j] * x[i * D + j];
        for (int j = 0; j < D; j++) x[i * D + j] = (float)(x[i * D + j] / sqrt(s));
    }
}

int main(void) {
    /* sumsq over sizes around the parallel threshold and block edges */
    size_t sizes[] = {1, 63, 64, 1000, 65537, 1000003};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        float *x = malloc(n * sizeof(float));
        fill(x, n, si);
        double s[4];
        for (int t = 1; t <= 4; t++) {
            omp_set_num_threads(t);
            s[t - 1] = sumsq(x, n);
        }
        TEST_CHECK(s[0] == s[1] && s[0] == s[2] && s[0] == s[3] && s[0] > 0,
                   "sumsq n=%zu identical at 1..4 threads (%.17g)", n, s[0]);
        free(x);
    }

    /* InfoNCE block: loss and dt at 1..4 threads */
    const int B = 37, G = 74, D = 16, offset = 37;
    float *u = malloc(sizeof(float) * B * D), *v = malloc(sizeof(float) * B * D);
    float *U = malloc(sizeof(float) * G * D), *V = malloc(sizeof(float) * G * D);
    float *probs = malloc(sizeof(float) * 2 * B * G);
    float *du = calloc((size_t)B * D, sizeof(float)), *dv = calloc((size_t)B * D, sizeof(float));
    float *dU = calloc((size_t)G * D, sizeof(float)), *dV = calloc((size_t)G * D, sizeof(float));
    fill(U, (size_t)G * D, 100);
    fill(V, (size_t)G * D, 101);
    normalize_rows(U, G, D);
    normalize_rows(V, G, D);
    memcpy(u, U + (size_t)offset * D, sizeof(float) * B * D);
    memcpy(v, V + (size_t)offset * D, sizeof(float) * B * D);
    float loss[4], dt[4];
    for (int t = 1; t <= 4; t++) {
        omp_set_num_threads(t);
        infonce_forward(&loss[t - 1], probs, u, v, U, V, 2.5f, B, G, D, offset);
        dt[t - 1] = 0;
        infonce_backward(du, dv, dU, dV, &dt[t - 1], 1.0f, probs, u, v, U, V, 2.5f, B, G, D, offset);
    }
    TEST_CHECK(loss[0] == loss[1] && loss[0] == loss[2] && loss[0] == loss[3],
               "infonce loss identical at 1..4 threads (%.9g)", loss[0]);
    TEST_CHECK(dt[0] == dt[1] && dt[0] == dt[2] && dt[0] == dt[3] && dt[0] != 0,
               "infonce dt identical at 1..4 threads (%.9g)", dt[0]);
    free(u); free(v); free(U); free(V); free(probs); free(du); free(dv); free(dU); free(dV);

    /* a whole step (forward, loss, backward) repeated at 2 threads: same bits */
    omp_set_num_threads(2);
    FlipConfig cfg;
    flip_config_preset(&cfg, "tiny");
    cfg.depth = 2;
    cfg.text_depth = 2;
    cfg.vocab = 500;
    cfg.context = 12;
    FlipModel m;
    flip_model_init(&m, &cfg, 3);
    const int Bm = 16, Np = flip_config_num_patches(&cfg), N = flip_config_num_kept(&cfg, 0.5f);
    flip_model_plan(&m, Bm, N);
    size_t n_img = (size_t)Bm * cfg.image_size * cfg.image_size * cfg.channels;
    uint8_t *images = malloc(n_img);
    int32_t *tokens = malloc(sizeof(int32_t) * Bm * cfg.context), *keep = malloc(sizeof(int32_t) * Bm * N);
    int lens[16];
    Rng r;
    rng_init(&r, 9, FLIP_RNG_TEST, 0, 0);
    for (size_t i = 0; i < n_img; i++) images[i] = (uint8_t)rng_below(&r, 256);
    for (int b = 0; b < Bm; b++) {
        lens[b] = 2 + (int)rng_below(&r, (uint32_t)cfg.context - 1);
        for (int t = 0; t < cfg.context; t++)
            tokens[b * cfg.context + t] = t < lens[b] ? (int32_t)rng_below(&r, (uint32_t)cfg.vocab) : 0;
        flip_mask_keep(keep + (size_t)b * N, 1, 0, (uint64_t)b, Np, N);
    }
    float l1 = flip_model_loss_and_grad(&m, images, keep, tokens, lens);
    float *g1 = malloc(sizeof(float) * m.n_params);
    memcpy(g1, m.grads, sizeof(float) * m.n_params);
    double n1 = flip_model_grad_norm(&m);
    float l2 = flip_model_loss_and_grad(&m, images, keep, tokens, lens);
    double n2 = flip_model_grad_norm(&m);
    TEST_CHECK(l1 == l2 && n1 == n2 && memcmp(g1, m.grads, sizeof(float) * m.n_params) == 0,
               "a repeated step at 2 threads gives the same loss, grad norm and gradient bits (loss %.9g, norm %.9g)",
               l1, n1);
    test_trust_grad("step gradient", m.grads, m.n_params, 0.5);
    free(g1); free(images); free(tokens); free(keep);
    flip_model_free(&m);
    return test_finish();
}
