/* test_loader.c — the loader's contract (loader.h):
 *  - round trip: every row of every batch equals the written sample named by
 *    its sample_id (pixels, tokens, lengths, labels);
 *  - order: each epoch is a permutation of all samples, epochs differ, and the
 *    order is the one loader_sample_at reports;
 *  - rank-count invariance: world 1, 2, 4 (one loader per simulated rank, one
 *    process) concatenate to the same byte stream, with augmentation on;
 *  - resume: seek(k) continues a stream exactly; prefetch depth does not matter;
 *  - spec forms (brace list, directory, text and JSON manifests, ':' joins) and
 *    one-line errors for bad configs and disagreeing shards;
 *  - augmentation: identity/flip boxes exact, crop statistics, constants kept. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "augment.h"
#include "dataset/shard_fixture.h"
#include "loader.h"
#include "testlib.h"
#include "tolerances.h"

enum { H = 8, W = 6, C = 3, T = 8, V = 500, TOTAL = 100 };
static const long shard_n[3] = {37, 50, 13};
static char g_dir[64];

static Loader *open_loader(const char *spec, int B, int rank, int world, uint64_t seed, int augment, int prefetch) {
    LoaderConfig cfg = {.spec = spec, .batch_size = B, .rank = rank, .world = world, .seed = seed,
                        .augment = augment, .prefetch = prefetch};
    char err[1200] = "";
    Loader *l = loader_open(&cfg, err, sizeof err);
    if (!l) TEST_CHECK(0, "loader_open(%s, B=%d rank %d/%d): %s", spec, B, rank, world, err);
    return l;
}

static void check_round_trip_and_epochs(const char *spec) {
    Loader *l = open_loader(spec, 4, 0, 1, 11, 0, 2);
    if (!l) return;
    const ShardMeta *m = loader_meta(l);
    TEST_CHECK(loader_num_samples(l) == TOTAL && loader_num_shards(l) == 3 && loader_steps_per_epoch(l) == 25 &&
                   m->n == TOTAL && m->H == H && m->W == W && m->C == C && m->T == T && m->vocab_size == V &&
                   loader_has_labels(l),
               "open: %ld samples in %d shards, %ld steps/epoch at B=4", loader_num_samples(l), loader_num_shards(l),
               loader_steps_per_epoch(l));
    int seen[2][TOTAL];
    memset(seen, 0, sizeof seen);
    long bad = 0, bad_lab = 0, bad_order = 0, bad_meta = 0;
    uint64_t first[2][TOTAL];
    for (long k = 0; k < 50; k++) {
        const LoaderBatch *b = loader_next(l);
        bad_meta += b->step != k || b->epoch != k / 25 || b->B != 4 || b->n_skipped_total != 0 || !b->labels;
        for (int r = 0; r < 4; r++) {
            uint64_t g = b->sample_ids[r];
            if (g >= TOTAL) {
                bad++;
                continue;
            }
            seen[k / 25][g]++;
            first[k / 25][(k % 25) * 4 + r] = g;
            bad += fixture_check(g, b->images + (size_t)r * H * W * C, b->tokens + (size_t)r * T, b->lens[r], H, W,
                                 C, T, V);
            bad_lab += b->labels[r] != fixture_label(g);
            bad_order += g != loader_sample_at(l, k / 25, (k % 25) * 4 + r);
        }
    }
    TEST_CHECK(bad == 0 && bad_lab == 0 && bad_meta == 0,
               "50 batches: rows equal the written samples (%ld mismatches, %ld label, %ld step/epoch)", bad, bad_lab,
               bad_meta);
    int perm_ok = 1;
    for (int e = 0; e < 2; e++)
        for (int g = 0; g < TOTAL; g++) perm_ok &= seen[e][g] == 1;
    TEST_CHECK(perm_ok, "epochs 0 and 1 are each a permutation of all 100 samples");
    TEST_CHECK(memcmp(first[0], first[1], sizeof first[0]) != 0, "epoch 1 order differs from epoch 0");
    int identity = 1;
    for (int g = 0; g < TOTAL; g++) identity &= first[0][g] == (uint64_t)g;
    TEST_CHECK(!identity, "epoch 0 is shuffled");
    TEST_CHECK(bad_order == 0, "order matches loader_sample_at (Fisher-Yates on Rng(seed, SHUFFLE, 0, epoch))");
    loader_close(l);

    /* another seed gives another order */
    Loader *a = open_loader(spec, 4, 0, 1, 12, 0, 2);
    if (a) {
        const LoaderBatch *b = loader_next(a);
        int same = 1;
        for (int r = 0; r < 4; r++) same &= b->sample_ids[r] == first[0][r];
        TEST_CHECK(!same, "seed 12 starts differently from seed 11");
        loader_close(a);
    }

    /* sequential order for evaluation */
    LoaderConfig cfg = {.spec = spec, .batch_size = 10, .rank = 1, .world = 2, .sequential = 1};
    char err[1200];
    Loader *s = loader_open(&cfg, err, sizeof err);
    if (s) {
        const LoaderBatch *b = loader_next(s);
        int ok = 1;
        for (int r = 0; r < 10; r++) ok &= b->sample_ids[r] == (uint64_t)(10 + r);
        b = loader_next(s);
        for (int r = 0; r < 10; r++) ok &= b->sample_ids[r] == (uint64_t)(30 + r);
        TEST_CHECK(ok, "sequential: rank 1 of 2 reads rows 10..19 then 30..39");
        loader_close(s);
    } else {
        TEST_CHECK(0, "sequential open: %s", err);
    }
}

/* world 1, 2, 4 with G = 12: the ranks' batches concatenate to one stream */
static void check_invariance(const char *spec) {
    const int G = 12, steps = 20; /* 8 steps per epoch: crosses two epoch boundaries */
    const size_t img = (size_t)H * W * C;
    uint8_t *ref_img = flip_malloc((size_t)steps * G * img, "ref images");
    int32_t *ref_tok = flip_malloc(sizeof(int32_t) * (size_t)steps * G * T, "ref tokens");
    uint64_t *ref_id = flip_malloc(sizeof(uint64_t) * (size_t)steps * G, "ref ids");
    int worlds[3] = {1, 2, 4};
    for (int wi = 0; wi < 3; wi++) {
        int world = worlds[wi], B = G / world;
        Loader *ls[4] = {0};
        for (int r = 0; r < world; r++) ls[r] = open_loader(spec, B, r, world, 99, 1, 2);
        long mismatch = 0;
        for (int k = 0; k < steps; k++)
            for (int r = 0; r < world; r++) {
                if (!ls[r]) continue;
                const LoaderBatch *b = loader_next(ls[r]);
                size_t row0 = (size_t)k * G + (size_t)r * B;
                if (wi == 0) {
                    memcpy(ref_img + row0 * img, b->images, (size_t)B * img);
                    memcpy(ref_tok + row0 * T, b->tokens, sizeof(int32_t) * (size_t)B * T);
                    memcpy(ref_id + row0, b->sample_ids, sizeof(uint64_t) * (size_t)B);
                } else {
                    mismatch += memcmp(ref_img + row0 * img, b->images, (size_t)B * img) != 0;
                    mismatch += memcmp(ref_tok + row0 * T, b->tokens, sizeof(int32_t) * (size_t)B * T) != 0;
                    mismatch += memcmp(ref_id + row0, b->sample_ids, sizeof(uint64_t) * (size_t)B) != 0;
                }
            }
        for (int r = 0; r < world; r++) loader_close(ls[r]);
        if (wi > 0)
            TEST_CHECK(mismatch == 0, "world %d (B=%d, augment on): concatenated stream == world 1 over %d steps (%ld mismatching batches)",
                       world, B, steps, mismatch);
    }
    /* augmentation really changed the images: count rows that differ from the stored sample */
    long changed = 0;
    uint8_t *orig = flip_malloc(img, "orig");
    for (int i = 0; i < steps * G; i++) {
        fixture_image(orig, ref_id[i], H, W, C);
        changed += memcmp(orig, ref_img + (size_t)i * img, img) != 0;
    }
    TEST_CHECK(changed > steps * G / 2, "augmentation changed %ld of %d rows", changed, steps * G);
    flip_free(orig);

    /* resume: a fresh world-2 rank-1 loader seeking to step 13 continues the stream */
    Loader *l = open_loader(spec, 6, 1, 2, 99, 1, 3);
    if (l) {
        long mismatch = 0;
        loader_seek(l, 13);
        for (int k = 13; k < steps; k++) {
            const LoaderBatch *b = loader_next(l);
            size_t row0 = (size_t)k * G + 6;
            mismatch += b->step != k || memcmp(ref_img + row0 * img, b->images, 6 * img) != 0 ||
                        memcmp(ref_id + row0, b->sample_ids, 6 * sizeof(uint64_t)) != 0;
        }
        /* seek backwards after consuming, with batches still prefetched */
        loader_seek(l, 2);
        for (int k = 2; k < 6; k++) {
            const LoaderBatch *b = loader_next(l);
            size_t row0 = (size_t)k * G + 6;
            mismatch += b->step != k || memcmp(ref_img + row0 * img, b->images, 6 * img) != 0;
        }
        TEST_CHECK(mismatch == 0, "seek(13) then seek(2) continue the stream exactly (%ld mismatches)", mismatch);
        loader_close(l);
    }
    /* prefetch depth 1 and 5 give the same stream */
    for (int pf = 1; pf <= 5; pf += 4) {
        Loader *p = open_loader(spec, 12, 0, 1, 99, 1, pf);
        if (!p) continue;
        long mismatch = 0;
        for (int k = 0; k < steps; k++) {
            const LoaderBatch *b = loader_next(p);
            mismatch += memcmp(ref_img + (size_t)k * G * img, b->images, (size_t)G * img) != 0;
        }
        TEST_CHECK(mismatch == 0, "prefetch %d: same stream", pf);
        loader_close(p);
    }
    flip_free(ref_img);
    flip_free(ref_tok);
    flip_free(ref_id);
}

static uint64_t first_id(const char *spec) {
    Loader *l = open_loader(spec, 5, 0, 1, 3, 0, 1);
    if (!l) return UINT64_MAX;
    uint64_t v = loader_num_samples(l) == TOTAL ? loader_next(l)->sample_ids[0] : UINT64_MAX - 1;
    loader_close(l);
    return v;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return;
    }
    fputs(text, f);
    fclose(f);
}

static void check_specs(void) {
    char spec[600], p2[256];
    snprintf(spec, sizeof spec, "%s/s-{0..2}.h5", g_dir);
    uint64_t ref = first_id(spec);
    snprintf(spec, sizeof spec, "%s", g_dir);
    TEST_CHECK(first_id(spec) == ref, "directory spec == brace spec");
    snprintf(spec, sizeof spec, "%s/list.txt", g_dir);
    write_text(spec, "# shards\ns-0.h5\n  s-1.h5  \n\ns-2.h5\n");
    TEST_CHECK(first_id(spec) == ref, "text manifest (relative paths, comments, blanks) == brace spec");
    snprintf(spec, sizeof spec, "%s/manifest.json", g_dir);
    write_text(spec, "{\"shards\": [{\"path\": \"s-0.h5\", \"n\": 37}, {\"path\": \"s-1.h5\", \"n\": 50},\n"
                     " {\"path\": \"s-2.h5\", \"n\": 13}], \"source\": \"idx\", \"vocab\": \"vocab.txt\"}\n");
    TEST_CHECK(first_id(spec) == ref, "JSON manifest == brace spec");
    snprintf(spec, sizeof spec, "%s/s-0.h5:%s/s-{1,2}.h5", g_dir, g_dir);
    TEST_CHECK(first_id(spec) == ref, "':'-joined specs == brace spec");

    /* an empty shard in the middle: global indices skip it, every sample read exact */
    snprintf(p2, sizeof p2, "%s/odd/empty.h5", g_dir);
    ShardMeta me = fixture_meta(H, W, C, T, V);
    fixture_write(p2, &me, 0, 0, 0, 1);
    snprintf(spec, sizeof spec, "%s/s-0.h5:%s:%s/s-{1,2}.h5", g_dir, p2, g_dir);
    Loader *le = open_loader(spec, 5, 0, 1, 3, 0, 2);
    if (le) {
        int seen[TOTAL] = {0};
        long bad = 0;
        for (int k = 0; k < 20; k++) {
            const LoaderBatch *b = loader_next(le);
            for (int r = 0; r < 5; r++) {
                uint64_t g = b->sample_ids[r];
                if (g >= TOTAL) { bad++; continue; }
                seen[g]++;
                bad += fixture_check(g, b->images + (size_t)r * H * W * C, b->tokens + (size_t)r * T, b->lens[r], H, W,
                                     C, T, V);
            }
        }
        for (int g = 0; g < TOTAL; g++) bad += seen[g] != 1;
        TEST_CHECK(loader_num_shards(le) == 4 && bad == 0, "empty shard in the middle: 4 shards, one epoch exact (%ld bad)", bad);
        loader_close(le);
    }

    /* errors: one line naming what is wrong */
    char err[1200];
    typedef struct {
        const char *what, *spec;
        int B, rank, world;
        const char *needle;
    } BadCase;
    BadCase bad[5];
    snprintf(spec, sizeof spec, "%s/s-{0..2}.h5", g_dir);
    snprintf(p2, sizeof p2, "%s/nope-{0..1}.h5", g_dir);
    bad[0] = (BadCase){"global batch larger than the data", spec, 51, 0, 2, "less than one global batch"};
    bad[1] = (BadCase){"rank >= world", spec, 4, 2, 2, "rank 2"};
    bad[2] = (BadCase){"missing shard", p2, 4, 0, 1, "nope-0.h5"};
    bad[3] = (BadCase){"missing directory", "/nonexistent/flip/dir", 4, 0, 1, "/nonexistent/flip/dir"};
    bad[4] = (BadCase){"empty spec", "", 4, 0, 1, "no data spec"};
    for (int i = 0; i < 5; i++) {
        LoaderConfig cfg = {.spec = bad[i].spec, .batch_size = bad[i].B, .rank = bad[i].rank, .world = bad[i].world};
        err[0] = '\0';
        Loader *l = loader_open(&cfg, err, sizeof err);
        TEST_CHECK(!l && strstr(err, bad[i].needle) && !strchr(err, '\n'), "%s -> %s", bad[i].what, err);
        loader_close(l);
    }
    /* shards that disagree: different T, different vocab hash, labels vs none */
    const char *names[3] = {"T", "vocab_sha256", "labels"};
    for (int i = 0; i < 3; i++) {
        ShardMeta m = fixture_meta(H, W, C, i == 0 ? T + 1 : T, V);
        if (i == 1) m.vocab_sha256[0] = m.vocab_sha256[0] == 'f' ? 'e' : 'f';
        snprintf(p2, sizeof p2, "%s/odd/odd-%d.h5", g_dir, i);
        fixture_write(p2, &m, 0, 20, 0, i != 2);
        snprintf(spec, sizeof spec, "%s/s-0.h5:%s", g_dir, p2);
        LoaderConfig cfg = {.spec = spec, .batch_size = 4, .world = 1};
        Loader *l = loader_open(&cfg, err, sizeof err);
        TEST_CHECK(!l && strstr(err, p2) && strstr(err, names[i]), "shard disagreeing on %s -> %s", names[i], err);
        loader_close(l);
    }
    /* unlabelled shards: labels == NULL */
    snprintf(spec, sizeof spec, "%s/odd/odd-2.h5", g_dir);
    Loader *l = open_loader(spec, 4, 0, 1, 1, 0, 1);
    if (l) {
        const LoaderBatch *b = loader_next(l);
        TEST_CHECK(b->labels == NULL && !loader_has_labels(l), "unlabelled shards: labels NULL");
        loader_close(l);
    }
}

static void check_augment(void) {
    enum { h = 20, w = 16, c = 3 };
    uint8_t in[h * w * c], out[h * w * c];
    for (int i = 0; i < h * w * c; i++) in[i] = (uint8_t)(i * 7 + i / 13);
    AugmentBox id = {0, 0, h, w, 0};
    augment_apply(out, in, h, w, c, &id);
    TEST_CHECK(memcmp(in, out, sizeof in) == 0, "full box, no flip: identity");
    AugmentBox fl = {0, 0, h, w, 1};
    augment_apply(out, in, h, w, c, &fl);
    long bad = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++) bad += out[(y * w + x) * c + k] != in[(y * w + (w - 1 - x)) * c + k];
    TEST_CHECK(bad == 0, "full box, flip: exact mirror");
    /* a linear ramp resampled by bilinear interpolation stays the ramp (up to rounding) */
    uint8_t ramp[h * w], rout[h * w];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) ramp[y * w + x] = (uint8_t)(10 * x + 3 * y);
    AugmentBox up = {4, 4, 10, 8, 0}; /* upsample 2x: half-pixel centres */
    augment_apply(rout, ramp, h, w, 1, &up);
    double max_err = 0;
    for (int y = 1; y < h - 1; y++)
        for (int x = 1; x < w - 1; x++) {
            double sx = 4 + (x + 0.5) * 8.0 / w - 0.5, sy = 4 + (y + 0.5) * 10.0 / h - 0.5;
            double want = 10 * sx + 3 * sy;
            double e = fabs(rout[y * w + x] - want);
            if (e > max_err) max_err = e;
        }
    TEST_CHECK(max_err <= TOL_AUG_BILINEAR, "bilinear 2x upsample of a linear ramp: max error %.3f <= 0.5 (rounding)", max_err);
    /* box statistics over many draws */
    Rng r;
    rng_init(&r, 5, FLIP_RNG_TEST, 0, 0);
    int flips = 0, out_of_range = 0;
    double min_scale = 1, max_scale = 0;
    const int N = 4000, HH = 224, WW = 224;
    for (int i = 0; i < N; i++) {
        AugmentBox b = augment_draw_box(&r, HH, WW, AUGMENT_SCALE_MIN, AUGMENT_SCALE_MAX);
        double s = (double)b.h * b.w / (HH * WW), ar = (double)b.w / b.h;
        if (s < min_scale) min_scale = s;
        if (s > max_scale) max_scale = s;
        out_of_range += b.y0 < 0 || b.x0 < 0 || b.y0 + b.h > HH || b.x0 + b.w > WW || ar < TOL_AUG_ASPECT_LO || ar > TOL_AUG_ASPECT_HI;
        flips += b.flip;
    }
    TEST_CHECK(out_of_range == 0 && min_scale >= TOL_AUG_SCALE_MIN && min_scale < 0.45 && max_scale > 0.9 && max_scale <= 1.0,
               "4000 boxes inside the image, aspect in [3/4, 4/3], area scale in [%.3f, %.3f]", min_scale, max_scale);
    TEST_CHECK(fabs(flips - N / 2.0) < TOL_AUG_FLIP_SIGMAS * sqrt(N / 4.0), "flip rate %d / %d ~ 1/2 (within 4 sigma)", flips, N);
    /* a constant image stays constant under any box */
    uint8_t cst[h * w * c];
    memset(cst, 77, sizeof cst);
    int keep = 1;
    for (int i = 0; i < 50; i++) {
        augment_image(out, cst, h, w, c, &r);
        for (int k = 0; k < h * w * c; k++) keep &= out[k] == 77;
    }
    TEST_CHECK(keep, "constant image stays constant");
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/flip_test_loader_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    char path[256];
    snprintf(path, sizeof path, "%s/odd", g_dir);
    if (mkdir(path, 0755) != 0) perror(path);
    ShardMeta m = fixture_meta(H, W, C, T, V);
    long first = 0;
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/s-%d.h5", g_dir, i);
        fixture_write(path, &m, first, shard_n[i], 0, 1);
        first += shard_n[i];
    }
    char spec[256];
    snprintf(spec, sizeof spec, "%s/s-{0..2}.h5", g_dir);
    check_round_trip_and_epochs(spec);
    check_invariance(spec);
    check_specs();
    check_augment();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", g_dir);
    return test_finish();
}
