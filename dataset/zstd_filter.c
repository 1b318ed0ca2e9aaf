/* zstd_filter.c — the Zstandard HDF5 filter 32015 (see zstd_filter.h).
 * Buffers handed to and returned from the filter belong to HDF5: they are
 * allocated and freed with H5allocate_memory / H5free_memory. */
#include "zstd_filter.h"

#include <zstd.h>

static size_t decompress_streaming(const void *src, size_t n_src, void **out, size_t *out_cap) {
    ZSTD_DStream *ds = ZSTD_createDStream();
    if (!ds) return 0;
    size_t cap = n_src * 4 + 4096, done = 0;
    char *dst = H5allocate_memory(cap, 0);
    ZSTD_inBuffer in = {src, n_src, 0};
    size_t ret = 1;
    while (dst) {
        ZSTD_outBuffer ob = {dst, cap, done};
        ret = ZSTD_decompressStream(ds, &ob, &in);
        done = ob.pos;
        if (ZSTD_isError(ret)) break;
        if (ret == 0 && in.pos == in.size) break;           /* frame(s) complete */
        if (in.pos == in.size && ob.pos < ob.size) { ret = 1; break; } /* truncated */
        if (ob.pos == ob.size) {
            if (cap >= ZSTD_FILTER_MAX_BYTES) { ret = 1; break; }
            size_t ncap = cap * 2 > ZSTD_FILTER_MAX_BYTES ? ZSTD_FILTER_MAX_BYTES : cap * 2;
            char *nd = H5resize_memory(dst, ncap);
            if (!nd) break;
            dst = nd;
            cap = ncap;
        }
    }
    ZSTD_freeDStream(ds);
    if (!dst) return 0;
    if (ZSTD_isError(ret) || ret != 0 || done == 0) {
        H5free_memory(dst);
        return 0;
    }
    *out = dst;
    *out_cap = cap;
    return done;
}

size_t zstd_filter_apply(unsigned flags, size_t cd_nelmts, const unsigned cd_values[], size_t nbytes,
                         size_t *buf_size, void **buf) {
    if (flags & H5Z_FLAG_REVERSE) {
        unsigned long long n_out = ZSTD_getFrameContentSize(*buf, nbytes);
        if (n_out == ZSTD_CONTENTSIZE_ERROR) return 0;
        size_t first = ZSTD_findFrameCompressedSize(*buf, nbytes);
        if (ZSTD_isError(first)) return 0;
        /* unknown size or several frames: stream into a growing buffer */
        if (n_out == ZSTD_CONTENTSIZE_UNKNOWN || first < nbytes) {
            void *out = NULL;
            size_t cap = 0, n = decompress_streaming(*buf, nbytes, &out, &cap);
            if (n == 0) return 0;
            H5free_memory(*buf);
            *buf = out;
            *buf_size = cap;
            return n;
        }
        if (n_out == 0 || n_out > ZSTD_FILTER_MAX_BYTES) return 0;
        void *out = H5allocate_memory((size_t)n_out, 0);
        if (!out) return 0;
        size_t got = ZSTD_decompress(out, (size_t)n_out, *buf, nbytes);
        if (ZSTD_isError(got) || got != n_out) {
            H5free_memory(out);
            return 0;
        }
        H5free_memory(*buf);
        *buf = out;
        *buf_size = (size_t)n_out;
        return got;
    }
    int level = cd_nelmts > 0 ? (int)cd_values[0] : 3;
    if (level < 1) level = 1;
    if (level > ZSTD_maxCLevel()) level = ZSTD_maxCLevel();
    size_t cap = ZSTD_compressBound(nbytes);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    void *out = cctx ? H5allocate_memory(cap, 0) : NULL;
    if (!out) {
        ZSTD_freeCCtx(cctx);
        return 0;
    }
    /* a content checksum makes silent corruption of a chunk a read error */
    size_t got = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(got)) got = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    if (!ZSTD_isError(got)) got = ZSTD_compress2(cctx, out, cap, *buf, nbytes);
    ZSTD_freeCCtx(cctx);
    if (ZSTD_isError(got)) {
        H5free_memory(out);
        return 0;
    }
    H5free_memory(*buf);
    *buf = out;
    *buf_size = cap;
    return got;
}

const H5Z_class2_t zstd_filter_class = {
    H5Z_CLASS_T_VERS,
    (H5Z_filter_t)ZSTD_FILTER_ID,
    1, /* encoder present */
    1, /* decoder present */
    "zstd (flip, 32015)",
    NULL, /* can_apply */
    NULL, /* set_local */
    zstd_filter_apply,
};

int zstd_filter_register(void) {
    htri_t avail = H5Zfilter_avail(ZSTD_FILTER_ID);
    if (avail > 0) return 0;
    return H5Zregister(&zstd_filter_class) < 0 ? -1 : 0;
}
