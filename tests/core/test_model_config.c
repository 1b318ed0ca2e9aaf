/* test_model_config.c — presets, config validation, training FLOPs, the
 * parameter table (names, order, shapes, offsets, decay flags) and the
 * seed-only initialisation of the FLIP model (core/config.c, core/model.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "model.h"
#include "testlib.h"

static int rejects(const FlipConfig *c, const char *want) {
    char msg[256];
    const char *why = flip_config_check(c, msg, sizeof(msg));
    int ok = why != NULL && strstr(why, want) != NULL;
    test_report(ok, "rejected (%s): %s", want, why ? why : "(accepted!)");
    return ok;
}

/* The peer's analytic FLOPs (../shared/peers/torch_flip.py flops_per_step,
 * unmasked so its all-patch embedding equals ours) for batch B. */
static double peer_flops(const FlipConfig *c, int B) {
    double n = flip_config_num_patches(c), w = c->width, L = c->context, tw = c->text_width;
    double f = 2.0 * B * n * (3.0 * c->patch * c->patch) * w;
    f += c->depth * (24.0 * B * n * w * w + 4.0 * B * n * n * w);
    f += 2.0 * B * w * c->embed_dim;
    f += c->text_depth * (24.0 * B * L * tw * tw + 4.0 * B * L * L * tw);
    f += 2.0 * B * tw * c->embed_dim;
    f += 2.0 * B * B * c->embed_dim;
    return 3.0 * f;
}

int main(void) {
    char msg[256];
    const char *names[] = {"tiny", "vit-s16", "vit-b16", "vit-l16", "vit-h14"};
    for (int i = 0; i < 5; i++) {
        FlipConfig c;
        int found = flip_config_preset(&c, names[i]) == 0;
        const char *why = found ? flip_config_check(&c, msg, sizeof(msg)) : "missing";
        TEST_CHECK(found && why == NULL && strcmp(c.name, names[i]) == 0 &&
                       strstr(flip_config_preset_names(), names[i]) != NULL,
                   "preset %s valid (%s)", names[i], why ? why : "ok");
    }
    FlipConfig c;
    TEST_CHECK(flip_config_preset(&c, "vit-z99") == -1, "unknown preset returns -1");
    flip_config_preset(&c, "vit-l16");
    TEST_CHECK(c.width == 1024 && c.depth == 24 && c.heads == 16 && c.text_width == 768 &&
                   c.text_depth == 12 && c.text_heads == 12 && c.embed_dim == 768 && c.vocab == 30522,
               "vit-l16 matches the paper (24 x 1024, 16 heads; text 12 x 768; D 768)");
    flip_config_preset(&c, "tiny");
    TEST_CHECK(c.image_size == 32 && c.patch == 4 && c.width == 192 && c.depth == 6 && c.heads == 3 &&
                   c.text_width == 128 && c.text_depth == 4 && c.text_heads == 2 && c.embed_dim == 128 &&
                   c.vocab == 32768 && c.context == 32 && fabsf(c.mean[0] - 0.48145466f) < 1e-7f &&
                   fabsf(c.std[2] - 0.27577711f) < 1e-7f,
               "tiny matches run-peer tiny and CLIP normalisation");

    FlipConfig bad;
    flip_config_preset(&bad, "tiny"); bad.patch = 5; rejects(&bad, "not divisible by patch");
    flip_config_preset(&bad, "tiny"); bad.heads = 5; rejects(&bad, "not divisible by heads");
    flip_config_preset(&bad, "tiny"); bad.width = 198; bad.heads = 3; rejects(&bad, "multiple of 4");
    flip_config_preset(&bad, "tiny"); bad.text_heads = 3; rejects(&bad, "text_heads");
    flip_config_preset(&bad, "tiny"); bad.channels = 2; rejects(&bad, "channels");
    flip_config_preset(&bad, "tiny"); bad.vocab = 0; rejects(&bad, "vocab");
    flip_config_preset(&bad, "tiny"); bad.context = 0; rejects(&bad, "context");
    flip_config_preset(&bad, "tiny"); bad.depth = 100000; rejects(&bad, "depth");
    flip_config_preset(&bad, "tiny"); bad.image_size = 1 << 20; rejects(&bad, "image_size");
    flip_config_preset(&bad, "tiny"); bad.std[1] = 0.0f; rejects(&bad, "std");
    flip_config_preset(&bad, "tiny"); bad.embed_dim = -3; rejects(&bad, "embed_dim");

    /* FLOPs: unmasked per-sample x B + the peer's logits term == the peer */
    for (int i = 0; i < 3; i++) {
        flip_config_preset(&c, names[i]);
        int B = 64;
        double ours = B * flip_config_train_flops(&c, 0.0f) + 3.0 * 2.0 * B * B * c.embed_dim;
        double peer = peer_flops(&c, B);
        TEST_CHECK(fabs(ours - peer) <= 1e-12 * peer, "%s train FLOPs/sample %.4g GFLOP agree with the peer formula (%.6g vs %.6g)",
                   names[i], flip_config_train_flops(&c, 0.0f) / 1e9, ours, peer);
    }
    flip_config_preset(&c, "vit-s16");
    double f0 = flip_config_train_flops(&c, 0.0f), f75 = flip_config_train_flops(&c, 0.75f);
    TEST_CHECK(f75 < 0.4 * f0 && f75 > 0.2 * f0, "vit-s16 mask 0.75 costs %.3f of unmasked (kept patches only)", f75 / f0);
    {   /* the text tower over Te positions: the full-context count at Te = T, and
         * exactly the text blocks' (24 Te Ct^2 + 4 Te^2 Ct per layer, x3) less at Te < T */
        double Ct = c.text_width, T = c.context, Te = 20;
        double text = 3.0 * c.text_depth * (24.0 * Ct * Ct * (T - Te) + 4.0 * Ct * (T * T - Te * Te));
        double fat = flip_config_train_flops_at(&c, 0.75f, 20);
        TEST_CHECK(flip_config_train_flops_at(&c, 0.75f, c.context) == f75 && fabs(f75 - fat - text) <= 1e-9 * f75,
                   "vit-s16 FLOPs with the text tower over 20 of %d positions: %.4g GFLOP less (expected %.4g)",
                   c.context, (f75 - fat) / 1e9, text / 1e9);
    }

    /* parameter table */
    FlipConfig s;
    flip_config_preset(&s, "tiny");
    s.depth = 2; s.text_depth = 3; s.vocab = 100;
    FlipModel m;
    flip_model_init(&m, &s, 5);
    TEST_CHECK(m.n_tensors == 2 + 12 * 2 + 3 + 2 + 12 * 3 + 3 + 1, "tensor count %d", m.n_tensors);
    size_t off = 0;
    int contiguous = 1;
    for (int i = 0; i < m.n_tensors; i++) {
        contiguous &= m.tensors[i].offset == off;
        size_t cnt = 1;
        for (int d = 0; d < m.tensors[i].ndim; d++) cnt *= (size_t)m.tensors[i].shape[d];
        contiguous &= cnt == m.tensors[i].count;
        off += m.tensors[i].count;
    }
    TEST_CHECK(contiguous && off == m.n_params && m.grads == m.params + m.n_params &&
                   m.adam_m == m.params + 2 * m.n_params && m.adam_v == m.params + 3 * m.n_params,
               "tensors contiguous in order, shapes match counts, params|grads|m|v at equal offsets (%zu params)",
               m.n_params);
    static const char *order[] = {"visual.patch_embed.weight", "visual.patch_embed.bias",
                                  "visual.blocks.0.ln1.weight", "visual.blocks.0.ln1.bias",
                                  "visual.blocks.0.attn.qkv.weight", "visual.blocks.0.attn.qkv.bias",
                                  "visual.blocks.0.attn.proj.weight", "visual.blocks.0.attn.proj.bias",
                                  "visual.blocks.0.ln2.weight", "visual.blocks.0.ln2.bias",
                                  "visual.blocks.0.mlp.fc1.weight", "visual.blocks.0.mlp.fc1.bias",
                                  "visual.blocks.0.mlp.fc2.weight", "visual.blocks.0.mlp.fc2.bias"};
    int names_ok = 1;
    for (int i = 0; i < 14; i++) names_ok &= strcmp(m.tensors[i].name, order[i]) == 0;
    names_ok &= strcmp(m.tensors[26].name, "visual.ln_final.weight") == 0;
    names_ok &= strcmp(m.tensors[28].name, "visual.proj.weight") == 0;
    names_ok &= strcmp(m.tensors[29].name, "text.token_embed.weight") == 0;
    names_ok &= strcmp(m.tensors[30].name, "text.pos_embed") == 0;
    names_ok &= strcmp(m.tensors[31 + 12 * 2 + 2].name, "text.blocks.2.attn.qkv.weight") == 0;
    names_ok &= strcmp(m.tensors[m.n_tensors - 2].name, "text.proj.weight") == 0;
    names_ok &= strcmp(m.tensors[m.n_tensors - 1].name, "logit_scale") == 0;
    TEST_CHECK(names_ok, "tensor names and arena order as in model.h");
    const ParamTensor *q = flip_model_find(&m, "text.blocks.1.attn.qkv.weight");
    const ParamTensor *e = flip_model_find(&m, "text.token_embed.weight");
    const ParamTensor *pe = flip_model_find(&m, "visual.patch_embed.weight");
    const ParamTensor *vp = flip_model_find(&m, "visual.proj.weight");
    TEST_CHECK(q && q->ndim == 2 && q->shape[0] == 3 * 128 && q->shape[1] == 128 && e && e->shape[0] == 100 &&
                   e->shape[1] == 128 && pe && pe->shape[0] == 192 && pe->shape[1] == 48 && vp &&
                   vp->shape[0] == 128 && vp->shape[1] == 192 && flip_model_find(&m, "nope") == NULL,
               "find and shapes (qkv (3C, C), token_embed (V, Ct), patch_embed (C, P), proj (D, C))");
    int decay_ok = 1;
    for (int i = 0; i < m.n_tensors; i++) {
        const char *n = m.tensors[i].name;
        size_t l = strlen(n);
        int want = (l > 7 && strcmp(n + l - 7, ".weight") == 0 && !strstr(n, "ln1") && !strstr(n, "ln2") &&
                    !strstr(n, "ln_final"));
        decay_ok &= m.tensors[i].decay == want;
    }
    TEST_CHECK(decay_ok, "weight decay exactly on linear weights and the token embedding");

    /* init */
    int init_ok = 1;
    for (int i = 0; i < m.n_tensors; i++) {
        const ParamTensor *t = &m.tensors[i];
        const float *p = m.params + t->offset;
        double s1 = 0, s2 = 0, mx = 0;
        for (size_t k = 0; k < t->count; k++) {
            s1 += p[k];
            s2 += (double)p[k] * p[k];
            mx = fmax(mx, fabs(p[k]));
        }
        double mean = s1 / t->count, sd = sqrt(fmax(s2 / t->count - mean * mean, 0.0));
        const char *n = t->name;
        size_t l = strlen(n);
        int ok;
        if (strcmp(n, "logit_scale") == 0) ok = fabs(p[0] - log(1 / 0.07)) < 1e-6;
        else if (strstr(n, "ln") && strcmp(n + l - 7, ".weight") == 0) ok = mean == 1.0 && sd == 0.0;
        else if (strcmp(n + l - 5, ".bias") == 0) ok = mx == 0.0;
        else if (strcmp(n, "text.token_embed.weight") == 0) ok = fabs(sd - 0.02) < 0.002;
        else if (strcmp(n, "text.pos_embed") == 0) ok = fabs(sd - 0.01) < 0.002;
        else if (strstr(n, "proj.weight") && !strstr(n, "attn")) ok = fabs(sd - 1.0 / sqrt(t->shape[1])) < 0.1 / sqrt(t->shape[1]);
        else { /* xavier uniform: bound a, sd a / sqrt 3 */
            double a = sqrt(6.0 / (t->shape[0] + t->shape[1]));
            ok = mx <= a && fabs(sd - a / sqrt(3.0)) < 0.05 * a;
        }
        if (!ok) test_report(0, "init %s: mean %.4g sd %.4g max %.4g", n, mean, sd, mx);
        init_ok &= ok;
    }
    TEST_CHECK(init_ok, "initialisation: xavier-uniform linears, zero biases, unit LN, N(0,.02) tokens, N(0,.01) positions, N(0,C^-.5) projections, t = ln(1/0.07)");
    FlipModel m2, m3;
    flip_model_init(&m2, &s, 5);
    flip_model_init(&m3, &s, 6);
    TEST_CHECK(memcmp(m.params, m2.params, m.n_params * sizeof(float)) == 0, "same seed: bit-identical parameters");
    size_t same = 0;
    for (size_t i = 0; i < m.n_params; i++) same += m.params[i] == m3.params[i];
    const ParamTensor *w = flip_model_find(&m, "visual.blocks.1.mlp.fc1.weight");
    TEST_CHECK(memcmp(m.params + w->offset, m3.params + w->offset, w->count * sizeof(float)) != 0,
               "another seed changes random tensors (%zu of %zu entries equal: the constant ones)", same, m.n_params);
    float zsum = 0;
    for (size_t i = m.n_params; i < 4 * m.n_params; i++) zsum += fabsf(m.memory[i]);
    TEST_CHECK(zsum == 0.0f, "grads and AdamW moments start at zero");
    flip_model_free(&m);
    flip_model_free(&m2);
    flip_model_free(&m3);
    return test_finish();
}
