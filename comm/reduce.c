/* reduce.c — small blocking reductions and broadcast (loss sums, agreement
 * flags for signals and non-finite steps, checkpoint broadcast). */
#include <limits.h>

#include "comm.h"
#include "comm_mpi.h"

void comm_allreduce_sum_f32(float *x, size_t n) {
    for (size_t done = 0; done < n;) {
        size_t c = n - done < COMM_MAX_COUNT ? n - done : COMM_MAX_COUNT;
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, x + done, (int)c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
        done += c;
    }
}

void comm_allreduce_sum_f64(double *x, int n) {
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
}

void comm_allreduce_max_int(int *x, int n) {
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
}

void comm_allreduce_min_int(int *x, int n) {
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
}

void comm_bcast(void *buf, size_t n_bytes, int root) {
    char *p = buf;
    for (size_t done = 0; done < n_bytes;) {
        size_t c = n_bytes - done < COMM_MAX_COUNT ? n_bytes - done : COMM_MAX_COUNT;
        MPI_CHECK(MPI_Bcast(p + done, (int)c, MPI_BYTE, root, MPI_COMM_WORLD));
        done += c;
    }
}
