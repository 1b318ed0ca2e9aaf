/* main_flip_train.c — flip-train: FLIP pre-training over MPI (launch/train.c).
 * usage: mpirun -np R flip-train --train-data SHARDS --batch-size B --epochs E ...
 * Exit codes: 0 done (or checkpointed on SIGTERM/SIGUSR1), 1 error, 2 bad flags. */
#include <omp.h>
#include <stdio.h>

#include "comm.h"
#include "options.h"
#include "train.h"

int main(int argc, char **argv) {
    comm_init(&argc, &argv);
    train_install_signals();
    Options o;
    options_defaults(&o);
    char err[2048];
    int rc = options_parse(&o, OPT_PROG_TRAIN, argc, argv, err, sizeof err);
    if (rc != 0) {
        /* every rank parsed the same argv, so every rank is here */
        if (comm_rank() == 0) {
            if (rc > 0) options_help(OPT_PROG_TRAIN, "flip-train");
            else fprintf(stderr, "flip-train: %s\n", err);
        }
        comm_finalize();
        return rc > 0 ? 0 : FLIP_EXIT_USAGE;
    }
    if (o.threads > 0) omp_set_num_threads(o.threads);
    int code = train_run(&o);
    comm_finalize();
    return code;
}
