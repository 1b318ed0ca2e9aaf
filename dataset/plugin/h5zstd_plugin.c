/* h5zstd_plugin.c — the Zstandard filter 32015 as a dynamically loaded HDF5
 * plugin (libh5zstd.so in <build>/plugins): with HDF5_PLUGIN_PATH pointing
 * there, h5dump, h5py and any HDF5 program read flip shards. The filter code is
 * dataset/zstd_filter.c, compiled into this module (the build compiles only
 * this file), so in-process and plugin filters are the same code. */
#include <H5PLextern.h>

#include "zstd_filter.c"

H5PL_type_t H5PLget_plugin_type(void) { return H5PL_TYPE_FILTER; }
const void *H5PLget_plugin_info(void) { return &zstd_filter_class; }
