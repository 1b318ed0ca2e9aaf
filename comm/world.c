/* world.c — MPI world setup and teardown, rank queries, abort (DESIGN §3
 * "Failures"). MPI_THREAD_FUNNELED: only the main thread calls MPI (the
 * loader's prefetch thread never does). */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"
#include "comm_mpi.h"

static int g_rank = 0, g_size = 1, g_local_rank = 0, g_local_size = 1;
static int g_up = 0;
static pthread_t g_main_thread;

_Noreturn void comm_mpi_fatal(const char *file, int line, const char *call, int err) {
    char msg[MPI_MAX_ERROR_STRING + 1];
    int len = 0;
    if (MPI_Error_string(err, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "error %d", err);
    msg[len < 0 ? 0 : (len > MPI_MAX_ERROR_STRING ? MPI_MAX_ERROR_STRING : len)] = '\0';
    flip_fatal(file, line, "%s failed: %s", call, msg);
}

/* flip_fatal's hook. MPI_THREAD_FUNNELED allows MPI calls from the main
 * thread only, so a fatal error on another thread (the loader's prefetch
 * thread) ends this process without MPI; mpirun then sees a rank exit without
 * MPI_Finalize and kills the job, as for a crashed rank. */
static void abort_hook(int code) {
    fflush(stdout);
    fflush(stderr);
    if (pthread_equal(pthread_self(), g_main_thread)) MPI_Abort(MPI_COMM_WORLD, code);
    /* MPI_Abort does not return; if it ever did, do not continue */
    _exit(code ? code : 1);
}

void comm_init(int *argc, char ***argv) {
    int provided = 0;
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) FLIP_FATAL("MPI_Init_thread failed (error %d): is the MPI runtime installed?", rc);
    g_up = 1;
    g_main_thread = pthread_self();
    MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &g_rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &g_size));
    flip_set_rank(g_rank);
    flip_set_abort_hook(abort_hook);
    if (provided < MPI_THREAD_FUNNELED)
        FLIP_FATAL("MPI provides thread level %d, flip needs MPI_THREAD_FUNNELED", provided);
    MPI_Comm node;
    MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node));
    MPI_CHECK(MPI_Comm_rank(node, &g_local_rank));
    MPI_CHECK(MPI_Comm_size(node, &g_local_size));
    MPI_CHECK(MPI_Comm_free(&node));
}

void comm_finalize(void) {
    if (!g_up) return;
    comm_scratch_free();
    flip_set_abort_hook(NULL);
    MPI_CHECK(MPI_Finalize());
    g_up = 0;
}

int comm_rank(void) { return g_rank; }
int comm_size(void) { return g_size; }
int comm_local_rank(void) { return g_local_rank; }
int comm_local_size(void) { return g_local_size; }

void comm_barrier(void) { MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD)); }

_Noreturn void comm_abort(int code) {
    abort_hook(code);
    _exit(code);
}

double comm_wtime(void) { return MPI_Wtime(); }
