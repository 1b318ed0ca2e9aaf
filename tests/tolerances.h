/* tolerances.h — every test tolerance of flip, one table, a reason each.
 * atol/rtol pairs are used as |got - ref| <= atol + rtol |ref|. */
#ifndef FLIP_TOLERANCES_H
#define FLIP_TOLERANCES_H

/* fast op (float, oneDNN/OpenMP, blocked summation) vs _ref (double accumulation):
 * float rounding of K-term dot products grows ~ sqrt(K) * 2^-24 * |terms|;
 * K <= 4096 here, so 1e-4 relative leaves > 10x margin. */
#define TOL_OP_ATOL 1e-5
#define TOL_OP_RTOL 1e-4

/* central finite differences in double on the _ref path with step 1e-3 (in
 * float storage for the model): truncation O(h^2) and float rounding of the
 * loss (~1e-7 relative / h) give ~1e-3 relative error on O(1) gradients. */
#define TOL_FD_RTOL 2e-2
#define TOL_FD_ATOL 1e-4

/* comm collectives (tests/comm): sums of a handful of O(1) floats in a
 * different order (MPI's reduction tree vs rank order): a few ulps. */
#define TOL_COMM_SUM_ATOL 1e-6
#define TOL_COMM_SUM_RTOL 1e-6
/* adjoint <y, AG x> = <RS y, x>: two double sums of the same float products in
 * different orders, with the reduce-scatter result rounded to float once. */
#define TOL_COMM_ADJOINT_RTOL 1e-6
/* distributed (B rows per rank, all-gather, reduce-scatter, all-reduce) vs one
 * process on all G rows, fast path both: the same float terms summed in other
 * orders (per-rank partial sums, MPI tree). Measured on the reduced model with
 * 4 ranks: max abs 3e-7 on gradients of size 1e-2..1; atol 2e-6 (> 6x) covers
 * entries that cancel to ~0, rtol bounds the rest. */
#define TOL_DIST_ATOL 2e-6
#define TOL_DIST_RTOL 1e-4

/* adjoint <dy, L dx> = <L^T dy, dx> of a float matmul op (linear): both sides
 * are double sums of float-rounded matmul outputs (K-term float dot products,
 * ~sqrt(K) 2^-24 relative each, random sign), so ~1e-6 relative; 1e-5 margin. */
#define TOL_ADJOINT_RTOL 1e-5

/* C model vs the PyTorch float64 golden file (tests/data/golden_small.h5, tiny
 * config: widths 8/12, depth 2). float32 PyTorch on the same file moves the loss
 * by ~2e-7 relative and each gradient by <= 2e-6 of its tensor's max |grad|
 * (gen_golden.py prints this); measured C fast path: loss 7e-8 rel, embeddings
 * 4e-7 abs, gradients 2.3e-6 of max|grad| (ref path about half). Bounds leave
 * >= 20x; wrong conventions (LN eps 1e-5, tanh GELU, head layout...) miss by >= 100x. */
#define TOL_GOLDEN_LOSS_ATOL 1e-6
#define TOL_GOLDEN_LOSS_RTOL 1e-5
#define TOL_GOLDEN_EMB_ATOL 1e-5   /* embeddings are unit vectors: entries O(0.1-1) */
#define TOL_GOLDEN_EMB_RTOL 1e-4
/* gradients: |got - ref| <= ATOL_REL * max|ref of the tensor| + RTOL |ref|; the
 * absolute part follows each tensor's own scale (they span orders of magnitude). */
#define TOL_GOLDEN_GRAD_ATOL_REL 5e-5
#define TOL_GOLDEN_GRAD_RTOL 1e-3

/* whole-model FD (tests/core/test_model_grad.c), _ref path, float loss ~ln B:
 * step h = 1e-2 x max(rms of the tensor, 0.1) (token embeddings, std 0.02,
 * are far more curved through LayerNorm than LN weights of 1; 1e-2 absolute
 * gave 2-4 % truncation error there); FD error = loss rounding (~1e-7 x
 * depth) / h ~ 1e-5 plus O(h^2) truncation; measured worst 1.2e-3 relative
 * (_ref forward), 4.6e-3 (tiny, FD losses through the fast float forward). */
#define TOL_MODEL_FD_STEP 1e-2
#define TOL_MODEL_FD_SCALE_FLOOR 0.1
#define TOL_MODEL_FD_ATOL 2e-5
#define TOL_MODEL_FD_RTOL 1e-2
/* whole-model fast (oneDNN/sgemm float) vs _ref gradient, per tensor: error
 * relative to the tensor's largest gradient (small entries are sums that
 * cancel) plus a relative term; measured worst 4e-6 of max|g| (reduced, tiny). */
#define TOL_MODEL_FASTREF_ATOL_REL 1e-4
#define TOL_MODEL_FASTREF_RTOL 1e-3
#define TOL_MODEL_FASTREF_LOSS 1e-5
/* attention key-bias gradient is mathematically 0 (softmax shift invariance);
 * on the _ref path it is double-accumulated rounding, ~1e-7 of the q/v part. */
#define TOL_MODEL_KBIAS_REL 1e-4

/* flip-prep images (tests/dataset/test_image.c): flat 8x8 JPEG blocks at quality
 * 100, 4:4:4, are one DC coefficient each; YCbCr<->RGB integer conversion and
 * DC quantisation (step 1 at q100) leave a few LSB. */
#define TOL_JPEG_FLAT_MAXABS 3
/* resize fast path (float weights and sums, rounded to uint8) vs the unrounded
 * double reference: at most 0.5 from rounding plus float error (~1e-4 here). */
#define TOL_RESIZE_VS_REF 0.501
/* 1-pixel 0/255 checkerboard shrunk 4x with the triangle filter: every window
 * holds equal weight on 0s and 255s, so 127.5 rounds to 127 or 128 (measured
 * 0.5); point sampling would give 0/255 (deviation 127.5). */
#define TOL_CHECKER_DEV 1.0

/* AdamW hand example: params O(1) stored in float (ulp 1.2e-7); the float update
 * of size ~1e-2 adds < 1e-8, so 1e-6 (8 ulp) separates rounding from a wrong formula
 * (eps, bias correction or decay mistakes move the result by >= 1e-5). */
#define TOL_ADAMW_ATOL 1e-6

/* loader augmentation (tests/dataset/test_loader.c): bilinear output is rounded
 * to uint8, so a linear ramp is reproduced within 0.5 (+ float error ~1e-5). */
#define TOL_AUG_BILINEAR 0.5001
/* crop boxes: w, h are rounded to integers, which moves the area fraction and
 * aspect of a >= 100-pixel side by < 1 %: scale >= 0.4 * 0.975, aspect within
 * [3/4, 4/3] widened by 1.5 %. */
#define TOL_AUG_SCALE_MIN 0.39
#define TOL_AUG_ASPECT_LO 0.7387
#define TOL_AUG_ASPECT_HI 1.3533
/* flip rate over N boxes: binomial, |flips - N/2| < 4 sigma (false alarm 6e-5). */
#define TOL_AUG_FLIP_SIGMAS 4.0

/* training sanity (tests/core/test_model_train.c): tiny, 32 correlated pairs,
 * mask 0.5, 20 AdamW steps at lr 1e-3: the mean of the last 5 losses must be
 * below this fraction of the initial ~ln 32. Measured 0.044 (3.75 -> 0.165);
 * 0.25 leaves ~5x margin for other seeds/summation orders and is far below
 * chance (1.0x) and below what the temperature alone can do (it only sharpens
 * an uninformative similarity matrix). */
#define TRAIN_LOSS_FACTOR 0.25f

/* bf16 matmuls (tests/core/test_bf16.c). Fast bf16 path vs the double
 * reference on the SAME bf16-rounded operands: only fp32 accumulation order
 * differs (K <= 384 terms of |x w| <= 1, outputs O(10)): 1e-5 relative. */
#define TOL_BF16_ACC_ATOL 2e-4
#define TOL_BF16_ACC_RTOL 1e-5
/* bf16 vs exact fp32: rounding each operand to bf16 (unit roundoff 2^-8)
 * perturbs a product by at most (1 + 2^-8)^2 - 1 < 2^-7 relative, so
 * |err| <= 2^-7 sum|x w| (+ fp32 accumulation, far below): a proof, not a fit. */
#define TOL_BF16_PRODUCT_REL 0.0079
/* loss curves, narrowed tiny, 50 steps, B 32, lr 1e-3: bf16 vs fp32 max
 * |loss difference| over the steps (loss starts near ln 32 = 3.47, ends
 * ~0.005). Measured 0.002 (tiny 2+2 blocks); 0.02 leaves 10x margin while a
 * curve that drifts by more than ~0.5 % of the initial loss fails. */
#define TOL_BF16_LOSS_ATOL 0.02

/* exact GELU kernel (core/gelu.c) vs the exact value in double (erfc), GELU
 * and GELU' (tests/core/test_ops_elementwise.c): measured on every finite
 * float, all three clones, max abs error 1.43e-7 (GELU' everywhere, GELU for
 * |x| < 4); for x >= 4 GELU's error is its final rounding, <= 2^-24 |ref|
 * (0.5 ulp, up to 2.4e-7). The tanh approximation is off by up to 4.7e-4. */
#define TOL_GELU_ATOL 2e-7
#define TOL_GELU_RTOL 6e-8
/* x in [-12.9, 0): relative error of GELU(x) (no 1 + erf cancellation; only
 * the rounding of a^2 in exp(-a^2/2) grows with |x|): measured 1.0e-5 near
 * -12.9 (1.5e-5 baseline clone); 0.5 x (1 + erf(x / sqrt 2)) in float is 0
 * (100 % off) from x = -5.54. */
#define TOL_GELU_NEG_RTOL 1e-4

/* bf16 attention kernel (tests/core/test_attention.c) vs the double reference
 * on the same bf16 qkv, |err| <= ATOL max|ref| + RTOL |ref| per output part:
 * the bf16 store is off by up to half an ulp, <= 2^-8 |x| (RTOL); the bf16
 * rounding of P, dout, dS inside the products adds ~2^-9 of their sums
 * (ATOL). Measured worst |err| / max|ref| 0.0044 (T 1..256, hd 32/64); a
 * dropped pair / row in any product fails (checked). */
#define TOL_ATT_BF16_ATOL 0.008
#define TOL_ATT_BF16_RTOL 0.0039

/* text embeddings with the tower run on T-1 vs T positions (padding past the
 * longest caption dropped): same per-row math, only the matmul blocking may
 * differ with M; relative to the largest |embedding| */
#define TOL_MODEL_TEXT_TRUNC_REL 1e-5
#endif
