/* test_image.c — dataset/image.c: PNG (RGB, gray, palette, 16-bit, alpha,
 * interlaced) and JPEG (RGB, gray, CMYK, DCT scaling) decoding of fixtures
 * encoded in memory at test time; corrupt, truncated and bit-flipped files
 * give an error status and never crash; the antialiased resize against a
 * double-precision reference, on constants, a checkerboard and crop geometry. */
#include "testlib.h"
#include "tolerances.h"
#include "dataset/imgwrite.h"

#include "common.h"
#include "image.h"
#include "rng.h"

#include <math.h>
#include <zlib.h>
#include <string.h>

typedef struct {
    const char *what;
    MemBuf b;
    int ch;
    const uint8_t *ref;
} DecodeCase;

static uint8_t pattern(int x, int y, int ch) { return (uint8_t)((x * 37 + y * 91 + ch * 53 + 11) & 255); }

static int count_diff(const uint8_t *a, const uint8_t *b, size_t n, int tol) {
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        if (abs((int)a[i] - (int)b[i]) > tol) bad++;
    return bad;
}

static uint8_t luma(int r, int g, int b) { return (uint8_t)((299 * r + 587 * g + 114 * b + 500) / 1000); }

static void test_png(void) {
    const int w = 7, h = 5;
    uint8_t rgb[7 * 5 * 3], gray[7 * 5], rgba[7 * 5 * 4], ga[7 * 5 * 2], rgb16[7 * 5 * 6], ref_gray[7 * 5];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int i = y * w + x;
            for (int c = 0; c < 3; c++) {
                rgb[3 * i + c] = pattern(x, y, c);
                rgba[4 * i + c] = pattern(x, y, c);
                rgb16[6 * i + 2 * c] = pattern(x, y, c);         /* high byte */
                rgb16[6 * i + 2 * c + 1] = (uint8_t)(255 - c);    /* low byte: must be dropped */
            }
            rgba[4 * i + 3] = (uint8_t)(x * 30); /* alpha (dropped) */
            gray[i] = pattern(x, y, 0);
            ga[2 * i] = gray[i];
            ga[2 * i + 1] = (uint8_t)(y * 50);
            ref_gray[i] = luma(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]);
        }
    uint8_t gray_rgb[7 * 5 * 3];
    for (int i = 0; i < w * h; i++) gray_rgb[3 * i] = gray_rgb[3 * i + 1] = gray_rgb[3 * i + 2] = gray[i];

    DecodeCase cases[9];
    int n = 0;
    cases[n++] = (DecodeCase){"png rgb8 -> rgb", imgw_png(rgb, w, h, PNG_COLOR_TYPE_RGB, 8, NULL, 0, 0), 3, rgb};
    cases[n++] = (DecodeCase){"png rgb8 -> gray (601 luma)", imgw_png(rgb, w, h, PNG_COLOR_TYPE_RGB, 8, NULL, 0, 0), 1, ref_gray};
    cases[n++] = (DecodeCase){"png gray8 -> gray", imgw_png(gray, w, h, PNG_COLOR_TYPE_GRAY, 8, NULL, 0, 0), 1, gray};
    cases[n++] = (DecodeCase){"png gray8 -> rgb", imgw_png(gray, w, h, PNG_COLOR_TYPE_GRAY, 8, NULL, 0, 0), 3, gray_rgb};
    cases[n++] = (DecodeCase){"png rgba8 -> rgb (alpha dropped)", imgw_png(rgba, w, h, PNG_COLOR_TYPE_RGBA, 8, NULL, 0, 0), 3, rgb};
    cases[n++] = (DecodeCase){"png gray+alpha -> gray", imgw_png(ga, w, h, PNG_COLOR_TYPE_GRAY_ALPHA, 8, NULL, 0, 0), 1, gray};
    cases[n++] = (DecodeCase){"png rgb16 -> rgb (high byte)", imgw_png(rgb16, w, h, PNG_COLOR_TYPE_RGB, 16, NULL, 0, 0), 3, rgb};
    cases[n++] = (DecodeCase){"png rgb8 interlaced -> rgb", imgw_png(rgb, w, h, PNG_COLOR_TYPE_RGB, 8, NULL, 0, 1), 3, rgb};
    /* palette, 2-bit indices */
    png_color pal[4] = {{10, 20, 30}, {200, 0, 0}, {0, 255, 0}, {1, 2, 250}};
    uint8_t idx2[5 * 2]; /* 7 px * 2 bits = 2 bytes per row */
    uint8_t pal_ref[7 * 5 * 3];
    memset(idx2, 0, sizeof idx2);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int k = (x + 2 * y) % 4;
            idx2[y * 2 + x / 4] |= (uint8_t)(k << (6 - 2 * (x % 4)));
            pal_ref[3 * (y * w + x)] = pal[k].red;
            pal_ref[3 * (y * w + x) + 1] = pal[k].green;
            pal_ref[3 * (y * w + x) + 2] = pal[k].blue;
        }
    cases[n++] = (DecodeCase){"png palette 2-bit -> rgb", imgw_png(idx2, w, h, PNG_COLOR_TYPE_PALETTE, 2, pal, 4, 0), 3, pal_ref};

    for (int i = 0; i < n; i++) {
        Image img;
        char err[256];
        ImageStatus st = image_decode(&img, cases[i].b.data, cases[i].b.n, cases[i].ch, 0, err, sizeof err);
        int ok = st == IMAGE_OK && img.w == w && img.h == h && img.c == cases[i].ch;
        int bad = ok ? count_diff(img.pixels, cases[i].ref, (size_t)w * h * cases[i].ch, 0) : -1;
        TEST_CHECK(ok && bad == 0, "%s: status %d (%s) %dx%dx%d, %d pixels differ", cases[i].what, st, err, img.w,
                   img.h, img.c, bad);
        image_free(&img);
        free(cases[i].b.data);
    }
}

static void test_jpeg(void) {
    /* 16 x 16 of flat 8 x 8 blocks: with 4:4:4 sampling each block is one DC
     * coefficient, so the decode is exact up to colour-conversion rounding */
    const int w = 16, h = 16;
    const uint8_t colors[4][3] = {{200, 30, 40}, {20, 180, 60}, {50, 60, 220}, {128, 128, 128}};
    uint8_t rgb[16 * 16 * 3], gray[16 * 16], cmyk[16 * 16 * 4], gray_ref[16 * 16];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int q = (y / 8) * 2 + x / 8, i = y * w + x;
            for (int c = 0; c < 3; c++) rgb[3 * i + c] = colors[q][c];
            gray[i] = (uint8_t)(40 + 50 * q);
            gray_ref[i] = luma(colors[q][0], colors[q][1], colors[q][2]);
            /* Adobe-style CMYK: stored = 255 - ink; ink K = 0, so RGB = stored CMY */
            for (int c = 0; c < 3; c++) cmyk[4 * i + c] = colors[q][c];
            cmyk[4 * i + 3] = 255;
        }
    DecodeCase cases[5];
    int n = 0;
    cases[n++] = (DecodeCase){"jpeg rgb -> rgb", imgw_jpeg(rgb, w, h, 3, JCS_RGB, 100), 3, rgb};
    cases[n++] = (DecodeCase){"jpeg rgb -> gray (Y)", imgw_jpeg(rgb, w, h, 3, JCS_RGB, 100), 1, gray_ref};
    cases[n++] = (DecodeCase){"jpeg gray -> gray", imgw_jpeg(gray, w, h, 1, JCS_GRAYSCALE, 100), 1, gray};
    cases[n++] = (DecodeCase){"jpeg cmyk (Adobe) -> rgb", imgw_jpeg(cmyk, w, h, 4, JCS_CMYK, 100), 3, rgb};
    cases[n++] = (DecodeCase){"jpeg cmyk (Adobe) -> gray", imgw_jpeg(cmyk, w, h, 4, JCS_CMYK, 100), 1, gray_ref};
    for (int i = 0; i < n; i++) {
        Image img;
        char err[256];
        ImageStatus st = image_decode(&img, cases[i].b.data, cases[i].b.n, cases[i].ch, 0, err, sizeof err);
        int ok = st == IMAGE_OK && img.w == w && img.h == h && img.c == cases[i].ch;
        int bad = ok ? count_diff(img.pixels, cases[i].ref, (size_t)w * h * cases[i].ch, TOL_JPEG_FLAT_MAXABS) : -1;
        TEST_CHECK(ok && bad == 0, "%s: status %d (%s), %d pixels off by > %d", cases[i].what, st, err, bad,
                   TOL_JPEG_FLAT_MAXABS);
        image_free(&img);
        free(cases[i].b.data);
    }
    /* gray JPEG -> RGB replicates */
    MemBuf g = imgw_jpeg(gray, w, h, 1, JCS_GRAYSCALE, 100);
    Image img;
    char err[256];
    ImageStatus st = image_decode(&img, g.data, g.n, 3, 0, err, sizeof err);
    int bad = st == IMAGE_OK ? 0 : -1;
    for (int i = 0; st == IMAGE_OK && i < w * h; i++)
        if (img.pixels[3 * i] != img.pixels[3 * i + 1] || img.pixels[3 * i] != img.pixels[3 * i + 2] ||
            abs(img.pixels[3 * i] - gray[i]) > TOL_JPEG_FLAT_MAXABS)
            bad++;
    TEST_CHECK(bad == 0, "jpeg gray -> rgb replicates the gray value (%d bad)", bad);
    image_free(&img);
    free(g.data);

    /* DCT scaling: 64 x 48 decoded with min_side hints */
    uint8_t big[64 * 48 * 3];
    for (int i = 0; i < 64 * 48 * 3; i++) big[i] = 90;
    MemBuf b = imgw_jpeg(big, 64, 48, 3, JCS_RGB, 90);
    int hints[4] = {0, 40, 20, 6}, ew[4] = {64, 64, 32, 8}, eh[4] = {48, 48, 24, 6};
    for (int k = 0; k < 4; k++) {
        st = image_decode(&img, b.data, b.n, 3, hints[k], err, sizeof err);
        bad = 0;
        for (size_t i = 0; st == IMAGE_OK && i < (size_t)img.w * img.h * 3; i++)
            if (abs(img.pixels[i] - 90) > TOL_JPEG_FLAT_MAXABS) bad++;
        TEST_CHECK(st == IMAGE_OK && img.w == ew[k] && img.h == eh[k] && bad == 0,
                   "jpeg DCT scaling with min_side %d: got %dx%d, want %dx%d (%d bad pixels)", hints[k], img.w,
                   img.h, ew[k], eh[k], bad);
        image_free(&img);
    }
    free(b.data);
}

/* Truncations, bit flips and garbage: a status, never a crash; no output on error. */
static void test_corrupt(void) {
    uint8_t rgb[24 * 20 * 3];
    for (int y = 0; y < 20; y++)
        for (int x = 0; x < 24; x++)
            for (int c = 0; c < 3; c++) rgb[(y * 24 + x) * 3 + c] = pattern(x, y, c);
    MemBuf files[2] = {imgw_png(rgb, 24, 20, PNG_COLOR_TYPE_RGB, 8, NULL, 0, 0),
                       imgw_jpeg(rgb, 24, 20, 3, JCS_RGB, 85)};
    const char *names[2] = {"png", "jpeg"};
    /* PNG: everything up to IEND (last 12 bytes) is needed; JPEG: everything
     * but the 2-byte EOI marker is scan data */
    size_t needed_tail[2] = {12, 2};
    for (int f = 0; f < 2; f++) {
        const MemBuf *b = &files[f];
        int wrong_ok = 0, bad_status = 0;
        size_t first_wrong = 0;
        for (size_t len = 0; len < b->n; len++) {
            Image img;
            char err[256];
            ImageStatus st = image_decode(&img, b->data, len, 3, 0, err, sizeof err);
            if (st == IMAGE_OK) {
                if (len + needed_tail[f] <= b->n - 1 && !wrong_ok++) first_wrong = len;
                image_free(&img);
            } else {
                if (img.pixels != NULL || err[0] == 0) bad_status++;
                if (len >= 8 && st != IMAGE_CORRUPT) bad_status++;
            }
        }
        TEST_CHECK(wrong_ok == 0 && bad_status == 0,
                   "%s: every truncation (%zu lengths) is IMAGE_CORRUPT with a message (%d decoded, first at %zu; %d bad statuses)",
                   names[f], b->n, wrong_ok, first_wrong, bad_status);
        /* random byte flips after the magic: any status, but OK means the right size */
        Rng r;
        rng_init(&r, 7, FLIP_RNG_TEST, (uint64_t)f, 0);
        int n_ok = 0, n_err = 0, wrong_size = 0;
        uint8_t *copy = malloc(b->n);
        for (int it = 0; it < 300; it++) {
            memcpy(copy, b->data, b->n);
            int flips = 1 + (int)rng_below(&r, 4);
            for (int k = 0; k < flips; k++)
                copy[8 + rng_below(&r, (uint32_t)(b->n - 8))] ^= (uint8_t)(1u << rng_below(&r, 8));
            Image img;
            char err[256];
            if (image_decode(&img, copy, b->n, 3, 0, err, sizeof err) == IMAGE_OK) {
                n_ok++;
                if (img.w <= 0 || img.h <= 0 || img.c != 3) wrong_size++;
                image_free(&img);
            } else {
                n_err++;
            }
        }
        free(copy);
        TEST_CHECK(wrong_size == 0 && n_ok + n_err == 300,
                   "%s: 300 bit-flipped copies decoded without a crash (%d ok, %d errors)", names[f], n_ok, n_err);
        free(files[f].data);
    }
    /* not an image */
    const uint8_t gif[] = "GIF89a\x01\x00\x01\x00";
    Image img;
    char err[256];
    TEST_CHECK(image_decode(&img, gif, sizeof gif, 3, 0, err, sizeof err) == IMAGE_UNSUPPORTED && err[0],
               "GIF bytes -> IMAGE_UNSUPPORTED (%s)", err);
    TEST_CHECK(image_decode(&img, gif, 0, 3, 0, err, sizeof err) == IMAGE_UNSUPPORTED, "empty buffer -> IMAGE_UNSUPPORTED (%s)", err);
    /* a PNG header claiming 100000 x 100000 with a valid CRC */
    uint8_t bomb[8 + 25] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                            0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0, 8, 2, 0, 0, 0};
    uLong crc = crc32(0, bomb + 12, 17);
    bomb[29] = (uint8_t)(crc >> 24); bomb[30] = (uint8_t)(crc >> 16); bomb[31] = (uint8_t)(crc >> 8); bomb[32] = (uint8_t)crc;
    ImageStatus st = image_decode(&img, bomb, sizeof bomb, 3, 0, err, sizeof err);
    TEST_CHECK(st != IMAGE_OK && img.pixels == NULL, "PNG claiming 100000x100000 is refused (status %d: %s)", st, err);
}

/* ---- resize against a double reference ---- */

static double tri(double x) { x = fabs(x); return x < 1 ? 1 - x : 0; }

/* out value of one axis: sum_j w_j v(j), PIL-style triangle window */
static void ref_axis(double *out, int n_out, const double *in, int n_in, int stride_in, int stride_out,
                     double in_per_out, int offset) {
    double fs = in_per_out > 1 ? in_per_out : 1, support = fs;
    for (int i = 0; i < n_out; i++) {
        double center = (i + offset + 0.5) * in_per_out, total = 0, acc = 0;
        int lo = (int)floor(center - support + 0.5), hi = (int)floor(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > n_in) hi = n_in;
        for (int j = lo; j < hi; j++) {
            double wj = tri((j - center + 0.5) / fs);
            total += wj;
            acc += wj * in[j * stride_in];
        }
        out[i * stride_out] = acc / total;
    }
}

static void resize_crop_ref(double *dst, int S, const uint8_t *src, int w, int h, int c) {
    int rw, rh;
    if (w <= h) { rw = S; rh = (int)((long long)S * h / w); }
    else { rh = S; rw = (int)((long long)S * w / h); }
    int ox = (int)floor((rw - S) / 2.0 + 0.5), oy = (int)floor((rh - S) / 2.0 + 0.5);
    double *in = malloc(sizeof(double) * (size_t)w * h * c), *tmp = malloc(sizeof(double) * (size_t)S * h * c);
    for (size_t i = 0; i < (size_t)w * h * c; i++) in[i] = src[i];
    for (int y = 0; y < h; y++)
        for (int ch = 0; ch < c; ch++)
            ref_axis(tmp + (size_t)y * S * c + ch, S, in + (size_t)y * w * c + ch, w, c, c, (double)w / rw, ox);
    for (int x = 0; x < S; x++)
        for (int ch = 0; ch < c; ch++)
            ref_axis(dst + (size_t)x * c + ch, S, tmp + (size_t)x * c + ch, h, S * c, S * c, (double)h / rh, oy);
    free(in);
    free(tmp);
}

static void test_resize(void) {
    Rng r;
    rng_init(&r, 3, FLIP_RNG_TEST, 0, 1);
    /* fast vs double reference: downscale, upscale, non-square crops, 1 and 3 channels */
    int shapes[][4] = {{64, 48, 16, 3}, {37, 23, 16, 3}, {23, 37, 16, 1}, {10, 7, 24, 3}, {300, 200, 28, 1},
                       {16, 16, 16, 3}, {5, 200, 4, 3}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int w = shapes[k][0], h = shapes[k][1], S = shapes[k][2], c = shapes[k][3];
        uint8_t *src = malloc((size_t)w * h * c), *dst = malloc((size_t)S * S * c);
        for (size_t i = 0; i < (size_t)w * h * c; i++) src[i] = (uint8_t)rng_below(&r, 256);
        double *ref = malloc(sizeof(double) * (size_t)S * S * c);
        image_resize_crop(dst, S, src, w, h, c);
        resize_crop_ref(ref, S, src, w, h, c);
        double max_err = 0;
        for (size_t i = 0; i < (size_t)S * S * c; i++) {
            double e = fabs(dst[i] - ref[i]);
            if (e > max_err) max_err = e;
        }
        TEST_CHECK(max_err <= TOL_RESIZE_VS_REF, "resize_crop %dx%dx%d -> %d: max |fast - ref| = %.4f (<= %.2f)", w,
                   h, c, S, max_err, TOL_RESIZE_VS_REF);
        free(src);
        free(dst);
        free(ref);
    }
    /* constant images stay constant (every size, both channel counts) */
    int bad = 0;
    for (int k = 0; k < 20; k++) {
        int w = 1 + (int)rng_below(&r, 120), h = 1 + (int)rng_below(&r, 120), S = 1 + (int)rng_below(&r, 64);
        int c = k % 2 ? 3 : 1;
        uint8_t v = (uint8_t)rng_below(&r, 256);
        uint8_t *src = malloc((size_t)w * h * c), *dst = malloc((size_t)S * S * c);
        memset(src, v, (size_t)w * h * c);
        image_resize_crop(dst, S, src, w, h, c);
        for (size_t i = 0; i < (size_t)S * S * c; i++)
            if (dst[i] != v) bad++;
        free(src);
        free(dst);
    }
    TEST_CHECK(bad == 0, "20 random-size constant images stay exactly constant (%d bad pixels)", bad);
    /* a 1-pixel checkerboard shrunk 4x averages to mid-grey (point sampling
     * would give only 0 and 255) */
    uint8_t cb[64 * 64], out[16 * 16];
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++) cb[y * 64 + x] = (x + y) % 2 ? 255 : 0;
    image_resize(out, 16, 16, cb, 64, 64, 1);
    double max_dev = 0;
    for (int i = 0; i < 256; i++) {
        double d = fabs(out[i] - 127.5);
        if (d > max_dev) max_dev = d;
    }
    TEST_CHECK(max_dev <= TOL_CHECKER_DEV, "checkerboard 64 -> 16: max |out - 127.5| = %.1f (<= %.1f)", max_dev,
               TOL_CHECKER_DEV);
    /* crop geometry: no scaling (short side == S) is an exact center crop */
    uint8_t wide[10 * 20], crop[10 * 10];
    for (int y = 0; y < 10; y++)
        for (int x = 0; x < 20; x++) wide[y * 20 + x] = (uint8_t)(x * 10 + y);
    image_resize_crop(crop, 10, wide, 20, 10, 1);
    bad = 0;
    for (int y = 0; y < 10; y++)
        for (int x = 0; x < 10; x++)
            if (crop[y * 10 + x] != wide[y * 20 + x + 5]) bad++;
    TEST_CHECK(bad == 0, "20x10 -> 10: exact center crop of columns 5..14 (%d bad)", bad);
    uint8_t tall[21 * 7], crop7[7 * 7];
    for (int y = 0; y < 21; y++)
        for (int x = 0; x < 7; x++) tall[y * 7 + x] = (uint8_t)(y * 12 + x);
    image_resize_crop(crop7, 7, tall, 7, 21, 1);
    bad = 0;
    for (int y = 0; y < 7; y++)
        for (int x = 0; x < 7; x++)
            if (crop7[y * 7 + x] != tall[(y + 7) * 7 + x]) bad++;
    TEST_CHECK(bad == 0, "7x21 -> 7: exact center crop of rows 7..13 (%d bad)", bad);
}

int main(void) {
    test_png();
    test_jpeg();
    test_corrupt();
    test_resize();
    return test_finish();
}
