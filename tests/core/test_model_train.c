/* test_model_train.c — training sanity of the FLIP model on the fast path.
 *
 * A fixed synthetic batch of 32 image/caption pairs whose captions describe
 * the images: sample b has colour a = b % 4 and stripe period c = b / 4 (8
 * kinds); the image is a colour wash with horizontal stripes of period
 * 2 + c pixels plus a little fixed noise; the caption is
 * [colour word a, stripe word c, 1-6 filler words] padded to T. Every patch
 * therefore shows both attributes, so the pairs can be matched from any kept
 * subset. Training with mask 0.5 (new masks every step) and AdamW must take
 * the loss from ~ln 32 = 3.47 below a quarter of it within 20 steps.
 *
 * Also: AdamW weight decay applies exactly to the decay tensors, the
 * temperature is clamped into [0, ln 100], and two runs from the same seed
 * give bit-identical losses. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "model.h"
#include "rng.h"
#include "synth_pairs.h"
#include "testlib.h"
#include "tolerances.h"

#define NB SYNTH_NB
#define STEPS 20

static void masks(int32_t *keep, long step, int Np, int N) {
    for (int b = 0; b < NB; b++) flip_mask_keep(keep + (size_t)b * N, 2024, step, (uint64_t)b, Np, N);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* STEPS AdamW steps; losses[0..STEPS) */
static void train(const FlipConfig *cfg, const SynthPairs *d, float mask, int steps, float *losses) {
    FlipModel m;
    flip_model_init(&m, cfg, 7);
    int N = flip_config_num_kept(cfg, mask);
    flip_model_plan(&m, NB, N);
    int32_t *keep = flip_malloc((size_t)NB * N * sizeof(int32_t), "keep");
    AdamWConfig opt = {1e-3f, 0.9f, 0.98f, 1e-6f, 0.1f};
    for (int s = 0; s < steps; s++) {
        masks(keep, s, m.Np, N);
        opt.lr = s < 5 ? 1e-3f * (float)(s + 1) / 5.0f : 1e-3f; /* 5 warm-up steps */
        losses[s] = flip_model_loss_and_grad(&m, d->images, keep, d->tokens, d->lens);
        flip_model_adamw(&m, &opt, 1.0f, s + 1);
    }
    flip_free(keep);
    flip_model_free(&m);
}

int main(void) {
    /* One OpenMP thread: nothing checked here depends on the thread count (the
     * op tests cover threading), and on a shared 2-core machine every OpenMP
     * region of a 2-thread run can wait a scheduler time slice for its second
     * thread (measured: 35-56 s instead of 5-11 s under load 5). */
    omp_set_num_threads(1);
    FlipConfig cfg;
    if (flip_config_preset(&cfg, "tiny") != 0) FLIP_FATAL("tiny preset missing");
    cfg.vocab = 512; /* the synthetic captions use ids < 350 */
    SynthPairs d;
    synth_pairs_make(&d, &cfg);

    float losses[STEPS];
    double t0 = now_s();
    train(&cfg, &d, 0.5f, STEPS, losses);
    double dt = now_s() - t0;
    printf("# tiny, B %d, mask 0.5, %d steps in %.2f s; loss:", NB, STEPS, dt);
    for (int s = 0; s < STEPS; s++) printf(" %.3f", (double)losses[s]);
    printf("\n");
    int finite = 1;
    for (int s = 0; s < STEPS; s++) finite &= isfinite(losses[s]);
    TEST_CHECK(finite, "all %d losses finite", STEPS);
    TEST_CHECK(fabs(losses[0] - log((double)NB)) < 0.3, "initial loss %.4f ~ ln %d = %.4f (untrained: chance level)",
               (double)losses[0], NB, log((double)NB));
    float last = 0.0f;
    for (int s = STEPS - 5; s < STEPS; s++) last += losses[s] / 5.0f;
    TEST_CHECK(last < TRAIN_LOSS_FACTOR * losses[0],
               "mean loss of the last 5 steps %.4f < %.2f x initial %.4f", (double)last,
               (double)TRAIN_LOSS_FACTOR, (double)losses[0]);

    float again[3];
    train(&cfg, &d, 0.5f, 3, again);
    TEST_CHECK(memcmp(again, losses, sizeof(again)) == 0, "same seed: bit-identical first 3 losses (%.7g %.7g %.7g)",
               (double)again[0], (double)again[1], (double)again[2]);

    /* AdamW: with zero gradients only decoupled decay moves parameters */
    FlipConfig small = cfg;
    small.depth = 1;
    small.text_depth = 1;
    FlipModel m;
    flip_model_init(&m, &small, 3);
    float *before = flip_malloc(m.n_params * sizeof(float), "params");
    memcpy(before, m.params, m.n_params * sizeof(float));
    flip_model_zero_grad(&m);
    AdamWConfig opt = {0.01f, 0.9f, 0.98f, 1e-6f, 0.5f};
    flip_model_adamw(&m, &opt, 1.0f, 1);
    int decay_ok = 1;
    for (int i = 0; i < m.n_tensors; i++) {
        const ParamTensor *t = &m.tensors[i];
        for (size_t k = 0; k < t->count; k++) {
            float p0 = before[t->offset + k], p1 = m.params[t->offset + k];
            float want = t->decay ? p0 - 0.01f * 0.5f * p0 : p0;
            if (fabsf(p1 - want) > 1e-6f * fabsf(p0) + 1e-12f) {
                if (decay_ok)
                    test_report(0, "adamw %s[%zu]: %.9g -> %.9g, want %.9g (decay %d)", t->name, k,
                                (double)p0, (double)p1, (double)want, t->decay);
                decay_ok = 0;
            }
        }
    }
    TEST_CHECK(decay_ok, "zero-gradient AdamW step: decay tensors shrink by lr wd, all others unchanged");
    float *t = m.params + flip_model_find(&m, "logit_scale")->offset;
    *t = 5.0f;
    flip_model_adamw(&m, &opt, 1.0f, 2);
    float hi = *t;
    *t = -0.5f;
    flip_model_adamw(&m, &opt, 1.0f, 3);
    TEST_CHECK(fabsf(hi - logf(100.0f)) < 1e-6f && *t == 0.0f, "logit_scale clamped into [0, ln 100] (%.7g, %.7g)",
               (double)hi, (double)*t);
    flip_free(before);
    flip_model_free(&m);
    flip_free(d.images);
    return test_finish();
}
