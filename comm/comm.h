/* comm.h — the MPI side of flip (DESIGN §3): the world (init, rank, abort),
 * the all-gather / reduce-scatter pair of the exact global InfoNCE loss, small
 * blocking reductions, and the bucketed, overlapped gradient all-reduce.
 *
 * Only the comm sources include mpi.h; this header does not, so launch/ and tests use
 * MPI through these functions alone. Every MPI call is checked (the world runs
 * with MPI_ERRORS_RETURN); a failure is fatal via flip_fatal with the MPI error
 * string, and the abort hook installed by comm_init calls MPI_Abort, so a job
 * never hangs with one rank gone.
 *
 * Ownership: comm owns its scratch buffers (grown at setup/first use, freed by
 * comm_finalize); GradBuckets is owned by whoever calls comm_buckets_init.
 */
#ifndef FLIP_COMM_H
#define FLIP_COMM_H

#include <stddef.h>

#include "model.h"

/* ---- world.c */
/* MPI_Init_thread (FUNNELED), MPI_ERRORS_RETURN on MPI_COMM_WORLD,
 * flip_set_rank, the MPI_Abort hook, local rank via MPI_Comm_split_type. */
void comm_init(int *argc, char ***argv);
/* MPI_Finalize (after a barrier-free cleanup of comm's scratch). */
void comm_finalize(void);
int comm_rank(void);
int comm_size(void);
int comm_local_rank(void);   /* rank among the processes of this node */
int comm_local_size(void);
void comm_barrier(void);
_Noreturn void comm_abort(int code);   /* MPI_Abort(MPI_COMM_WORLD, code) */
double comm_wtime(void);               /* MPI_Wtime */

/* ---- gather.c: the global-loss collectives (float rows, D columns) */
/* out (G, D) = rows of every rank's in (B, D) in rank order, G = B * size. */
void comm_allgather_rows(float *out, const float *in, int B, int D);
/* out (B, D) += rows [rB, (r+1)B) of the sum over ranks of in (G, D).
 * (MPI_Reduce_scatter_block into comm's scratch, then added.) */
void comm_reduce_scatter_rows(float *out, const float *in, int B, int D);

/* ---- reduce.c: blocking reductions (in place, every rank gets the result) */
void comm_allreduce_sum_f32(float *x, size_t n);
void comm_allreduce_sum_f64(double *x, int n);
void comm_allreduce_max_int(int *x, int n);
void comm_allreduce_min_int(int *x, int n);
/* rank `root`'s n_bytes at buf to every rank (split into int-sized chunks). */
void comm_bcast(void *buf, size_t n_bytes, int root);

/* ---- buckets.c: bucketed gradient all-reduce overlapped with backward.
 * Buckets are fixed once from the tensor table: tensors are walked in reverse
 * arena order (the order backward finishes them) and packed into contiguous
 * ranges of about bucket_mb megabytes (a tensor larger than that is a bucket
 * of its own). Never by timing, so the summation is deterministic.
 * Per step: comm_buckets_reset; pass comm_buckets_ready (ctx = the buckets) to
 * flip_model_backward; each completed bucket starts an in-place
 * MPI_Iallreduce(SUM) (buckets start in index order on every rank; counts
 * above the chunk limit, INT_MAX by default, are split); the callback also
 * progresses outstanding requests with MPI_Testsome; comm_buckets_wait before
 * the optimizer. A bucket whose tensors were never reported is started at
 * wait time (with a one-time warning naming the tensor): still correct, just
 * not overlapped. */
typedef struct GradBuckets GradBuckets;

typedef struct {
    int n_buckets;
    size_t n_floats;        /* floats all-reduced per step (bucket spans) */
    long steps;             /* steps since init / stats reset */
    double wait_seconds;    /* total time blocked in comm_buckets_wait */
    double last_wait_seconds;
    long late_buckets;      /* buckets started only at wait time */
} GradBucketStats;

GradBuckets *comm_buckets_init(float *grads, const ParamTensor *tensors, int n_tensors,
                               double bucket_mb);
void comm_buckets_free(GradBuckets *gb);
/* Tests: split all-reduces into chunks of at most max_count floats. */
void comm_buckets_set_chunk(GradBuckets *gb, size_t max_count);
void comm_buckets_reset(GradBuckets *gb);
/* FlipGradReadyFn: ctx is the GradBuckets; [offset, offset+count) floats of
 * the grad arena are final. */
void comm_buckets_ready(void *ctx, size_t offset, size_t count);
void comm_buckets_wait(GradBuckets *gb);
GradBucketStats comm_buckets_stats(const GradBuckets *gb);
/* Bucket i: first float and count (tests, docs). */
void comm_buckets_span(const GradBuckets *gb, int i, size_t *offset, size_t *count);
/* The same all-reduces, blocking and in isolation (no backward to hide
 * behind), on a scratch copy: seconds per step averaged over `reps`. For the
 * "fraction hidden behind backward" = 1 - wait / isolated. Collective. */
double comm_buckets_measure_isolated(GradBuckets *gb, int reps);

#endif
