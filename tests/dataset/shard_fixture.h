/* shard_fixture.h — deterministic synthetic shards for the dataset tests.
 * Sample with global index g has a content that is a pure function of g, so a
 * reader can check any sample it gets back without keeping a copy:
 *   pixel (y, x, c) = fixture_pixel(g, y, x, c), length 1 + g % T,
 *   token t < length = (g * 31 + t * 17 + 1) % vocab, label g % 1000 - 7,
 *   caption "sample <g> ünïcode". Header-only. */
#ifndef FLIP_SHARD_FIXTURE_H
#define FLIP_SHARD_FIXTURE_H

#include <stdio.h>
#include <string.h>

#include "common.h"
#include "shard.h"

static inline uint8_t fixture_pixel(uint64_t g, int y, int x, int c) {
    uint64_t v = g * 2654435761u + (uint64_t)y * 40503u + (uint64_t)x * 9973u + (uint64_t)c * 71u;
    return (uint8_t)((v >> 7) ^ (v >> 15));
}

static inline int fixture_length(uint64_t g, int T) { return 1 + (int)(g % (uint64_t)T); }
static inline int32_t fixture_token(uint64_t g, int t, int vocab) {
    return (int32_t)((g * 31 + (uint64_t)t * 17 + 1) % (uint64_t)vocab);
}
static inline int32_t fixture_label(uint64_t g) { return (int32_t)(g % 1000) - 7; }
static inline void fixture_caption(char *buf, size_t n, uint64_t g) {
    snprintf(buf, n, "sample %llu \xc3\xbc" "n\xc3\xaf" "code", (unsigned long long)g);
}

static inline ShardMeta fixture_meta(int H, int W, int C, int T, int vocab) {
    ShardMeta m;
    memset(&m, 0, sizeof m);
    m.H = H;
    m.W = W;
    m.C = C;
    m.T = T;
    m.vocab_size = vocab;
    for (int i = 0; i < 64; i++) m.vocab_sha256[i] = "0123456789abcdef"[(i * 7) % 16];
    snprintf(m.tokenizer, sizeof m.tokenizer, "wordpiece");
    snprintf(m.source, sizeof m.source, "synthetic test fixture");
    for (int c = 0; c < 3; c++) {
        m.mean[c] = 0.25f + 0.125f * (float)c;
        m.std[c] = 0.5f - 0.0625f * (float)c;
    }
    return m;
}

static inline void fixture_image(uint8_t *img, uint64_t g, int H, int W, int C) {
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < C; c++) img[((size_t)y * W + x) * C + c] = fixture_pixel(g, y, x, c);
}

/* Writes n samples with global indices first..first+n-1. */
static inline void fixture_write(const char *path, const ShardMeta *m, long first, long n, int captions,
                                 int labels) {
    ShardWriter *w = shard_writer_open(path, m, 3, captions, labels);
    uint8_t *img = flip_malloc((size_t)m->H * m->W * m->C, "fixture image");
    int32_t *tok = flip_malloc(sizeof(int32_t) * (size_t)m->T, "fixture tokens");
    char cap[96];
    for (long i = 0; i < n; i++) {
        uint64_t g = (uint64_t)(first + i);
        fixture_image(img, g, m->H, m->W, m->C);
        int len = fixture_length(g, m->T);
        for (int t = 0; t < m->T; t++) tok[t] = t < len ? fixture_token(g, t, m->vocab_size) : 12345;
        fixture_caption(cap, sizeof cap, g);
        shard_writer_add(w, img, tok, len, cap, fixture_label(g));
    }
    shard_writer_close(w);
    flip_free(img);
    flip_free(tok);
}

/* Number of mismatches between a read sample and the fixture of g. */
static inline long fixture_check(uint64_t g, const uint8_t *img, const int32_t *tok, int len, int H, int W, int C,
                                 int T, int vocab) {
    long bad = 0;
    if (img)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < C; c++) bad += img[((size_t)y * W + x) * C + c] != fixture_pixel(g, y, x, c);
    int want = fixture_length(g, T);
    bad += len != want;
    if (tok)
        for (int t = 0; t < T; t++) bad += tok[t] != (t < want ? fixture_token(g, t, vocab) : 0);
    return bad;
}

#endif
