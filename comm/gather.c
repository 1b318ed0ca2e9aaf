/* gather.c — the collectives of the exact global InfoNCE loss (DESIGN §3,
 * docs/distributed.md): all-gather of the normalised embeddings u, v (B, D) to
 * (G, D), and the adjoint, a reduce-scatter that sums the gradient w.r.t. the
 * gathered matrices back to the owners of the rows. <y, AG x> = <RS y, x>. */
#include <limits.h>
#include <string.h>

#include "comm.h"
#include "comm_mpi.h"

static float *g_scratch = NULL; /* (B, D) reduce-scatter result, grown once */
static size_t g_scratch_count = 0;

void comm_scratch_free(void) {
    flip_free(g_scratch);
    g_scratch = NULL;
    g_scratch_count = 0;
}

static int rows_count(int B, int D, const char *what) {
    FLIP_CHECK(B >= 0 && D >= 0, "%s: negative shape (%d, %d)", what, B, D);
    size_t n = (size_t)B * (size_t)D;
    FLIP_CHECK(n <= COMM_MAX_COUNT, "%s: B*D = %zu exceeds one MPI message (INT_MAX floats)", what, n);
    return (int)n;
}

void comm_allgather_rows(float *out, const float *in, int B, int D) {
    int n = rows_count(B, D, "comm_allgather_rows");
    MPI_CHECK(MPI_Allgather(in, n, MPI_FLOAT, out, n, MPI_FLOAT, MPI_COMM_WORLD));
}

void comm_reduce_scatter_rows(float *out, const float *in, int B, int D) {
    int n = rows_count(B, D, "comm_reduce_scatter_rows");
    if ((size_t)n > g_scratch_count) {
        /* first step (or a larger plan): setup-time allocation, reused after */
        flip_free(g_scratch);
        g_scratch = flip_malloc((size_t)n * sizeof(float), "reduce-scatter scratch");
        g_scratch_count = (size_t)n;
    }
    MPI_CHECK(MPI_Reduce_scatter_block(in, g_scratch, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
    for (int i = 0; i < n; i++) out[i] += g_scratch[i];
}
