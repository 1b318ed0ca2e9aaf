/* augment.c — random resized crop + horizontal flip (see augment.h).
 *
 * Box: torchvision RandomResizedCrop.get_params (MAE/FLIP training recipe).
 * Resampling: bilinear, half-pixel centres (align_corners = false): output
 * pixel o of n maps to source coordinate x0 + (o + 0.5) * w / n - 0.5, clamped
 * to the box; rounding to nearest. Weights per output column/row are computed
 * once per image (fixed-size tables on the stack: no allocation), then one
 * pass over the output. */
#include "augment.h"

#include <math.h>

#include "common.h"

#define AUG_LOG_RATIO_MIN (-0.28768207245178093) /* ln(3/4) */
#define AUG_LOG_RATIO_MAX (0.28768207245178096)  /* ln(4/3) */

AugmentBox augment_draw_box(Rng *r, int H, int W, double scale_min, double scale_max) {
    AugmentBox b;
    double area = (double)H * W;
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * (scale_min + (scale_max - scale_min) * rng_uniform(r));
        double aspect = exp(AUG_LOG_RATIO_MIN + (AUG_LOG_RATIO_MAX - AUG_LOG_RATIO_MIN) * rng_uniform(r));
        int w = (int)lround(sqrt(target * aspect));
        int h = (int)lround(sqrt(target / aspect));
        if (w > 0 && w <= W && h > 0 && h <= H) {
            b.y0 = (int)rng_below(r, (uint32_t)(H - h + 1));
            b.x0 = (int)rng_below(r, (uint32_t)(W - w + 1));
            b.h = h;
            b.w = w;
            b.flip = (int)(rng_u32(r) & 1u);
            return b;
        }
    }
    /* fallback: central crop with the aspect ratio clamped to [3/4, 4/3] */
    double in_ratio = (double)W / H;
    int w = W, h = H;
    if (in_ratio < 0.75) h = (int)lround(W / 0.75);
    else if (in_ratio > 4.0 / 3.0) w = (int)lround(H * (4.0 / 3.0));
    if (h > H) h = H;
    if (w > W) w = W;
    if (h < 1) h = 1;
    if (w < 1) w = 1;
    b.h = h;
    b.w = w;
    b.y0 = (H - h) / 2;
    b.x0 = (W - w) / 2;
    b.flip = (int)(rng_u32(r) & 1u);
    return b;
}

/* for each of n outputs: lower source index i0 (in [lo, lo+len-1]) and weight of i0+1 */
static void axis_table(int *i0, float *frac, int n, int lo, int len) {
    for (int o = 0; o < n; o++) {
        double x = lo + (o + 0.5) * (double)len / n - 0.5;
        if (x < lo) x = lo;
        if (x > lo + len - 1) x = lo + len - 1;
        int i = (int)floor(x);
        if (i > lo + len - 2) i = lo + len - 2 < lo ? lo : lo + len - 2;
        i0[o] = i;
        frac[o] = (float)(x - i);
    }
}

void augment_apply(uint8_t *out, const uint8_t *in, int H, int W, int C, const AugmentBox *box) {
    FLIP_CHECK(H >= 1 && W >= 1 && H <= AUGMENT_MAX_SIDE && W <= AUGMENT_MAX_SIDE,
               "augment: image %dx%d outside [1, %d]", H, W, AUGMENT_MAX_SIDE);
    FLIP_CHECK(box->h >= 1 && box->w >= 1 && box->y0 >= 0 && box->x0 >= 0 && box->y0 + box->h <= H &&
                   box->x0 + box->w <= W,
               "augment: crop box (%d, %d, %d, %d) outside the %dx%d image", box->y0, box->x0, box->h, box->w, H, W);
    int yi[AUGMENT_MAX_SIDE], xi[AUGMENT_MAX_SIDE];
    float yf[AUGMENT_MAX_SIDE], xf[AUGMENT_MAX_SIDE];
    axis_table(yi, yf, H, box->y0, box->h);
    axis_table(xi, xf, W, box->x0, box->w);
    const size_t row = (size_t)W * C;
    for (int oy = 0; oy < H; oy++) {
        const int y = yi[oy];
        const int y1 = box->h > 1 ? y + 1 : y;
        const float fy = yf[oy];
        const uint8_t *r0 = in + (size_t)y * row, *r1 = in + (size_t)y1 * row;
        uint8_t *o = out + (size_t)oy * row;
        for (int ox = 0; ox < W; ox++) {
            const int src = box->flip ? W - 1 - ox : ox;
            const int x = xi[src];
            const int x1 = box->w > 1 ? x + 1 : x;
            const float fx = xf[src];
            for (int c = 0; c < C; c++) {
                float a = r0[(size_t)x * C + c], b = r0[(size_t)x1 * C + c];
                float d = r1[(size_t)x * C + c], e = r1[(size_t)x1 * C + c];
                float top = a + (b - a) * fx, bot = d + (e - d) * fx;
                float v = top + (bot - top) * fy + 0.5f;
                o[(size_t)ox * C + c] = (uint8_t)(v < 0.f ? 0.f : v > 255.f ? 255.f : v);
            }
        }
    }
}

void augment_image(uint8_t *out, const uint8_t *in, int H, int W, int C, Rng *r) {
    AugmentBox b = augment_draw_box(r, H, W, AUGMENT_SCALE_MIN, AUGMENT_SCALE_MAX);
    augment_apply(out, in, H, W, C, &b);
}
