/* model.c — the FLIP model (DESIGN §2): parameter table and initialisation,
 * activation planning, forward and backward of the masked ViT and the text
 * encoder, the single-process loss step and the AdamW update.
 *
 * Both towers are stacks of the same pre-LN block:
 *   x1 = x  + proj(Attn(LN1(x)))        Attn: qkv linear, multi-head softmax
 *   x2 = x1 + fc2(GELU(fc1(LN2(x1))))   exact GELU, hidden = mlp_ratio * C
 * Image tower: kept patches only -> patch_embed -> + sin-cos(kept index) ->
 *   blocks (no padding) -> LN -> mean over N -> proj (no bias) -> L2 norm.
 * Text tower: token + position embedding -> blocks with a key padding mask
 *   (lens) -> LN -> mean over the valid tokens -> proj (no bias) -> L2 norm;
 *   run on the batch's longest caption, Te = max lens <= T positions.
 *
 * Backward runs in exact reverse. Forward saves per block the LN inputs and
 * their mean/rstd, qkv, the attention output and the fc1 pre-activation; the
 * two LN outputs and the GELU output (6 of the 16 floats per token and channel
 * a block would otherwise keep) are written to tower-shared scratch and
 * recomputed in backward, bit for bit, right before the matmul that needs
 * them: the LN outputs by layernorm_apply from the saved mean/rstd (the
 * forward's own output step), the GELU output by the same GELU op (in bf16
 * fused with GELU's backward). About 2 % of a step for 37 % less activation
 * memory; the numbers are in benchmarks/RESULTS.md. The attention
 * probabilities (B H T^2 floats per block) are not kept either:
 * attention_backward recomputes them (attention.c). In bf16 precision the LN
 * outputs, qkv, fc1, GELU and attention outputs are kept as bf16
 * (block_forward_bf16, docs/model.md).
 * Residual adds are
 * folded into backward by accumulation: the residual-stream gradient buffer
 * `dres` receives += from each LayerNorm backward (da += dout, db += dout).
 * Gradient readiness is reported per weight+bias group in reverse arena order
 * (logit_scale, text tower top-down, image tower top-down) so comm/ can start
 * bucketed all-reduces while backward continues.
 *
 * Ownership: flip_model_init allocates `memory` (params|grads|m|v) and the
 * tensor table; flip_model_plan allocates the activation arena and its
 * layout; flip_model_free releases all. Forward/backward never allocate. */
#include "model.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <omp.h>

#include "common.h"
#include "dnnl_util.h"
#include "ops.h"
#include "prof.h"
#include "rng.h"

/* one op call as a timed section of the step breakdown (prof.h) */
#define PROF(cls, ...)          \
    do {                        \
        FLIP_PROF_BEGIN(cls);   \
        __VA_ARGS__;            \
        FLIP_PROF_END();        \
    } while (0)

/* ------------------------------------------------------------------ ops */

/* Every op the model calls, fast or _ref (use_ref = 1), chosen per call. */
typedef struct {
    void (*linear_fwd)(float *, const float *, const float *, const float *, int, int, int);
    void (*linear_bwd)(float *, float *, float *, const float *, const float *, const float *,
                       int, int, int);
    void (*linear_gelu_fwd)(float *, float *, const float *, const float *, const float *, int,
                            int, int);
    void (*gelu_act)(float *, const float *, size_t);
    void (*gelu_bwd_store)(float *, const float *, const float *, size_t);
    void (*ln_fwd)(float *, float *, float *, const float *, const float *, const float *, int,
                   int);
    void (*ln_bwd)(float *, float *, float *, const float *, const float *, const float *,
                   const float *, const float *, int, int);
    void (*ln_apply)(float *, const float *, const float *, const float *, const float *, const float *, int,
                     int);
    void (*attn_fwd)(float *, float *, float *, size_t, const float *, const int *, int, int, int, int);
    void (*attn_bwd)(float *, float *, size_t, const float *, const float *, const int *,
                     int, int, int, int);
    void (*res_fwd)(float *, const float *, const float *, size_t);
    void (*pool_fwd)(float *, const float *, const int *, int, int, int);
    void (*pool_bwd)(float *, const float *, const int *, int, int, int);
    void (*l2_fwd)(float *, float *, const float *, int, int);
    void (*l2_bwd)(float *, const float *, const float *, const float *, int, int);
    void (*emb_fwd)(float *, const int32_t *, const float *, const float *, int, int, int, int);
    void (*emb_bwd)(float *, float *, const float *, const int32_t *, int, int, int, int);
    void (*infonce_fwd)(float *, float *, const float *, const float *, const float *,
                        const float *, float, int, int, int, int);
    void (*infonce_bwd)(float *, float *, float *, float *, float *, float, const float *,
                        const float *, const float *, const float *, const float *, float, int,
                        int, int, int);
    void (*adamw)(float *, const float *, float *, float *, size_t, float, float, float, float,
                  float, float, long);
} Ops;

static const Ops OPS_FAST = {
    .linear_fwd = linear_forward,           .linear_bwd = linear_backward,
    .linear_gelu_fwd = linear_gelu_forward, .gelu_act = linear_gelu_activation,
    .gelu_bwd_store = gelu_backward_store,
    .ln_fwd = layernorm_forward,            .ln_bwd = layernorm_backward,
    .ln_apply = layernorm_apply,
    .attn_fwd = attention_forward,          .attn_bwd = attention_backward,
    .res_fwd = residual_forward,            .pool_fwd = meanpool_forward,
    .pool_bwd = meanpool_backward,          .l2_fwd = l2norm_forward,
    .l2_bwd = l2norm_backward,              .emb_fwd = embedding_forward,
    .emb_bwd = embedding_backward,          .infonce_fwd = infonce_forward,
    .infonce_bwd = infonce_backward,        .adamw = adamw_update,
};
static const Ops OPS_REF = {
    .linear_fwd = linear_forward_ref,           .linear_bwd = linear_backward_ref,
    .linear_gelu_fwd = linear_gelu_forward_ref, .gelu_act = linear_gelu_activation_ref,
    .gelu_bwd_store = gelu_backward_store_ref,
    .ln_fwd = layernorm_forward_ref,            .ln_bwd = layernorm_backward_ref,
    .ln_apply = layernorm_apply_ref,
    .attn_fwd = attention_forward_ref,          .attn_bwd = attention_backward_ref,
    .res_fwd = residual_forward_ref,            .pool_fwd = meanpool_forward_ref,
    .pool_bwd = meanpool_backward_ref,          .l2_fwd = l2norm_forward_ref,
    .l2_bwd = l2norm_backward_ref,              .emb_fwd = embedding_forward_ref,
    .emb_bwd = embedding_backward_ref,          .infonce_fwd = infonce_forward_ref,
    .infonce_bwd = infonce_backward_ref,        .adamw = adamw_update_ref,
};

static const Ops *model_ops(const FlipModel *m) { return m->use_ref ? &OPS_REF : &OPS_FAST; }

/* ------------------------------------------------------- tensor table */

/* Tensors of one block, in arena order; block b of a tower starts at
 * tensor index block0 + b * BLK_COUNT. */
enum {
    BLK_LN1_W, BLK_LN1_B, BLK_QKV_W, BLK_QKV_B, BLK_PROJ_W, BLK_PROJ_B,
    BLK_LN2_W, BLK_LN2_B, BLK_FC1_W, BLK_FC1_B, BLK_FC2_W, BLK_FC2_B, BLK_COUNT
};

/* A tower's place in the tensor table and its dims. */
typedef struct {
    int L, C, H, hidden;
    int embed0;  /* visual: patch_embed.weight; text: token_embed.weight */
    int block0;  /* first tensor of block 0 */
    int lnf;     /* ln_final.weight (bias follows) */
    int proj;    /* proj.weight */
} Tower;

static Tower tower_visual(const FlipConfig *c) {
    Tower t = {c->depth, c->width, c->heads, c->mlp_ratio * c->width, 0, 2, 0, 0};
    t.lnf = t.block0 + BLK_COUNT * t.L;
    t.proj = t.lnf + 2;
    return t;
}

static Tower tower_text(const FlipConfig *c) {
    Tower v = tower_visual(c);
    Tower t = {c->text_depth, c->text_width, c->text_heads, c->mlp_ratio * c->text_width,
               v.proj + 1, v.proj + 3, 0, 0};
    t.lnf = t.block0 + BLK_COUNT * t.L;
    t.proj = t.lnf + 2;
    return t;
}

static int logit_index(const FlipConfig *c) { return tower_text(c).proj + 1; }

/* Initialisation kinds. */
enum { INIT_XAVIER, INIT_ZERO, INIT_ONE, INIT_NORMAL, INIT_LOGIT };

typedef struct {
    int init;
    float std; /* INIT_NORMAL */
} InitSpec;

static void add_tensor(ParamTensor *t, InitSpec *spec, int *k, size_t *off, int init, float std,
                       int decay, int d0, int d1, const char *prefix, int block,
                       const char *suffix) {
    ParamTensor *p = &t[*k];
    memset(p, 0, sizeof(*p));
    int n = block >= 0 ? snprintf(p->name, sizeof(p->name), "%s.blocks.%d.%s", prefix, block, suffix)
                       : snprintf(p->name, sizeof(p->name), "%s%s", prefix, suffix);
    FLIP_CHECK(n > 0 && (size_t)n < sizeof(p->name), "parameter name too long: %s%s", prefix, suffix);
    p->ndim = d1 > 0 ? 2 : 1;
    p->shape[0] = d0;
    p->shape[1] = d1 > 0 ? d1 : 0;
    p->count = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
    p->offset = *off;
    p->decay = decay;
    spec[*k].init = init;
    spec[*k].std = std;
    *off += p->count;
    (*k)++;
}

#define TENSOR(init, std, decay, d0, d1, suffix) \
    add_tensor(t, spec, &k, &off, init, std, decay, d0, d1, prefix, -1, suffix)
#define BTENSOR(init, decay, d0, d1, suffix) \
    add_tensor(t, spec, &k, &off, init, 0.0f, decay, d0, d1, prefix, b, suffix)

/* Fills t/spec for one tower; returns nothing, advances k and off. */
static void tower_tensors(ParamTensor *t, InitSpec *spec, int *kp, size_t *offp,
                          const FlipConfig *c, int visual) {
    int k = *kp;
    size_t off = *offp;
    const char *prefix = visual ? "visual" : "text";
    int C = visual ? c->width : c->text_width;
    int L = visual ? c->depth : c->text_depth;
    int hid = c->mlp_ratio * C;
    if (visual) {
        int P = c->patch * c->patch * c->channels;
        TENSOR(INIT_XAVIER, 0.0f, 1, C, P, ".patch_embed.weight");
        TENSOR(INIT_ZERO, 0.0f, 0, C, 0, ".patch_embed.bias");
    } else {
        TENSOR(INIT_NORMAL, 0.02f, 1, c->vocab, C, ".token_embed.weight");
        TENSOR(INIT_NORMAL, 0.01f, 0, c->context, C, ".pos_embed");
    }
    for (int b = 0; b < L; b++) {
        BTENSOR(INIT_ONE, 0, C, 0, "ln1.weight");
        BTENSOR(INIT_ZERO, 0, C, 0, "ln1.bias");
        BTENSOR(INIT_XAVIER, 1, 3 * C, C, "attn.qkv.weight");
        BTENSOR(INIT_ZERO, 0, 3 * C, 0, "attn.qkv.bias");
        BTENSOR(INIT_XAVIER, 1, C, C, "attn.proj.weight");
        BTENSOR(INIT_ZERO, 0, C, 0, "attn.proj.bias");
        BTENSOR(INIT_ONE, 0, C, 0, "ln2.weight");
        BTENSOR(INIT_ZERO, 0, C, 0, "ln2.bias");
        BTENSOR(INIT_XAVIER, 1, hid, C, "mlp.fc1.weight");
        BTENSOR(INIT_ZERO, 0, hid, 0, "mlp.fc1.bias");
        BTENSOR(INIT_XAVIER, 1, C, hid, "mlp.fc2.weight");
        BTENSOR(INIT_ZERO, 0, C, 0, "mlp.fc2.bias");
    }
    TENSOR(INIT_ONE, 0.0f, 0, C, 0, ".ln_final.weight");
    TENSOR(INIT_ZERO, 0.0f, 0, C, 0, ".ln_final.bias");
    TENSOR(INIT_NORMAL, 1.0f / sqrtf((float)C), 1, c->embed_dim, C, ".proj.weight");
    *kp = k;
    *offp = off;
}

static void init_tensor(float *p, const ParamTensor *t, const InitSpec *s, uint64_t seed,
                        int index) {
    Rng r;
    rng_init(&r, seed, FLIP_RNG_INIT, (uint64_t)index, 0);
    switch (s->init) {
    case INIT_XAVIER: { /* U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (MAE/timm) */
        double a = sqrt(6.0 / ((double)t->shape[0] + (double)t->shape[1]));
        for (size_t i = 0; i < t->count; i++) p[i] = (float)((2.0 * rng_uniform(&r) - 1.0) * a);
        break;
    }
    case INIT_ZERO:
        memset(p, 0, t->count * sizeof(float));
        break;
    case INIT_ONE:
        for (size_t i = 0; i < t->count; i++) p[i] = 1.0f;
        break;
    case INIT_NORMAL:
        for (size_t i = 0; i < t->count; i++) p[i] = (float)(rng_normal(&r) * s->std);
        break;
    case INIT_LOGIT:
        p[0] = (float)log(1.0 / 0.07);
        break;
    default:
        FLIP_FATAL("init_tensor: unknown init kind %d for %s", s->init, t->name);
    }
}

void flip_model_init(FlipModel *m, const FlipConfig *cfg, uint64_t seed) {
    char msg[256];
    const char *why = flip_config_check(cfg, msg, sizeof(msg));
    FLIP_CHECK(why == NULL, "invalid model config '%s': %s", cfg->name, why);
    memset(m, 0, sizeof(*m));
    m->cfg = *cfg;
    m->n_tensors = logit_index(cfg) + 1;
    m->tensors = flip_calloc((size_t)m->n_tensors, sizeof(ParamTensor), "parameter table");
    InitSpec *spec = flip_calloc((size_t)m->n_tensors, sizeof(InitSpec), "init table");
    int k = 0;
    size_t off = 0;
    tower_tensors(m->tensors, spec, &k, &off, cfg, 1);
    tower_tensors(m->tensors, spec, &k, &off, cfg, 0);
    {
        ParamTensor *t = m->tensors;
        const char *prefix = "";
        TENSOR(INIT_LOGIT, 0.0f, 0, 1, 0, "logit_scale");
    }
    FLIP_CHECK(k == m->n_tensors, "parameter table: built %d tensors, expected %d", k, m->n_tensors);
    m->n_params = off;
    m->memory = flip_calloc(flip_mul_size(4, m->n_params, "parameter arena"), sizeof(float),
                            "parameter arena (params|grads|adam_m|adam_v)");
    m->params = m->memory;
    m->grads = m->memory + m->n_params;
    m->adam_m = m->memory + 2 * m->n_params;
    m->adam_v = m->memory + 3 * m->n_params;
    for (int i = 0; i < m->n_tensors; i++)
        init_tensor(m->params + m->tensors[i].offset, &m->tensors[i], &spec[i], seed, i);
    flip_free(spec);
    int g = cfg->image_size / cfg->patch;
    m->Np = g * g;
    m->pos_table = flip_malloc(flip_mul_size((size_t)m->Np * (size_t)cfg->width, sizeof(float),
                                             "position table"), "sin-cos position table");
    posemb_sincos_2d(m->pos_table, g, g, cfg->width);
}

#undef TENSOR
#undef BTENSOR

const ParamTensor *flip_model_find(const FlipModel *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

void flip_model_zero_grad(FlipModel *m) { memset(m->grads, 0, m->n_params * sizeof(float)); }

double flip_model_grad_norm(const FlipModel *m) { return sqrt(sumsq(m->grads, m->n_params)); }

/* ------------------------------------------------------- activations */

typedef struct {
    float *ln1_mean, *ln1_rstd;       /* (M), (M); LN1 output recomputed */
    float *qkv;                       /* (M, 3C) */
    uint16_t *qkv_b;                  /* bf16 activations: qkv as bf16 (qkv is NULL) */
    float *atty;                      /* (M, C) attention output, input of proj */
    uint16_t *atty_b;                 /* bf16 activations: atty as bf16 (atty is NULL) */
    float *x1;                        /* (M, C) after the attention residual */
    float *ln2_mean, *ln2_rstd;       /* (M), (M); LN2 output recomputed */
    float *pre;                       /* (M, hidden) fc1 pre-activation; GELU recomputed */
    uint16_t *pre_b;                  /* bf16 activations: pre as bf16 (pre is NULL) */
    float *x2;                        /* (M, C) block output */
} BlockActs;

typedef struct {
    int B, T, M;                      /* T tokens per sample (N for the image tower); M = B T */
    float *x0;                        /* (M, C) embedded tokens */
    BlockActs *blocks;                /* (L) */
    float *lnf, *lnf_mean, *lnf_rstd; /* (M, C), (M), (M) */
    float *pooled;                    /* (B, C) */
    float *feat;                      /* (B, D) before normalisation */
    float *norm;                      /* (B) */
    float *emb;                       /* (B, D) normalised */
} TowerActs;

struct FlipActs {
    TowerActs vis, txt;
    float *patches;   /* (B, N, P) normalised kept patches */
    int32_t *keep_all;/* (B, Np) identity, used when N == Np and keep is NULL */
    int32_t *tokens;  /* (B, T) copy of the forward's tokens */
    int *lens;        /* (B) copy of the forward's caption lengths */
    float *probs;     /* (2, B, B) InfoNCE softmaxes */
    float *dU, *dV;   /* (B, D) gradient w.r.t. the "gathered" copies */
    float *dimg, *dtxt; /* (B, D) the caller's d loss / d embeddings (model->dimg_emb, dtxt_emb) */
    /* forward temporary and backward scratch, sized for the larger tower */
    float *tmp;       /* (M, C) proj / fc2 output before its residual add */
    float *ln;        /* (M, C) a block's LN1 / LN2 output (forward; recomputed in backward) */
    float *h;         /* (M, hidden) a block's GELU output (forward; recomputed in backward) */
    uint16_t *ln_b;   /* bf16 activations: ln and h as bf16 */
    uint16_t *h_b;
    float *dres;      /* (M, C) residual-stream gradient */
    float *dln;       /* (M, C) gradient at a LayerNorm output */
    float *datty;     /* (M, C) */
    float *dqkv;      /* (M, 3C) */
    uint16_t *dqkv_b; /* bf16 activations: dqkv as bf16 (dqkv is NULL) */
    float *dh;        /* (M, hidden); fp32: then dpre in place */
    uint16_t *dpre_b; /* bf16 activations: dpre as bf16 */
    float *att_scr;   /* attention forward/backward scratch, per OpenMP thread */
    size_t n_att_scr; /* its floats, for the thread count at plan time */
    float *dpooled;   /* (B, C) */
    float *dfeat;     /* (B, D) */
};

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

static void tower_layout(TowerActs *ta, Arena *a, const Tower *tw, int B, int T, int D, int bf16) {
    size_t M = (size_t)B * (size_t)T, C = (size_t)tw->C, hid = (size_t)tw->hidden;
    ta->B = B;
    ta->T = T;
    ta->M = (int)M;
    ta->x0 = arena_floats(a, M * C);
    for (int l = 0; l < tw->L; l++) {
        BlockActs *b = &ta->blocks[l];
        b->ln1_mean = arena_floats(a, M);
        b->ln1_rstd = arena_floats(a, M);
        if (bf16) b->qkv_b = arena_alloc(a, flip_mul_size(M * 3 * C, sizeof(uint16_t), "qkv"));
        else b->qkv = arena_floats(a, M * 3 * C);
        if (bf16) b->atty_b = arena_alloc(a, flip_mul_size(M * C, sizeof(uint16_t), "atty"));
        else b->atty = arena_floats(a, M * C);
        b->x1 = arena_floats(a, M * C);
        b->ln2_mean = arena_floats(a, M);
        b->ln2_rstd = arena_floats(a, M);
        if (bf16) b->pre_b = arena_alloc(a, flip_mul_size(M * hid, sizeof(uint16_t), "pre"));
        else b->pre = arena_floats(a, M * hid);
        b->x2 = arena_floats(a, M * C);
    }
    ta->lnf = arena_floats(a, M * C);
    ta->lnf_mean = arena_floats(a, M);
    ta->lnf_rstd = arena_floats(a, M);
    ta->pooled = arena_floats(a, (size_t)B * C);
    ta->feat = arena_floats(a, (size_t)B * (size_t)D);
    ta->norm = arena_floats(a, (size_t)B);
    ta->emb = arena_floats(a, (size_t)B * (size_t)D);
}

static void acts_layout(FlipActs *A, Arena *a, const FlipConfig *c, int B, int N, int Np, int bf16) {
    Tower tv = tower_visual(c), tt = tower_text(c);
    int T = c->context, D = c->embed_dim;
    size_t P = (size_t)c->patch * (size_t)c->patch * (size_t)c->channels;
    tower_layout(&A->vis, a, &tv, B, N, D, bf16);
    tower_layout(&A->txt, a, &tt, B, T, D, bf16);
    A->patches = arena_floats(a, (size_t)B * (size_t)N * P);
    A->keep_all = arena_alloc(a, flip_mul_size((size_t)B * (size_t)Np, sizeof(int32_t), "keep"));
    A->tokens = arena_alloc(a, flip_mul_size((size_t)B * (size_t)T, sizeof(int32_t), "tokens"));
    A->lens = arena_alloc(a, flip_mul_size((size_t)B, sizeof(int), "lens"));
    A->probs = arena_floats(a, 2 * (size_t)B * (size_t)B);
    A->dU = arena_floats(a, (size_t)B * (size_t)D);
    A->dV = arena_floats(a, (size_t)B * (size_t)D);
    A->dimg = arena_floats(a, (size_t)B * (size_t)D);
    A->dtxt = arena_floats(a, (size_t)B * (size_t)D);
    size_t Mv = (size_t)B * (size_t)N, Mt = (size_t)B * (size_t)T;
    size_t MC = max_sz(Mv * (size_t)tv.C, Mt * (size_t)tt.C);
    size_t MH = max_sz(Mv * (size_t)tv.hidden, Mt * (size_t)tt.hidden);
    int threads = omp_get_max_threads();
    size_t ATT = max_sz(attention_scratch_floats(N, tv.C, tv.H, threads),
                        attention_scratch_floats(T, tt.C, tt.H, threads));
    A->tmp = arena_floats(a, MC);
    if (bf16) A->ln_b = arena_alloc(a, flip_mul_size(MC, sizeof(uint16_t), "ln"));
    else A->ln = arena_floats(a, MC);
    A->dres = arena_floats(a, MC);
    A->dln = arena_floats(a, MC);
    A->datty = arena_floats(a, MC);
    A->dh = arena_floats(a, MH);
    if (bf16) {
        /* h_b and dpre_b apart: backward writes both in one GELU pass */
        A->dqkv_b = arena_alloc(a, flip_mul_size(3 * MC, sizeof(uint16_t), "dqkv"));
        A->h_b = arena_alloc(a, flip_mul_size(MH, sizeof(uint16_t), "h"));
        A->dpre_b = arena_alloc(a, flip_mul_size(MH, sizeof(uint16_t), "dpre"));
    } else {
        A->dqkv = arena_floats(a, 3 * MC);
        A->h = arena_floats(a, MH);
    }
    A->att_scr = arena_floats(a, ATT);
    A->n_att_scr = ATT;
    A->dpooled = arena_floats(a, (size_t)B * max_sz((size_t)tv.C, (size_t)tt.C));
    A->dfeat = arena_floats(a, (size_t)B * (size_t)D);
}

static void acts_free(FlipModel *m) {
    if (m->acts) {
        flip_free(m->acts->vis.blocks);
        flip_free(m->acts->txt.blocks);
        flip_free(m->acts);
        m->acts = NULL;
    }
    if (m->acts_arena.base) arena_free(&m->acts_arena);
}

void flip_model_plan(FlipModel *m, int B, int N) {
    FLIP_CHECK(B >= 1, "flip_model_plan: batch %d must be >= 1", B);
    FLIP_CHECK(N >= 1 && N <= m->Np, "flip_model_plan: kept patches %d out of range [1, %d]", N, m->Np);
    FLIP_CHECK((long long)B * (N > m->cfg.context ? N : m->cfg.context) * 4 * m->cfg.width <= INT_MAX &&
                   (long long)B * m->cfg.context * 4 * m->cfg.text_width <= INT_MAX,
               "flip_model_plan: batch %d too large for 32-bit row counts: use a smaller local batch", B);
    acts_free(m);
    const FlipConfig *c = &m->cfg;
    m->text_positions = c->context;
    FlipActs *A = flip_calloc(1, sizeof(FlipActs), "activation layout");
    A->vis.blocks = flip_calloc((size_t)c->depth, sizeof(BlockActs), "image block activations");
    A->txt.blocks = flip_calloc((size_t)c->text_depth, sizeof(BlockActs), "text block activations");
    Arena plan;
    arena_plan_init(&plan, "activation plan");
    int bf16 = flip_get_precision() == FLIP_PRECISION_BF16 && !m->use_ref;
    acts_layout(A, &plan, c, B, N, m->Np, bf16);
    arena_init(&m->acts_arena, plan.used_bytes, "activations");
    acts_layout(A, &m->acts_arena, c, B, N, m->Np, bf16);
    m->bf16_acts = bf16;
    FLIP_CHECK(m->acts_arena.used_bytes == plan.used_bytes, "activation plan mismatch (%zu vs %zu bytes)",
               m->acts_arena.used_bytes, plan.used_bytes);
    m->acts = A;
    m->B = B;
    m->N = N;
    for (int b = 0; b < B; b++)
        for (int n = 0; n < m->Np; n++) A->keep_all[(size_t)b * (size_t)m->Np + (size_t)n] = n;
    m->img_emb = A->vis.emb;
    m->txt_emb = A->txt.emb;
    m->dimg_emb = A->dimg;
    m->dtxt_emb = A->dtxt;
}

/* ------------------------------------------------------------ forward */

#define PARAM(m, i) ((m)->params + (m)->tensors[(i)].offset)
#define GRAD(m, i) ((m)->grads + (m)->tensors[(i)].offset)

/* block_forward with bf16 activations (m->bf16_acts; fast ops only): the LN
 * outputs, qkv, fc1's output and the GELU output are produced as bf16 by their
 * ops and read by the bf16 matmuls as they are, as under torch autocast: qkv
 * and fc1's output are rounded to bf16 before attention and the GELU, the rest
 * is what the bf16 matmuls would have rounded anyway; the attention output is
 * kept as bf16 (proj reads nothing else). The attention core computes in f32
 * from the widened bf16 qkv; the residual stream and everything LayerNorm
 * reads stay f32. Backward: the gradients at qkv and at fc1's output are bf16
 * too (as autocast's are), written so by attention and GELU backward. */
static void block_forward_bf16(FlipModel *m, const Tower *tw, int l, BlockActs *b, const float *x,
                               const int *lens, int B, int T) {
    FlipActs *A = m->acts;
    int M = B * T, C = tw->C, hid = tw->hidden, k = tw->block0 + l * BLK_COUNT;
    float *tmp = A->tmp;
    size_t MC = (size_t)M * (size_t)C;
    PROF(FLIP_PROF_LAYERNORM, layernorm_forward_b(A->ln_b, b->ln1_mean, b->ln1_rstd, x, PARAM(m, k + BLK_LN1_W),
                                                  PARAM(m, k + BLK_LN1_B), M, C));
    PROF(FLIP_PROF_MATMUL, linear_forward_b(NULL, b->qkv_b, A->ln_b, PARAM(m, k + BLK_QKV_W),
                                            PARAM(m, k + BLK_QKV_B), M, C, 3 * C));
    PROF(FLIP_PROF_ATTENTION, attention_forward_b(b->atty_b, NULL, A->att_scr, A->n_att_scr, b->qkv_b, lens,
                                                  B, T, C, tw->H));
    PROF(FLIP_PROF_MATMUL, linear_forward_b(tmp, NULL, b->atty_b, PARAM(m, k + BLK_PROJ_W), PARAM(m, k + BLK_PROJ_B),
                                            M, C, C));
    PROF(FLIP_PROF_EMBED, residual_forward(b->x1, x, tmp, MC));
    PROF(FLIP_PROF_LAYERNORM, layernorm_forward_b(A->ln_b, b->ln2_mean, b->ln2_rstd, b->x1, PARAM(m, k + BLK_LN2_W),
                                                  PARAM(m, k + BLK_LN2_B), M, C));
    PROF(FLIP_PROF_MATMUL, linear_forward_b(NULL, b->pre_b, A->ln_b, PARAM(m, k + BLK_FC1_W),
                                            PARAM(m, k + BLK_FC1_B), M, C, hid));
    PROF(FLIP_PROF_GELU, gelu_forward_b(A->h_b, b->pre_b, (size_t)M * (size_t)hid));
    PROF(FLIP_PROF_MATMUL, linear_forward_b(tmp, NULL, A->h_b, PARAM(m, k + BLK_FC2_W), PARAM(m, k + BLK_FC2_B),
                                            M, hid, C));
    PROF(FLIP_PROF_EMBED, residual_forward(b->x2, b->x1, tmp, MC));
}

/* One pre-LN block: x (M, C) -> b->x2. lens NULL: no padding. */
static void block_forward(FlipModel *m, const Ops *o, const Tower *tw, int l, BlockActs *b,
                          const float *x, const int *lens, int B, int T) {
    int M = B * T, C = tw->C, hid = tw->hidden, k = tw->block0 + l * BLK_COUNT;
    float *tmp = m->acts->tmp; /* (M, C) */
    if (m->bf16_acts) {
        block_forward_bf16(m, tw, l, b, x, lens, B, T);
        return;
    }
    float *ln = m->acts->ln, *h = m->acts->h;
    PROF(FLIP_PROF_LAYERNORM, o->ln_fwd(ln, b->ln1_mean, b->ln1_rstd, x, PARAM(m, k + BLK_LN1_W), PARAM(m, k + BLK_LN1_B),
              M, C));
    PROF(FLIP_PROF_MATMUL, o->linear_fwd(b->qkv, ln, PARAM(m, k + BLK_QKV_W), PARAM(m, k + BLK_QKV_B), M, C, 3 * C));
    PROF(FLIP_PROF_ATTENTION, o->attn_fwd(b->atty, NULL, m->acts->att_scr, m->acts->n_att_scr, b->qkv, lens, B, T, C, tw->H));
    PROF(FLIP_PROF_MATMUL, o->linear_fwd(tmp, b->atty, PARAM(m, k + BLK_PROJ_W), PARAM(m, k + BLK_PROJ_B), M, C, C));
    PROF(FLIP_PROF_EMBED, o->res_fwd(b->x1, x, tmp, (size_t)M * (size_t)C));
    PROF(FLIP_PROF_LAYERNORM, o->ln_fwd(ln, b->ln2_mean, b->ln2_rstd, b->x1, PARAM(m, k + BLK_LN2_W),
              PARAM(m, k + BLK_LN2_B), M, C));
    PROF(FLIP_PROF_MATMUL, o->linear_gelu_fwd(h, b->pre, ln, PARAM(m, k + BLK_FC1_W), PARAM(m, k + BLK_FC1_B), M,
                       C, hid));
    PROF(FLIP_PROF_MATMUL, o->linear_fwd(tmp, h, PARAM(m, k + BLK_FC2_W), PARAM(m, k + BLK_FC2_B), M, hid, C));
    PROF(FLIP_PROF_EMBED, o->res_fwd(b->x2, b->x1, tmp, (size_t)M * (size_t)C));
}

/* Blocks, final LN, mean pool (over lens, or all T), projection, L2 norm. */
static void tower_forward(FlipModel *m, const Ops *o, const Tower *tw, TowerActs *ta,
                          const int *lens) {
    int B = ta->B, T = ta->T, M = ta->M, C = tw->C, D = m->cfg.embed_dim;
    const float *x = ta->x0;
    for (int l = 0; l < tw->L; l++) {
        block_forward(m, o, tw, l, &ta->blocks[l], x, lens, B, T);
        x = ta->blocks[l].x2;
    }
    PROF(FLIP_PROF_LAYERNORM, o->ln_fwd(ta->lnf, ta->lnf_mean, ta->lnf_rstd, x, PARAM(m, tw->lnf), PARAM(m, tw->lnf + 1), M, C));
    PROF(FLIP_PROF_EMBED, o->pool_fwd(ta->pooled, ta->lnf, lens, B, T, C));
    PROF(FLIP_PROF_MATMUL, o->linear_fwd(ta->feat, ta->pooled, PARAM(m, tw->proj), NULL, B, C, D));
    PROF(FLIP_PROF_LOSS, o->l2_fwd(ta->emb, ta->norm, ta->feat, B, D));
}

static void image_forward(FlipModel *m, const Ops *o, const uint8_t *images, const int32_t *keep) {
    const FlipConfig *c = &m->cfg;
    FlipActs *A = m->acts;
    Tower tw = tower_visual(c);
    int B = m->B, N = m->N, P = c->patch * c->patch * c->channels;
    if (!keep) {
        FLIP_CHECK(N == m->Np, "flip_model_forward: keep is NULL but the plan keeps %d of %d patches",
                   N, m->Np);
        keep = A->keep_all;
    }
    PROF(FLIP_PROF_EMBED, patchify_kept_forward(A->patches, images, keep, c->mean, c->std, B,
                                                c->image_size, c->channels, c->patch, N));
    PROF(FLIP_PROF_MATMUL, o->linear_fwd(A->vis.x0, A->patches, PARAM(m, tw.embed0), PARAM(m, tw.embed0 + 1), B * N, P,
                  c->width));
    PROF(FLIP_PROF_EMBED, posemb_add_kept(A->vis.x0, m->pos_table, keep, B, N, c->width));
    tower_forward(m, o, &tw, &A->vis, NULL);
}

static void text_forward(FlipModel *m, const Ops *o, const int32_t *tokens, const int *lens) {
    const FlipConfig *c = &m->cfg;
    FlipActs *A = m->acts;
    Tower tw = tower_text(c);
    int B = m->B, T = c->context;
    for (int b = 0; b < B; b++)
        FLIP_CHECK(lens[b] >= 1 && lens[b] <= T,
                   "text forward: caption %d has length %d, outside [1, %d]: fix the shard or loader",
                   b, lens[b], T);
    /* The tower runs on the batch's longest caption, Te = max lens <= T: a
     * padded position is never attended (key padding) and never pooled, so
     * the positions past every caption's end cannot change the loss and their
     * gradients are exactly 0. Only the summation order of weight gradients
     * over fewer (zero) rows differs from running all T. */
    int Te = 1;
    for (int b = 0; b < B; b++)
        if (lens[b] > Te) Te = lens[b];
    for (int b = 0; b < B; b++)
        memcpy(A->tokens + (size_t)b * Te, tokens + (size_t)b * T, (size_t)Te * sizeof(int32_t));
    memcpy(A->lens, lens, (size_t)B * sizeof(int));
    A->txt.T = Te;
    A->txt.M = B * Te;
    m->text_positions = Te;
    PROF(FLIP_PROF_EMBED, o->emb_fwd(A->txt.x0, A->tokens, PARAM(m, tw.embed0), PARAM(m, tw.embed0 + 1), B, Te, c->text_width,
               c->vocab));
    tower_forward(m, o, &tw, &A->txt, A->lens);
}

static void require_plan(const FlipModel *m, const char *who) {
    FLIP_CHECK(m->acts != NULL, "%s: call flip_model_plan first", who);
}

void flip_model_forward(FlipModel *m, const uint8_t *images, const int32_t *keep,
                        const int32_t *tokens, const int *lens) {
    require_plan(m, "flip_model_forward");
    const Ops *o = model_ops(m);
    image_forward(m, o, images, keep);
    text_forward(m, o, tokens, lens);
}

void flip_model_forward_image(FlipModel *m, const uint8_t *images, const int32_t *keep) {
    require_plan(m, "flip_model_forward_image");
    image_forward(m, model_ops(m), images, keep);
}

void flip_model_encode_image(FlipModel *m, const uint8_t *images, float *out) {
    require_plan(m, "flip_model_encode_image");
    FLIP_CHECK(m->N == m->Np, "flip_model_encode_image: plan is masked (N %d of %d): plan with N = Np",
               m->N, m->Np);
    image_forward(m, model_ops(m), images, NULL);
    if (out != m->img_emb)
        memcpy(out, m->img_emb, (size_t)m->B * (size_t)m->cfg.embed_dim * sizeof(float));
}

void flip_model_encode_text(FlipModel *m, const int32_t *tokens, const int *lens, float *out) {
    require_plan(m, "flip_model_encode_text");
    text_forward(m, model_ops(m), tokens, lens);
    if (out != m->txt_emb)
        memcpy(out, m->txt_emb, (size_t)m->B * (size_t)m->cfg.embed_dim * sizeof(float));
}

/* ----------------------------------------------------------- backward */

typedef struct {
    FlipGradReadyFn fn;
    void *ctx;
} Ready;

/* Reports tensors [first, last] (contiguous in the arena) final. */
static void report(const FlipModel *m, const Ready *r, int first, int last) {
    if (!r->fn) return;
    const ParamTensor *a = &m->tensors[first], *z = &m->tensors[last];
    r->fn(r->ctx, a->offset, z->offset + z->count - a->offset);
}

static void zero(float *p, size_t n) { memset(p, 0, n * sizeof(float)); }

/* block_backward for bf16 activations: the same steps with the bf16 ops
 * (recomputing the bf16 LN and GELU outputs bit for bit; the GELU output and
 * GELU's backward in one pass). The bf16 linear backwards store their input
 * gradients (dh, dln, datty, no zeroing passes); LN backward adds into dres. */
static void block_backward_bf16(FlipModel *m, const Tower *tw, int l, const BlockActs *b, const float *x,
                                const int *lens, int B, int T, const Ready *r) {
    FlipActs *A = m->acts;
    int M = B * T, C = tw->C, hid = tw->hidden, k = tw->block0 + l * BLK_COUNT;
    size_t MH = (size_t)M * (size_t)hid;
    /* fc2: dh (and dbias) first, which do not need h; then GELU's output
     * recomputed and its backward in one pass; then fc2's dweight from h_b,
     * reusing dres's bf16 copy made for dh */
    PROF(FLIP_PROF_MATMUL, linear_backward_b(A->dh, NULL, GRAD(m, k + BLK_FC2_B), A->dres, NULL,
                                             PARAM(m, k + BLK_FC2_W), M, hid, C));
    PROF(FLIP_PROF_GELU, gelu_forward_backward_bb(A->h_b, A->dpre_b, A->dh, b->pre_b, MH));
    flip_matmul_src_unchanged();
    PROF(FLIP_PROF_MATMUL, linear_backward_b(NULL, GRAD(m, k + BLK_FC2_W), NULL, A->dres, A->h_b,
                                             PARAM(m, k + BLK_FC2_W), M, hid, C));
    report(m, r, k + BLK_FC2_W, k + BLK_FC2_B);
    PROF(FLIP_PROF_LAYERNORM, layernorm_apply_b(A->ln_b, b->x1, b->ln2_mean, b->ln2_rstd, PARAM(m, k + BLK_LN2_W),
                                                PARAM(m, k + BLK_LN2_B), M, C));
    PROF(FLIP_PROF_MATMUL, linear_backward_bb(A->dln, GRAD(m, k + BLK_FC1_W), GRAD(m, k + BLK_FC1_B), A->dpre_b,
                                              A->ln_b, PARAM(m, k + BLK_FC1_W), M, C, hid));
    report(m, r, k + BLK_FC1_W, k + BLK_FC1_B);
    PROF(FLIP_PROF_LAYERNORM, layernorm_backward(A->dres, GRAD(m, k + BLK_LN2_W), GRAD(m, k + BLK_LN2_B), A->dln, b->x1,
                                                 b->ln2_mean, b->ln2_rstd, PARAM(m, k + BLK_LN2_W), M, C));
    report(m, r, k + BLK_LN2_W, k + BLK_LN2_B);
    PROF(FLIP_PROF_MATMUL, linear_backward_b(A->datty, GRAD(m, k + BLK_PROJ_W), GRAD(m, k + BLK_PROJ_B), A->dres,
                                             b->atty_b, PARAM(m, k + BLK_PROJ_W), M, C, C));
    report(m, r, k + BLK_PROJ_W, k + BLK_PROJ_B);
    PROF(FLIP_PROF_ATTENTION, attention_backward_b(A->dqkv_b, A->att_scr, A->n_att_scr, A->datty, b->qkv_b, lens,
                                                   B, T, C, tw->H));
    PROF(FLIP_PROF_LAYERNORM, layernorm_apply_b(A->ln_b, x, b->ln1_mean, b->ln1_rstd, PARAM(m, k + BLK_LN1_W),
                                                PARAM(m, k + BLK_LN1_B), M, C));
    PROF(FLIP_PROF_MATMUL, linear_backward_bb(A->dln, GRAD(m, k + BLK_QKV_W), GRAD(m, k + BLK_QKV_B), A->dqkv_b,
                                              A->ln_b, PARAM(m, k + BLK_QKV_W), M, C, 3 * C));
    report(m, r, k + BLK_QKV_W, k + BLK_QKV_B);
    PROF(FLIP_PROF_LAYERNORM, layernorm_backward(A->dres, GRAD(m, k + BLK_LN1_W), GRAD(m, k + BLK_LN1_B), A->dln, x,
                                                 b->ln1_mean, b->ln1_rstd, PARAM(m, k + BLK_LN1_W), M, C));
    report(m, r, k + BLK_LN1_W, k + BLK_LN1_B);
}

/* On entry A->dres = d block output; on exit d block input (x). */
static void block_backward(FlipModel *m, const Ops *o, const Tower *tw, int l, const BlockActs *b,
                           const float *x, const int *lens, int B, int T, const Ready *r) {
    FlipActs *A = m->acts;
    int M = B * T, C = tw->C, hid = tw->hidden, k = tw->block0 + l * BLK_COUNT;
    if (m->bf16_acts) {
        block_backward_bf16(m, tw, l, b, x, lens, B, T, r);
        return;
    }
    /* x2 = x1 + fc2(h): d fc2 out = dres; dx1 = dres (kept in place).
     * fc2's dh (and dbias) first, which do not need h; then GELU's output
     * recomputed with forward's own op (bitwise forward's h) and GELU's
     * backward (dpre in place over dh); then fc2's dweight from h. (One fused
     * pass as in bf16 is not bitwise forward's h in every build: an ASan build
     * vectorised the two loops differently, 28 % of outputs 1 ulp off.) The
     * linear backwards store their input gradients
     * (dh, dln, datty) and attention its dqkv: no zeroing passes; LN backward
     * adds into dres. */
    PROF(FLIP_PROF_MATMUL, o->linear_bwd(A->dh, NULL, GRAD(m, k + BLK_FC2_B), A->dres, NULL,
                                         PARAM(m, k + BLK_FC2_W), M, hid, C));
    o->gelu_act(A->h, b->pre, (size_t)M * (size_t)hid); /* times itself as gelu */
    PROF(FLIP_PROF_GELU, o->gelu_bwd_store(A->dh, A->dh, b->pre, (size_t)M * (size_t)hid));
    PROF(FLIP_PROF_MATMUL, o->linear_bwd(NULL, GRAD(m, k + BLK_FC2_W), NULL, A->dres, A->h,
                                         PARAM(m, k + BLK_FC2_W), M, hid, C));
    report(m, r, k + BLK_FC2_W, k + BLK_FC2_B);
    /* recompute LN2's output from its saved mean/rstd */
    PROF(FLIP_PROF_LAYERNORM, o->ln_apply(A->ln, b->x1, b->ln2_mean, b->ln2_rstd, PARAM(m, k + BLK_LN2_W),
              PARAM(m, k + BLK_LN2_B), M, C));
    PROF(FLIP_PROF_MATMUL, o->linear_bwd(A->dln, GRAD(m, k + BLK_FC1_W), GRAD(m, k + BLK_FC1_B), A->dh, A->ln,
                                         PARAM(m, k + BLK_FC1_W), M, C, hid));
    report(m, r, k + BLK_FC1_W, k + BLK_FC1_B);
    PROF(FLIP_PROF_LAYERNORM, o->ln_bwd(A->dres, GRAD(m, k + BLK_LN2_W), GRAD(m, k + BLK_LN2_B), A->dln, b->x1, b->ln2_mean,
              b->ln2_rstd, PARAM(m, k + BLK_LN2_W), M, C));
    report(m, r, k + BLK_LN2_W, k + BLK_LN2_B);
    /* x1 = x + proj(atty): d proj out = dres; dx = dres (kept in place) */
    PROF(FLIP_PROF_MATMUL, o->linear_bwd(A->datty, GRAD(m, k + BLK_PROJ_W), GRAD(m, k + BLK_PROJ_B), A->dres, b->atty,
                  PARAM(m, k + BLK_PROJ_W), M, C, C));
    report(m, r, k + BLK_PROJ_W, k + BLK_PROJ_B);
    PROF(FLIP_PROF_ATTENTION, o->attn_bwd(A->dqkv, A->att_scr, A->n_att_scr, A->datty, b->qkv, lens, B, T, C, tw->H));
    /* recompute LN1's output */
    PROF(FLIP_PROF_LAYERNORM, o->ln_apply(A->ln, x, b->ln1_mean, b->ln1_rstd, PARAM(m, k + BLK_LN1_W),
              PARAM(m, k + BLK_LN1_B), M, C));
    PROF(FLIP_PROF_MATMUL, o->linear_bwd(A->dln, GRAD(m, k + BLK_QKV_W), GRAD(m, k + BLK_QKV_B), A->dqkv, A->ln,
                  PARAM(m, k + BLK_QKV_W), M, C, 3 * C));
    report(m, r, k + BLK_QKV_W, k + BLK_QKV_B);
    PROF(FLIP_PROF_LAYERNORM, o->ln_bwd(A->dres, GRAD(m, k + BLK_LN1_W), GRAD(m, k + BLK_LN1_B), A->dln, x, b->ln1_mean,
              b->ln1_rstd, PARAM(m, k + BLK_LN1_W), M, C));
    report(m, r, k + BLK_LN1_W, k + BLK_LN1_B);
}

/* From d emb (B, D) down to A->dres = d x0 (M, C). */
static void tower_backward(FlipModel *m, const Ops *o, const Tower *tw, const TowerActs *ta,
                           const float *demb, const int *lens, const Ready *r) {
    FlipActs *A = m->acts;
    int B = ta->B, T = ta->T, M = ta->M, C = tw->C, D = m->cfg.embed_dim;
    zero(A->dfeat, (size_t)B * (size_t)D);
    PROF(FLIP_PROF_LOSS, o->l2_bwd(A->dfeat, demb, ta->emb, ta->norm, B, D));
    PROF(FLIP_PROF_MATMUL, o->linear_bwd(A->dpooled, GRAD(m, tw->proj), NULL, A->dfeat, ta->pooled, PARAM(m, tw->proj), B, C,
                  D));
    report(m, r, tw->proj, tw->proj);
    zero(A->dln, (size_t)M * (size_t)C);
    PROF(FLIP_PROF_EMBED, o->pool_bwd(A->dln, A->dpooled, lens, B, T, C));
    zero(A->dres, (size_t)M * (size_t)C);
    const float *xl = tw->L > 0 ? ta->blocks[tw->L - 1].x2 : ta->x0;
    PROF(FLIP_PROF_LAYERNORM, o->ln_bwd(A->dres, GRAD(m, tw->lnf), GRAD(m, tw->lnf + 1), A->dln, xl, ta->lnf_mean,
              ta->lnf_rstd, PARAM(m, tw->lnf), M, C));
    report(m, r, tw->lnf, tw->lnf + 1);
    for (int l = tw->L - 1; l >= 0; l--) {
        const float *x = l > 0 ? ta->blocks[l - 1].x2 : ta->x0;
        block_backward(m, o, tw, l, &ta->blocks[l], x, lens, B, T, r);
    }
}

void flip_model_backward(FlipModel *m, const float *dimg, const float *dtxt,
                         FlipGradReadyFn ready, void *ctx) {
    require_plan(m, "flip_model_backward");
    const Ops *o = model_ops(m);
    const FlipConfig *c = &m->cfg;
    FlipActs *A = m->acts;
    Ready r = {ready, ctx};
    int li = logit_index(c);
    report(m, &r, li, li);
    /* text tower (later in the arena) first */
    Tower tt = tower_text(c);
    tower_backward(m, o, &tt, &A->txt, dtxt, A->lens, &r);
    PROF(FLIP_PROF_EMBED, o->emb_bwd(GRAD(m, tt.embed0), GRAD(m, tt.embed0 + 1), A->dres, A->tokens, m->B, A->txt.T,
               c->text_width, c->vocab));
    report(m, &r, tt.embed0, tt.embed0 + 1);
    /* image tower; pixels and the fixed position table take no gradient */
    Tower tv = tower_visual(c);
    tower_backward(m, o, &tv, &A->vis, dimg, NULL, &r);
    PROF(FLIP_PROF_MATMUL, o->linear_bwd(NULL, GRAD(m, tv.embed0), GRAD(m, tv.embed0 + 1), A->dres, A->patches,
                  PARAM(m, tv.embed0), m->B * m->N, c->patch * c->patch * c->channels, c->width));
    report(m, &r, tv.embed0, tv.embed0 + 1);
}

/* --------------------------------------------------------------- step */

float flip_model_loss_and_grad(FlipModel *m, const uint8_t *images, const int32_t *keep,
                               const int32_t *tokens, const int *lens) {
    require_plan(m, "flip_model_loss_and_grad");
    const Ops *o = model_ops(m);
    FlipActs *A = m->acts;
    int B = m->B, D = m->cfg.embed_dim, li = logit_index(&m->cfg);
    size_t BD = (size_t)B * (size_t)D;
    PROF(FLIP_PROF_OPTIMIZER, flip_model_zero_grad(m));
    flip_model_forward(m, images, keep, tokens, lens);
    float t = m->params[m->tensors[li].offset];
    float loss = 0.0f, dt = 0.0f;
    PROF(FLIP_PROF_LOSS, o->infonce_fwd(&loss, A->probs, m->img_emb, m->txt_emb, m->img_emb, m->txt_emb, t, B, B, D, 0));
    zero(A->dimg, BD);
    zero(A->dtxt, BD);
    zero(A->dU, BD);
    zero(A->dV, BD);
    PROF(FLIP_PROF_LOSS, o->infonce_bwd(A->dimg, A->dtxt, A->dU, A->dV, &dt, 1.0f, A->probs, m->img_emb, m->txt_emb,
                   m->img_emb, m->txt_emb, t, B, B, D, 0));
    for (size_t i = 0; i < BD; i++) {
        A->dimg[i] += A->dU[i];
        A->dtxt[i] += A->dV[i];
    }
    m->grads[m->tensors[li].offset] += dt;
    flip_model_backward(m, A->dimg, A->dtxt, NULL, NULL);
    return loss;
}

#define LOGIT_MAX 4.605170185988091f /* ln 100 */

void flip_model_adamw(FlipModel *m, const AdamWConfig *opt, float grad_scale, long step) {
    const Ops *o = model_ops(m);
    FLIP_PROF_BEGIN(FLIP_PROF_OPTIMIZER);
    /* the update is elementwise: a run of arena-adjacent tensors with the same
     * decay is one call (one parallel region instead of one per tensor) */
    for (int i = 0; i < m->n_tensors;) {
        const ParamTensor *t = &m->tensors[i];
        size_t count = t->count;
        int j = i + 1;
        while (j < m->n_tensors && m->tensors[j].decay == t->decay &&
               m->tensors[j].offset == t->offset + count) {
            count += m->tensors[j].count;
            j++;
        }
        o->adamw(m->params + t->offset, m->grads + t->offset, m->adam_m + t->offset,
                 m->adam_v + t->offset, count, opt->lr, opt->beta1, opt->beta2, opt->eps,
                 t->decay ? opt->wd : 0.0f, grad_scale, step);
        i = j;
    }
    FLIP_PROF_END();
    float *ls = m->params + m->tensors[logit_index(&m->cfg)].offset;
    if (*ls < 0.0f) *ls = 0.0f;
    if (*ls > LOGIT_MAX) *ls = LOGIT_MAX;
}

void flip_model_free(FlipModel *m) {
    acts_free(m);
    flip_free(m->tensors);
    flip_free(m->memory);
    flip_free(m->pos_table);
    memset(m, 0, sizeof(*m));
}
