/* model.h — the FLIP model (DESIGN §2): masked ViT image encoder, bidirectional
 * text encoder, projections, learnable temperature; parameters in one flat
 * arena params | grads | adam_m | adam_v with equal offsets.
 *
 * Parameter names and shapes (weights in nn.Linear layout (out, in)):
 *   visual.patch_embed.weight (C, P)   visual.patch_embed.bias (C)
 *   visual.blocks.{i}.ln1.weight (C)   visual.blocks.{i}.ln1.bias (C)
 *   visual.blocks.{i}.attn.qkv.weight (3C, C)   .attn.qkv.bias (3C)
 *   visual.blocks.{i}.attn.proj.weight (C, C)   .attn.proj.bias (C)
 *   visual.blocks.{i}.ln2.weight/.bias (C)
 *   visual.blocks.{i}.mlp.fc1.weight (4C, C) .mlp.fc1.bias (4C)
 *   visual.blocks.{i}.mlp.fc2.weight (C, 4C) .mlp.fc2.bias (C)
 *   visual.ln_final.weight/.bias (C)   visual.proj.weight (D, C)
 *   text.token_embed.weight (V, Ct)    text.pos_embed (T, Ct)
 *   text.blocks.{i}.* as visual, width Ct
 *   text.ln_final.weight/.bias (Ct)    text.proj.weight (D, Ct)
 *   logit_scale (1)  — t; the scale is exp(t), t clamped to [0, ln 100]
 * Arena order is the order above (visual, text, logit_scale).
 * Weight decay applies to weights of linear layers and the token embedding;
 * not to biases, LayerNorm weights, position embeddings or logit_scale.
 * The position embedding of the image tower is fixed 2-D sin-cos (not a param).
 */
#ifndef FLIP_MODEL_H
#define FLIP_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"

typedef struct {
    char name[32];        /* preset name or "custom" */
    int image_size;       /* S (square) */
    int channels;         /* Ci: 3 RGB or 1 grayscale */
    int patch;            /* p */
    int width, depth, heads;                 /* vision C, L, H */
    int text_width, text_depth, text_heads;  /* text Ct, Lt, Ht */
    int vocab;            /* V */
    int context;          /* T */
    int embed_dim;        /* D */
    int mlp_ratio;        /* 4 */
    float mean[3], std[3];/* per-channel normalisation */
} FlipConfig;

/* Presets: tiny, vit-s16, vit-b16, vit-l16, vit-h14. Returns 0, or -1 for an
 * unknown name (the caller reports it with flip_config_preset_names()). */
int flip_config_preset(FlipConfig *cfg, const char *name);
const char *flip_config_preset_names(void); /* "tiny, vit-s16, ..." */
/* NULL when valid; else writes a one-line reason into msg and returns msg. */
const char *flip_config_check(const FlipConfig *cfg, char *msg, size_t msg_bytes);
int flip_config_num_patches(const FlipConfig *cfg);                 /* Np */
int flip_config_num_kept(const FlipConfig *cfg, float mask_ratio);  /* N = floor(Np (1 - r)), >= 1 */
/* Training FLOPs per sample (matmuls + attention, 3x forward), for MFU, with
 * the text tower over the full context T. */
double flip_config_train_flops(const FlipConfig *cfg, float mask_ratio);
/* The same with the text tower over text_positions (<= T) positions: the work
 * of a step whose longest caption has that many tokens (FlipModel.text_positions). */
double flip_config_train_flops_at(const FlipConfig *cfg, float mask_ratio, int text_positions);

typedef struct {
    char name[96];
    size_t offset;   /* into params / grads / m / v, in floats */
    size_t count;
    int ndim;
    int shape[4];
    int decay;       /* 1: weight decay applies */
} ParamTensor;

typedef struct {
    float lr;        /* set per step from the schedule */
    float beta1, beta2, eps, wd;
} AdamWConfig;

/* Called from backward when the gradient of tensors [offset, offset+count)
 * (floats in the grad arena) is final; tensors complete in reverse arena
 * order. Used to start bucketed all-reduces. */
typedef void (*FlipGradReadyFn)(void *ctx, size_t offset, size_t count);

typedef struct FlipActs FlipActs; /* activation layout, private to model.c */

typedef struct {
    FlipConfig cfg;
    int n_tensors;
    ParamTensor *tensors;
    size_t n_params;
    float *params, *grads, *adam_m, *adam_v; /* views into `arena` */
    float *memory;   /* owns all four: 4 * n_params floats */
    float *pos_table;/* (Np, C) fixed sin-cos */
    int use_ref;     /* 1: every op runs its _ref twin (tests) */
    int bf16_acts;   /* set by flip_model_plan: precision bf16 and not use_ref, so the
                        LN outputs, the fc1 pre-activation and the GELU output are kept
                        as bf16 (what the bf16 matmuls read) instead of f32 */
    /* planned batch */
    int B, N, Np;
    Arena acts_arena;
    FlipActs *acts;
    float *img_emb;  /* (B, D) L2-normalised image embeddings after forward */
    float *txt_emb;  /* (B, D) L2-normalised text embeddings after forward */
    int text_positions; /* positions the last text forward ran: the batch's longest caption */
    float *dimg_emb; /* (B, D) scratch for the caller's gradients */
    float *dtxt_emb; /* (B, D) */
} FlipModel;

/* Builds the tensor table, allocates the arena, initialises from seed alone. */
void flip_model_init(FlipModel *m, const FlipConfig *cfg, uint64_t seed);
void flip_model_free(FlipModel *m);
/* (Re)plans activations for local batch B and N kept patches (N = Np: unmasked).
 * Setup only: allocates. Forward/backward allocate nothing themselves; the
 * matmul primitive cache (dnnl_util.c) grows when a new shape appears (the
 * first step, or a batch whose longest caption has a new length). The
 * attention scratch is sized for omp_get_max_threads() at this call: raising
 * the thread count later needs a new plan (forward fails with that message). */
void flip_model_plan(FlipModel *m, int B, int N);
const ParamTensor *flip_model_find(const FlipModel *m, const char *name); /* NULL if absent */
void flip_model_zero_grad(FlipModel *m);

/* FLIP mask for one sample: keep (N) ascending patch indices of a random
 * permutation of Np that depends only on (seed, step, global_index). */
void flip_mask_keep(int32_t *keep, uint64_t seed, long step, uint64_t global_index, int Np, int N);

/* Forward both towers for the planned B:
 *   images uint8 (B, S, S, Ci); keep int32 (B, N) (NULL when N == Np: all);
 *   tokens int32 (B, T); lens (B) valid tokens per caption (>= 1).
 * Writes img_emb, txt_emb (normalised). */
void flip_model_forward(FlipModel *m, const uint8_t *images, const int32_t *keep,
                        const int32_t *tokens, const int *lens);
/* Backward both towers from dimg (B, D), dtxt (B, D) = d loss / d normalised
 * embeddings; adds into grads. ready may be NULL. The logit_scale gradient is
 * the caller's (from infonce_backward), added into grads before this call;
 * backward reports logit_scale ready first. */
void flip_model_backward(FlipModel *m, const float *dimg, const float *dtxt,
                         FlipGradReadyFn ready, void *ctx);
/* The image half of flip_model_forward alone (masked as planned; text
 * activations untouched): tests re-run one tower per perturbation. */
void flip_model_forward_image(FlipModel *m, const uint8_t *images, const int32_t *keep);
/* Image-only / text-only forward for evaluation (unmasked, planned B, N = Np).
 * encode_text works for any plan (the text tower has no patch mask). */
void flip_model_encode_image(FlipModel *m, const uint8_t *images, float *out /* (B, D) */);
void flip_model_encode_text(FlipModel *m, const int32_t *tokens, const int *lens, float *out);

/* Single-process step pieces: forward, local InfoNCE with G = B, backward.
 * Zeroes grads first; returns the loss. */
float flip_model_loss_and_grad(FlipModel *m, const uint8_t *images, const int32_t *keep,
                               const int32_t *tokens, const int *lens);
/* Clamp of t into [0, ln 100] happens here after the update. Returns nothing;
 * grad_scale multiplies every gradient (clipping). step counts from 1. */
void flip_model_adamw(FlipModel *m, const AdamWConfig *opt, float grad_scale, long step);
/* Global gradient L2 norm over the whole grad arena (double accumulate). */
double flip_model_grad_norm(const FlipModel *m);

#endif
