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
    /* each rank parsed argv and --config itself (a --config file missing on
     * one node fails there only): all ranks agree before anyone leaves */
    int agree[2] = {rc >= 0, rc <= 0}; /* no error anywhere, no --help anywhere */
    comm_allreduce_min_int(agree, 2);
    if (!agree[0] || !agree[1]) {
        if (comm_rank() == 0) {
            if (!agree[0])
                fprintf(stderr, "flip-train: %s\n", rc < 0 ? err
                                : "the flags or the --config file could not be read on another rank "
                                  "(is the --config file visible on every node?)");
            else
                options_help(OPT_PROG_TRAIN, "flip-train");
        }
        comm_finalize();
        return !agree[0] ? FLIP_EXIT_USAGE : 0;
    }
    if (o.threads > 0) omp_set_num_threads(o.threads);
    int code = train_run(&o);
    comm_finalize();
    return code;
}
