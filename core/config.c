/* config.c — FlipConfig presets, validation, patch counts and the analytic
 * training FLOPs used for MFU (DESIGN §2, §6).
 *
 * Presets follow the FLIP paper for the image towers; the text towers of tiny,
 * vit-s16 and vit-b16 match ../shared/peers/run-peer so the step benchmark
 * compares like for like. Normalisation is CLIP's mean/std. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int image_size, patch, width, depth, heads;
    int text_width, text_depth, text_heads, embed_dim, vocab, context;
} Preset;

static const Preset PRESETS[] = {
    {"tiny", 32, 4, 192, 6, 3, 128, 4, 2, 128, 32768, 32},
    {"vit-s16", 224, 16, 384, 12, 6, 256, 6, 4, 256, 30522, 32},
    {"vit-b16", 224, 16, 768, 12, 12, 512, 12, 8, 512, 30522, 32},
    {"vit-l16", 224, 16, 1024, 24, 16, 768, 12, 12, 768, 30522, 32},
    {"vit-h14", 224, 14, 1280, 32, 16, 1024, 24, 16, 1024, 30522, 32},
};
#define N_PRESETS ((int)(sizeof(PRESETS) / sizeof(PRESETS[0])))

static const float CLIP_MEAN[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float CLIP_STD[3] = {0.26862954f, 0.26130258f, 0.27577711f};

int flip_config_preset(FlipConfig *cfg, const char *name) {
    for (int i = 0; i < N_PRESETS; i++) {
        const Preset *p = &PRESETS[i];
        if (strcmp(p->name, name) != 0) continue;
        memset(cfg, 0, sizeof(*cfg));
        snprintf(cfg->name, sizeof(cfg->name), "%s", p->name);
        cfg->image_size = p->image_size;
        cfg->channels = 3;
        cfg->patch = p->patch;
        cfg->width = p->width;
        cfg->depth = p->depth;
        cfg->heads = p->heads;
        cfg->text_width = p->text_width;
        cfg->text_depth = p->text_depth;
        cfg->text_heads = p->text_heads;
        cfg->vocab = p->vocab;
        cfg->context = p->context;
        cfg->embed_dim = p->embed_dim;
        cfg->mlp_ratio = 4;
        for (int c = 0; c < 3; c++) {
            cfg->mean[c] = CLIP_MEAN[c];
            cfg->std[c] = CLIP_STD[c];
        }
        return 0;
    }
    return -1;
}

const char *flip_config_preset_names(void) { return "tiny, vit-s16, vit-b16, vit-l16, vit-h14"; }

/* Upper limits: far above any preset, low enough that size_t products of
 * activations cannot overflow and a typo (an extra zero) is caught. */
#define MAX_IMAGE 4096
#define MAX_WIDTH 16384
#define MAX_DEPTH 256
#define MAX_VOCAB (1 << 24)
#define MAX_CONTEXT 4096
#define MAX_PATCHES 65536

#define REJECT(...) do { snprintf(msg, msg_bytes, __VA_ARGS__); return msg; } while (0)

const char *flip_config_check(const FlipConfig *c, char *msg, size_t msg_bytes) {
    if (c->image_size < 1 || c->image_size > MAX_IMAGE)
        REJECT("image_size %d out of range [1, %d]", c->image_size, MAX_IMAGE);
    if (c->channels != 1 && c->channels != 3)
        REJECT("channels %d unsupported: use 1 (grayscale) or 3 (RGB)", c->channels);
    if (c->patch < 1 || c->patch > c->image_size)
        REJECT("patch %d out of range [1, image_size %d]", c->patch, c->image_size);
    if (c->image_size % c->patch != 0)
        REJECT("image_size %d is not divisible by patch %d", c->image_size, c->patch);
    if ((c->image_size / c->patch) * (c->image_size / c->patch) > MAX_PATCHES)
        REJECT("%d patches per image exceeds %d: use a larger patch", (c->image_size / c->patch) * (c->image_size / c->patch), MAX_PATCHES);
    if (c->width < 4 || c->width > MAX_WIDTH)
        REJECT("width %d out of range [4, %d]", c->width, MAX_WIDTH);
    if (c->width % 4 != 0)
        REJECT("width %d must be a multiple of 4 (2-D sin-cos position embedding)", c->width);
    if (c->depth < 1 || c->depth > MAX_DEPTH)
        REJECT("depth %d out of range [1, %d]", c->depth, MAX_DEPTH);
    if (c->heads < 1 || c->width % c->heads != 0)
        REJECT("width %d is not divisible by heads %d", c->width, c->heads);
    if (c->text_width < 1 || c->text_width > MAX_WIDTH)
        REJECT("text_width %d out of range [1, %d]", c->text_width, MAX_WIDTH);
    if (c->text_depth < 1 || c->text_depth > MAX_DEPTH)
        REJECT("text_depth %d out of range [1, %d]", c->text_depth, MAX_DEPTH);
    if (c->text_heads < 1 || c->text_width % c->text_heads != 0)
        REJECT("text_width %d is not divisible by text_heads %d", c->text_width, c->text_heads);
    if (c->vocab < 2 || c->vocab > MAX_VOCAB)
        REJECT("vocab %d out of range [2, %d]", c->vocab, MAX_VOCAB);
    if (c->context < 1 || c->context > MAX_CONTEXT)
        REJECT("context (text length T) %d out of range [1, %d]", c->context, MAX_CONTEXT);
    if (c->embed_dim < 1 || c->embed_dim > MAX_WIDTH)
        REJECT("embed_dim %d out of range [1, %d]", c->embed_dim, MAX_WIDTH);
    if (c->mlp_ratio < 1 || c->mlp_ratio > 16)
        REJECT("mlp_ratio %d out of range [1, 16]", c->mlp_ratio);
    for (int ch = 0; ch < c->channels; ch++) {
        if (!(c->std[ch] > 0.0f) || !isfinite(c->std[ch]) || !isfinite(c->mean[ch]))
            REJECT("channel %d normalisation invalid (mean %g, std %g): std must be > 0", ch,
                   (double)c->mean[ch], (double)c->std[ch]);
    }
    return NULL;
}

int flip_config_num_patches(const FlipConfig *cfg) {
    int g = cfg->image_size / cfg->patch;
    return g * g;
}

int flip_config_num_kept(const FlipConfig *cfg, float mask_ratio) {
    int Np = flip_config_num_patches(cfg);
    int N = (int)((double)Np * (1.0 - (double)mask_ratio));
    if (N < 1) N = 1;
    if (N > Np) N = Np;
    return N;
}

/* Forward FLOPs of one transformer tower over n tokens of width w:
 * qkv 2n w 3w + proj 2n w w + mlp 2 * 2n w (r w) = (8 + 4r) n w^2, and
 * attention QK^T + AV = 2 * 2 n n w (summed over heads). */
static double tower_flops(double n, double w, double depth, double r) {
    return depth * ((8.0 + 4.0 * r) * n * w * w + 4.0 * n * n * w);
}

double flip_config_train_flops(const FlipConfig *c, float mask_ratio) {
    return flip_config_train_flops_at(c, mask_ratio, c->context);
}

double flip_config_train_flops_at(const FlipConfig *c, float mask_ratio, int text_positions) {
    double N = flip_config_num_kept(c, mask_ratio);
    double P = (double)c->patch * c->patch * c->channels;
    double C = c->width, Ct = c->text_width, T = text_positions, D = c->embed_dim;
    double r = c->mlp_ratio;
    double f = 2.0 * N * P * C;                       /* patch embedding, kept rows only */
    f += tower_flops(N, C, c->depth, r);
    f += 2.0 * C * D;                                 /* image projection */
    f += tower_flops(T, Ct, c->text_depth, r);
    f += 2.0 * Ct * D;                                /* text projection */
    /* the B x G logits (2 G D per sample) depend on the batch and are < 0.1 %
     * of the total for every preset: not counted */
    return 3.0 * f;
}
