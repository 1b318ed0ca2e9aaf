/* fuzz_shard.c — libFuzzer target for the shard validator: arbitrary bytes are
 * opened as an in-memory HDF5 file (core driver + H5Pset_file_image) and run
 * through shard_validate_image (all attribute/dataset checks, then reading the
 * first samples' text and images). Any crash, sanitizer report or exit() is a
 * bug. Build and run with tests/dataset/fuzz_shard.sh (bounded time). */
#include <stddef.h>
#include <stdint.h>

#include <hdf5.h>

#include "shard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int quiet = 0;
    if (!quiet) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        /* no HDF5 free lists: freed blocks go back to malloc at once, so ASan
         * sees use-after-free and crashes do not depend on earlier inputs */
        H5set_free_list_limits(0, 0, 0, 0, 0, 0);
        quiet = 1;
    }
    char err[1024];
    (void)shard_validate_image(data, size, err, sizeof err);
    return 0;
}
