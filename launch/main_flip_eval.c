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
    if (rc != 0) {
        if (comm_rank() == 0) {
            if (rc > 0) options_help(OPT_PROG_EVAL, "flip-eval");
            else fprintf(stderr, "flip-eval: %s\n", err);
        }
        comm_finalize();
        return rc > 0 ? 0 : FLIP_EXIT_USAGE;
    }
    if (o.threads > 0) omp_set_num_threads(o.threads);
    int code = eval_run(&o);
    comm_finalize();
    return code;
}
