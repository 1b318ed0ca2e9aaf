/* metrics.h — training metrics (DESIGN §5): the per-rank matmul peak for MFU,
 * the human progress line on stderr and one JSON object per logged step in
 * <run>/metrics.jsonl. Only rank 0 writes. */
#ifndef FLIP_METRICS_H
#define FLIP_METRICS_H

#include <stdio.h>

typedef struct {
    long step, total_steps;  /* step is 1-based here: steps done */
    long samples;            /* samples seen */
    double loss, lr, logit_scale, grad_norm;
    double images_per_s;     /* global, over the logging window */
    double mfu;              /* achieved / peak FLOP/s, all ranks */
    double eta_s;
    double mask_ratio;
    double comm_wait_s;      /* mean per step blocked in the gradient all-reduce */
    long skipped;            /* non-finite steps skipped so far */
} MetricsRow;

typedef struct {
    FILE *jsonl;             /* NULL on ranks other than 0 */
} Metrics;

/* Measures sgemm GFLOP/s of this process with oneDNN (linear_forward,
 * 2048^3) for about `seconds` (the best of 4 windows); every rank measures at
 * once, so the result is the per-rank peak under the same core sharing as
 * training. On a machine shared with other jobs MFU can still exceed 100 %
 * when their load drops after the measurement: pass --peak-gflops. */
double metrics_peak_gflops(double seconds);
/* Opens <run_dir>/metrics.jsonl for appending (rank 0; others get NULL). */
void metrics_open(Metrics *mt, const char *run_dir, int rank);
void metrics_close(Metrics *mt);
/* On resume (rank 0, before metrics_open): removes the lines of
 * <run_dir>/metrics.jsonl whose step is after `step` (they are trained again),
 * rewriting the file through a tmp file and rename. No file: nothing to do. */
void metrics_drop_after(const char *run_dir, long step);
void metrics_log_step(Metrics *mt, const MetricsRow *r);
/* Evaluation results as a JSON line {"step":..,"eval":"zeroshot",...} and a
 * human line. `fields` is a preformatted `"k":v,...` list. */
void metrics_log_eval(Metrics *mt, long step, const char *kind, const char *fields, const char *human);

#endif
