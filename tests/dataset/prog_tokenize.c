/* prog_tokenize.c — helper for test_tokenizer_ref.sh: tokenizes length-
 * prefixed records (uint32 little-endian byte count, then the bytes) with a
 * vocab.txt and prints one line per record: the WordPiece ids separated by
 * spaces, or INVALID for invalid UTF-8.
 * usage: dataset_prog_tokenize <vocab.txt> <lowercase 0|1> <records.bin> */
#include "wordpiece.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s <vocab.txt> <lowercase 0|1> <records.bin>\n", argv[0]);
        return 2;
    }
    char err[512];
    Tokenizer *t = tokenizer_load(argv[1], atoi(argv[2]), err, sizeof err);
    if (!t) { fprintf(stderr, "%s\n", err); return 1; }
    FILE *f = fopen(argv[3], "rb");
    if (!f) { fprintf(stderr, "%s: cannot open\n", argv[3]); return 1; }
    unsigned char hdr[4];
    while (fread(hdr, 1, 4, f) == 4) {
        size_t n = (size_t)hdr[0] | (size_t)hdr[1] << 8 | (size_t)hdr[2] << 16 | (size_t)hdr[3] << 24;
        char *buf = malloc(n + 1);
        if (!buf || fread(buf, 1, n, f) != n) { fprintf(stderr, "truncated record\n"); return 1; }
        int n_ids = 0;
        if (tokenizer_tokenize(t, buf, n, NULL, 0, &n_ids) != 0) {
            printf("INVALID\n");
            free(buf);
            continue;
        }
        int32_t *ids = malloc(((size_t)n_ids + 1) * sizeof(int32_t));
        int n2 = 0;
        if (!ids || tokenizer_tokenize(t, buf, n, ids, n_ids, &n2) != 0 || n2 != n_ids) {
            fprintf(stderr, "second pass differs\n");
            return 1;
        }
        for (int i = 0; i < n_ids; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
        free(ids);
        free(buf);
    }
    fclose(f);
    tokenizer_free(t);
    return 0;
}
