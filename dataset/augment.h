/* augment.h — image augmentation for the loader, keyed by the counter RNG so a
 * sample's augmentation depends only on (seed, global row, step).
 *
 * augment_random_resized_crop follows torchvision's RandomResizedCrop as used
 * by MAE/FLIP: up to 10 tries of area fraction U(scale_min, scale_max) and
 * aspect ratio exp(U(ln 3/4, ln 4/3)); the first box that fits is used, else
 * the central box with the aspect clamped to [3/4, 4/3]. The box is resampled
 * to H x W with bilinear interpolation (pixel centres aligned, edge clamped),
 * rounded to nearest. Then, with probability 1/2, a horizontal flip. */
#ifndef FLIP_AUGMENT_H
#define FLIP_AUGMENT_H

#include <stdint.h>

#include "rng.h"

#define AUGMENT_SCALE_MIN 0.4
#define AUGMENT_SCALE_MAX 1.0
#define AUGMENT_MAX_SIDE 4096 /* = SHARD_MAX_HW */

/* The crop box chosen for an H x W image: rows [y0, y0+h), cols [x0, x0+w). */
typedef struct {
    int y0, x0, h, w;
    int flip;
} AugmentBox;

AugmentBox augment_draw_box(Rng *r, int H, int W, double scale_min, double scale_max);
/* out (H, W, C) = resize(crop(in (H, W, C), box)) then flip. out != in. */
void augment_apply(uint8_t *out, const uint8_t *in, int H, int W, int C, const AugmentBox *box);
/* augment_draw_box with AUGMENT_SCALE_MIN/MAX + augment_apply. */
void augment_image(uint8_t *out, const uint8_t *in, int H, int W, int C, Rng *r);

#endif
