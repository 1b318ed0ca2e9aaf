/* test_corrupt.c — bad shards give a one-line error naming the file (and the
 * sample), or a counted skip with skip_bad; never a crash:
 *   truncated files, flipped bytes in an image chunk and in a token chunk
 *   (located with H5Dget_chunk_info), absurd / missing / mistyped attributes,
 *   missing datasets, wrong dtypes, shapes, chunking and filters, token ids >=
 *   vocab_size, lengths outside [1, T], non-HDF5 files; the loader's fatal path
 *   (in a forked child: exit code and the stderr line) and skip_bad (counted,
 *   deterministic, identical across world sizes). */
#include <fcntl.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset/shard_fixture.h"
#include "loader.h"
#include "testlib.h"
#include "zstd_filter.h"

enum { H = 8, W = 8, C = 3, T = 6, V = 300, N = 40 };
static char g_dir[64];
static char g_good[128];

static void copy_file(const char *src, const char *dst) {
    FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
    if (!a || !b) {
        perror("copy_file");
        exit(2);
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
    fclose(a);
    fclose(b);
}

static long file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

/* shard_open must fail with one line naming the file and containing needle */
static void expect_open_error(const char *what, const char *path, const char *needle) {
    Shard s;
    char err[1200] = "";
    int rc = shard_open(&s, path, NULL, err, sizeof err);
    TEST_CHECK(rc != 0 && strstr(err, path) && strstr(err, needle) && !strchr(err, '\n'), "%s -> %s", what,
               rc ? err : "opened without error");
    if (rc == 0) shard_close(&s);
    /* the loader reports the same */
    LoaderConfig cfg = {.spec = path, .batch_size = 1, .world = 1};
    Loader *l = loader_open(&cfg, err, sizeof err);
    if (l) {
        TEST_CHECK(0, "%s: loader_open accepted it", what);
        loader_close(l);
    }
}

/* ------------------------------------------------------------ mutations */

typedef void (*Mutation)(hid_t f);
static char g_path[256];
static int g_case = 0;

static const char *mutated(Mutation fn) {
    snprintf(g_path, sizeof g_path, "%s/m%03d.h5", g_dir, g_case++);
    copy_file(g_good, g_path);
    hid_t f = H5Fopen(g_path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) {
        fprintf(stderr, "cannot reopen %s\n", g_path);
        exit(2);
    }
    fn(f);
    H5Fclose(f);
    return g_path;
}

static void set_attr_i64(hid_t f, const char *name, hid_t type, int64_t v) {
    if (H5Aexists(f, name) > 0) H5Adelete(f, name);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Sclose(sp);
}

static void set_attr_str(hid_t f, const char *name, const char *v) {
    if (H5Aexists(f, name) > 0) H5Adelete(f, name);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, v);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

static void set_attr_floats(hid_t f, const char *name, const float *v, int count) {
    if (H5Aexists(f, name) > 0) H5Adelete(f, name);
    hsize_t d[1] = {(hsize_t)count};
    hid_t sp = H5Screate_simple(1, d, NULL);
    hid_t a = H5Acreate2(f, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_FLOAT, v);
    H5Aclose(a);
    H5Sclose(sp);
}

/* replaces dataset name by a fresh one: type, rank/dims, chunk (NULL: contiguous), filter */
static void replace_dataset(hid_t f, const char *name, hid_t type, int rank, const hsize_t *dims,
                            const hsize_t *chunk, int filter) {
    H5Ldelete(f, name, H5P_DEFAULT);
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (chunk) H5Pset_chunk(dcpl, rank, chunk);
    if (filter == 1) H5Pset_deflate(dcpl, 4);
    if (filter == 2) {
        unsigned cd[1] = {3};
        H5Pset_filter(dcpl, ZSTD_FILTER_ID, H5Z_FLAG_MANDATORY, 1, cd);
    }
    hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(sp);
}

static void m_H_huge(hid_t f) { set_attr_i64(f, "H", H5T_STD_I32LE, 100000); }
static void m_W_zero(hid_t f) { set_attr_i64(f, "W", H5T_STD_I32LE, 0); }
static void m_C_2(hid_t f) { set_attr_i64(f, "C", H5T_STD_I32LE, 2); }
static void m_C_4(hid_t f) { set_attr_i64(f, "C", H5T_STD_I32LE, 4); }
static void m_T_0(hid_t f) { set_attr_i64(f, "T", H5T_STD_I32LE, 0); }
static void m_T_513(hid_t f) { set_attr_i64(f, "T", H5T_STD_I32LE, 513); }
static void m_vocab_0(hid_t f) { set_attr_i64(f, "vocab_size", H5T_STD_I32LE, 0); }
static void m_vocab_big(hid_t f) { set_attr_i64(f, "vocab_size", H5T_STD_I64LE, (1 << 24) + 1); }
static void m_n_neg(hid_t f) { set_attr_i64(f, "n", H5T_STD_I64LE, -1); }
static void m_n_huge(hid_t f) { set_attr_i64(f, "n", H5T_STD_I64LE, (int64_t)1 << 40); }
static void m_n_off(hid_t f) { set_attr_i64(f, "n", H5T_STD_I64LE, N + 1); }
static void m_version(hid_t f) { set_attr_i64(f, "version", H5T_STD_I32LE, 2); }
static void m_format(hid_t f) { set_attr_str(f, "format", "not-a-flip-shard"); }
static void m_sha(hid_t f) { set_attr_str(f, "vocab_sha256", "xyz"); }
static void m_H_string(hid_t f) { set_attr_str(f, "H", "224"); }
static void m_H_float(hid_t f) {
    float v[1] = {8.0f};
    set_attr_floats(f, "H", v, 1);
}
static void m_no_T(hid_t f) { H5Adelete(f, "T"); }
static void m_mean_2(hid_t f) {
    float v[2] = {0.5f, 0.5f};
    set_attr_floats(f, "mean", v, 2);
}
static void m_std_0(hid_t f) {
    float v[3] = {0.5f, 0.0f, 0.5f};
    set_attr_floats(f, "std", v, 3);
}
static void m_std_nan(hid_t f) {
    float v[3] = {0.5f, 0.5f, 0.0f};
    v[2] = v[2] / v[2];
    set_attr_floats(f, "std", v, 3);
}
static void m_no_lengths(hid_t f) { H5Ldelete(f, "lengths", H5P_DEFAULT); }
static void m_no_images(hid_t f) { H5Ldelete(f, "images", H5P_DEFAULT); }
static void m_lengths_float(hid_t f) {
    hsize_t d[1] = {N}, c[1] = {16};
    replace_dataset(f, "lengths", H5T_IEEE_F32LE, 1, d, c, 2);
}
static void m_tokens_i64(hid_t f) {
    hsize_t d[2] = {N, T}, c[2] = {16, T};
    replace_dataset(f, "tokens", H5T_STD_I64LE, 2, d, c, 2);
}
static void m_tokens_shape(hid_t f) {
    hsize_t d[2] = {N, T + 1}, c[2] = {16, T + 1};
    replace_dataset(f, "tokens", H5T_STD_U16LE, 2, d, c, 2);
}
static void m_images_i16(hid_t f) {
    hsize_t d[4] = {N, H, W, C}, c[4] = {1, H, W, C};
    replace_dataset(f, "images", H5T_STD_I16LE, 4, d, c, 2);
}
static void m_images_chunk2(hid_t f) {
    hsize_t d[4] = {N, H, W, C}, c[4] = {2, H, W, C};
    replace_dataset(f, "images", H5T_STD_U8LE, 4, d, c, 2);
}
static void m_images_gzip(hid_t f) {
    hsize_t d[4] = {N, H, W, C}, c[4] = {1, H, W, C};
    replace_dataset(f, "images", H5T_STD_U8LE, 4, d, c, 1);
}
static void m_images_rank3(hid_t f) {
    hsize_t d[3] = {N, H, W * C}, c[3] = {1, H, W * C};
    replace_dataset(f, "images", H5T_STD_U8LE, 3, d, c, 2);
}
/* /tokens with chunk (rows, T_now) int32, extendible */
static void set_tokens_chunk_rows(hid_t f, hsize_t rows, hsize_t n, hsize_t Tn) {
    hsize_t d[2] = {n, Tn}, c[2] = {rows, Tn}, maxd[2] = {H5S_UNLIMITED, Tn};
    H5Ldelete(f, "tokens", H5P_DEFAULT);
    hid_t sp = H5Screate_simple(2, d, maxd);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 2, c);
    hid_t ds = H5Dcreate2(f, "tokens", H5T_STD_I32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(sp);
}
static void m_tokens_rows_2p20(hid_t f) { set_tokens_chunk_rows(f, ((hsize_t)1 << 20) + 1, N, T); }
static void m_lengths_contig(hid_t f) {
    hsize_t d[1] = {N};
    replace_dataset(f, "lengths", H5T_STD_U8LE, 1, d, NULL, 0);
}
static void m_images_group(hid_t f) {
    H5Ldelete(f, "images", H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "images", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(g);
}
static void m_vocab_small(hid_t f) { set_attr_i64(f, "vocab_size", H5T_STD_I32LE, 10); }
static void m_length_bad(hid_t f) {
    /* sample 3 gets length 0, sample 4 gets length T + 1 */
    hid_t d = H5Dopen2(f, "lengths", H5P_DEFAULT);
    uint8_t v[N];
    H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    v[3] = 0;
    v[4] = T + 1;
    H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Dclose(d);
}
static void m_image_chunk_missing(hid_t f) {
    /* /images rebuilt with only samples 0..9 written: 10.. have no chunk */
    hsize_t d[4] = {N, H, W, C}, c[4] = {1, H, W, C};
    replace_dataset(f, "images", H5T_STD_U8LE, 4, d, c, 2);
    hid_t ds = H5Dopen2(f, "images", H5P_DEFAULT);
    uint8_t img[H * W * C];
    for (int i = 0; i < 10; i++) {
        fixture_image(img, (uint64_t)i, H, W, C);
        hsize_t start[4] = {(hsize_t)i, 0, 0, 0}, count[4] = {1, H, W, C};
        hid_t fs = H5Dget_space(ds);
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
        hid_t ms = H5Screate_simple(4, count, NULL);
        H5Dwrite(ds, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, img);
        H5Sclose(ms);
        H5Sclose(fs);
    }
    H5Dclose(ds);
}

/* file offset and size of the stored chunk holding row `row` of dataset name */
static int chunk_location(const char *path, const char *name, long row, haddr_t *addr, hsize_t *size) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hsize_t nchunks = 0;
    H5Dget_num_chunks(d, sp, &nchunks);
    int found = -1;
    for (hsize_t k = 0; k < nchunks && found < 0; k++) {
        hsize_t off[4] = {0};
        unsigned mask = 0;
        if (H5Dget_chunk_info(d, sp, k, off, &mask, addr, size) < 0) break;
        hid_t dcpl = H5Dget_create_plist(d);
        hsize_t ch[4] = {1};
        H5Pget_chunk(dcpl, 4, ch);
        H5Pclose(dcpl);
        if ((hsize_t)row >= off[0] && (hsize_t)row < off[0] + ch[0]) found = 0;
    }
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    return found;
}

static void flip_byte(const char *path, long offset) {
    int fd = open(path, O_RDWR);
    unsigned char b = 0;
    if (fd < 0 || pread(fd, &b, 1, offset) != 1) {
        perror("flip_byte");
        exit(2);
    }
    b ^= 0x41;
    if (pwrite(fd, &b, 1, offset) != 1) perror("flip_byte write");
    close(fd);
}

/* reads every sample; returns the number of failures, fills first error */
static int read_all(const char *path, long *first_bad, char *err, size_t eb) {
    Shard s;
    if (shard_open(&s, path, NULL, err, eb)) return -1;
    uint8_t img[H * W * C];
    int32_t tok[T];
    int fails = 0;
    char e2[1200];
    *first_bad = -1;
    for (long i = 0; i < s.n; i++)
        if (shard_read_sample(&s, i, img, tok, NULL, NULL, e2, sizeof e2)) {
            if (fails++ == 0) {
                *first_bad = i;
                snprintf(err, eb, "%s", e2);
            }
        }
    shard_close(&s);
    return fails;
}

/* the forked child: a loader without skip_bad reads one epoch of spec */
static void read_epoch(void *spec) {
    LoaderConfig cfg = {.spec = spec, .batch_size = 4, .world = 1, .seed = 1};
    char err[1200];
    Loader *l = loader_open(&cfg, err, sizeof err);
    if (!l) _exit(3);
    for (long k = 0; k < loader_steps_per_epoch(l); k++) loader_next(l);
    /* reached only if no bad sample was met: exit 0 */
}

/* runs read_epoch in a child; returns its exit status, stderr in out */
static int child_loader(const char *spec, char *out, size_t out_bytes) {
    return test_run_child(read_epoch, (void *)spec, out, out_bytes);
}

static void check_data_corruption(void) {
    char err[1200] = "", path[256];
    long bad_i = -1;
    haddr_t addr = 0;
    hsize_t size = 0;

    /* flipped byte inside sample 5's compressed image chunk */
    snprintf(path, sizeof path, "%s/flip_img.h5", g_dir);
    copy_file(g_good, path);
    int rc = chunk_location(path, "images", 5, &addr, &size);
    TEST_CHECK(rc == 0 && size > 8, "located sample 5's image chunk at %llu (%llu bytes)", (unsigned long long)addr,
               (unsigned long long)size);
    flip_byte(path, (long)(addr + size / 2));
    int fails = read_all(path, &bad_i, err, sizeof err);
    TEST_CHECK(fails == 1 && bad_i == 5 && strstr(err, path) && strstr(err, "sample 5") && !strchr(err, '\n'),
               "flipped byte in image chunk: exactly sample 5 fails -> %s", err);

    /* the loader: fatal in a child (one line naming file and sample), counted skip with skip_bad */
    char out[4096];
    int status = child_loader(path, out, sizeof out);
    int lines = 0;
    for (char *p = out; *p; p++) lines += *p == '\n';
    TEST_CHECK(status == 1 && strstr(out, path) && strstr(out, "sample 5") && lines == 1,
               "loader without skip_bad: exit %d, stderr: %s", status, out);

    int G = 8;
    for (int world = 1; world <= 4; world *= 2) {
        LoaderConfig cfg = {.spec = path, .batch_size = G / world, .world = world, .seed = 1, .skip_bad = 1};
        Loader *ls[4] = {0};
        for (int r = 0; r < world; r++) {
            cfg.rank = r;
            ls[r] = loader_open(&cfg, err, sizeof err);
        }
        long skipped = 0, has5 = 0, dup = 0;
        uint64_t ids_hash = 0;
        int seen[N] = {0};
        for (long k = 0; k < N / G; k++)
            for (int r = 0; r < world; r++) {
                const LoaderBatch *b = loader_next(ls[r]);
                if (k == N / G - 1) skipped += b->n_skipped_total;
                for (int j = 0; j < b->B; j++) {
                    uint64_t g = b->sample_ids[j];
                    has5 += g == 5;
                    if (g < N && seen[g]++) dup++;
                    ids_hash = ids_hash * 31 + g;
                }
            }
        static uint64_t ref_hash = 0;
        if (world == 1) ref_hash = ids_hash;
        TEST_CHECK(skipped == 1 && has5 == 0 && dup == 1 && ids_hash == ref_hash,
                   "skip_bad, world %d: 1 skip counted, sample 5 replaced by the next in epoch order (same stream as world 1)",
                   world);
        for (int r = 0; r < world; r++) loader_close(ls[r]);
    }

    /* flipped byte in the tokens chunk (rows 0..255 -> all 40 samples) */
    snprintf(path, sizeof path, "%s/flip_tok.h5", g_dir);
    copy_file(g_good, path);
    rc = chunk_location(path, "tokens", 0, &addr, &size);
    flip_byte(path, (long)(addr + size / 2));
    fails = read_all(path, &bad_i, err, sizeof err);
    TEST_CHECK(rc == 0 && fails == N && bad_i == 0 && strstr(err, path) && strstr(err, "sample 0") &&
                   strstr(err, "tokens"),
               "flipped byte in the token chunk: all %d rows fail -> %s", fails, err);

    /* token ids >= vocab_size (vocab attribute lowered to 10) */
    const char *p = mutated(m_vocab_small);
    fails = read_all(p, &bad_i, err, sizeof err);
    TEST_CHECK(fails > 0 && strstr(err, p) && strstr(err, "vocab_size=10") && strstr(err, "sample"),
               "token id >= vocab_size: %d samples rejected -> %s", fails, err);
    /* lengths 0 and T + 1 */
    p = mutated(m_length_bad);
    fails = read_all(p, &bad_i, err, sizeof err);
    TEST_CHECK(fails == 2 && bad_i == 3 && strstr(err, "sample 3") && strstr(err, "length 0"),
               "lengths 0 and T+1: samples 3, 4 rejected -> %s", err);
    /* image chunks never written */
    p = mutated(m_image_chunk_missing);
    fails = read_all(p, &bad_i, err, sizeof err);
    TEST_CHECK(fails == N - 10 && bad_i == 10 && strstr(err, "sample 10"), "missing image chunks: %d rejected -> %s",
               fails, err);

    /* truncated files */
    long full = file_size(g_good);
    long cuts[4] = {full - 1, full * 3 / 4, full / 3, 100};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/trunc%d.h5", g_dir, i);
        copy_file(g_good, path);
        if (truncate(path, cuts[i]) != 0) perror("truncate");
        fails = read_all(path, &bad_i, err, sizeof err);
        TEST_CHECK(fails != 0 && strstr(err, path) && !strchr(err, '\n'), "truncated to %ld of %ld bytes -> %s",
                   cuts[i], full, err);
    }
    /* empty file, text file, directory */
    snprintf(path, sizeof path, "%s/empty.h5", g_dir);
    fclose(fopen(path, "w"));
    expect_open_error("empty file", path, "not a readable HDF5 file");
    snprintf(path, sizeof path, "%s/text.h5", g_dir);
    FILE *f = fopen(path, "w");
    fputs("hello, I am not HDF5\n", f);
    fclose(f);
    expect_open_error("text file", path, "not a readable HDF5 file");
    snprintf(path, sizeof path, "%s/dir.h5", g_dir);
    mkdir(path, 0755);
    expect_open_error("directory", path, "not a regular file");
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/flip_test_corrupt_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* our own mutations may fail loudly otherwise */
    if (zstd_filter_register() != 0) {
        fprintf(stderr, "cannot register the zstd filter\n");
        return 1;
    }
    snprintf(g_good, sizeof g_good, "%s/good.h5", g_dir);
    ShardMeta m = fixture_meta(H, W, C, T, V);
    fixture_write(g_good, &m, 0, N, 1, 1);
    long first_bad = 0;
    char err[1200] = "";
    TEST_CHECK(read_all(g_good, &first_bad, err, sizeof err) == 0, "the unmodified shard reads cleanly %s", err);

    struct {
        const char *what;
        Mutation fn;
        const char *needle;
    } cases[] = {
        {"H = 100000", m_H_huge, "H = 100000 outside [1, 4096]"},
        {"W = 0", m_W_zero, "W = 0 outside"},
        {"C = 2", m_C_2, "C = 2"},
        {"C = 4", m_C_4, "C = 4 outside"},
        {"T = 0", m_T_0, "T = 0 outside"},
        {"T = 513", m_T_513, "T = 513 outside [1, 512]"},
        {"vocab_size = 0", m_vocab_0, "vocab_size = 0 outside"},
        {"vocab_size = 2^24 + 1", m_vocab_big, "vocab_size = 16777217 outside"},
        {"n = -1", m_n_neg, "n = -1 outside"},
        {"n = 2^40", m_n_huge, "n = 1099511627776 outside"},
        {"n disagrees with /images", m_n_off, "wrong shape"},
        {"version 2", m_version, "version 2"},
        {"wrong format string", m_format, "not a flip shard"},
        {"vocab_sha256 not hex", m_sha, "vocab_sha256"},
        {"H is a string", m_H_string, "'H' has the wrong type"},
        {"H is a float", m_H_float, "'H' has the wrong type"},
        {"T missing", m_no_T, "missing root attribute 'T'"},
        {"mean has 2 of 3 channels", m_mean_2, "'mean' has 2 elements"},
        {"std 0", m_std_0, "std[1] = 0"},
        {"std NaN", m_std_nan, "std[2] = "},
        {"/lengths missing", m_no_lengths, "missing dataset /lengths"},
        {"/images missing", m_no_images, "missing dataset /images"},
        {"/images is a group", m_images_group, "/images is not a readable dataset"},
        {"/lengths float32", m_lengths_float, "/lengths: wrong dtype class"},
        {"/tokens int64", m_tokens_i64, "dtype must be uint16 or int32"},
        {"/tokens (n, T+1)", m_tokens_shape, "/tokens: wrong shape"},
        {"/images int16", m_images_i16, "/images: wrong dtype size"},
        {"/images chunk of 2 images", m_images_chunk2, "wrong chunk shape"},
        {"/images gzip", m_images_gzip, "only the zstd filter"},
        {"/images rank 3", m_images_rank3, "wrong rank"},
        {"/lengths contiguous", m_lengths_contig, "not chunked"},
        {"/tokens chunks of 2^20 + 1 rows", m_tokens_rows_2p20, "bad chunk rows"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_open_error(cases[i].what, mutated(cases[i].fn), cases[i].needle);

    check_data_corruption();

    /* a T = 512 shard whose int32 token chunks hold 40000 rows: 78 MiB per read */
    {
        char big[256];
        snprintf(big, sizeof big, "%s/t512.h5", g_dir);
        ShardMeta mb = fixture_meta(4, 4, 1, 512, 70000);
        fixture_write(big, &mb, 0, 3, 0, 0);
        hid_t f = H5Fopen(big, H5F_ACC_RDWR, H5P_DEFAULT);
        set_tokens_chunk_rows(f, 40000, 3, 512);
        H5Fclose(f);
        expect_open_error("/tokens chunk of 40000 x 512 int32 (78 MiB)", big, "chunk too large");
    }

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", g_dir);
    return test_finish();
}
