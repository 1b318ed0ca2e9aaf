/* image.h — image decoding and resizing for flip-prep (offline only; training
 * never decodes images).
 *
 * Decoding: JPEG (libjpeg-turbo) and PNG (libpng), detected by their magic
 * bytes, from a memory buffer. Output is RGB (channels 3) or grayscale
 * (channels 1): gray -> RGB replicates; RGB -> gray is ITU-R 601 luma
 * (299 R + 587 G + 114 B) / 1000 as PIL's convert("L") (for YCbCr JPEGs the
 * decoder's Y plane, the same formula). PNG: palette and low bit depths are
 * expanded, 16-bit samples keep their high byte, alpha is dropped (as PIL's
 * convert("RGB")). JPEG: CMYK/YCCK are converted with the Adobe (inverted)
 * convention when the Adobe marker is present. A truncated JPEG ("premature
 * end") is corrupt, not a grey-padded image.
 * Both decoders run their setjmp error handlers in a frame that owns every
 * resource (volatile pointers), so a corrupt file frees everything and returns
 * a status with a one-line reason; nothing is printed and nothing crashes.
 * Images larger than IMAGE_MAX_SIDE per side or IMAGE_MAX_PIXELS in total
 * (after JPEG DCT scaling) are rejected as too large (decompression bombs).
 *
 * Resizing: separable triangle (tent) filter in float whose support grows with
 * the downscale factor (antialiased, as PIL's BILINEAR resize), edge windows
 * renormalised; image_resize_crop resizes the shorter side to S (long side
 * int(S * long / short), as torchvision Resize(S)) and center-crops S x S
 * (offset round((len - S) / 2), as torchvision CenterCrop), computing only the
 * cropped pixels.
 *
 * Ownership: image_decode fills an Image that owns its pixels; image_free
 * releases them. The resize functions write into caller buffers. */
#ifndef FLIP_IMAGE_H
#define FLIP_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#define IMAGE_MAX_SIDE 32768
#define IMAGE_MAX_PIXELS ((size_t)1 << 26)

typedef enum {
    IMAGE_OK = 0,
    IMAGE_CORRUPT = 1,     /* truncated or malformed JPEG/PNG */
    IMAGE_UNSUPPORTED = 2, /* neither JPEG nor PNG (or an empty buffer) */
    IMAGE_TOO_LARGE = 3    /* over IMAGE_MAX_SIDE / IMAGE_MAX_PIXELS */
} ImageStatus;

typedef struct {
    uint8_t *pixels; /* (h, w, c), owned */
    int w, h, c;
} Image;

/* Decodes `data` into `out` with `channels` (1 or 3) channels. min_side > 0
 * lets the JPEG decoder use DCT scaling (1/2, 1/4, 1/8) as long as the
 * shorter side stays >= min_side (a fast, antialiased pre-shrink); 0 decodes
 * at full size. On failure out->pixels is NULL and err holds one line. */
ImageStatus image_decode(Image *out, const uint8_t *data, size_t n_bytes, int channels,
                         int min_side, char *err, size_t err_bytes);
void image_free(Image *img);

/* dst (oh, ow, c) = src (h, w, c) resized with the antialiased triangle filter */
void image_resize(uint8_t *dst, int ow, int oh, const uint8_t *src, int w, int h, int c);
/* dst (S, S, c) = center S x S crop of src resized so its shorter side is S */
void image_resize_crop(uint8_t *dst, int S, const uint8_t *src, int w, int h, int c);

#endif
