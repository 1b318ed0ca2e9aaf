/* checkpoint.h — training state on disk (DESIGN §5): one HDF5 file per save,
 *   /params/<name>, /adam_m/<name>, /adam_v/<name>   float32, tensor shapes
 *   root attributes: step, adam_step, samples_seen, data_cursor, seed,
 *   world_size, global_batch, config (text), model_* (every FlipConfig field),
 *   format = "flip-checkpoint", version = 1.
 * Readable from Python with h5py (no filters). Written by rank 0 only to
 * "<path>.tmp", fsynced, renamed; the run folder's `latest` symlink is then
 * replaced atomically (symlink to a temporary name + rename), and all but the
 * newest K checkpoints are deleted.
 *
 * Errors a user can cause (missing file, not a checkpoint, model mismatch)
 * return -1 with one line in err naming the file and the problem; failures
 * while writing (disk full) are fatal.
 */
#ifndef FLIP_CHECKPOINT_H
#define FLIP_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct {
    long step;          /* steps done (the next step is `step`, 0-based) */
    long adam_step;     /* optimizer updates applied (skipped steps excluded) */
    long samples_seen;
    long data_cursor;   /* loader step of the next batch */
    long total_steps;   /* schedule length (fixed at calibration for --max-minutes runs) */
    uint64_t seed;
    int world_size;     /* ranks that wrote it (bit-exact resume needs the same) */
    int global_batch;
    int bad_in_row;     /* non-finite steps in a row at save time */
    char config[16384]; /* resolved run configuration (options_format) */
} CheckpointState;

/* Writes m's params and AdamW moments and st to path (via path.tmp). */
void checkpoint_save(const char *path, const FlipModel *m, const CheckpointState *st);
/* Reads only the model config and state (to build the model of flip-eval, or
 * to check a resume before allocating). */
int checkpoint_read_info(const char *path, FlipConfig *cfg, CheckpointState *st, char *err,
                         size_t err_bytes);
/* Loads params (and, if with_adam, the moments) into m, whose config must
 * equal the checkpoint's (else one line naming the first differing field). */
int checkpoint_load(const char *path, FlipModel *m, int with_adam, CheckpointState *st, char *err,
                    size_t err_bytes);
/* "<dir>/step-<8 digits>.h5" */
void checkpoint_path(char *out, size_t out_bytes, const char *dir, long step);
/* Points <dir>/latest at file_name (a name inside dir), atomically. */
void checkpoint_set_latest(const char *dir, const char *file_name);
/* Resolves --resume: "latest" -> the target of <dir>/latest; else the path.
 * -1 + err if "latest" does not exist. */
int checkpoint_resolve(const char *resume, const char *dir, char *out, size_t out_bytes, char *err,
                       size_t err_bytes);
/* Deletes step-*.h5 in dir after the step `latest` points to (an abandoned
 * future), then all but the newest `keep` up to it; never `latest`'s file. */
void checkpoint_prune(const char *dir, int keep);
/* First differing FlipConfig field as one line into msg ("width 192 != 256"),
 * or NULL when equal. */
const char *checkpoint_config_diff(const FlipConfig *a, const FlipConfig *b, char *msg, size_t msg_bytes);

#endif
