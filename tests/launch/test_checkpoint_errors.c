/* test_checkpoint_errors.c — checkpoint_save into a folder that does not exist
 * (first HDF5 call of the process): the failure is our one line naming the
 * file and the --logs folder, exit 1, and no HDF5 error stack ("HDF5-DIAG")
 * on stderr. Runs in a forked child. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkpoint.h"
#include "common.h"
#include "model.h"
#include "testlib.h"

int main(void) {
    int pfd[2];
    FLIP_CHECK(pipe(pfd) == 0, "pipe failed");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    FLIP_CHECK(pid >= 0, "fork failed");
    if (pid == 0) {
        close(pfd[0]);
        dup2(pfd[1], 2);
        FlipConfig cfg;
        if (flip_config_preset(&cfg, "tiny") != 0) _exit(3);
        FlipModel m;
        flip_model_init(&m, &cfg, 1);
        CheckpointState st;
        memset(&st, 0, sizeof st);
        st.world_size = 1;
        st.global_batch = 4;
        checkpoint_save("/nonexistent-flip-folder/step-00000001.h5", &m, &st);
        _exit(0); /* reached only if the save succeeded */
    }
    close(pfd[1]);
    char out[65536];
    size_t n = 0;
    ssize_t r;
    while (n + 1 < sizeof out && (r = read(pfd[0], out + n, sizeof out - 1 - n)) > 0) n += (size_t)r;
    out[n] = '\0';
    close(pfd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += out[i] == '\n';
    test_report(code == 1, "failed save exits 1 (got %d)", code);
    test_report(strstr(out, "cannot create checkpoint /nonexistent-flip-folder/step-00000001.h5.tmp") != NULL,
                "the line names the file: %s", out);
    test_report(strstr(out, "HDF5-DIAG") == NULL && lines == 1, "no HDF5 error stack (%d lines on stderr)", lines);
    return test_finish();
}
