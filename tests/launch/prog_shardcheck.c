/* prog_shardcheck.c — prints what a shard holds, read through the validating
 * shard reader, for tests/launch/test_prep.sh.
 *   launch_prog_shardcheck FILE           -> "n=.. H=.. W=.. C=.. T=.. vocab_size=.. labels=0|1 captions=0|1"
 *   launch_prog_shardcheck FILE I         -> "px=R,G,B sum=S length=L label=K tokens=a,b,.. caption=..."
 *                                            (px: pixel (0, 0); sum: all bytes of the image)
 * Exit 1 with the reader's one-line error if the shard or sample is bad. */
#include "common.h"
#include "shard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s FILE [SAMPLE]\n", argv[0]);
        return 2;
    }
    Shard s;
    memset(&s, 0, sizeof s);
    char err[1024];
    if (shard_open(&s, argv[1], NULL, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const ShardMeta *m = &s.meta;
    if (argc == 2) {
        printf("n=%ld H=%d W=%d C=%d T=%d vocab_size=%d labels=%d captions=%d mean=%.4f std=%.4f\n", s.n, m->H, m->W,
               m->C, m->T, m->vocab_size, s.has_labels, s.has_captions, (double)m->mean[0], (double)m->std[0]);
        shard_close(&s);
        return 0;
    }
    long i = atol(argv[2]);
    if (i < 0 || i >= s.n) {
        fprintf(stderr, "%s: sample %ld out of range (n=%ld)\n", argv[1], i, s.n);
        shard_close(&s);
        return 1;
    }
    size_t nb = (size_t)m->H * m->W * m->C;
    uint8_t *img = flip_malloc(nb, "image");
    int32_t *tok = flip_malloc(sizeof(int32_t) * (size_t)m->T, "tokens");
    int length;
    int32_t label;
    char cap[1024] = "";
    if (shard_read_sample(&s, i, img, tok, &length, &label, err, sizeof err) != 0 ||
        (s.has_captions && shard_read_caption(&s, i, cap, sizeof cap, err, sizeof err) != 0)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    unsigned long long sum = 0;
    for (size_t k = 0; k < nb; k++) sum += img[k];
    if (m->C == 3) printf("px=%d,%d,%d", img[0], img[1], img[2]);
    else printf("px=%d", img[0]);
    printf(" sum=%llu length=%d label=%d tokens=", sum, length, label);
    for (int t = 0; t < length; t++) printf("%s%d", t ? "," : "", tok[t]);
    printf(" caption=%s\n", cap);
    flip_free(img);
    flip_free(tok);
    shard_close(&s);
    return 0;
}
