/* main_flip_eval.c — flip-eval: zero-shot classification and retrieval of a
 * flip-train checkpoint (launch/eval.c), on one or more MPI ranks.
 * usage: flip-eval --checkpoint run/checkpoints/latest --zeroshot-data SHARDS
 *                  --classnames FILE --templates FILE [--val-data SHARDS]
 * Prints one JSON line per evaluation on stdout. Exit: 0 ok, 1 error, 2 bad flags. */
#include <omp.h>
#include <stdio.h>

#include "comm.h"
#include "options.h"
#include "train.h"

int main(int argc, char **argv) {
    comm_init(&argc, &argv);
    Options o;
    options_defaults(&o);
    char err[2048];
    int rc = options_parse(&o, OPT_PROG_EVAL, argc, argv, err, sizeof err);
    /* each rank parsed argv and --config itself (a --config file missing on
     * one node fails there only): all ranks agree before anyone leaves */
    int agree[2] = {rc >= 0, rc <= 0}; /* no error anywhere, no --help anywhere */
    comm_allreduce_min_int(agree, 2);
    if (!agree[0] || !agree[1]) {
        if (comm_rank() == 0) {
            if (!agree[0])
                fprintf(stderr, "flip-eval: %s\n", rc < 0 ? err
                                : "the flags or the --config file could not be read on another rank "
                                  "(is the --config file visible on every node?)");
            else
                options_help(OPT_PROG_EVAL, "flip-eval");
        }
        comm_finalize();
        return !agree[0] ? FLIP_EXIT_USAGE : 0;
    }
    if (o.threads > 0) omp_set_num_threads(o.threads);
    int code = eval_run(&o);
    comm_finalize();
    return code;
}
