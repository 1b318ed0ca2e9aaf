/* ops.h — every layer op of flip: forward, backward and the slow reference
 * twin `_ref` (same signature, double accumulation, plain loops) that tests
 * compare against. One file per op: linear.c, layernorm.c, gelu.c,
 * attention.c, residual.c, pool.c, l2norm.c, embedding.c, patch.c, infonce.c,
 * adamw.c, schedule.c.
 *
 * Conventions (common.h): outputs first, then inputs, params, dims.
 * Backward: its outputs (dinp, param grads), then dout, then what forward
 * saved, then params, dims. Backward ADDS into every gradient output (+=),
 * except where an op says it STORES (=) its input gradient: the linear ops
 * (every linear_*backward*), attention_backward* (dqkv) and the GELU
 * *_store variants (each input gradient is written once per block, so the
 * model neither zeroes it nor has the op read it back). Parameter gradients
 * always add. A NULL gradient output means "not needed" (skipped).
 * Weights use PyTorch's nn.Linear layout: weight (OC, IC), out = inp W^T + b.
 * Fast paths run on oneDNN (matmuls) and OpenMP (elementwise) — one pool.
 */
#ifndef FLIP_OPS_H
#define FLIP_OPS_H

#include <stddef.h>
#include <stdint.h>

/* ---- linear.c: out (M, OC) = inp (M, IC) @ weight (OC, IC)^T + bias (OC) */
/* bias may be NULL. The oneDNN primitive for each (M, IC, OC, variant) is
 * created once and cached. Backward: dinp (M, IC) = dout W is STORED (=, never
 * read); dweight (OC, IC) += dout^T inp and dbias (OC) += column sums of dout
 * add. inp is read only for dweight (may be NULL when dweight is). */
void linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                    int M, int IC, int OC);
void linear_backward(float *dinp, float *dweight, float *dbias,
                     const float *dout, const float *inp, const float *weight,
                     int M, int IC, int OC);
void linear_forward_ref(float *out, const float *inp, const float *weight, const float *bias,
                        int M, int IC, int OC);
void linear_backward_ref(float *dinp, float *dweight, float *dbias,
                         const float *dout, const float *inp, const float *weight,
                         int M, int IC, int OC);
/* bf16 activations (precision bf16 only; dnnl_util.h): inp (M, IC) holds
 * bf16 values (e.g. a LayerNorm or GELU output written as bf16), so it is not
 * converted again. Forward writes out (f32) or out_b (bf16, rounded to
 * nearest even): exactly one is non-NULL. Backward as linear_backward (dinp
 * stored) with the bf16 inp feeding dweight. Results equal
 * linear_forward/backward in bf16 precision on the f32 values inp holds. */
void linear_forward_b(float *out, uint16_t *out_b, const uint16_t *inp, const float *weight,
                      const float *bias, int M, int IC, int OC);
void linear_backward_b(float *dinp, float *dweight, float *dbias, const float *dout,
                       const uint16_t *inp, const float *weight, int M, int IC, int OC);
/* linear_backward_b with dout already bf16 (M, OC) (bf16 precision only): dinp (M, IC) = dout W
 * (f32, stored), dweight (OC, IC) += dout^T inp (bf16 operands, no conversion), dbias (OC) +=
 * column sums of widen(dout) in f32. Any of dinp, dweight, dbias may be NULL. */
void linear_backward_bb(float *dinp, float *dweight, float *dbias, const uint16_t *dout,
                        const uint16_t *inp, const float *weight, int M, int IC, int OC);
/* Fused linear + exact GELU (MLP fc1): pre (M, OC) = inp W^T + b (saved for
 * backward), out (M, OC) = GELU(pre). Backward: dpre = GELU'(pre) * dout, then
 * linear backward (dinp stored). scratch: M*OC floats for dpre. The model's
 * block backward uses the pieces instead (linear_backward for dinp and
 * dbias, linear_gelu_activation, gelu_backward_store in place, then dweight). */
void linear_gelu_forward(float *out, float *pre, const float *inp, const float *weight,
                         const float *bias, int M, int IC, int OC);
void linear_gelu_backward(float *dinp, float *dweight, float *dbias, float *scratch,
                          const float *dout, const float *pre, const float *inp,
                          const float *weight, int M, int IC, int OC);
void linear_gelu_forward_ref(float *out, float *pre, const float *inp, const float *weight,
                             const float *bias, int M, int IC, int OC);
void linear_gelu_backward_ref(float *dinp, float *dweight, float *dbias, float *scratch,
                              const float *dout, const float *pre, const float *inp,
                              const float *weight, int M, int IC, int OC);
/* out (n) = GELU(pre): the activation step of linear_gelu_forward (resp. _ref)
 * alone, bit-identical to it, for recomputing out in backward. */
void linear_gelu_activation(float *out, const float *pre, size_t n);
void linear_gelu_activation_ref(float *out, const float *pre, size_t n);

/* ---- layernorm.c: per row of C, eps 1e-6; saves mean (M) and rstd (M) */
#define FLIP_LN_EPS 1e-6f
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *weight, const float *bias, int M, int C);
/* The forward with the output rounded to bf16 (nearest even): the same mean,
 * rstd and values as layernorm_forward, then rounded (bf16 activations). */
void layernorm_forward_b(uint16_t *out, float *mean, float *rstd, const float *inp,
                         const float *weight, const float *bias, int M, int C);
/* LayerNorm's output from saved statistics, for the recompute in backward:
 * out = (inp - mean) rstd weight + bias per row, bitwise what layernorm_forward
 * (_b: layernorm_forward_b) wrote when mean / rstd are the ones it saved. One
 * pass over inp instead of three. */
void layernorm_apply(float *out, const float *inp, const float *mean, const float *rstd,
                     const float *weight, const float *bias, int M, int C);
void layernorm_apply_b(uint16_t *out, const float *inp, const float *mean, const float *rstd,
                       const float *weight, const float *bias, int M, int C);
void layernorm_apply_ref(float *out, const float *inp, const float *mean, const float *rstd,
                         const float *weight, const float *bias, int M, int C);
void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *mean, const float *rstd,
                        const float *weight, int M, int C);
void layernorm_forward_ref(float *out, float *mean, float *rstd, const float *inp,
                           const float *weight, const float *bias, int M, int C);
void layernorm_backward_ref(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *mean, const float *rstd,
                            const float *weight, int M, int C);

/* ---- gelu.c: exact GELU x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) */
void gelu_forward(float *out, const float *inp, size_t n);
void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);
void gelu_forward_ref(float *out, const float *inp, size_t n);
void gelu_backward_ref(float *dinp, const float *dout, const float *inp, size_t n);
/* dinp = GELU'(inp) * dout, overwriting dinp (never read): the dpre of
 * linear_gelu_backward in one pass (no zeroing, no read of dinp) */
void gelu_backward_store(float *dinp, const float *dout, const float *inp, size_t n);
/* bf16 activations: out (bf16) = GELU(inp (bf16)) rounded to nearest even;
 * dinp = GELU'(inp (bf16)) * dout (overwrites). The same element functions as
 * gelu_forward / gelu_backward_store on the widened values. */
void gelu_forward_b(uint16_t *out, const uint16_t *inp, size_t n);
void gelu_backward_store_b(float *dinp, const float *dout, const uint16_t *inp, size_t n);
/* dinp = bf16(dout * gelu'(widen(inp))): bitwise the bf16 rounding (round to nearest
 * even) of what gelu_backward_store_b stores */
void gelu_backward_store_bb(uint16_t *dinp, const float *dout, const uint16_t *inp, size_t n);
/* bf16 GELU backward with the forward recomputed in the same pass: out =
 * bf16(GELU(widen(inp))), dinp = bf16(dout * GELU'(widen(inp))), the shared
 * terms evaluated once. out is bitwise gelu_forward_b's (tested); dinp is
 * gelu_backward_store_bb's formula (bitwise in the Release build; a build that
 * vectorises the loops differently may contract one FMA differently, 1 ulp). */
void gelu_forward_backward_bb(uint16_t *out, uint16_t *dinp, const float *dout, const uint16_t *inp, size_t n);
void gelu_backward_store_ref(float *dinp, const float *dout, const float *inp, size_t n);

/* ---- attention.c: multi-head self-attention core (no projections).
 * qkv (B, T, 3C): per token [q (C) | k (C) | v (C)], head h owns columns
 * [h*hd, (h+1)*hd) of each, hd = C/H. out (B, T, C) heads concatenated.
 * att (B, H, T, T): optional (NULL: not written) copy of the softmax
 * probabilities P, for tests and inspection; backward does not need it: it
 * recomputes P bit for bit from qkv.
 * lens (B): number of valid (non-padded) positions of each sample; keys at
 * t >= lens[b] are never attended (queries there still produce output, from
 * the valid keys). NULL = all T valid. Scale 1/sqrt(hd).
 * scratch: attention_scratch_floats(T, C, H, threads) floats, n_scratch its
 * size; the fast ops need threads = omp_get_max_threads() at the call (they
 * fail with a clear error otherwise), the _ref twins threads = 1. Contents are
 * not kept between calls.
 * Backward (attention_backward, _ref, _b) STORES dqkv (=, not +=): every
 * element is written, the k and v parts of padded keys (t >= lens[b]) are
 * exactly 0; no zeroing of dqkv is needed before the call. */
size_t attention_scratch_floats(int T, int C, int H, int threads);
void attention_forward(float *out, float *att, float *scratch, size_t n_scratch, const float *qkv,
                       const int *lens, int B, int T, int C, int H);
void attention_backward(float *dqkv, float *scratch, size_t n_scratch, const float *dout,
                        const float *qkv, const int *lens, int B, int T, int C, int H);
/* bf16 activations (--precision bf16): qkv_b (B, T, 3C) as bf16, what the qkv
 * linear writes; out_b (B, T, C) bf16; backward stores dqkv_b (bf16, padded
 * keys' dk / dv exactly 0); dout f32. Scratch as above.
 * On a CPU with AVX512_BF16 and hd % 32 == 0, T <= 256 (the bf16 kernel,
 * attention_bf16_kernel_used): bf16 products with f32 accumulation, like
 * PyTorch autocast; rounded to bf16 (nearest even) exactly here: P before
 * P v and P^T dout, dout before dout v^T and P^T dout, dS before dS k and
 * dS^T q, and out / dq / dk / dv on store; S = s q k^T (exact bf16 products,
 * f32 sums), the softmax, dS = P (dP - rowsum(dP P)) and the scale s in f32.
 * Within TOL_ATT_BF16_* of the f32 reference on the same bf16 qkv (tested).
 * Otherwise (widen path): out_b = bf16 of attention_forward's out on the
 * widened qkv_b, dqkv_b = bf16 of attention_backward's dqkv, bitwise. */
void attention_forward_b(uint16_t *out_b, float *att, float *scratch, size_t n_scratch, const uint16_t *qkv_b,
                         const int *lens, int B, int T, int C, int H);
void attention_backward_b(uint16_t *dqkv_b, float *scratch, size_t n_scratch, const float *dout,
                          const uint16_t *qkv_b, const int *lens, int B, int T, int C, int H);
/* 1 if attention_forward_b / _backward_b run the bf16 arithmetic kernel for this
 * shape (see above), 0 if the widen-to-f32 path */
int attention_bf16_kernel_used(int T, int C, int H);
/* allow (1, the default) or forbid (0) the bf16 arithmetic kernel; returns the
 * previous setting. For tests and benchmarks comparing it with the widen path;
 * not thread-safe, call between attention calls. */
int attention_set_bf16_kernel(int on);
void attention_forward_ref(float *out, float *att, float *scratch, size_t n_scratch, const float *qkv,
                           const int *lens, int B, int T, int C, int H);
void attention_backward_ref(float *dqkv, float *scratch, size_t n_scratch, const float *dout,
                            const float *qkv, const int *lens, int B, int T, int C, int H);
/* softmax over rows of n (in place allowed), used by attention and tests */
void softmax_forward(float *out, const float *inp, int M, int n);
void softmax_forward_ref(float *out, const float *inp, int M, int n);
/* dinp += p * (dout - sum(dout * p)) per row */
void softmax_backward(float *dinp, const float *dout, const float *out, int M, int n);
void softmax_backward_ref(float *dinp, const float *dout, const float *out, int M, int n);

/* ---- residual.c: out = a + b; backward da += dout, db += dout */
void residual_forward(float *out, const float *a, const float *b, size_t n);
void residual_backward(float *da, float *db, const float *dout, size_t n);
void residual_forward_ref(float *out, const float *a, const float *b, size_t n);
void residual_backward_ref(float *da, float *db, const float *dout, size_t n);

/* ---- pool.c: out (B, C) = mean over t < lens[b] of inp (B, T, C); lens NULL = T */
void meanpool_forward(float *out, const float *inp, const int *lens, int B, int T, int C);
void meanpool_backward(float *dinp, const float *dout, const int *lens, int B, int T, int C);
void meanpool_forward_ref(float *out, const float *inp, const int *lens, int B, int T, int C);
void meanpool_backward_ref(float *dinp, const float *dout, const int *lens, int B, int T, int C);

/* ---- l2norm.c: out (B, D) = inp / |inp| per row; saves norm (B) */
void l2norm_forward(float *out, float *norm, const float *inp, int B, int D);
void l2norm_backward(float *dinp, const float *dout, const float *out, const float *norm,
                     int B, int D);
void l2norm_forward_ref(float *out, float *norm, const float *inp, int B, int D);
void l2norm_backward_ref(float *dinp, const float *dout, const float *out, const float *norm,
                         int B, int D);

/* ---- embedding.c: out (B, T, C) = wte[tokens[b,t]] + wpe[t]
 * tokens int32 (B, T), every id in [0, V) (checked by the loader; fatal here). */
void embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe,
                       int B, int T, int C, int V);
void embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                        int B, int T, int C, int V);
void embedding_forward_ref(float *out, const int32_t *tokens, const float *wte,
                           const float *wpe, int B, int T, int C, int V);
void embedding_backward_ref(float *dwte, float *dwpe, const float *dout,
                            const int32_t *tokens, int B, int T, int C, int V);

/* ---- patch.c
 * patchify: images uint8 (B, S, S, Ci) -> out (B, Np, P) floats normalised
 *   per channel ((x/255 - mean[c]) / std[c]), Np = (S/p)^2, P = p*p*Ci, patch
 *   index n = py*(S/p) + px, within a patch order (dy, dx, c). No backward
 *   (pixels carry no gradient).
 * keep_gather: out (B, N, X) = inp (B, Np, X) at rows keep (B, N) (ascending);
 *   backward scatters: dinp[b, keep[b,n]] += dout[b, n].
 * To embed only kept patches, patchify_kept writes (B, N, P) directly.
 * posemb_sincos_2d: table (Np, C) fixed 2-D sin-cos (MAE): C % 4 == 0,
 *   omega_k = 1 / 10000^(k / (C/4)), k < C/4; row n = (py, px):
 *   [sin(px w), cos(px w), sin(py w), cos(py w)] each C/4 wide.
 * posemb_add_kept: x (B, N, C) += table[keep[b, n]] (no gradient: fixed).
 * keep == NULL means all patches in order (requires N == Np). */
void patchify_forward(float *out, const uint8_t *images, const float *mean, const float *std,
                      int B, int S, int Ci, int p);
void patchify_forward_ref(float *out, const uint8_t *images, const float *mean,
                          const float *std, int B, int S, int Ci, int p);
void patchify_kept_forward(float *out, const uint8_t *images, const int32_t *keep,
                           const float *mean, const float *std, int B, int S, int Ci, int p,
                           int N);
void keep_gather_forward(float *out, const float *inp, const int32_t *keep, int B, int Np,
                         int N, int X);
void keep_gather_backward(float *dinp, const float *dout, const int32_t *keep, int B, int Np,
                          int N, int X);
void keep_gather_forward_ref(float *out, const float *inp, const int32_t *keep, int B, int Np,
                             int N, int X);
void keep_gather_backward_ref(float *dinp, const float *dout, const int32_t *keep, int B,
                              int Np, int N, int X);
void posemb_sincos_2d(float *table, int gh, int gw, int C);
void posemb_add_kept(float *x, const float *table, const int32_t *keep, int B, int N, int C);

/* ---- infonce.c: the local block of the global symmetric InfoNCE loss.
 * This rank owns rows offset..offset+B-1 of the global batch. u, v (B, D):
 * its L2-normalised image / text embeddings; U, V (G, D): the gathered ones of
 * all ranks (U[offset + b] == u[b]). s = exp(t).
 *   image->text row b: logits s * u_b . V_g over g, target g = offset + b
 *   text->image row b: logits s * v_b . U_g over g, target g = offset + b
 * loss (scalar out) = sum of these 2B cross-entropies / (2G): summing loss over
 * ranks gives the global loss. probs (2, B, G) saved softmaxes (max-shifted).
 * Backward (dloss = d global loss, usually 1): du, dv (B, D) from this rank's
 * rows; dU, dV (G, D) gradient w.r.t. the gathered matrices (to be summed back
 * to their owners with a reduce-scatter and added to du, dv); dt (scalar).
 * With B == G, offset 0 this is the single-process loss and
 * du + dU, dv + dV are the full gradients (du may alias dU, dv may alias dV). */
void infonce_forward(float *loss, float *probs, const float *u, const float *v,
                     const float *U, const float *V, float t, int B, int G, int D, int offset);
void infonce_backward(float *du, float *dv, float *dU, float *dV, float *dt, float dloss,
                      const float *probs, const float *u, const float *v, const float *U,
                      const float *V, float t, int B, int G, int D, int offset);
void infonce_forward_ref(float *loss, float *probs, const float *u, const float *v,
                         const float *U, const float *V, float t, int B, int G, int D,
                         int offset);
void infonce_backward_ref(float *du, float *dv, float *dU, float *dV, float *dt, float dloss,
                          const float *probs, const float *u, const float *v, const float *U,
                          const float *V, float t, int B, int G, int D, int offset);

/* ---- adamw.c: one AdamW update of n elements (decoupled weight decay,
 * bias-corrected moments). step counts from 1. grad_scale multiplies grads
 * first (global-norm clipping). wd = 0 for biases, norm weights, position
 * embeddings and the temperature (the model decides per tensor). */
void adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                  float beta1, float beta2, float eps, float wd, float grad_scale, long step);
void adamw_update_ref(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                      float beta1, float beta2, float eps, float wd, float grad_scale,
                      long step);
/* sum of squares of n floats, in double */
double sumsq(const float *x, size_t n);

/* ---- schedule.c: learning-rate schedules */
typedef enum { FLIP_SCHED_COSINE = 0, FLIP_SCHED_CONST = 1, FLIP_SCHED_CONST_COOLDOWN = 2 } FlipSchedKind;
typedef struct {
    FlipSchedKind kind;
    float base_lr;
    long warmup_steps; /* linear 0 -> base_lr over steps [0, warmup) */
    long total_steps;
    float min_lr;      /* cosine floor */
    long cooldown_steps; /* const-cooldown: linear decay to min_lr at the end */
} Schedule;
/* lr for step (0-based) */
float schedule_lr(const Schedule *s, long step);

#endif
