/* train.h — the flip-train loop (DESIGN §3, §5): data-parallel FLIP training
 * over MPI with the exact global InfoNCE loss, bucketed overlapped gradient
 * all-reduce, AdamW with warmup + schedule, checkpoints and resume, non-finite
 * step skipping, SIGTERM/SIGUSR1 checkpoint-and-exit, metrics and evaluation.
 *
 * Per step k (every rank, B local rows, G = B x ranks global):
 *   batch = loader_next (rows [rB, (r+1)B) of global step k)
 *   keep[b] = flip_mask_keep(seed, k, rB + b, Np, N)   (N = Np in unmasked tuning)
 *   forward -> u, v (B, D); all-gather U, V (G, D)
 *   infonce (B, G, offset rB) -> loss partial, du, dv, dU, dV, dt
 *   reduce-scatter dU, dV into du, dv; dt into the logit_scale gradient
 *   backward, each finished bucket's MPI_Iallreduce started on the fly; wait
 *   loss = sum over ranks; grad norm of the summed gradient (equal everywhere)
 *   non-finite loss or norm: skip (all ranks agree: the values are identical)
 *   clip, lr = schedule(k), AdamW (update count excludes skipped steps)
 * Every rank computes the same parameters, so no parameter broadcast is needed.
 */
#ifndef FLIP_TRAIN_H
#define FLIP_TRAIN_H

#include "options.h"

/* Exit codes of flip-train / flip-eval. */
#define FLIP_EXIT_OK 0
#define FLIP_EXIT_ERROR 1     /* data/checkpoint errors, too many bad steps */
#define FLIP_EXIT_USAGE 2     /* bad flags */

/* Runs training as configured (collective: every rank calls it). Returns the
 * process exit code; user errors are printed by rank 0 as one line. */
int train_run(const Options *o);
/* flip-eval: loads --checkpoint and runs the requested evaluations. */
int eval_run(const Options *o);
/* Installs the SIGTERM / SIGUSR1 handlers (a flag checked at step boundaries). */
void train_install_signals(void);

#endif
