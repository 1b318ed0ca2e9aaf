/* test_sources.c — dataset/brace.c and dataset/sources.c: brace expansion;
 * UTF-8 validation; csv (RFC 4180 quoting, header by name, BOM, CRLF, paths
 * relative to the table, skip reasons) and tsv; webdataset tars made with
 * `tar` at test time (gnu and pax formats, long names, a directory entry, a
 * missing .txt, json members, gzip, a truncated and a garbage tar); IDX round
 * trip (plain and gzip'ed), template captions and their determinism; image
 * folders (recursive, sorted order, captions beside the images, hidden names
 * and folder symlinks ignored, skip reasons); and the one-line fatal errors.
 * Fixtures are written to a fresh temp dir. */
#include "testlib.h"

#include "brace.h"
#include "common.h"
#include "sources.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char g_dir[256];

static void write_file(const char *name, const void *data, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}
static void write_text(const char *name, const char *text) { write_file(name, text, strlen(text)); }

static int sh(const char *fmt, ...) FLIP_PRINTF(1, 2);
static int sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* all items of a source (at most max) */
static int read_all(Source *s, SourceItem *items, int max, char *err, size_t err_bytes) {
    int n = 0;
    for (;;) {
        SourceItem it;
        int r = source_next(s, &it, err, err_bytes);
        if (r < 0) {
            for (int i = 0; i < n; i++) source_item_free(&items[i]);
            return -1;
        }
        if (r == 0) return n;
        if (n < max) items[n++] = it;
        else source_item_free(&it);
    }
}

static void free_items(SourceItem *items, int n) {
    for (int i = 0; i < n; i++) source_item_free(&items[i]);
}

static Source *open1(SourceKind kind, const char *input, char *err, size_t eb) {
    const char *inputs[1] = {input};
    SourceConfig cfg = {.kind = kind, .inputs = inputs, .n_inputs = 1};
    return source_open(&cfg, err, eb);
}

static void test_brace(void) {
    struct { const char *pat; const char *want; } cases[] = {
        {"train-{000..003}.h5", "train-000.h5 train-001.h5 train-002.h5 train-003.h5"},
        {"{8..11}", "8 9 10 11"},
        {"{08..11}", "08 09 10 11"},
        {"{3..1}", "3 2 1"},
        {"{0..10..5}", "0 5 10"},
        {"x{a,b}{1..2}", "xa1 xa2 xb1 xb2"},
        {"{x,{y,z}}w", "xw yw zw"},
        {"{a,}b", "ab b"},
        {"no-braces", "no-braces"},
        {"{abc}", "{abc}"},
        {"a{b", "a{b"},
        {"d/{00000..00002}.tar", "d/00000.tar d/00001.tar d/00002.tar"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        BraceList l = {0};
        brace_expand(&l, cases[k].pat);
        char got[512] = "";
        for (size_t i = 0; i < l.n; i++) {
            if (i) strcat(got, " ");
            strcat(got, l.items[i]);
        }
        TEST_CHECK(strcmp(got, cases[k].want) == 0, "brace '%s' -> '%s' (want '%s')", cases[k].pat, got, cases[k].want);
        brace_list_free(&l);
    }
    BraceList l = {0};
    brace_expand(&l, "{000000..127}");
    TEST_CHECK(l.n == 128 && strcmp(l.items[127], "000127") == 0, "128 zero-padded names, last '%s'",
               l.n ? l.items[l.n - 1] : "");
    brace_list_free(&l);
}

static void test_utf8(void) {
    struct { const char *s; int ok; } cases[] = {
        {"plain ascii", 1}, {"h\xc3\xa9llo", 1}, {"\xe4\xb8\xad\xe6\x96\x87", 1}, {"\xf0\x9f\x98\x80", 1},
        {"\xc3", 0}, {"\xc0\xaf", 0}, {"\xe0\x80\xaf", 0}, {"\xed\xa0\x80", 0}, {"\xf4\x90\x80\x80", 0},
        {"\xff", 0}, {"ab\x80", 0},
    };
    int bad = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        if (source_utf8_valid(cases[k].s, strlen(cases[k].s)) != cases[k].ok) {
            bad++;
            fprintf(stderr, "utf8 case %zu wrong\n", k);
        }
    TEST_CHECK(bad == 0, "UTF-8 validation: valid 1-4 byte forms; truncated, overlong, surrogate, > U+10FFFF rejected");
    TEST_CHECK(!source_text_nonblank(" \t\r\n", 4) && source_text_nonblank("  a", 3), "blank caption detection");
}

static void test_csv(void) {
    char err[512];
    sh("mkdir -p %s/imgs", g_dir);
    write_text("imgs/a.jpg", "A");
    write_text("imgs/b c.png", "B");
    write_text("abs.jpg", "C");
    char abs_path[512];
    snprintf(abs_path, sizeof abs_path, "%s/abs.jpg", g_dir);
    /* BOM, header with caption first and extra columns, quoted commas, ""
     * escapes, newline inside quotes, CRLF, blank line, absolute path, a URL,
     * missing path, empty caption, invalid UTF-8 caption */
    char table[2048];
    snprintf(table, sizeof table,
             "\xef\xbb\xbf" "id,Caption,extra,filepath\r\n"
             "1,\"a dog, running\",x,imgs/a.jpg\r\n"
             "2,\"she said \"\"hi\"\"\",,\"imgs/b c.png\"\n"
             "\n"
             "3,\"two\nlines\",y,%s\n"
             "4,a url,z,http://example.com/x.jpg\n"
             "5,no path,z,\n"
             "6,   ,z,imgs/a.jpg\n"
             "7,bad \xff utf8,z,imgs/a.jpg\n"
             "8,short row\n",
             abs_path);
    write_text("t.csv", table);
    char path[512];
    snprintf(path, sizeof path, "%s/t.csv", g_dir);
    Source *s = open1(SOURCE_CSV, path, err, sizeof err);
    SourceItem it[16];
    int n = s ? read_all(s, it, 16, err, sizeof err) : -1;
    TEST_CHECK(n == 8, "csv: 8 data rows (header, blank line skipped), got %d (%s)", n, n < 0 ? err : "");
    if (n == 8) {
        char want_a[512], want_b[512];
        snprintf(want_a, sizeof want_a, "%s/imgs/a.jpg", g_dir);
        snprintf(want_b, sizeof want_b, "%s/imgs/b c.png", g_dir);
        TEST_CHECK(it[0].skip == SKIP_NONE && strcmp(it[0].caption, "a dog, running") == 0 &&
                       strcmp(it[0].path, want_a) == 0 && it[0].index == 0,
                   "csv row 1: quoted comma, path relative to the table ('%s', '%s')", it[0].caption, it[0].path);
        TEST_CHECK(it[1].skip == SKIP_NONE && strcmp(it[1].caption, "she said \"hi\"") == 0 &&
                       strcmp(it[1].path, want_b) == 0,
                   "csv row 2: \"\" escapes and a quoted path with a space ('%s', '%s')", it[1].caption, it[1].path);
        TEST_CHECK(it[2].skip == SKIP_NONE && strcmp(it[2].caption, "two\nlines") == 0 &&
                       strcmp(it[2].path, abs_path) == 0 && strstr(it[2].name, "t.csv:5"),
                   "csv row 3: newline inside quotes, absolute path, name '%s'", it[2].name);
        TEST_CHECK(it[3].skip == SKIP_MISSING && strstr(it[3].reason, "URL"), "csv: URL -> missing file (%s)", it[3].reason);
        TEST_CHECK(it[4].skip == SKIP_MISSING, "csv: empty path -> missing file (%s)", it[4].reason);
        TEST_CHECK(it[5].skip == SKIP_EMPTY_CAPTION, "csv: blank caption -> empty caption (%s)", it[5].reason);
        TEST_CHECK(it[6].skip == SKIP_BAD_UTF8, "csv: invalid UTF-8 caption -> non-UTF-8 (%s)", it[6].reason);
        TEST_CHECK(it[7].skip != SKIP_NONE && it[7].index == 7, "csv: short row skipped (%s: %s)",
                   skip_reason_name(it[7].skip), it[7].reason);
        free_items(it, n);
    }
    source_close(s);

    /* no header: caption first, path second (detected by extension) */
    write_text("nh.csv", "a red car,imgs/a.jpg\n\"blue, sky\",imgs/b c.png\n");
    snprintf(path, sizeof path, "%s/nh.csv", g_dir);
    s = open1(SOURCE_CSV, path, err, sizeof err);
    n = s ? read_all(s, it, 16, err, sizeof err) : -1;
    TEST_CHECK(n == 2 && strcmp(it[0].caption, "a red car") == 0 && strstr(it[0].path, "imgs/a.jpg") &&
                   strcmp(it[1].caption, "blue, sky") == 0,
               "csv without header: path column found by extension (n=%d)", n);
    if (n > 0) free_items(it, n);
    source_close(s);

    /* tsv: tabs, quotes are literal */
    write_text("t.tsv", "image\tcaption\nimgs/a.jpg\t\"quoted\" words, commas\n");
    snprintf(path, sizeof path, "%s/t.tsv", g_dir);
    s = open1(SOURCE_TSV, path, err, sizeof err);
    n = s ? read_all(s, it, 16, err, sizeof err) : -1;
    TEST_CHECK(n == 1 && strcmp(it[0].caption, "\"quoted\" words, commas") == 0 && strstr(it[0].path, "imgs/a.jpg"),
               "tsv: tab split, literal quotes (n=%d, '%s')", n, n == 1 ? it[0].caption : "");
    if (n > 0) free_items(it, n);
    source_close(s);

    /* an unterminated quote is fatal, naming file:line */
    write_text("bad.csv", "caption,image\nok,imgs/a.jpg\n\"never closed,imgs/a.jpg\nmore\n");
    snprintf(path, sizeof path, "%s/bad.csv", g_dir);
    s = open1(SOURCE_CSV, path, err, sizeof err);
    n = s ? read_all(s, it, 16, err, sizeof err) : -2;
    TEST_CHECK(n == -1 && strstr(err, "bad.csv:3") && strstr(err, "unterminated"), "csv: unterminated quote -> '%s'", err);
    source_close(s);

    /* a missing table is an open error naming it */
    snprintf(path, sizeof path, "%s/nope.csv", g_dir);
    s = open1(SOURCE_CSV, path, err, sizeof err);
    TEST_CHECK(!s && strstr(err, "nope.csv") && strchr(err, '\n') == NULL, "missing table -> '%s'", err);
    /* header naming only one of the two columns */
    write_text("half.csv", "caption,foo\nx,y\n");
    snprintf(path, sizeof path, "%s/half.csv", g_dir);
    s = open1(SOURCE_CSV, path, err, sizeof err);
    n = s ? read_all(s, it, 16, err, sizeof err) : -2;
    TEST_CHECK(n == -1 && strstr(err, "half.csv:1"), "header without an image column -> '%s'", err);
    source_close(s);
}

static int file_equals(const uint8_t *data, size_t n, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    size_t m;
    int e;
    uint8_t *ref = source_read_file(path, &m, &e);
    int eq = ref && data && m == n && memcmp(ref, data, n) == 0;
    flip_free(ref);
    return eq;
}

static void test_tar(void) {
    char err[512];
    const char *longdir = "a_very_long_directory_name_that_goes_on_and_on_and_on_for_well_over_one_hundred_characters_total";
    sh("mkdir -p %s/w/sub %s/w/%s", g_dir, g_dir, longdir);
    /* image payloads are arbitrary bytes: the source does not decode */
    write_text("w/000.jpg", "jpeg-bytes-000");
    write_text("w/000.txt", "caption zero");
    write_text("w/000.json", "{\"url\": \"x\"}");
    write_text("w/001.png", "png-bytes-001");
    write_text("w/001.txt", "caption one\n");
    write_text("w/002.jpg", "jpeg-bytes-002"); /* no txt */
    char name[512];
    snprintf(name, sizeof name, "w/%s/key_with_a_long_name_003.jpg", longdir);
    write_text(name, "jpeg-bytes-003");
    snprintf(name, sizeof name, "w/%s/key_with_a_long_name_003.txt", longdir);
    write_text(name, "caption three");
    write_text("w/sub/004.jpeg", "jpeg-bytes-004");
    write_text("w/sub/004.txt", "caption four");
    const char *formats[2] = {"gnu", "pax"};
    for (int f = 0; f < 2; f++) {
        int rc = sh("cd %s/w && tar --format=%s -cf ../s%d.tar 000.jpg 000.txt 000.json 001.png 001.txt 002.jpg "
                    "sub %s/key_with_a_long_name_003.jpg %s/key_with_a_long_name_003.txt",
                    g_dir, formats[f], f, longdir, longdir);
        if (rc != 0) {
            TEST_CHECK(0, "tar --format=%s failed", formats[f]);
            continue;
        }
        char path[512];
        snprintf(path, sizeof path, "%s/s%d.tar", g_dir, f);
        Source *s = open1(SOURCE_TAR, path, err, sizeof err);
        SourceItem it[16];
        int n = s ? read_all(s, it, 16, err, sizeof err) : -1;
        TEST_CHECK(n == 5, "tar %s: 5 samples (000, 001, 002, sub/004, long 003), got %d (%s)", formats[f], n,
                   n < 0 ? err : "");
        if (n == 5) {
            TEST_CHECK(it[0].skip == SKIP_NONE && strcmp(it[0].caption, "caption zero") == 0 &&
                           file_equals(it[0].data, it[0].n_bytes, "w/000.jpg") && strstr(it[0].name, ":000"),
                       "tar %s: 000 jpg + txt (json ignored), name '%s'", formats[f], it[0].name);
            TEST_CHECK(it[1].skip == SKIP_NONE && strcmp(it[1].caption, "caption one\n") == 0 &&
                           file_equals(it[1].data, it[1].n_bytes, "w/001.png"),
                       "tar %s: 001 png + txt", formats[f]);
            TEST_CHECK(it[2].skip == SKIP_MISSING && strstr(it[2].reason, ".txt"), "tar %s: 002 without txt -> missing (%s)",
                       formats[f], it[2].reason);
            TEST_CHECK(it[3].skip == SKIP_NONE && strcmp(it[3].caption, "caption four") == 0 &&
                           strstr(it[3].name, "sub/004") && file_equals(it[3].data, it[3].n_bytes, "w/sub/004.jpeg"),
                       "tar %s: directory entry skipped, sub/004.jpeg (%s)", formats[f], it[3].name);
            snprintf(name, sizeof name, "w/%s/key_with_a_long_name_003.jpg", longdir);
            TEST_CHECK(it[4].skip == SKIP_NONE && strcmp(it[4].caption, "caption three") == 0 &&
                           strstr(it[4].name, "key_with_a_long_name_003") && file_equals(it[4].data, it[4].n_bytes, name),
                       "tar %s: long name (> 100 chars) member", formats[f]);
            free_items(it, n);
        }
        source_close(s);
    }
    /* brace list over two tars + a gzip'ed one; captions_only reads no image bytes */
    sh("cd %s && cp s0.tar s2.tar && gzip -c s1.tar > s3.tar.gz", g_dir);
    char pattern[512];
    snprintf(pattern, sizeof pattern, "%s/s{0,1}.tar", g_dir);
    char gzpath[512];
    snprintf(gzpath, sizeof gzpath, "%s/s3.tar.gz", g_dir);
    const char *inputs[2] = {pattern, gzpath};
    SourceConfig cfg = {.kind = SOURCE_TAR, .inputs = inputs, .n_inputs = 2, .captions_only = 1};
    Source *s = source_open(&cfg, err, sizeof err);
    SourceItem it[32];
    int n = s ? read_all(s, it, 32, err, sizeof err) : -1;
    int no_data = 1;
    for (int i = 0; i < n; i++)
        if (it[i].data) no_data = 0;
    TEST_CHECK(n == 15 && source_n_files(s) == 3 && no_data && it[14].index == 14 &&
                   strcmp(it[10].caption, "caption zero") == 0 && strstr(it[10].name, "s3.tar.gz"),
               "tar: {0,1} brace list + gzip'ed tar in order, captions_only (n=%d)", n);
    if (n > 0) free_items(it, n);
    source_close(s);

    /* truncated inside a member: earlier samples fine, then one unreadable item */
    sh("cd %s && head -c 2600 s0.tar > trunc.tar", g_dir);
    snprintf(pattern, sizeof pattern, "%s/trunc.tar", g_dir);
    s = open1(SOURCE_TAR, pattern, err, sizeof err);
    n = s ? read_all(s, it, 32, err, sizeof err) : -1;
    TEST_CHECK(n == 2 && it[0].skip == SKIP_NONE && it[1].skip == SKIP_UNREADABLE && strstr(it[1].reason, "truncated"),
               "tar cut inside 000.json: sample 000 intact, then one unreadable item (n=%d, '%s')", n,
               n > 0 ? it[n - 1].reason : err);
    if (n > 0) free_items(it, n);
    source_close(s);
    /* cut inside an image member: that sample is the unreadable item */
    sh("cd %s && head -c 3700 s0.tar > trunc2.tar", g_dir);
    snprintf(pattern, sizeof pattern, "%s/trunc2.tar", g_dir);
    s = open1(SOURCE_TAR, pattern, err, sizeof err);
    n = s ? read_all(s, it, 32, err, sizeof err) : -1;
    TEST_CHECK(n == 2 && it[0].skip == SKIP_NONE && it[1].skip == SKIP_UNREADABLE && strstr(it[1].reason, "001.png"),
               "tar cut inside 001.png: 000 intact, 001 unreadable (n=%d, '%s')", n, n > 0 ? it[n - 1].reason : err);
    if (n > 0) free_items(it, n);
    source_close(s);
    /* garbage: one unreadable item naming the checksum */
    char garbage[2048];
    for (int i = 0; i < 2048; i++) garbage[i] = (char)(i * 7 + 1);
    write_file("garbage.tar", garbage, sizeof garbage);
    snprintf(pattern, sizeof pattern, "%s/garbage.tar", g_dir);
    s = open1(SOURCE_TAR, pattern, err, sizeof err);
    n = s ? read_all(s, it, 32, err, sizeof err) : -1;
    TEST_CHECK(n == 1 && it[0].skip == SKIP_UNREADABLE && strstr(it[0].reason, "checksum"),
               "garbage tar: one unreadable item (n=%d, '%s')", n, n > 0 ? it[0].reason : err);
    if (n > 0) free_items(it, n);
    source_close(s);
}

/* bit flips anywhere in a tar: items or one unreadable item, never a crash */
static void test_tar_flips(void) {
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/s0.tar", g_dir);
    size_t n;
    int e;
    uint8_t *orig = source_read_file(path, &n, &e);
    if (!orig) {
        TEST_CHECK(0, "tar flips: cannot read %s", path);
        return;
    }
    uint8_t *copy = flip_malloc(n, "tar copy");
    uint32_t x = 12345;
    int n_items = 0, n_unreadable = 0, n_fatal = 0;
    snprintf(path, sizeof path, "%s/flip.tar", g_dir);
    for (int it = 0; it < 200; it++) {
        memcpy(copy, orig, n);
        for (int k = 0; k < 3; k++) {
            x = x * 1664525u + 1013904223u;
            size_t pos = (x >> 8) % n;
            x = x * 1664525u + 1013904223u;
            copy[pos] ^= (uint8_t)(1u << ((x >> 8) % 8));
        }
        write_file("flip.tar", copy, n);
        Source *s = open1(SOURCE_TAR, path, err, sizeof err);
        if (!s) { n_fatal++; continue; }
        for (;;) {
            SourceItem item;
            int r = source_next(s, &item, err, sizeof err);
            if (r < 0) { n_fatal++; break; }
            if (r == 0) break;
            n_items++;
            if (item.skip == SKIP_UNREADABLE) n_unreadable++;
            source_item_free(&item);
        }
        source_close(s);
    }
    flip_free(copy);
    flip_free(orig);
    TEST_CHECK(n_fatal == 0 && n_items > 0 && n_unreadable > 0,
               "200 bit-flipped tars read without a crash or fatal error (%d items, %d unreadable)", n_items, n_unreadable);
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* writes an IDX image file (n, 3, 4) and labels; gz: through gzip */
static void write_idx(const char *img_name, const char *lab_name, int n, int n_labels, int gz, const uint8_t *labels) {
    size_t img_bytes = 16 + (size_t)n * 12, lab_bytes = 8 + (size_t)n_labels;
    uint8_t *img = malloc(img_bytes), *lab = malloc(lab_bytes);
    img[0] = img[1] = 0; img[2] = 8; img[3] = 3;
    put_be32(img + 4, (uint32_t)n); put_be32(img + 8, 3); put_be32(img + 12, 4);
    for (int i = 0; i < n * 12; i++) img[16 + i] = (uint8_t)(i * 5 + 3);
    lab[0] = lab[1] = 0; lab[2] = 8; lab[3] = 1;
    put_be32(lab + 4, (uint32_t)n_labels);
    memcpy(lab + 8, labels, (size_t)n_labels);
    if (gz) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", g_dir, img_name);
        gzFile g = gzopen(path, "wb");
        gzwrite(g, img, (unsigned)img_bytes);
        gzclose(g);
        snprintf(path, sizeof path, "%s/%s", g_dir, lab_name);
        g = gzopen(path, "wb");
        gzwrite(g, lab, (unsigned)lab_bytes);
        gzclose(g);
    } else {
        write_file(img_name, img, img_bytes);
        write_file(lab_name, lab, lab_bytes);
    }
    free(img);
    free(lab);
}

static int idx_open_read(const char *img, const char *lab, const char *classes, const char *templates, uint64_t seed,
                         int captions_only, SourceItem *it, int max, char *err, size_t eb) {
    char ip[512], lp[512], cp[512], tp[512];
    snprintf(ip, sizeof ip, "%s/%s", g_dir, img);
    snprintf(lp, sizeof lp, "%s/%s", g_dir, lab);
    snprintf(cp, sizeof cp, "%s/%s", g_dir, classes);
    snprintf(tp, sizeof tp, "%s/%s", g_dir, templates ? templates : "");
    const char *inputs[1] = {ip};
    SourceConfig cfg = {.kind = SOURCE_IDX, .inputs = inputs, .n_inputs = 1, .labels_path = lp, .classes_path = cp,
                        .templates_path = templates ? tp : NULL, .template_seed = seed, .captions_only = captions_only};
    Source *s = source_open(&cfg, err, eb);
    if (!s) return -2;
    int n = read_all(s, it, max, err, eb);
    source_close(s);
    return n;
}

static void test_idx(void) {
    char err[512];
    enum { N = 40 };
    uint8_t labels[N];
    for (int i = 0; i < N; i++) labels[i] = (uint8_t)(i % 3);
    write_idx("im.idx", "lab.idx", N, N, 0, labels);
    write_idx("im.idx.gz", "lab.idx.gz", N, N, 1, labels);
    write_text("classes.txt", "T-shirt/top\nTrouser\nAnkle boot\n\n");
    write_text("templates.txt", "# comment line\na photo of a {}.\n\n{} on a plain background, a {}\n");
    SourceItem a[N], b[N];
    for (int gz = 0; gz < 2; gz++) {
        int n = idx_open_read(gz ? "im.idx.gz" : "im.idx", gz ? "lab.idx.gz" : "lab.idx", "classes.txt", "templates.txt",
                              0, 0, a, N, err, sizeof err);
        int px_bad = 0, cap_bad = 0, t0 = 0, t1 = 0;
        for (int i = 0; i < n; i++) {
            if (a[i].raw_w != 4 || a[i].raw_h != 3 || a[i].raw_c != 1 || a[i].n_bytes != 12) px_bad++;
            for (int k = 0; k < 12 && a[i].data; k++)
                if (a[i].data[k] != (uint8_t)((i * 12 + k) * 5 + 3)) px_bad++;
            const char *cls = i % 3 == 0 ? "T-shirt/top" : i % 3 == 1 ? "Trouser" : "Ankle boot";
            char c0[128], c1[128];
            snprintf(c0, sizeof c0, "a photo of a %s.", cls);
            snprintf(c1, sizeof c1, "%s on a plain background, a %s", cls, cls);
            if (strcmp(a[i].caption, c0) == 0) t0++;
            else if (strcmp(a[i].caption, c1) == 0) t1++;
            else cap_bad++;
            if (a[i].label != i % 3 || a[i].skip != SKIP_NONE) cap_bad++;
        }
        TEST_CHECK(n == N && px_bad == 0 && cap_bad == 0 && t0 > 0 && t1 > 0,
                   "idx %s round trip: %d samples, pixels (%d bad), labels and captions from both templates (%d/%d, %d bad) %s",
                   gz ? "gzip" : "plain", n, px_bad, t0, t1, cap_bad, n < 0 ? err : "");
        if (n > 0 && gz == 0) {
            /* determinism: same seed, captions_only -> same captions, no pixels;
             * another seed -> a different draw */
            int m = idx_open_read("im.idx", "lab.idx", "classes.txt", "templates.txt", 0, 1, b, N, err, sizeof err);
            int same = m == n, nodata = 1;
            for (int i = 0; i < m && i < n; i++) {
                if (strcmp(a[i].caption, b[i].caption) != 0) same = 0;
                if (b[i].data) nodata = 0;
            }
            TEST_CHECK(same && nodata, "idx captions are deterministic; captions_only reads no pixels");
            if (m > 0) free_items(b, m);
            m = idx_open_read("im.idx", "lab.idx", "classes.txt", "templates.txt", 12345, 1, b, N, err, sizeof err);
            int diff = 0;
            for (int i = 0; i < m && i < n; i++)
                if (strcmp(a[i].caption, b[i].caption) != 0) diff++;
            TEST_CHECK(m == N && diff > 0, "another --template-seed draws other templates (%d of %d differ)", diff, N);
            if (m > 0) free_items(b, m);
        }
        if (n > 0) free_items(a, n);
    }
    /* default template */
    int n = idx_open_read("im.idx", "lab.idx", "classes.txt", NULL, 0, 1, a, N, err, sizeof err);
    TEST_CHECK(n == N && strcmp(a[1].caption, "a photo of a Trouser.") == 0, "idx default template ('%s')",
               n > 1 ? a[1].caption : err);
    if (n > 0) free_items(a, n);
    /* errors */
    write_idx("im2.idx", "lab2.idx", N, N - 1, 0, labels);
    n = idx_open_read("im2.idx", "lab2.idx", "classes.txt", NULL, 0, 0, a, N, err, sizeof err);
    TEST_CHECK(n == -2 && strstr(err, "lab2.idx") && strstr(err, "39 labels"), "label count mismatch -> '%s'", err);
    uint8_t bad_labels[N];
    memcpy(bad_labels, labels, N);
    bad_labels[7] = 9;
    write_idx("im3.idx", "lab3.idx", N, N, 0, bad_labels);
    n = idx_open_read("im3.idx", "lab3.idx", "classes.txt", NULL, 0, 0, a, N, err, sizeof err);
    TEST_CHECK(n == -1 && strstr(err, "sample 7") && strstr(err, "3 classes"), "label outside the classes -> '%s'", err);
    sh("cd %s && head -c 200 im.idx > im4.idx", g_dir);
    n = idx_open_read("im4.idx", "lab.idx", "classes.txt", NULL, 0, 0, a, N, err, sizeof err);
    TEST_CHECK(n == -1 && strstr(err, "im4.idx") && strstr(err, "truncated"), "truncated IDX -> '%s'", err);
    write_text("badtmpl.txt", "a photo of a {}\nno placeholder here\n");
    n = idx_open_read("im.idx", "lab.idx", "classes.txt", "badtmpl.txt", 0, 0, a, N, err, sizeof err);
    TEST_CHECK(n == -2 && strstr(err, "badtmpl.txt") && strstr(err, "{}"), "template without {} -> '%s'", err);
    write_text("badclasses.txt", "a\n\nb\n");
    n = idx_open_read("im.idx", "lab.idx", "badclasses.txt", NULL, 0, 0, a, N, err, sizeof err);
    TEST_CHECK(n == -2 && strstr(err, "badclasses.txt:2"), "blank line inside the classes -> '%s'", err);
    n = idx_open_read("classes.txt", "lab.idx", "classes.txt", NULL, 0, 0, a, N, err, sizeof err);
    TEST_CHECK(n == -2 && strstr(err, "not an IDX"), "text file as IDX -> '%s'", err);
}

/* image folders: files written in an order unlike the sorted one */
static void test_folder(void) {
    char err[512];
    sh("mkdir -p '%s/fold/b/e.txt' '%s/fold/a b' '%s/fold/.hidden' '%s/fold/empty'", g_dir, g_dir, g_dir, g_dir);
    write_text("fold/b/z.jpg", "Z");
    write_text("fold/b/z.txt", "  zebra on grass \n");
    write_text("fold/s.txt", "symlinked");
    write_text("fold/b/d.jpg", "D");
    write_text("fold/b/d.txt", " \n");
    write_text("fold/b/c.JPEG", "C");          /* no caption: missing file */
    write_text("fold/b/e.jpg", "E");           /* e.txt is a folder: unreadable */
    write_text("fold/a.png", "A");
    write_text("fold/a.txt", "an apple\n");
    write_text("fold/a b/k.png", "K");
    write_text("fold/a b/k.txt", "k");
    write_text("fold/notes.txt", "no image");  /* ignored */
    write_text("fold/x.gif", "G");             /* not jpg/png: ignored */
    write_text("fold/.hidden/h.jpg", "H");     /* hidden: ignored */
    write_text("fold/.hidden/h.txt", "hidden");
    sh("cd '%s/fold' && ln -s a.png s.jpg && ln -s b link", g_dir); /* file link followed, folder link not */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/fold", g_dir);
    Source *s = open1(SOURCE_FOLDER, dir, err, sizeof err);
    TEST_CHECK(s != NULL, "folder source opens (%s)", s ? "" : err);
    if (!s) return;
    TEST_CHECK(source_n_items(s) == 7, "7 images found (got %ld)", source_n_items(s));
    SourceItem it[10];
    int n = read_all(s, it, 10, err, sizeof err);
    struct { const char *rel; const char *cap; SkipReason skip; } want[7] = {
        {"a b/k.png", "k", SKIP_NONE},       {"a.png", "an apple", SKIP_NONE},
        {"b/c.JPEG", NULL, SKIP_MISSING},     {"b/d.jpg", "", SKIP_EMPTY_CAPTION},
        {"b/e.jpg", NULL, SKIP_UNREADABLE},   {"b/z.jpg", "zebra on grass", SKIP_NONE},
        {"s.jpg", "symlinked", SKIP_NONE},
    };
    TEST_CHECK(n == 7, "7 items (got %d)", n);
    for (int i = 0; i < n && i < 7; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dir, want[i].rel);
        int ok = it[i].index == i && it[i].path && strcmp(it[i].path, path) == 0 && it[i].skip == want[i].skip &&
                 it[i].label == -1 && (want[i].cap == NULL || (it[i].caption && strcmp(it[i].caption, want[i].cap) == 0));
        TEST_CHECK(ok, "folder item %d: %s, caption '%s', %s (%s)", i, it[i].path ? it[i].path : "(null)",
                   it[i].caption ? it[i].caption : "(none)", skip_reason_name(it[i].skip), it[i].reason);
    }
    TEST_CHECK(n >= 3 && strstr(it[2].reason, "no caption file") && strstr(it[2].reason, "b/c.txt"),
               "missing caption names the file: '%s'", n >= 3 ? it[2].reason : "");
    TEST_CHECK(source_fraction(s) == 1.0, "fraction 1 at the end");
    free_items(it, n);
    source_close(s);
    /* captions_only (vocab pass) reads the same captions */
    const char *inputs[1] = {dir};
    SourceConfig cfg = {.kind = SOURCE_FOLDER, .inputs = inputs, .n_inputs = 1, .captions_only = 1};
    s = source_open(&cfg, err, sizeof err);
    n = s ? read_all(s, it, 10, err, sizeof err) : -1;
    TEST_CHECK(n == 7 && it[5].caption && strcmp(it[5].caption, "zebra on grass") == 0, "captions_only pass");
    if (n > 0) free_items(it, n);
    source_close(s);
    /* fatal errors at open: one line naming the input */
    s = open1(SOURCE_FOLDER, "/nonexistent/flip_folder", err, sizeof err);
    TEST_CHECK(!s && strstr(err, "/nonexistent/flip_folder: no such folder") && !strchr(err, '\n'), "missing folder -> '%s'", err);
    snprintf(dir, sizeof dir, "%s/fold/a.txt", g_dir);
    s = open1(SOURCE_FOLDER, dir, err, sizeof err);
    TEST_CHECK(!s && strstr(err, "a.txt: not a folder"), "a file as folder -> '%s'", err);
    snprintf(dir, sizeof dir, "%s/fold/empty", g_dir);
    s = open1(SOURCE_FOLDER, dir, err, sizeof err);
    TEST_CHECK(!s && strstr(err, "empty: no .jpg/.jpeg/.png images"), "folder without images -> '%s'", err);
    SourceKind k;
    TEST_CHECK(source_kind_parse("folder", &k) == 0 && k == SOURCE_FOLDER && strcmp(source_kind_name(k), "folder") == 0,
               "kind name 'folder'");
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/flip_test_sources_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) {
        fprintf(stderr, "mkdtemp failed\n");
        return 2;
    }
    test_brace();
    test_utf8();
    test_csv();
    test_tar();
    test_tar_flips();
    test_idx();
    test_folder();
    int rc = test_finish();
    if (rc == 0) sh("rm -rf %s", g_dir);
    else fprintf(stderr, "fixtures kept in %s\n", g_dir);
    return rc;
}
