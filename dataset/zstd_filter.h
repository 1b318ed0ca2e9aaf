/* zstd_filter.h — the registered Zstandard HDF5 filter (id 32015).
 *
 * Format: each filtered chunk is one or more plain zstd frames (ZSTD_compress
 * output) holding the chunk's bytes; cd_values[0] is the compression level
 * (default 3, clamped to zstd's range). Frames we write carry zstd's content
 * checksum (standard zstd, decoded by every implementation), so a flipped byte
 * in a stored chunk is a read error instead of silently wrong data. This is the format of the filter
 * registered with The HDF Group as 32015 and implemented by hdf5plugin and
 * HDF's hdf5_plugins, so h5py + hdf5plugin read our shards and we read theirs.
 *
 * The same code serves in-process (zstd_filter_register, used by shard.c) and
 * as the dynamically loaded plugin dataset/plugin/h5zstd_plugin.c (h5dump,
 * h5py via HDF5_PLUGIN_PATH). This file therefore depends on HDF5 and zstd
 * only, not on flip's core: allocation failures and corrupt input make the
 * filter return 0, which HDF5 reports as a read error (never a crash).
 */
#ifndef FLIP_ZSTD_FILTER_H
#define FLIP_ZSTD_FILTER_H

#include <stddef.h>

#include <hdf5.h>

#define ZSTD_FILTER_ID 32015
/* Largest decompressed chunk the filter accepts (corrupt frames may claim any
 * size; the largest legal flip chunk is 4096*4096*3 = 48 MiB). */
#define ZSTD_FILTER_MAX_BYTES ((size_t)1 << 30)

/* The H5Z_func_t callback. */
size_t zstd_filter_apply(unsigned flags, size_t cd_nelmts, const unsigned cd_values[], size_t nbytes,
                         size_t *buf_size, void **buf);
extern const H5Z_class2_t zstd_filter_class;

/* Registers the filter in this process unless HDF5 already has one for 32015
 * (a plugin loaded from HDF5_PLUGIN_PATH has the same format). 0 on success,
 * negative on failure. Idempotent. */
int zstd_filter_register(void);

#endif
