/* image.c — JPEG/PNG decoding and antialiased resizing for flip-prep (see
 * image.h for the conventions).
 *
 * Error handling: libjpeg and libpng report fatal errors through callbacks
 * that must not return; ours longjmp back into the decoding function. Every
 * resource that function owns lives in a heap context (DecodeCtx) reached
 * through a pointer that is never modified after setjmp, so after the jump
 * the handler sees valid values (C11 7.13.2.1) and frees all of it. */
#include "image.h"

#include "common.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

static void set_err(char *err, size_t err_bytes, const char *fmt, ...) FLIP_PRINTF(3, 4);
static void set_err(char *err, size_t err_bytes, const char *fmt, ...) {
    if (!err || err_bytes == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_bytes, fmt, ap);
    va_end(ap);
}

void image_free(Image *img) {
    flip_free(img->pixels);
    img->pixels = NULL;
    img->w = img->h = img->c = 0;
}

static int too_large(size_t w, size_t h) {
    return w == 0 || h == 0 || w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE || w * h > IMAGE_MAX_PIXELS;
}

/* ---- JPEG ---------------------------------------------------------------- */

typedef struct {
    struct jpeg_error_mgr pub; /* first: libjpeg casts cinfo->err to ours */
    jmp_buf jmp;
    char msg[JMSG_LENGTH_MAX];
    int truncated;
} JpegErr;

typedef struct {
    struct jpeg_decompress_struct cinfo;
    JpegErr jerr;
    uint8_t *pixels; /* (h, w, channels) result */
    uint8_t *row;    /* one CMYK scanline */
} JpegCtx;

static void jpeg_error_exit_cb(j_common_ptr cinfo) {
    JpegErr *e = (JpegErr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jmp, 1);
}

static void jpeg_emit_cb(j_common_ptr cinfo, int level) {
    if (level < 0) { /* warnings: counted, never printed */
        JpegErr *e = (JpegErr *)cinfo->err;
        if (cinfo->err->msg_code == JWRN_JPEG_EOF) e->truncated = 1;
        cinfo->err->num_warnings++;
    }
}

static void jpeg_output_cb(j_common_ptr cinfo) { (void)cinfo; }

static ImageStatus decode_jpeg(Image *out, const uint8_t *data, size_t n_bytes, int channels,
                               int min_side, char *err, size_t err_bytes) {
    JpegCtx *const ctx = flip_calloc(1, sizeof(JpegCtx), "JPEG decoder");
    struct jpeg_decompress_struct *const cinfo = &ctx->cinfo;
    cinfo->err = jpeg_std_error(&ctx->jerr.pub);
    ctx->jerr.pub.error_exit = jpeg_error_exit_cb;
    ctx->jerr.pub.emit_message = jpeg_emit_cb;
    ctx->jerr.pub.output_message = jpeg_output_cb;
    if (setjmp(ctx->jerr.jmp)) {
        set_err(err, err_bytes, "corrupt JPEG: %s", ctx->jerr.msg);
        jpeg_destroy_decompress(cinfo);
        flip_free(ctx->pixels);
        flip_free(ctx->row);
        flip_free(ctx);
        return IMAGE_CORRUPT;
    }
    jpeg_create_decompress(cinfo);
    jpeg_mem_src(cinfo, data, (unsigned long)n_bytes);
    jpeg_read_header(cinfo, TRUE);

    int cmyk = cinfo->jpeg_color_space == JCS_CMYK || cinfo->jpeg_color_space == JCS_YCCK;
    if (cmyk) cinfo->out_color_space = JCS_CMYK;
    else cinfo->out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    cinfo->scale_num = 1;
    cinfo->scale_denom = 1;
    if (min_side > 0) {
        unsigned short_side = cinfo->image_width < cinfo->image_height ? cinfo->image_width
                                                                       : cinfo->image_height;
        for (unsigned d = 8; d >= 2; d /= 2) {
            if ((short_side + d - 1) / d >= (unsigned)min_side) {
                cinfo->scale_denom = d;
                break;
            }
        }
    }
    jpeg_calc_output_dimensions(cinfo);
    size_t w = cinfo->output_width, h = cinfo->output_height;
    if (too_large(w, h)) {
        set_err(err, err_bytes, "image too large (%zu x %zu; limits %d per side, %zu pixels)", w, h,
                IMAGE_MAX_SIDE, IMAGE_MAX_PIXELS);
        jpeg_destroy_decompress(cinfo);
        flip_free(ctx);
        return IMAGE_TOO_LARGE;
    }
    jpeg_start_decompress(cinfo);
    int comps = cinfo->output_components;
    if ((cmyk && comps != 4) || (!cmyk && comps != channels)) {
        snprintf(ctx->jerr.msg, sizeof ctx->jerr.msg, "unexpected %d output components", comps);
        longjmp(ctx->jerr.jmp, 1);
    }
    ctx->pixels = flip_malloc(w * h * (size_t)channels, "decoded JPEG");
    if (cmyk) ctx->row = flip_malloc(w * 4, "JPEG CMYK row");
    int adobe = cinfo->saw_Adobe_marker;
    while (cinfo->output_scanline < cinfo->output_height) {
        size_t y = cinfo->output_scanline;
        uint8_t *dst = ctx->pixels + y * w * (size_t)channels;
        JSAMPROW rowp = cmyk ? ctx->row : dst;
        if (jpeg_read_scanlines(cinfo, &rowp, 1) != 1) {
            snprintf(ctx->jerr.msg, sizeof ctx->jerr.msg, "decoder stalled at row %zu", y);
            longjmp(ctx->jerr.jmp, 1);
        }
        if (cmyk) {
            for (size_t x = 0; x < w; x++) {
                unsigned c = ctx->row[4 * x], m = ctx->row[4 * x + 1], yy = ctx->row[4 * x + 2],
                         k = ctx->row[4 * x + 3];
                if (!adobe) { c = 255 - c; m = 255 - m; yy = 255 - yy; k = 255 - k; }
                /* Adobe stores inverted inks: value = 255 - ink */
                unsigned r = (c * k + 127) / 255, g = (m * k + 127) / 255, b = (yy * k + 127) / 255;
                if (channels == 3) {
                    dst[3 * x] = (uint8_t)r; dst[3 * x + 1] = (uint8_t)g; dst[3 * x + 2] = (uint8_t)b;
                } else {
                    dst[x] = (uint8_t)((299 * r + 587 * g + 114 * b + 500) / 1000);
                }
            }
        }
        if (ctx->jerr.truncated) {
            snprintf(ctx->jerr.msg, sizeof ctx->jerr.msg, "truncated data (premature end at row %zu of %zu)", y, h);
            longjmp(ctx->jerr.jmp, 1);
        }
    }
    jpeg_finish_decompress(cinfo);
    if (ctx->jerr.truncated) {
        snprintf(ctx->jerr.msg, sizeof ctx->jerr.msg, "truncated data (premature end)");
        longjmp(ctx->jerr.jmp, 1);
    }
    jpeg_destroy_decompress(cinfo);
    out->pixels = ctx->pixels;
    out->w = (int)w;
    out->h = (int)h;
    out->c = channels;
    flip_free(ctx->row);
    flip_free(ctx);
    return IMAGE_OK;
}

/* ---- PNG ----------------------------------------------------------------- */

typedef struct {
    png_structp png;
    png_infop info;
    jmp_buf jmp;
    char msg[256];
    const uint8_t *data;
    size_t n_bytes, pos;
    uint8_t *buf;       /* (h, rowbytes) decoded */
    png_bytep *rows;    /* (h) row pointers into buf */
    uint8_t *pixels;    /* (h, w, channels) result */
} PngCtx;

static void png_error_cb(png_structp png, png_const_charp msg) {
    PngCtx *ctx = png_get_error_ptr(png);
    snprintf(ctx->msg, sizeof ctx->msg, "%s", msg);
    longjmp(ctx->jmp, 1);
}

static void png_warn_cb(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static void png_read_cb(png_structp png, png_bytep dst, size_t len) {
    PngCtx *ctx = png_get_io_ptr(png);
    if (len > ctx->n_bytes - ctx->pos) png_error(png, "truncated data (file ends early)");
    memcpy(dst, ctx->data + ctx->pos, len);
    ctx->pos += len;
}

static void png_ctx_free(PngCtx *ctx) {
    if (ctx->png) png_destroy_read_struct(&ctx->png, ctx->info ? &ctx->info : NULL, NULL);
    flip_free(ctx->buf);
    flip_free(ctx->rows);
    flip_free(ctx->pixels);
    flip_free(ctx);
}

static ImageStatus decode_png(Image *out, const uint8_t *data, size_t n_bytes, int channels,
                              char *err, size_t err_bytes) {
    PngCtx *const ctx = flip_calloc(1, sizeof(PngCtx), "PNG decoder");
    ctx->data = data;
    ctx->n_bytes = n_bytes;
    ctx->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx, png_error_cb, png_warn_cb);
    FLIP_CHECK(ctx->png, "png_create_read_struct failed (out of memory?)");
    ctx->info = png_create_info_struct(ctx->png);
    FLIP_CHECK(ctx->info, "png_create_info_struct failed (out of memory?)");
    if (setjmp(ctx->jmp)) {
        set_err(err, err_bytes, "corrupt PNG: %s", ctx->msg);
        png_ctx_free(ctx);
        return IMAGE_CORRUPT;
    }
    png_structp png = ctx->png;
    png_infop info = ctx->info;
    png_set_read_fn(png, ctx, png_read_cb);
    png_set_user_limits(png, IMAGE_MAX_SIDE, IMAGE_MAX_SIDE);
    png_set_chunk_malloc_max(png, (png_alloc_size_t)64 << 20);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if (too_large(w, h)) {
        set_err(err, err_bytes, "image too large (%u x %u; limits %d per side, %zu pixels)",
                (unsigned)w, (unsigned)h, IMAGE_MAX_SIDE, IMAGE_MAX_PIXELS);
        png_ctx_free(ctx);
        return IMAGE_TOO_LARGE;
    }
    int color = png_get_color_type(png, info);
    int depth = png_get_bit_depth(png, info);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_strip_16(png);
    if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    int is_gray = !(color & PNG_COLOR_MASK_COLOR) && color != PNG_COLOR_TYPE_PALETTE;
    if (is_gray && channels == 3) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    int comps = png_get_channels(png, info);
    if (comps != 1 && comps != 3) {
        snprintf(ctx->msg, sizeof ctx->msg, "unexpected %d channels after conversion", comps);
        longjmp(ctx->jmp, 1);
    }
    if (rowbytes != (size_t)w * (size_t)comps) {
        snprintf(ctx->msg, sizeof ctx->msg, "unexpected row size %zu", rowbytes);
        longjmp(ctx->jmp, 1);
    }
    ctx->buf = flip_malloc(rowbytes * h, "decoded PNG");
    ctx->rows = flip_malloc(sizeof(png_bytep) * h, "PNG rows");
    for (size_t y = 0; y < h; y++) ctx->rows[y] = ctx->buf + y * rowbytes;
    png_read_image(png, ctx->rows);
    /* the trailing chunks (IEND) are not read: the pixels are complete */
    if (comps == channels) {
        ctx->pixels = ctx->buf;
        ctx->buf = NULL;
    } else { /* comps 3 -> 1: ITU-R 601 luma */
        size_t n = (size_t)w * h;
        ctx->pixels = flip_malloc(n, "PNG gray");
        for (size_t i = 0; i < n; i++) {
            unsigned r = ctx->buf[3 * i], g = ctx->buf[3 * i + 1], b = ctx->buf[3 * i + 2];
            ctx->pixels[i] = (uint8_t)((299 * r + 587 * g + 114 * b + 500) / 1000);
        }
    }
    out->pixels = ctx->pixels;
    out->w = (int)w;
    out->h = (int)h;
    out->c = channels;
    ctx->pixels = NULL;
    png_ctx_free(ctx);
    return IMAGE_OK;
}

ImageStatus image_decode(Image *out, const uint8_t *data, size_t n_bytes, int channels,
                         int min_side, char *err, size_t err_bytes) {
    FLIP_CHECK(channels == 1 || channels == 3, "image_decode: channels must be 1 or 3, got %d", channels);
    out->pixels = NULL;
    out->w = out->h = out->c = 0;
    if (err && err_bytes) err[0] = 0;
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    if (n_bytes >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
        return decode_jpeg(out, data, n_bytes, channels, min_side, err, err_bytes);
    if (n_bytes >= 8 && memcmp(data, png_magic, 8) == 0)
        return decode_png(out, data, n_bytes, channels, err, err_bytes);
    if (n_bytes == 0) set_err(err, err_bytes, "empty image file");
    else set_err(err, err_bytes, "not a JPEG or PNG (unknown magic bytes %02x %02x %02x)", data[0],
                 n_bytes > 1 ? data[1] : 0, n_bytes > 2 ? data[2] : 0);
    return IMAGE_UNSUPPORTED;
}

/* ---- resizing ------------------------------------------------------------ */

/* Per output index i along one axis: the source window [start, start+count)
 * and its normalised triangle weights (PIL's precompute_coeffs). */
typedef struct {
    int *start;   /* (n_out) */
    int *count;   /* (n_out) */
    float *w;     /* (n_out, max_taps) */
    int max_taps;
} Taps;

/* in_per_out: input pixels per output pixel of the (uncropped) resize;
 * offset: crop offset in output pixels. */
static void taps_init(Taps *t, int n_out, int n_in, double in_per_out, int offset) {
    double fscale = in_per_out > 1.0 ? in_per_out : 1.0;
    double support = 1.0 * fscale; /* triangle filter support 1, widened when shrinking */
    t->max_taps = (int)ceil(support) * 2 + 1;
    t->start = flip_malloc(sizeof(int) * (size_t)n_out, "resize taps");
    t->count = flip_malloc(sizeof(int) * (size_t)n_out, "resize taps");
    t->w = flip_malloc(flip_mul_size((size_t)n_out * (size_t)t->max_taps, sizeof(float), "resize taps"),
                       "resize taps");
    for (int i = 0; i < n_out; i++) {
        double center = (i + offset + 0.5) * in_per_out;
        int lo = (int)floor(center - support + 0.5), hi = (int)floor(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > n_in) hi = n_in;
        if (hi - lo > t->max_taps) hi = lo + t->max_taps;
        float *w = t->w + (size_t)i * t->max_taps;
        double total = 0;
        int n = hi - lo;
        for (int k = 0; k < n; k++) {
            double x = (lo + k - center + 0.5) / fscale;
            double v = fabs(x) < 1.0 ? 1.0 - fabs(x) : 0.0;
            w[k] = (float)v;
            total += v;
        }
        if (n <= 0 || total <= 0) { /* degenerate window: nearest pixel */
            int near = (int)floor(center);
            lo = near < 0 ? 0 : near >= n_in ? n_in - 1 : near;
            n = 1;
            w[0] = 1.0f;
        } else {
            for (int k = 0; k < n; k++) w[k] = (float)(w[k] / total);
        }
        t->start[i] = lo;
        t->count[i] = n;
    }
}

static void taps_free(Taps *t) {
    flip_free(t->start);
    flip_free(t->count);
    flip_free(t->w);
}

/* dst (oh, ow, c): output pixel (x, y) samples the resize of src to (rw, rh)
 * at (x + ox, y + oy). */
static void resample(uint8_t *dst, int ow, int oh, const uint8_t *src, int w, int h, int c,
                     int rw, int rh, int ox, int oy) {
    FLIP_CHECK(ow > 0 && oh > 0 && w > 0 && h > 0 && rw > 0 && rh > 0 && (c == 1 || c == 3),
               "image resize: bad sizes (%d x %d -> %d x %d, c %d)", w, h, ow, oh, c);
    Taps tx, ty;
    taps_init(&tx, ow, w, (double)w / rw, ox);
    taps_init(&ty, oh, h, (double)h / rh, oy);
    int y0 = ty.start[0], y1 = ty.start[0] + ty.count[0];
    for (int y = 1; y < oh; y++) {
        if (ty.start[y] < y0) y0 = ty.start[y];
        if (ty.start[y] + ty.count[y] > y1) y1 = ty.start[y] + ty.count[y];
    }
    size_t row_floats = (size_t)ow * (size_t)c;
    float *tmp = flip_malloc(flip_mul_size((size_t)(y1 - y0) * row_floats, sizeof(float), "resize rows"),
                             "resize rows"); /* (y1 - y0, ow, c) horizontal pass */
    for (int y = y0; y < y1; y++) {
        const uint8_t *srow = src + (size_t)y * (size_t)w * (size_t)c;
        float *trow = tmp + (size_t)(y - y0) * row_floats;
        for (int x = 0; x < ow; x++) {
            const float *wx = tx.w + (size_t)x * tx.max_taps;
            const uint8_t *sp = srow + (size_t)tx.start[x] * (size_t)c;
            int n = tx.count[x];
            if (c == 3) {
                float r = 0, g = 0, b = 0;
                for (int k = 0; k < n; k++) {
                    r += wx[k] * sp[3 * k];
                    g += wx[k] * sp[3 * k + 1];
                    b += wx[k] * sp[3 * k + 2];
                }
                trow[3 * x] = r; trow[3 * x + 1] = g; trow[3 * x + 2] = b;
            } else {
                float v = 0;
                for (int k = 0; k < n; k++) v += wx[k] * sp[k];
                trow[x] = v;
            }
        }
    }
    float *acc = flip_malloc(row_floats * sizeof(float), "resize acc");
    for (int y = 0; y < oh; y++) {
        const float *wy = ty.w + (size_t)y * ty.max_taps;
        for (size_t j = 0; j < row_floats; j++) acc[j] = 0;
        for (int k = 0; k < ty.count[y]; k++) {
            const float *trow = tmp + (size_t)(ty.start[y] + k - y0) * row_floats;
            float wk = wy[k];
            for (size_t j = 0; j < row_floats; j++) acc[j] += wk * trow[j];
        }
        uint8_t *drow = dst + (size_t)y * row_floats;
        for (size_t j = 0; j < row_floats; j++) {
            float v = floorf(acc[j] + 0.5f);
            drow[j] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    flip_free(acc);
    flip_free(tmp);
    taps_free(&tx);
    taps_free(&ty);
}

void image_resize(uint8_t *dst, int ow, int oh, const uint8_t *src, int w, int h, int c) {
    resample(dst, ow, oh, src, w, h, c, ow, oh, 0, 0);
}

void image_resize_crop(uint8_t *dst, int S, const uint8_t *src, int w, int h, int c) {
    FLIP_CHECK(S > 0 && w > 0 && h > 0, "image_resize_crop: bad sizes (%d x %d -> %d)", w, h, S);
    int rw, rh;
    if (w <= h) {
        rw = S;
        rh = (int)((long long)S * h / w);
    } else {
        rh = S;
        rw = (int)((long long)S * w / h);
    }
    if (rw < S) rw = S;
    if (rh < S) rh = S;
    int ox = (int)floor((rw - S) / 2.0 + 0.5), oy = (int)floor((rh - S) / 2.0 + 0.5);
    resample(dst, S, S, src, w, h, c, rw, rh, ox, oy);
}
