/* comm_mpi.h — private to comm/: mpi.h and the MPI_CHECK idiom. */
#ifndef FLIP_COMM_MPI_H
#define FLIP_COMM_MPI_H

#include <mpi.h>

#include "common.h"

/* Fatal with the MPI error string; MPI_COMM_WORLD runs with MPI_ERRORS_RETURN
 * so this is reached instead of MPI's default abort. */
_Noreturn void comm_mpi_fatal(const char *file, int line, const char *call, int err);
#define MPI_CHECK(call) \
    do { int mpi_err_ = (call); \
         if (mpi_err_ != MPI_SUCCESS) comm_mpi_fatal(__FILE__, __LINE__, #call, mpi_err_); } while (0)

/* The largest count one MPI call takes. */
#define COMM_MAX_COUNT ((size_t)INT_MAX)

/* Scratch owned by comm (gather.c), released by comm_finalize. */
void comm_scratch_free(void);

#endif
