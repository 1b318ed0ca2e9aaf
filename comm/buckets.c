/* buckets.c — bucketed gradient all-reduce overlapped with backward (DESIGN §3).
 *
 * Buckets are fixed once from the model's tensor table: tensors sorted by arena
 * offset, walked from the last (backward finishes those first) to the first,
 * packed greedily until a bucket holds >= bucket_mb megabytes. A bucket is the
 * contiguous span of its tensors in the grad arena. Backward reports finished
 * ranges through comm_buckets_ready; when every float of a bucket's tensors has
 * been reported the bucket's in-place MPI_Iallreduce(SUM) is started. Buckets
 * start strictly in index order, which is the same on every rank (collectives
 * must be issued in the same order everywhere), so a bucket that completes
 * early waits for its predecessors. The callback also calls MPI_Testsome so the
 * MPI progress engine advances while backward computes. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "comm_mpi.h"

typedef struct {
    size_t offset, count; /* span in the grad arena (floats) */
    size_t total;         /* floats of tensors in the bucket */
    size_t pending;       /* of total, not yet reported this step */
    int first_tensor;     /* sorted index of its first (highest-offset) tensor */
    int first_req, n_req;
} Bucket;

struct GradBuckets {
    float *grads;
    const ParamTensor *tensors;
    int n_tensors;
    int *order;          /* tensor indices by descending offset */
    int *tensor_bucket;  /* by sorted position */
    int n_buckets;
    Bucket *b;
    size_t chunk;        /* max floats per MPI call */
    MPI_Request *reqs;
    int n_reqs;
    int *done_idx;       /* Testsome output */
    int next_start;      /* buckets [0, next_start) are started */
    int reported;        /* ready calls this step */
    int warned;
    GradBucketStats st;
};

static const ParamTensor *g_sort_tensors;
static int by_offset_desc(const void *a, const void *b) {
    size_t oa = g_sort_tensors[*(const int *)a].offset, ob = g_sort_tensors[*(const int *)b].offset;
    return oa < ob ? 1 : (oa > ob ? -1 : 0);
}

static void layout_requests(GradBuckets *gb) {
    int n = 0;
    for (int i = 0; i < gb->n_buckets; i++) {
        Bucket *bk = &gb->b[i];
        bk->first_req = n;
        bk->n_req = (int)((bk->count + gb->chunk - 1) / gb->chunk);
        if (bk->n_req == 0) bk->n_req = 1;
        n += bk->n_req;
    }
    flip_free(gb->reqs);
    flip_free(gb->done_idx);
    gb->n_reqs = n;
    gb->reqs = flip_calloc((size_t)n, sizeof(MPI_Request), "bucket requests");
    gb->done_idx = flip_calloc((size_t)n, sizeof(int), "bucket request indices");
    for (int i = 0; i < n; i++) gb->reqs[i] = MPI_REQUEST_NULL;
}

GradBuckets *comm_buckets_init(float *grads, const ParamTensor *tensors, int n_tensors,
                               double bucket_mb) {
    FLIP_CHECK(n_tensors > 0, "comm_buckets_init: empty tensor table");
    if (!(bucket_mb > 0)) bucket_mb = 4.0;
    size_t cap = (size_t)(bucket_mb * 1024.0 * 1024.0 / sizeof(float));
    if (cap == 0) cap = 1;
    GradBuckets *gb = flip_calloc(1, sizeof *gb, "GradBuckets");
    gb->grads = grads;
    gb->tensors = tensors;
    gb->n_tensors = n_tensors;
    gb->chunk = COMM_MAX_COUNT;
    gb->order = flip_calloc((size_t)n_tensors, sizeof(int), "bucket order");
    gb->tensor_bucket = flip_calloc((size_t)n_tensors, sizeof(int), "bucket of tensor");
    for (int i = 0; i < n_tensors; i++) gb->order[i] = i;
    g_sort_tensors = tensors;
    qsort(gb->order, (size_t)n_tensors, sizeof(int), by_offset_desc);
    gb->b = flip_calloc((size_t)n_tensors, sizeof(Bucket), "buckets");
    int nb = 0;
    size_t acc = 0;
    for (int s = 0; s < n_tensors; s++) {
        const ParamTensor *t = &tensors[gb->order[s]];
        if (s > 0) {
            const ParamTensor *prev = &tensors[gb->order[s - 1]];
            FLIP_CHECK(t->offset + t->count <= prev->offset,
                       "comm_buckets_init: tensors %s and %s overlap in the arena", t->name, prev->name);
        }
        if (nb == 0 || acc >= cap) {
            Bucket *bk = &gb->b[nb++];
            bk->first_tensor = s;
            bk->offset = t->offset + t->count;
            bk->count = 0;
            acc = 0;
        }
        Bucket *bk = &gb->b[nb - 1];
        size_t end = bk->offset + bk->count;
        bk->offset = t->offset;
        bk->count = end - t->offset;
        bk->total += t->count;
        acc += t->count;
        gb->tensor_bucket[s] = nb - 1;
    }
    gb->n_buckets = nb;
    for (int i = 0; i < nb; i++) gb->st.n_floats += gb->b[i].count;
    gb->st.n_buckets = nb;
    layout_requests(gb);
    comm_buckets_reset(gb);
    return gb;
}

void comm_buckets_free(GradBuckets *gb) {
    if (!gb) return;
    flip_free(gb->order);
    flip_free(gb->tensor_bucket);
    flip_free(gb->b);
    flip_free(gb->reqs);
    flip_free(gb->done_idx);
    flip_free(gb);
}

void comm_buckets_set_chunk(GradBuckets *gb, size_t max_count) {
    FLIP_CHECK(max_count >= 1, "comm_buckets_set_chunk: chunk must be >= 1");
    gb->chunk = max_count < COMM_MAX_COUNT ? max_count : COMM_MAX_COUNT;
    layout_requests(gb);
    comm_buckets_reset(gb);
}

void comm_buckets_reset(GradBuckets *gb) {
    for (int i = 0; i < gb->n_reqs; i++)
        FLIP_CHECK(gb->reqs[i] == MPI_REQUEST_NULL,
                   "comm_buckets_reset: an all-reduce is still in flight (call comm_buckets_wait first)");
    for (int i = 0; i < gb->n_buckets; i++) gb->b[i].pending = gb->b[i].total;
    gb->next_start = 0;
    gb->reported = 0;
}

/* base: where the bucket's span starts (the grad arena, or a scratch copy) */
static void start_bucket(GradBuckets *gb, int i, float *base) {
    Bucket *bk = &gb->b[i];
    size_t done = 0;
    for (int r = 0; r < bk->n_req; r++) {
        size_t c = bk->count - done < gb->chunk ? bk->count - done : gb->chunk;
        MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, base + done, (int)c, MPI_FLOAT, MPI_SUM,
                                 MPI_COMM_WORLD, &gb->reqs[bk->first_req + r]));
        done += c;
    }
}

static void start_next(GradBuckets *gb) {
    start_bucket(gb, gb->next_start, gb->grads + gb->b[gb->next_start].offset);
    gb->next_start++;
}

static void progress(GradBuckets *gb) {
    if (gb->next_start == 0) return;
    int n_active = gb->b[gb->next_start - 1].first_req + gb->b[gb->next_start - 1].n_req;
    int outcount = 0;
    MPI_CHECK(MPI_Testsome(n_active, gb->reqs, &outcount, gb->done_idx, MPI_STATUSES_IGNORE));
}

void comm_buckets_ready(void *ctx, size_t offset, size_t count) {
    GradBuckets *gb = ctx;
    size_t end = offset + count;
    gb->reported++;
    /* tensors are sorted by descending offset: find the overlapping ones */
    for (int s = 0; s < gb->n_tensors; s++) {
        const ParamTensor *t = &gb->tensors[gb->order[s]];
        size_t lo = t->offset > offset ? t->offset : offset;
        size_t hi = t->offset + t->count < end ? t->offset + t->count : end;
        if (hi <= lo) continue;
        Bucket *bk = &gb->b[gb->tensor_bucket[s]];
        FLIP_CHECK(bk->pending >= hi - lo,
                   "gradient of %s reported ready twice in one step (model backward bug)", t->name);
        bk->pending -= hi - lo;
    }
    while (gb->next_start < gb->n_buckets && gb->b[gb->next_start].pending == 0) start_next(gb);
    progress(gb);
}

void comm_buckets_wait(GradBuckets *gb) {
    double t0 = MPI_Wtime();
    while (gb->next_start < gb->n_buckets) {
        Bucket *bk = &gb->b[gb->next_start];
        if (bk->pending != 0) {
            gb->st.late_buckets++;
            if (!gb->warned) {
                gb->warned = 1;
                flip_warn("gradient bucket %d (from %s) was not reported complete by backward; "
                          "all-reducing it after backward (correct, but not overlapped)",
                          gb->next_start, gb->tensors[gb->order[bk->first_tensor]].name);
            }
        }
        start_next(gb);
    }
    MPI_CHECK(MPI_Waitall(gb->n_reqs, gb->reqs, MPI_STATUSES_IGNORE));
    double dt = MPI_Wtime() - t0;
    gb->st.wait_seconds += dt;
    gb->st.last_wait_seconds = dt;
    gb->st.steps++;
}

GradBucketStats comm_buckets_stats(const GradBuckets *gb) { return gb->st; }

void comm_buckets_span(const GradBuckets *gb, int i, size_t *offset, size_t *count) {
    FLIP_CHECK(i >= 0 && i < gb->n_buckets, "comm_buckets_span: bucket %d of %d", i, gb->n_buckets);
    *offset = gb->b[i].offset;
    *count = gb->b[i].count;
}

double comm_buckets_measure_isolated(GradBuckets *gb, int reps) {
    if (reps < 1) reps = 1;
    size_t lo = gb->b[gb->n_buckets - 1].offset;
    size_t hi = gb->b[0].offset + gb->b[0].count;
    float *scratch = flip_calloc(hi - lo, sizeof(float), "isolated all-reduce scratch");
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    double t0 = MPI_Wtime();
    for (int r = 0; r < reps; r++) {
        for (int i = 0; i < gb->n_buckets; i++) start_bucket(gb, i, scratch + (gb->b[i].offset - lo));
        MPI_CHECK(MPI_Waitall(gb->n_reqs, gb->reqs, MPI_STATUSES_IGNORE));
    }
    double dt = (MPI_Wtime() - t0) / reps;
    flip_free(scratch);
    /* every rank reports the slowest rank's time */
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    return dt;
}
