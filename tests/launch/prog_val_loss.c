/* prog_val_loss.c — an independent single-process recomputation of flip-train's
 * validation loss for tests/launch/test_train_val.sh: loads a checkpoint, runs
 * the training forward path (flip_model_forward, unmasked) on whole global
 * batches of G consecutive samples of one caption shard, and averages the
 * reference InfoNCE (infonce_forward_ref, B = G, offset 0) over the full
 * batches. No MPI gather, no chunking, no padding: none of eval_val_loss's
 * machinery. Prints the loss with 9 significant digits.
 * usage: launch_prog_val_loss CHECKPOINT SHARD G */
#include <stdio.h>
#include <stdlib.h>

#include "checkpoint.h"
#include "common.h"
#include "model.h"
#include "ops.h"
#include "shard.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s CHECKPOINT SHARD G\n", argv[0]);
        return 2;
    }
    int G = atoi(argv[3]);
    FLIP_CHECK(G >= 1, "G must be >= 1");
    char err[4096];
    FlipConfig cfg;
    static CheckpointState st;
    FLIP_CHECK(checkpoint_read_info(argv[1], &cfg, &st, err, sizeof err) == 0, "%s", err);
    FlipModel m;
    flip_model_init(&m, &cfg, st.seed);
    FLIP_CHECK(checkpoint_load(argv[1], &m, 0, &st, err, sizeof err) == 0, "%s", err);
    Shard sh;
    FLIP_CHECK(shard_open(&sh, argv[2], NULL, err, sizeof err) == 0, "%s", err);
    const int Np = flip_config_num_patches(&cfg), D = cfg.embed_dim, T = cfg.context;
    FLIP_CHECK(sh.meta.T == T && sh.meta.H == cfg.image_size && sh.meta.C == cfg.channels, "shard/model mismatch");
    flip_model_plan(&m, G, Np);
    size_t img_n = (size_t)cfg.image_size * cfg.image_size * cfg.channels;
    uint8_t *img = flip_malloc(img_n * (size_t)G, "images");
    int32_t *tok = flip_malloc(sizeof(int32_t) * (size_t)G * T, "tokens");
    int *lens = flip_malloc(sizeof(int) * (size_t)G, "lens");
    float *probs = flip_malloc(sizeof(float) * 2 * (size_t)G * G, "probs");
    const ParamTensor *ls = flip_model_find(&m, "logit_scale");
    FLIP_CHECK(ls != NULL, "no logit_scale");
    long nb = sh.n / G;
    FLIP_CHECK(nb >= 1, "fewer than G samples");
    double sum = 0;
    for (long k = 0; k < nb; k++) {
        for (int b = 0; b < G; b++)
            FLIP_CHECK(shard_read_sample(&sh, k * G + b, img + img_n * b, tok + (size_t)b * T, &lens[b], NULL, err,
                                         sizeof err) == 0, "%s", err);
        flip_model_forward(&m, img, NULL, tok, lens);
        float loss = 0;
        infonce_forward_ref(&loss, probs, m.img_emb, m.txt_emb, m.img_emb, m.txt_emb, m.params[ls->offset], G, G, D, 0);
        sum += loss;
    }
    printf("%.9g\n", sum / (double)nb);
    flip_free(img); flip_free(tok); flip_free(lens); flip_free(probs);
    shard_close(&sh);
    flip_model_free(&m);
    return 0;
}
