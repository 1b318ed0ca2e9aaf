/* prog_make_shards.c — synthetic labelled caption shards for the flip-train /
 * flip-eval integration tests and benchmarks (written with the shard writer,
 * so they are exactly what flip-prep produces).
 *
 * usage: launch_prog_make_shards OUT_DIR N_SHARDS N_PER_SHARD IMAGE_SIZE CHANNELS [T]
 * Writes OUT_DIR/train-000000.h5 ... , OUT_DIR/vocab.txt, OUT_DIR/classnames.txt
 * and OUT_DIR/templates.txt. Sample i has class k = i % 10: its image is noise
 * around a class-dependent brightness (so random crops and flips keep the
 * class visible), its caption
 * one of a few templates around the class name, tokenized with the vocab (so
 * zero-shot prompts tokenize the same way). Deterministic (counter RNG). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "rng.h"
#include "shard.h"
#include "wordpiece.h"

static const char *const k_classes[10] = {"zero", "one", "two", "three", "four",
                                          "five", "six", "seven", "eight", "nine"};
/* caption = prefix + class name + suffix */
static const char *const k_prefix[4] = {"a photo of the ", "the ", "a picture of a ", ""};
static const char *const k_suffix[4] = {"", "", " .", " on a plain background"};

int main(int argc, char **argv) {
    if (argc < 6 || argc > 7) {
        fprintf(stderr, "usage: %s OUT_DIR N_SHARDS N_PER_SHARD IMAGE_SIZE CHANNELS [T]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    int n_shards = atoi(argv[2]), n_per = atoi(argv[3]), S = atoi(argv[4]), C = atoi(argv[5]);
    int T = argc > 6 ? atoi(argv[6]) : 16;
    FLIP_CHECK(n_shards >= 1 && n_per >= 1 && S >= 4 && (C == 1 || C == 3) && T >= 4, "bad arguments");
    const char *vocab[64];
    int nv = 0;
    const char *specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "the",
                              "picture", "on", "plain", "background", "."};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) vocab[nv++] = specials[i];
    for (int k = 0; k < 10; k++) vocab[nv++] = k_classes[k];
    char err[1024];
    Tokenizer *tk = tokenizer_from_tokens(vocab, nv, 1, err, sizeof err);
    FLIP_CHECK(tk != NULL, "vocab: %s", err);
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    FLIP_CHECK(tokenizer_save(tk, path, err, sizeof err) == 0, "%s", err);
    snprintf(path, sizeof path, "%s/classnames.txt", dir);
    FILE *f = fopen(path, "w");
    FLIP_CHECK(f != NULL, "cannot write %s", path);
    for (int k = 0; k < 10; k++) fprintf(f, "%s\n", k_classes[k]);
    fclose(f);
    snprintf(path, sizeof path, "%s/templates.txt", dir);
    f = fopen(path, "w");
    FLIP_CHECK(f != NULL, "cannot write %s", path);
    fprintf(f, "a photo of the {}\nthe {}\n");
    fclose(f);

    ShardMeta meta;
    memset(&meta, 0, sizeof meta);
    meta.H = meta.W = S;
    meta.C = C;
    meta.T = T;
    meta.vocab_size = tokenizer_vocab_size(tk);
    tokenizer_sha256(tk, meta.vocab_sha256);
    snprintf(meta.tokenizer, sizeof meta.tokenizer, "wordpiece-uncased");
    snprintf(meta.source, sizeof meta.source, "tests/launch/prog_make_shards synthetic");
    for (int c = 0; c < 3; c++) {
        meta.mean[c] = 0.5f;
        meta.std[c] = 0.25f;
    }
    uint8_t *img = flip_malloc((size_t)S * S * C, "image");
    int32_t *tok = flip_malloc(sizeof(int32_t) * (size_t)T, "tokens");
    for (int s = 0; s < n_shards; s++) {
        snprintf(path, sizeof path, "%s/train-%06d.h5", dir, s);
        ShardWriter *w = shard_writer_open(path, &meta, 1, 1, 1);
        for (int j = 0; j < n_per; j++) {
            long i = (long)s * n_per + j;
            int k = (int)(i % 10);
            Rng r;
            rng_init(&r, 2024, FLIP_RNG_TEST, (uint64_t)i, 0);
            /* class k: overall brightness 20 + 22 k (survives crop and flip) */
            for (size_t p = 0; p < (size_t)S * S * C; p++) {
                int v = 20 + 22 * k + (int)rng_below(&r, 16);
                img[p] = (uint8_t)(v > 255 ? 255 : v);
            }
            char caption[256];
            int tm = (int)rng_below(&r, 4);
            snprintf(caption, sizeof caption, "%s%s%s", k_prefix[tm], k_classes[k], k_suffix[tm]);
            int len = 0;
            FLIP_CHECK(tokenizer_encode(tk, caption, strlen(caption), tok, T, &len) == 0, "encode failed");
            shard_writer_add(w, img, tok, len, caption, k);
        }
        shard_writer_close(w);
    }
    flip_free(img);
    flip_free(tok);
    tokenizer_free(tk);
    printf("wrote %d shards x %d samples (%dx%dx%d, T %d, vocab %d) to %s\n", n_shards, n_per, S, S, C, T,
           meta.vocab_size, dir);
    return 0;
}
