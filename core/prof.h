/* prof.h — per-op-class wall-clock accumulators for the training step (the
 * breakdown bench_step prints). Off by default; when off, a section costs one
 * branch. When on, each section costs one clock_gettime pair. Sections may
 * nest (linear_gelu's matmul inside the model's call): time is EXCLUSIVE, a
 * nested section's time is taken out of its parent's class, so the classes
 * add up to the step's time without double counting.
 * Main thread only (sections wrap whole ops; the ops parallelise inside). */
#ifndef FLIP_PROF_H
#define FLIP_PROF_H

#include <stddef.h>

typedef enum {
    FLIP_PROF_MATMUL,    /* linear layers: forward, dinp, dweight, dbias */
    FLIP_PROF_ATTENTION, /* attention core: q k^T, masked softmax, P v and backward */
    FLIP_PROF_LAYERNORM,
    FLIP_PROF_GELU,
    FLIP_PROF_LOSS,      /* L2 normalisation, InfoNCE forward and backward */
    FLIP_PROF_OPTIMIZER, /* AdamW, gradient zeroing */
    FLIP_PROF_EMBED,     /* patchify, token/position embedding, pooling, residual adds */
    FLIP_PROF_BF16,      /* f32 -> bf16 conversions of matmul operands (--precision bf16) */
    FLIP_PROF_COMM,      /* flip-train: time blocked in MPI (embedding all-gather, loss reduce-scatter,
                            gradient bucket starts and the wait after backward, loss/norm reductions) */
    FLIP_PROF_DATA,      /* flip-train: time waiting for the loader's next batch */
    FLIP_PROF_N
} FlipProfClass;

extern int flip_prof_enabled;
void flip_prof_enable(int on);
void flip_prof_reset(void);
double flip_prof_seconds(FlipProfClass c);
const char *flip_prof_name(FlipProfClass c);
/* "matmul 12.3 (45.6%), ..., other 1.0 (0.4%)": each non-zero class's seconds
 * (flip_prof_seconds) as ms per step and % of step_seconds (the wall time of
 * the `steps` profiled steps); "other" is step_seconds minus the classes. */
void flip_prof_format(char *buf, size_t n, long steps, double step_seconds);
void flip_prof_begin_(FlipProfClass c);
void flip_prof_end_(void);

#define FLIP_PROF_BEGIN(c) do { if (flip_prof_enabled) flip_prof_begin_(c); } while (0)
#define FLIP_PROF_END() do { if (flip_prof_enabled) flip_prof_end_(); } while (0)

#endif
