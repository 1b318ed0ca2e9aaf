/* test_shard.c — shard writer -> validating reader round trip (exact pixels,
 * tokens, lengths, labels, captions, attributes), the .tmp-then-rename rule,
 * uint16/int32 token storage, the on-disk zstd format (filter 32015, level in
 * cd_values[0], one zstd frame per image chunk), and the filter callback on
 * its own (round trip, unknown-size and multi-frame input, corrupt input). */
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "dataset/shard_fixture.h"
#include "testlib.h"
#include "zstd_filter.h"

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void check_round_trip(const char *dir) {
    char path[512], tmp[600];
    snprintf(path, sizeof path, "%s/a.h5", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    const int H = 12, W = 10, C = 3, T = 16, V = 1000;
    const long n = 300; /* crosses a SHARD_ROWS_PER_CHUNK boundary */
    ShardMeta m = fixture_meta(H, W, C, T, V);

    /* while the writer is open only <path>.tmp exists */
    ShardWriter *w = shard_writer_open(path, &m, 3, 1, 1);
    TEST_CHECK(exists(tmp) && !exists(path), "writer: only %s.tmp exists while writing", "a.h5");
    uint8_t img[12 * 10 * 3];
    int32_t tok[16];
    char cap[96];
    for (long i = 0; i < n; i++) {
        fixture_image(img, (uint64_t)i, H, W, C);
        int len = fixture_length((uint64_t)i, T);
        for (int t = 0; t < T; t++) tok[t] = t < len ? fixture_token((uint64_t)i, t, V) : 999999; /* ignored */
        fixture_caption(cap, sizeof cap, (uint64_t)i);
        int idx = shard_writer_add(w, img, tok, len, cap, fixture_label((uint64_t)i));
        if (idx != i) TEST_CHECK(0, "writer returned index %d for sample %ld", idx, i);
    }
    shard_writer_close(w);
    TEST_CHECK(exists(path) && !exists(tmp), "writer: renamed to the final name on close");

    Shard s;
    char err[1200] = "";
    int rc = shard_open(&s, path, NULL, err, sizeof err);
    TEST_CHECK(rc == 0, "shard_open of a fresh shard: %s", rc ? err : "ok");
    if (rc) return;
    const ShardMeta *r = &s.meta;
    TEST_CHECK(s.n == n && r->n == n && r->H == H && r->W == W && r->C == C && r->T == T && r->vocab_size == V,
               "meta: n=%ld H=%d W=%d C=%d T=%d vocab=%d", s.n, r->H, r->W, r->C, r->T, r->vocab_size);
    TEST_CHECK(strcmp(r->vocab_sha256, m.vocab_sha256) == 0 && strcmp(r->tokenizer, "wordpiece") == 0 &&
                   strcmp(r->source, m.source) == 0,
               "meta strings: sha=%.12s... tokenizer=%s source=%s", r->vocab_sha256, r->tokenizer, r->source);
    int mean_ok = 1;
    for (int c = 0; c < C; c++) mean_ok &= r->mean[c] == m.mean[c] && r->std[c] == m.std[c];
    TEST_CHECK(mean_ok, "meta mean/std exact");
    TEST_CHECK(s.has_captions && s.has_labels && s.tokens_u16, "captions, labels present; tokens stored as uint16");

    long bad = 0, bad_lab = 0, bad_cap = 0, fails = 0;
    for (long i = 0; i < n; i++) {
        int len = 0;
        int32_t lab = 0;
        memset(img, 0, sizeof img);
        if (shard_read_sample(&s, i, img, tok, &len, &lab, err, sizeof err)) {
            fails++;
            continue;
        }
        bad += fixture_check((uint64_t)i, img, tok, len, H, W, C, T, V);
        bad_lab += lab != fixture_label((uint64_t)i);
        char got[128], want[96];
        fixture_caption(want, sizeof want, (uint64_t)i);
        if (shard_read_caption(&s, i, got, sizeof got, err, sizeof err) || strcmp(got, want) != 0) bad_cap++;
    }
    TEST_CHECK(fails == 0 && bad == 0, "all %ld samples: pixels, tokens (zero padded), lengths exact (%ld read failures, %ld mismatches)",
               n, fails, bad);
    TEST_CHECK(bad_lab == 0 && bad_cap == 0, "labels and UTF-8 captions exact (%ld, %ld mismatches)", bad_lab, bad_cap);

    /* a short caption buffer truncates, NUL-terminated */
    char small[7];
    rc = shard_read_caption(&s, 5, small, sizeof small, err, sizeof err);
    TEST_CHECK(rc == 0 && strcmp(small, "sample") == 0, "caption truncated to the buffer: '%s'", small);

    /* out of range index: one-line error naming the file and the index */
    rc = shard_read_sample(&s, n, img, tok, NULL, NULL, err, sizeof err);
    TEST_CHECK(rc != 0 && strstr(err, path) && strstr(err, "300") && !strchr(err, '\n'),
               "sample n is out of range: %s", err);
    rc = shard_read_sample(&s, -1, NULL, tok, NULL, NULL, err, sizeof err);
    TEST_CHECK(rc != 0, "sample -1 is out of range: %s", err);

    /* two-phase read gives the same image */
    void *raw = NULL;
    size_t cap_bytes = 0, nb = 0;
    uint32_t mask = 7;
    void *dctx = shard_dctx_new();
    uint8_t img2[12 * 10 * 3];
    rc = shard_read_image_raw(&s, 123, &raw, &cap_bytes, &nb, &mask, err, sizeof err) ||
         shard_decode_image(&s, 123, raw, nb, mask, img2, dctx, err, sizeof err);
    TEST_CHECK(rc == 0 && mask == 0 && fixture_check(123, img2, NULL, fixture_length(123, T), H, W, C, T, V) == 0,
               "raw chunk + decode: exact, filter mask 0 (%zu stored bytes)", nb);
    TEST_CHECK(nb >= 4 && ((const uint8_t *)raw)[0] == 0x28 && ((const uint8_t *)raw)[1] == 0xB5 &&
                   ((const uint8_t *)raw)[2] == 0x2F && ((const uint8_t *)raw)[3] == 0xFD &&
                   ZSTD_getFrameContentSize(raw, nb) == (unsigned long long)(H * W * C),
               "image chunk is one zstd frame with the content size (the 32015 format)");
    flip_free(raw);
    shard_dctx_free(dctx);
    shard_close(&s);

    /* on-disk pipeline via plain HDF5: filter 32015, level in cd_values[0]; and
     * reading /images through the HDF5 filter (not our raw path) is exact */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "images", H5P_DEFAULT);
    hid_t dcpl = H5Dget_create_plist(d);
    unsigned flags = 0, cd[4] = {0};
    size_t ncd = 4;
    H5Z_filter_t id = H5Pget_filter2(dcpl, 0, &flags, &ncd, cd, 0, NULL, NULL);
    TEST_CHECK(H5Pget_nfilters(dcpl) == 1 && id == 32015 && ncd >= 1 && cd[0] == 3,
               "/images pipeline: [zstd 32015, level %u]", cd[0]);
    H5Pclose(dcpl);
    uint8_t *all = flip_malloc((size_t)n * H * W * C, "all images");
    herr_t hr = H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, all);
    long bad_all = 0;
    for (long i = 0; i < n && hr >= 0; i++)
        bad_all += fixture_check((uint64_t)i, all + (size_t)i * H * W * C, NULL, fixture_length((uint64_t)i, T), H, W,
                                 C, T, V);
    TEST_CHECK(hr >= 0 && bad_all == 0, "H5Dread of /images through the filter callback: exact");
    flip_free(all);
    H5Dclose(d);
    d = H5Dopen2(f, "tokens", H5P_DEFAULT);
    hid_t t = H5Dget_type(d);
    TEST_CHECK(H5Tget_size(t) == 2 && H5Tget_sign(t) == H5T_SGN_NONE, "/tokens is uint16 for vocab 1000");
    H5Tclose(t);
    H5Dclose(d);
    H5Fclose(f);
}

static void check_int32_gray(const char *dir) {
    char path[512], err[1200] = "";
    snprintf(path, sizeof path, "%s/b.h5", dir);
    const int H = 7, W = 9, C = 1, T = 4, V = 100000;
    ShardMeta m = fixture_meta(H, W, C, T, V);
    fixture_write(path, &m, 1000, 5, 0, 0);
    Shard s;
    int rc = shard_open(&s, path, NULL, err, sizeof err);
    TEST_CHECK(rc == 0 && !s.tokens_u16 && !s.has_labels && !s.has_captions && s.meta.C == 1,
               "vocab 100000: int32 tokens, no labels/captions, gray: %s", rc ? err : "ok");
    if (rc) return;
    uint8_t img[7 * 9];
    int32_t tok[4], lab = 42;
    int len = 0;
    long bad = 0;
    for (long i = 0; i < 5; i++) {
        rc |= shard_read_sample(&s, i, img, tok, &len, &lab, err, sizeof err);
        bad += fixture_check((uint64_t)(1000 + i), img, tok, len, H, W, C, T, V);
        bad += lab != 0;
    }
    char cap[16] = "x";
    rc |= shard_read_caption(&s, 0, cap, sizeof cap, err, sizeof err);
    TEST_CHECK(rc == 0 && bad == 0 && cap[0] == '\0', "int32/gray round trip exact; label 0 and caption \"\" without datasets");
    shard_close(&s);

    /* empty shard */
    snprintf(path, sizeof path, "%s/empty.h5", dir);
    fixture_write(path, &m, 0, 0, 1, 1);
    rc = shard_open(&s, path, NULL, err, sizeof err);
    TEST_CHECK(rc == 0 && s.n == 0, "empty shard opens with n = 0: %s", rc ? err : "ok");
    if (rc == 0) shard_close(&s);

    /* limits: a caller's stricter cap is enforced */
    snprintf(path, sizeof path, "%s/b.h5", dir);
    ShardLimits lim = {.max_hw = 8};
    rc = shard_open(&s, path, &lim, err, sizeof err);
    TEST_CHECK(rc != 0 && strstr(err, "W = 9"), "ShardLimits max_hw 8 rejects W 9: %s", err);
}

/* the filter callback directly, with HDF5-owned buffers */
static void check_filter(void) {
    const size_t n = 100000;
    unsigned char *src = H5allocate_memory(n, 0);
    for (size_t i = 0; i < n; i++) src[i] = (unsigned char)((i / 97) * 3 + (i % 7 == 0));
    unsigned char *ref = malloc(n);
    memcpy(ref, src, n);
    void *buf = src;
    size_t buf_size = n;
    unsigned cd[1] = {5};
    size_t nc = zstd_filter_apply(0, 1, cd, n, &buf_size, &buf);
    TEST_CHECK(nc > 0 && nc < n / 4, "filter compresses 100000 bytes to %zu", nc);
    size_t nd = zstd_filter_apply(H5Z_FLAG_REVERSE, 1, cd, nc, &buf_size, &buf);
    TEST_CHECK(nd == n && memcmp(buf, ref, n) == 0, "filter round trip exact (%zu bytes)", nd);
    H5free_memory(buf);

    /* unknown content size (streaming) and two concatenated frames */
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    size_t bound = ZSTD_compressBound(n) * 2 + 64;
    unsigned char *z = H5allocate_memory(bound, 0);
    ZSTD_outBuffer ob = {z, bound, 0};
    ZSTD_inBuffer ib = {ref, n, 0};
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
    size_t left = ZSTD_compressStream2(cc, &ob, &ib, ZSTD_e_end);
    TEST_CHECK(left == 0 && ZSTD_getFrameContentSize(z, ob.pos) == ZSTD_CONTENTSIZE_UNKNOWN,
               "streamed frame without content size (%zu bytes)", ob.pos);
    buf = z;
    buf_size = bound;
    nd = zstd_filter_apply(H5Z_FLAG_REVERSE, 0, NULL, ob.pos, &buf_size, &buf);
    TEST_CHECK(nd == n && memcmp(buf, ref, n) == 0, "unknown-size frame decompresses exactly");
    H5free_memory(buf);

    z = H5allocate_memory(bound, 0);
    size_t a = ZSTD_compress(z, bound, ref, n / 2, 3);
    size_t b = ZSTD_compress(z + a, bound - a, ref + n / 2, n - n / 2, 3);
    buf = z;
    buf_size = bound;
    nd = zstd_filter_apply(H5Z_FLAG_REVERSE, 0, NULL, a + b, &buf_size, &buf);
    TEST_CHECK(nd == n && memcmp(buf, ref, n) == 0, "two concatenated frames decompress exactly");
    H5free_memory(buf);

    /* corrupt: flipped byte in the middle, truncation, garbage */
    z = H5allocate_memory(bound, 0);
    a = ZSTD_compress(z, bound, ref, n, 3);
    unsigned char *copy = malloc(a);
    memcpy(copy, z, a);
    int zero_ret = 1;
    for (int trial = 0; trial < 3; trial++) {
        memcpy(z, copy, a);
        size_t len = a;
        if (trial == 0) z[a / 2] ^= 0x5A;
        if (trial == 1) len = a / 2;
        if (trial == 2) memset(z, 0xAB, a);
        buf = z;
        buf_size = bound;
        nd = zstd_filter_apply(H5Z_FLAG_REVERSE, 0, NULL, len, &buf_size, &buf);
        /* on failure the filter must leave the input buffer in place */
        zero_ret &= nd == 0 && buf == z;
    }
    TEST_CHECK(zero_ret, "corrupt, truncated and garbage input: filter returns 0, buffer untouched");
    H5free_memory(z);
    free(copy);
    free(ref);
    ZSTD_freeCCtx(cc);
}

int main(void) {
    char dir[] = "/tmp/flip_test_shard_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    check_round_trip(dir);
    check_int32_gray(dir);
    check_filter();
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    return test_finish();
}
