/* test_loader_allbad.c — a dataset where no sample is readable, with skip_bad:
 * the prefetch thread must not die in FLIP_CHECK (its abort hook would run
 * MPI_Abort off the main thread); it marks the batch failed and loader_next,
 * on the main thread, reports "no readable sample" through FLIP_FATAL. The
 * loader runs in a forked child whose abort hook exits 42 on the main thread
 * and 43 on any other thread. */
#include <hdf5.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset/shard_fixture.h"
#include "loader.h"
#include "testlib.h"

enum { H = 8, W = 8, C = 3, T = 6, V = 300, N = 24 };

static pthread_t g_main;

static void hook(int code) {
    (void)code;
    fflush(stderr);
    _exit(pthread_equal(pthread_self(), g_main) ? 42 : 43);
}

/* every caption length set to 0 (outside [1, T]): no sample can be read */
static void zero_lengths(const char *path) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = f >= 0 ? H5Dopen2(f, "lengths", H5P_DEFAULT) : -1;
    uint8_t v[N];
    memset(v, 0, sizeof v);
    int ok = d >= 0 && H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0;
    if (d >= 0) H5Dclose(d);
    if (f >= 0) H5Fclose(f);
    test_report(ok, "fixture: all %d lengths set to 0", N);
}

/* the forked child: open the all-bad shard with skip_bad and ask for a batch */
static void read_one_batch(void *arg) {
    g_main = pthread_self();
    flip_set_abort_hook(hook);
    LoaderConfig cfg = {.spec = arg, .batch_size = 4, .world = 1, .seed = 1, .skip_bad = 1, .prefetch = 2};
    char err[1200];
    Loader *l = loader_open(&cfg, err, sizeof err);
    if (!l) {
        fprintf(stderr, "loader_open: %s\n", err);
        _exit(3);
    }
    loader_next(l);
    /* reached only if a batch was produced: exit 0 */
}

int main(void) {
    char dir[] = "/tmp/flip_allbad_XXXXXX", path[128];
    if (!mkdtemp(dir)) FLIP_FATAL("mkdtemp failed");
    snprintf(path, sizeof path, "%s/bad.h5", dir);
    ShardMeta m = fixture_meta(H, W, C, T, V);
    fixture_write(path, &m, 0, N, 0, 0);
    zero_lengths(path);

    char out[8192];
    int code = test_run_child(read_one_batch, path, out, sizeof out);
    test_report(code == 42, "the fatal error is raised on the main thread (child exit %d: 42 main thread, 43 "
                            "prefetch thread, 0 no error, 3 open failed)", code);
    test_report(strstr(out, "no readable sample in the whole dataset") != NULL && strstr(out, "bad.h5") != NULL,
                "one line names the failure and the shard: %s", out);
    unlink(path);
    rmdir(dir);
    return test_finish();
}
