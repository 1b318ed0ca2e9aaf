/* imgwrite.h — in-memory PNG and JPEG encoders for test fixtures (tests and
 * tests/launch/prog_mkimage.c generate every image at test time; no binary
 * fixtures are committed). Header-only; encoder failures abort the test. */
#ifndef FLIP_TEST_IMGWRITE_H
#define FLIP_TEST_IMGWRITE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

typedef struct {
    uint8_t *data;
    size_t n, cap;
} MemBuf;

static void membuf_put(MemBuf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d) { fprintf(stderr, "imgwrite: out of memory\n"); exit(2); }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->n, p, n);
    b->n += n;
}

static void imgw_png_write_cb(png_structp png, png_bytep p, size_t n) {
    membuf_put(png_get_io_ptr(png), p, n);
}
static void imgw_png_flush_cb(png_structp png) { (void)png; }

/* rows: h rows of the packed samples libpng expects for (color_type,
 * bit_depth) (16-bit samples big-endian). palette: for PNG_COLOR_TYPE_PALETTE. */
static MemBuf imgw_png(const uint8_t *pixels, int w, int h, int color_type, int bit_depth,
                       const png_color *palette, int n_palette, int interlace) __attribute__((unused));
static MemBuf imgw_png(const uint8_t *pixels, int w, int h, int color_type, int bit_depth,
                       const png_color *palette, int n_palette, int interlace) {
    MemBuf b = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (!png || !info || setjmp(png_jmpbuf(png))) { fprintf(stderr, "imgwrite: PNG encode failed\n"); exit(2); }
    png_set_write_fn(png, &b, imgw_png_write_cb, imgw_png_flush_cb);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, bit_depth, color_type,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (palette) png_set_PLTE(png, info, palette, n_palette);
    png_write_info(png, info);
    int channels = color_type == PNG_COLOR_TYPE_GRAY ? 1 : color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                 : color_type == PNG_COLOR_TYPE_RGB ? 3 : color_type == PNG_COLOR_TYPE_RGBA ? 4 : 1;
    size_t rowbytes = ((size_t)w * (size_t)channels * (size_t)bit_depth + 7) / 8;
    png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)h);
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)pixels + (size_t)y * rowbytes;
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    return b;
}

/* pixels (h, w, comps); space JCS_RGB (3), JCS_GRAYSCALE (1) or JCS_CMYK (4,
 * written as given, with the Adobe marker libjpeg adds for CMYK). All
 * components sampled 1x1 (4:4:4), so flat 8x8 blocks decode almost exactly. */
static MemBuf imgw_jpeg(const uint8_t *pixels, int w, int h, int comps, J_COLOR_SPACE space, int quality)
    __attribute__((unused));
static MemBuf imgw_jpeg(const uint8_t *pixels, int w, int h, int comps, J_COLOR_SPACE space, int quality) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    unsigned char *out = NULL;
    unsigned long out_n = 0;
    jpeg_mem_dest(&c, &out, &out_n);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = comps;
    c.in_color_space = space;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    for (int i = 0; i < c.num_components; i++) {
        c.comp_info[i].h_samp_factor = 1;
        c.comp_info[i].v_samp_factor = 1;
    }
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)pixels + (size_t)c.next_scanline * (size_t)w * (size_t)comps;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    MemBuf b = {0};
    membuf_put(&b, out, out_n);
    free(out);
    return b;
}

static int imgw_save(const char *path, const MemBuf *b) __attribute__((unused));
static int imgw_save(const char *path, const MemBuf *b) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t n = fwrite(b->data, 1, b->n, f);
    return (fclose(f) == 0 && n == b->n) ? 0 : -1;
}

#endif
