/* prog_shard_tool.c — helper for the dataset shell tests (dataset_prog_shard_tool).
 *   write PATH N H W C T VOCAB FIRST [captions] [labels]
 *         writes N fixture samples (global indices FIRST..) (shard_fixture.h)
 *   check PATH FIRST        opens PATH with the validating reader and checks
 *                           every sample against the fixture; exit 0 if exact
 *   dump PATH OUT           writes every image, then every token row (int32),
 *                           then every length (int32), raw, as read by shard.c
 *   validate PATH           shard_open + read all samples; prints the error
 * Exit codes: 0 ok, 1 check/validation failed, 2 usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset/shard_fixture.h"

static int usage(void) {
    fprintf(stderr, "usage: prog_shard_tool write PATH N H W C T VOCAB FIRST [captions] [labels] | check PATH FIRST | "
                    "dump PATH OUT | validate PATH\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 3) return usage();
    const char *cmd = argv[1], *path = argv[2];
    char err[1200] = "";
    if (strcmp(cmd, "write") == 0) {
        if (argc < 10) return usage();
        ShardMeta m = fixture_meta(atoi(argv[4]), atoi(argv[5]), atoi(argv[6]), atoi(argv[7]), atoi(argv[8]));
        int caps = 0, labs = 0;
        for (int i = 10; i < argc; i++) {
            caps |= strcmp(argv[i], "captions") == 0;
            labs |= strcmp(argv[i], "labels") == 0;
        }
        fixture_write(path, &m, atol(argv[9]), atol(argv[3]), caps, labs);
        return 0;
    }
    Shard s;
    if (shard_open(&s, path, NULL, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const ShardMeta *m = &s.meta;
    size_t img_bytes = (size_t)m->H * m->W * m->C;
    uint8_t *img = flip_malloc(img_bytes, "image");
    int32_t *tok = flip_malloc(sizeof(int32_t) * (size_t)m->T, "tokens");
    int rc = 0;
    if (strcmp(cmd, "check") == 0 && argc == 4) {
        long first = atol(argv[3]), bad = 0;
        for (long i = 0; i < s.n && rc == 0; i++) {
            int len = 0;
            int32_t lab = 0;
            if (shard_read_sample(&s, i, img, tok, &len, &lab, err, sizeof err)) {
                fprintf(stderr, "%s\n", err);
                rc = 1;
                break;
            }
            uint64_t g = (uint64_t)(first + i);
            bad += fixture_check(g, img, tok, len, m->H, m->W, m->C, m->T, m->vocab_size);
            if (s.has_labels) bad += lab != fixture_label(g);
        }
        if (bad) {
            fprintf(stderr, "%s: %ld values differ from the fixture\n", path, bad);
            rc = 1;
        }
        if (rc == 0) printf("%s: %ld samples exact\n", path, s.n);
    } else if (strcmp(cmd, "dump") == 0 && argc == 4) {
        FILE *f = fopen(argv[3], "wb");
        if (!f) {
            perror(argv[3]);
            rc = 1;
        }
        for (int part = 0; part < 3 && rc == 0; part++)
            for (long i = 0; i < s.n && rc == 0; i++) {
                int len = 0;
                if (shard_read_sample(&s, i, part == 0 ? img : NULL, tok, &len, NULL, err, sizeof err)) {
                    fprintf(stderr, "%s\n", err);
                    rc = 1;
                } else if (part == 0) {
                    fwrite(img, 1, img_bytes, f);
                } else if (part == 1) {
                    fwrite(tok, sizeof(int32_t), (size_t)m->T, f);
                } else {
                    int32_t l32 = len;
                    fwrite(&l32, sizeof l32, 1, f);
                }
            }
        if (f) fclose(f);
    } else if (strcmp(cmd, "validate") == 0) {
        for (long i = 0; i < s.n && rc == 0; i++)
            if (shard_read_sample(&s, i, img, tok, NULL, NULL, err, sizeof err)) {
                fprintf(stderr, "%s\n", err);
                rc = 1;
            }
        if (rc == 0) printf("%s: valid, %ld samples\n", path, s.n);
    } else {
        rc = usage();
    }
    flip_free(img);
    flip_free(tok);
    shard_close(&s);
    return rc;
}
