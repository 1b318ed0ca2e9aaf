/* test_checkpoint_errors.c — checkpoint_save into a folder that does not exist
 * (first HDF5 call of the process): the failure is our one line naming the
 * file and the --logs folder, exit 1, and no HDF5 error stack ("HDF5-DIAG")
 * on stderr. Runs in a forked child. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "common.h"
#include "model.h"
#include "testlib.h"

/* the forked child: save a checkpoint where it cannot be created */
static void save_into_missing_folder(void *arg) {
    (void)arg;
    FlipConfig cfg;
    if (flip_config_preset(&cfg, "tiny") != 0) _exit(3);
    FlipModel m;
    flip_model_init(&m, &cfg, 1);
    CheckpointState st;
    memset(&st, 0, sizeof st);
    st.world_size = 1;
    st.global_batch = 4;
    checkpoint_save("/nonexistent-flip-folder/step-00000001.h5", &m, &st);
    /* reached only if the save succeeded: exit 0 */
}

int main(void) {
    char out[65536];
    int code = test_run_child(save_into_missing_folder, NULL, out, sizeof out);
    size_t n = strlen(out);
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += out[i] == '\n';
    test_report(code == 1, "failed save exits 1 (got %d)", code);
    test_report(strstr(out, "cannot create checkpoint /nonexistent-flip-folder/step-00000001.h5.tmp") != NULL,
                "the line names the file: %s", out);
    test_report(strstr(out, "HDF5-DIAG") == NULL && lines == 1, "no HDF5 error stack (%d lines on stderr)", lines);
    return test_finish();
}
