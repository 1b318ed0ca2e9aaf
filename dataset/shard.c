/* shard.c — flip shard format v1: writer, validating reader (see shard.h).
 *
 * Writer: /images chunks are compressed here (one zstd frame per image with
 * content size and checksum, the 32015 filter's format) and stored with H5Dwrite_chunk; the row datasets
 * (/tokens, /lengths, /labels, /captions) are buffered SHARD_ROWS_PER_CHUNK rows
 * at a time and written through HDF5 (the in-process filter compresses them).
 * All datasets are extendible along n; the file is "<path>.tmp" until
 * shard_writer_close fsyncs it and renames it to path.
 *
 * Reader: shard_open checks attributes and dataset headers only (no sample
 * data), so a bad shard costs nothing to reject. Images are read as raw chunks
 * (H5Dread_chunk) and decompressed with zstd into a buffer of exactly H*W*C
 * bytes, so a corrupt or hostile chunk can neither overflow nor make us
 * allocate more than ZSTD_compressBound(H*W*C).
 *
 * Locking: g_h5 serializes every HDF5 call of this file (Debian's HDF5 is built
 * thread-safe, but the design does not rely on it). While locked, HDF5's
 * automatic error printing is off: errors become our one-line messages.
 */
#include "shard.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>
#include <zstd.h>

#include "common.h"
#include "zstd_filter.h"

/* ------------------------------------------------------------------ locking */

static pthread_mutex_t g_h5 = PTHREAD_MUTEX_INITIALIZER;
static int g_filter_registered = 0;

typedef struct {
    H5E_auto2_t func;
    void *data;
} H5Quiet;

static H5Quiet h5_lock(void) {
    H5Quiet q;
    FLIP_CHECK(pthread_mutex_lock(&g_h5) == 0, "shard: pthread_mutex_lock failed");
    H5Eget_auto2(H5E_DEFAULT, &q.func, &q.data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (!g_filter_registered) {
        FLIP_CHECK(zstd_filter_register() == 0, "shard: cannot register the zstd HDF5 filter (id %d)",
                   ZSTD_FILTER_ID);
        g_filter_registered = 1;
    }
    return q;
}

static void h5_unlock(H5Quiet q) {
    H5Eset_auto2(H5E_DEFAULT, q.func, q.data);
    pthread_mutex_unlock(&g_h5);
}

static void seterr(char *err, size_t err_bytes, const char *fmt, ...) FLIP_PRINTF(3, 4);
static void seterr(char *err, size_t err_bytes, const char *fmt, ...) {
    if (!err || err_bytes == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_bytes, fmt, ap);
    va_end(ap);
    /* one line, always */
    for (char *p = err; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

/* ------------------------------------------------------------------- writer */

struct ShardWriter {
    char path[1024], tmp[1040];
    ShardMeta meta;
    int level, with_captions, with_labels, tokens_u16;
    hid_t file, d_images, d_tokens, d_lengths, d_captions, d_labels;
    long n;          /* samples added */
    long img_extent; /* current extent of /images along n */
    size_t image_bytes;
    ZSTD_CCtx *cctx;
    void *cbuf;      /* (ZSTD_compressBound(image_bytes)) */
    size_t cbuf_bytes;
    /* rows buffered for the row datasets: [row0, row0 + n_rows) */
    long row0;
    int n_rows;
    int32_t *tok;    /* (ROWS, T) */
    uint8_t *len;    /* (ROWS) */
    int32_t *lab;    /* (ROWS) */
    char **cap;      /* (ROWS) owned copies */
};

#define H5W(call, w, what) \
    FLIP_CHECK((call) >= 0, "shard writer: %s failed for '%s' (disk full or not writable?)", what, (w)->tmp)

static hid_t create_dataset(ShardWriter *w, const char *name, hid_t ftype, int rank, const hsize_t *chunk,
                            int zstd) {
    hsize_t dims[4] = {0, 0, 0, 0}, maxdims[4];
    for (int d = 0; d < rank; d++) {
        dims[d] = d == 0 ? 0 : chunk[d];
        maxdims[d] = d == 0 ? H5S_UNLIMITED : chunk[d];
    }
    hid_t space = H5Screate_simple(rank, dims, maxdims);
    H5W(space, w, "H5Screate_simple");
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5W(dcpl, w, "H5Pcreate");
    H5W(H5Pset_chunk(dcpl, rank, chunk), w, "H5Pset_chunk");
    if (zstd) {
        unsigned cd[1] = {(unsigned)w->level};
        H5W(H5Pset_filter(dcpl, ZSTD_FILTER_ID, H5Z_FLAG_MANDATORY, 1, cd), w, "H5Pset_filter(zstd)");
    }
    hid_t d = H5Dcreate2(w->file, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    FLIP_CHECK(d >= 0, "shard writer: cannot create dataset %s in '%s'", name, w->tmp);
    H5W(H5Pclose(dcpl), w, "H5Pclose");
    H5W(H5Sclose(space), w, "H5Sclose");
    return d;
}

static void write_attr_int(ShardWriter *w, const char *name, hid_t ftype, int64_t v) {
    hid_t space = H5Screate(H5S_SCALAR);
    H5W(space, w, "H5Screate");
    hid_t a;
    if (H5Aexists(w->file, name) > 0)
        a = H5Aopen(w->file, name, H5P_DEFAULT);
    else
        a = H5Acreate2(w->file, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    FLIP_CHECK(a >= 0, "shard writer: cannot create attribute %s in '%s'", name, w->tmp);
    H5W(H5Awrite(a, H5T_NATIVE_INT64, &v), w, "H5Awrite");
    H5W(H5Aclose(a), w, "H5Aclose");
    H5W(H5Sclose(space), w, "H5Sclose");
}

static void write_attr_str(ShardWriter *w, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5W(t, w, "H5Tcopy");
    size_t len = strlen(v);
    H5W(H5Tset_size(t, len + 1), w, "H5Tset_size");
    H5W(H5Tset_strpad(t, H5T_STR_NULLTERM), w, "H5Tset_strpad");
    H5W(H5Tset_cset(t, H5T_CSET_UTF8), w, "H5Tset_cset");
    hid_t space = H5Screate(H5S_SCALAR);
    H5W(space, w, "H5Screate");
    hid_t a = H5Acreate2(w->file, name, t, space, H5P_DEFAULT, H5P_DEFAULT);
    FLIP_CHECK(a >= 0, "shard writer: cannot create attribute %s in '%s'", name, w->tmp);
    H5W(H5Awrite(a, t, v), w, "H5Awrite");
    H5W(H5Aclose(a), w, "H5Aclose");
    H5W(H5Sclose(space), w, "H5Sclose");
    H5W(H5Tclose(t), w, "H5Tclose");
}

static void write_attr_floats(ShardWriter *w, const char *name, const float *v, int count) {
    hsize_t dims[1] = {(hsize_t)count};
    hid_t space = H5Screate_simple(1, dims, NULL);
    H5W(space, w, "H5Screate_simple");
    hid_t a = H5Acreate2(w->file, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT);
    FLIP_CHECK(a >= 0, "shard writer: cannot create attribute %s in '%s'", name, w->tmp);
    H5W(H5Awrite(a, H5T_NATIVE_FLOAT, v), w, "H5Awrite");
    H5W(H5Aclose(a), w, "H5Aclose");
    H5W(H5Sclose(space), w, "H5Sclose");
}

static int is_hex64(const char *s) {
    for (int i = 0; i < 64; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return 0;
    }
    return s[64] == '\0';
}

ShardWriter *shard_writer_open(const char *path, const ShardMeta *meta, int zstd_level, int with_captions,
                               int with_labels) {
    FLIP_CHECK(path && meta, "shard_writer_open: NULL path or meta");
    FLIP_CHECK(strlen(path) < 1000, "shard writer: path too long: '%.100s...'", path);
    const ShardMeta *m = meta;
    FLIP_CHECK(m->H >= 1 && m->H <= SHARD_MAX_HW && m->W >= 1 && m->W <= SHARD_MAX_HW,
               "shard writer '%s': image size %dx%d outside [1, %d]", path, m->H, m->W, SHARD_MAX_HW);
    FLIP_CHECK(m->C == 1 || m->C == 3, "shard writer '%s': channels %d must be 1 or 3", path, m->C);
    FLIP_CHECK(m->T >= 1 && m->T <= SHARD_MAX_T, "shard writer '%s': context T=%d outside [1, %d]", path,
               m->T, SHARD_MAX_T);
    FLIP_CHECK(m->vocab_size >= 1 && m->vocab_size <= SHARD_MAX_VOCAB,
               "shard writer '%s': vocab_size %d outside [1, %d]", path, m->vocab_size, SHARD_MAX_VOCAB);
    FLIP_CHECK(is_hex64(m->vocab_sha256), "shard writer '%s': vocab_sha256 must be 64 hex characters",
               path);
    for (int c = 0; c < m->C; c++)
        FLIP_CHECK(isfinite(m->mean[c]) && isfinite(m->std[c]) && m->std[c] > 0,
                   "shard writer '%s': mean/std of channel %d must be finite with std > 0", path, c);
    if (zstd_level <= 0) zstd_level = SHARD_ZSTD_LEVEL_DEFAULT;
    FLIP_CHECK(zstd_level <= ZSTD_maxCLevel(), "shard writer '%s': zstd level %d above %d", path, zstd_level,
               ZSTD_maxCLevel());

    ShardWriter *w = flip_calloc(1, sizeof *w, "ShardWriter");
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path);
    w->meta = *meta;
    w->meta.n = 0;
    w->level = zstd_level;
    w->with_captions = with_captions != 0;
    w->with_labels = with_labels != 0;
    w->tokens_u16 = m->vocab_size <= 65535;
    w->image_bytes = (size_t)m->H * m->W * m->C;
    w->cctx = ZSTD_createCCtx();
    FLIP_CHECK(w->cctx, "shard writer: ZSTD_createCCtx failed");
    FLIP_CHECK(!ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, w->level)),
               "shard writer: bad zstd level %d", w->level);
    FLIP_CHECK(!ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_contentSizeFlag, 1)) &&
                   !ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1)),
               "shard writer: zstd parameter");
    w->cbuf_bytes = ZSTD_compressBound(w->image_bytes);
    w->cbuf = flip_malloc(w->cbuf_bytes, "shard writer chunk buffer");
    w->tok = flip_calloc((size_t)SHARD_ROWS_PER_CHUNK * m->T, sizeof(int32_t), "shard writer tokens");
    w->len = flip_calloc(SHARD_ROWS_PER_CHUNK, 1, "shard writer lengths");
    w->lab = flip_calloc(SHARD_ROWS_PER_CHUNK, sizeof(int32_t), "shard writer labels");
    w->cap = flip_calloc(SHARD_ROWS_PER_CHUNK, sizeof(char *), "shard writer captions");

    H5Quiet q = h5_lock();
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    FLIP_CHECK(w->file >= 0, "shard writer: cannot create '%s' (does the folder exist and is it writable?)",
               w->tmp);
    hsize_t ci[4] = {1, (hsize_t)m->H, (hsize_t)m->W, (hsize_t)m->C};
    w->d_images = create_dataset(w, "images", H5T_STD_U8LE, 4, ci, 1);
    hsize_t ct[2] = {SHARD_ROWS_PER_CHUNK, (hsize_t)m->T};
    w->d_tokens = create_dataset(w, "tokens", w->tokens_u16 ? H5T_STD_U16LE : H5T_STD_I32LE, 2, ct, 1);
    hsize_t cr[1] = {SHARD_ROWS_PER_CHUNK};
    w->d_lengths = create_dataset(w, "lengths", H5T_STD_U8LE, 1, cr, 1);
    w->d_labels = w->with_labels ? create_dataset(w, "labels", H5T_STD_I32LE, 1, cr, 1) : -1;
    w->d_captions = -1;
    if (w->with_captions) {
        hid_t st = H5Tcopy(H5T_C_S1);
        H5W(H5Tset_size(st, H5T_VARIABLE), w, "H5Tset_size");
        H5W(H5Tset_cset(st, H5T_CSET_UTF8), w, "H5Tset_cset");
        w->d_captions = create_dataset(w, "captions", st, 1, cr, 0);
        H5W(H5Tclose(st), w, "H5Tclose");
    }
    write_attr_str(w, "format", SHARD_FORMAT);
    write_attr_int(w, "version", H5T_STD_I32LE, SHARD_VERSION);
    write_attr_int(w, "n", H5T_STD_I64LE, 0);
    write_attr_int(w, "H", H5T_STD_I32LE, m->H);
    write_attr_int(w, "W", H5T_STD_I32LE, m->W);
    write_attr_int(w, "C", H5T_STD_I32LE, m->C);
    write_attr_int(w, "T", H5T_STD_I32LE, m->T);
    write_attr_int(w, "vocab_size", H5T_STD_I32LE, m->vocab_size);
    char sha[65];
    for (int i = 0; i < 64; i++) {
        char c = m->vocab_sha256[i];
        sha[i] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
    }
    sha[64] = '\0';
    memcpy(w->meta.vocab_sha256, sha, sizeof sha);
    write_attr_str(w, "vocab_sha256", sha);
    char tok[sizeof m->tokenizer + 1], src[sizeof m->source + 1];
    snprintf(tok, sizeof tok, "%.*s", (int)sizeof m->tokenizer - 1, m->tokenizer);
    snprintf(src, sizeof src, "%.*s", (int)sizeof m->source - 1, m->source);
    write_attr_str(w, "tokenizer", tok);
    write_attr_str(w, "source", src);
    write_attr_floats(w, "mean", m->mean, m->C);
    write_attr_floats(w, "std", m->std, m->C);
    h5_unlock(q);
    return w;
}

static void set_extent(ShardWriter *w, hid_t d, int rank, long rows) {
    hsize_t dims[4] = {(hsize_t)rows, (hsize_t)w->meta.H, (hsize_t)w->meta.W, (hsize_t)w->meta.C};
    if (rank == 2) dims[1] = (hsize_t)w->meta.T;
    H5W(H5Dset_extent(d, dims), w, "H5Dset_extent");
}

static void write_rows(ShardWriter *w, hid_t d, hid_t mtype, int rank, const void *buf) {
    long total = w->row0 + w->n_rows;
    set_extent(w, d, rank, total);
    hsize_t start[2] = {(hsize_t)w->row0, 0}, count[2] = {(hsize_t)w->n_rows, (hsize_t)w->meta.T};
    hid_t fs = H5Dget_space(d);
    H5W(fs, w, "H5Dget_space");
    H5W(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL), w, "H5Sselect_hyperslab");
    hid_t ms = H5Screate_simple(rank, count, NULL);
    H5W(ms, w, "H5Screate_simple");
    H5W(H5Dwrite(d, mtype, ms, fs, H5P_DEFAULT, buf), w, "H5Dwrite");
    H5W(H5Sclose(ms), w, "H5Sclose");
    H5W(H5Sclose(fs), w, "H5Sclose");
}

/* called with the lock held */
static void flush_rows(ShardWriter *w) {
    if (w->n_rows == 0) return;
    write_rows(w, w->d_tokens, H5T_NATIVE_INT32, 2, w->tok);
    write_rows(w, w->d_lengths, H5T_NATIVE_UINT8, 1, w->len);
    if (w->with_labels) write_rows(w, w->d_labels, H5T_NATIVE_INT32, 1, w->lab);
    if (w->with_captions) {
        hid_t st = H5Tcopy(H5T_C_S1);
        H5W(st, w, "H5Tcopy");
        H5W(H5Tset_size(st, H5T_VARIABLE), w, "H5Tset_size");
        H5W(H5Tset_cset(st, H5T_CSET_UTF8), w, "H5Tset_cset");
        write_rows(w, w->d_captions, st, 1, w->cap);
        H5W(H5Tclose(st), w, "H5Tclose");
        for (int r = 0; r < w->n_rows; r++) {
            flip_free(w->cap[r]);
            w->cap[r] = NULL;
        }
    }
    w->row0 += w->n_rows;
    w->n_rows = 0;
}

int shard_writer_add(ShardWriter *w, const uint8_t *image, const int32_t *tokens, int length,
                     const char *caption, int32_t label) {
    const ShardMeta *m = &w->meta;
    FLIP_CHECK(w->n < SHARD_MAX_N - 1, "shard writer '%s': more than 2^31 samples in one shard", w->path);
    FLIP_CHECK(length >= 1 && length <= m->T, "shard writer '%s': sample %ld has length %d outside [1, %d]",
               w->path, w->n, length, m->T);
    for (int t = 0; t < length; t++)
        FLIP_CHECK(tokens[t] >= 0 && tokens[t] < m->vocab_size,
                   "shard writer '%s': sample %ld token %d has id %d outside [0, %d)", w->path, w->n, t,
                   (int)tokens[t], m->vocab_size);
    /* compress outside the lock */
    size_t nc = ZSTD_compress2(w->cctx, w->cbuf, w->cbuf_bytes, image, w->image_bytes);
    FLIP_CHECK(!ZSTD_isError(nc), "shard writer '%s': zstd compression failed: %s", w->path,
               ZSTD_getErrorName(nc));
    int r = w->n_rows;
    memcpy(w->tok + (size_t)r * m->T, tokens, (size_t)length * sizeof(int32_t));
    memset(w->tok + (size_t)r * m->T + length, 0, (size_t)(m->T - length) * sizeof(int32_t));
    w->len[r] = (uint8_t)length;
    w->lab[r] = label;
    if (w->with_captions) {
        const char *c = caption ? caption : "";
        size_t cl = strlen(c);
        w->cap[r] = flip_malloc(cl + 1, "caption");
        memcpy(w->cap[r], c, cl + 1);
    }
    w->n_rows++;

    H5Quiet q = h5_lock();
    if (w->n >= w->img_extent) {
        w->img_extent = w->img_extent < 1024 ? 1024 : w->img_extent * 2;
        set_extent(w, w->d_images, 4, w->img_extent);
    }
    hsize_t off[4] = {(hsize_t)w->n, 0, 0, 0};
    H5W(H5Dwrite_chunk(w->d_images, H5P_DEFAULT, 0, off, nc, w->cbuf), w, "H5Dwrite_chunk");
    if (w->n_rows == SHARD_ROWS_PER_CHUNK) flush_rows(w);
    h5_unlock(q);
    return (int)w->n++;
}

void shard_writer_close(ShardWriter *w) {
    if (!w) return;
    H5Quiet q = h5_lock();
    flush_rows(w);
    set_extent(w, w->d_images, 4, w->n);
    write_attr_int(w, "n", H5T_STD_I64LE, w->n);
    hid_t ds[5] = {w->d_images, w->d_tokens, w->d_lengths, w->d_labels, w->d_captions};
    for (int i = 0; i < 5; i++)
        if (ds[i] >= 0) H5W(H5Dclose(ds[i]), w, "H5Dclose");
    H5W(H5Fclose(w->file), w, "H5Fclose");
    h5_unlock(q);

    int fd = open(w->tmp, O_RDONLY);
    FLIP_CHECK(fd >= 0, "shard writer: cannot reopen '%s' to fsync: %s", w->tmp, strerror(errno));
    FLIP_CHECK(fsync(fd) == 0, "shard writer: fsync '%s' failed: %s", w->tmp, strerror(errno));
    close(fd);
    FLIP_CHECK(rename(w->tmp, w->path) == 0, "shard writer: cannot rename '%s' to '%s': %s", w->tmp, w->path,
               strerror(errno));
    /* make the rename durable */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", w->path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = '\0';
    else if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    for (int r = 0; r < SHARD_ROWS_PER_CHUNK; r++) flip_free(w->cap[r]);
    ZSTD_freeCCtx(w->cctx);
    flip_free(w->cbuf);
    flip_free(w->tok);
    flip_free(w->len);
    flip_free(w->lab);
    flip_free(w->cap);
    flip_free(w);
}

/* ------------------------------------------------------------------- reader */

#define MAX_STR_ATTR 65536
#define SHARD_MAX_CHUNK_BYTES (64 << 20) /* > the largest image chunk, 4096*4096*3 */

/* attribute `name` of the root group: must exist, one element, class cls */
static hid_t open_attr(hid_t file, const char *name, H5T_class_t cls, hssize_t want_points, const char *path,
                       char *err, size_t eb) {
    if (H5Aexists(file, name) <= 0) {
        seterr(err, eb, "%s: missing root attribute '%s' (not a flip shard, or written by an old tool; re-run flip-prep)",
               path, name);
        return -1;
    }
    hid_t a = H5Aopen(file, name, H5P_DEFAULT);
    if (a < 0) {
        seterr(err, eb, "%s: cannot open attribute '%s' (corrupt file?)", path, name);
        return -1;
    }
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    static const char *cls_name[] = {"integer", "float", "time", "string"};
    if (c != cls) {
        seterr(err, eb, "%s: attribute '%s' has the wrong type (expected %s)", path, name,
               cls >= 0 && cls <= 3 ? cls_name[cls] : "?");
        H5Aclose(a);
        return -1;
    }
    if (np != want_points || nd < 0 || nd > 1) {
        seterr(err, eb, "%s: attribute '%s' has %lld elements, expected %lld", path, name, (long long)np,
               (long long)want_points);
        H5Aclose(a);
        return -1;
    }
    return a;
}

static int attr_int(hid_t file, const char *name, int64_t lo, int64_t hi, int64_t *v, const char *path,
                    char *err, size_t eb) {
    hid_t a = open_attr(file, name, H5T_INTEGER, 1, path, err, eb);
    if (a < 0) return -1;
    int64_t x = 0;
    herr_t rc = H5Aread(a, H5T_NATIVE_INT64, &x);
    H5Aclose(a);
    if (rc < 0) {
        seterr(err, eb, "%s: cannot read attribute '%s'", path, name);
        return -1;
    }
    if (x < lo || x > hi) {
        seterr(err, eb, "%s: attribute %s = %lld outside [%lld, %lld]", path, name, (long long)x,
               (long long)lo, (long long)hi);
        return -1;
    }
    *v = x;
    return 0;
}

/* string attribute into out (truncated to out_bytes-1) */
static int attr_str(hid_t file, const char *name, char *out, size_t out_bytes, const char *path, char *err,
                    size_t eb) {
    hid_t a = open_attr(file, name, H5T_STRING, 1, path, err, eb);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    int rc = -1;
    htri_t vl = t >= 0 ? H5Tis_variable_str(t) : -1;
    if (vl > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t)); /* HDF5 does not convert between charsets */
        char *s = NULL;
        if (H5Aread(a, mt, &s) >= 0 && s) {
            snprintf(out, out_bytes, "%s", s);
            rc = 0;
        }
        if (s) H5free_memory(s);
        H5Tclose(mt);
    } else if (vl == 0) {
        size_t sz = H5Tget_size(t);
        if (sz >= 1 && sz <= MAX_STR_ATTR) {
            char *buf = flip_calloc(sz + 1, 1, "string attribute");
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, sz);
            H5Tset_cset(mt, H5Tget_cset(t));
            H5Tset_strpad(mt, H5T_STR_NULLPAD); /* keep all sz bytes (numpy S-strings are null-padded) */
            if (H5Aread(a, mt, buf) >= 0) {
                snprintf(out, out_bytes, "%s", buf);
                rc = 0;
            }
            H5Tclose(mt);
            flip_free(buf);
        }
    }
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    if (rc < 0) seterr(err, eb, "%s: cannot read string attribute '%s'", path, name);
    return rc;
}

static int attr_floats(hid_t file, const char *name, float *v, int count, int positive, const char *path,
                       char *err, size_t eb) {
    hid_t a = open_attr(file, name, H5T_FLOAT, count, path, err, eb);
    if (a < 0) return -1;
    herr_t rc = H5Aread(a, H5T_NATIVE_FLOAT, v);
    H5Aclose(a);
    if (rc < 0) {
        seterr(err, eb, "%s: cannot read attribute '%s'", path, name);
        return -1;
    }
    for (int i = 0; i < count; i++)
        if (!isfinite(v[i]) || (positive && !(v[i] > 0))) {
            seterr(err, eb, "%s: attribute %s[%d] = %g is not %s", path, name, i, (double)v[i],
                   positive ? "finite and > 0" : "finite");
            return -1;
        }
    return 0;
}

/* Opens dataset name and checks class/size/sign, rank, dims, chunking and that
 * every filter in its pipeline is available. want_size 0: any size (strings).
 * chunk_exact: required chunk dims (NULL: chunk rows in [1, 2^20], other dims
 * equal to dims). */
static hid_t open_dataset(hid_t file, const char *name, H5T_class_t cls, size_t want_size, int want_signed,
                          int rank, const hsize_t *dims, const hsize_t *chunk_exact, int *n_filters,
                          const char *path, char *err, size_t eb) {
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0) {
        seterr(err, eb, "%s: missing dataset /%s (truncated or not a flip shard; re-run flip-prep)", path, name);
        return -1;
    }
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    if (d < 0) {
        seterr(err, eb, "%s: /%s is not a readable dataset (corrupt file?)", path, name);
        return -1;
    }
    const char *problem = NULL;
    char detail[160] = "";
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d), dcpl = H5Dget_create_plist(d);
    if (t < 0 || sp < 0 || dcpl < 0) problem = "unreadable header";
    if (!problem) {
        H5T_class_t c = H5Tget_class(t);
        if (c != cls) problem = "wrong dtype class";
        else if (want_size && H5Tget_size(t) != want_size) problem = "wrong dtype size";
        else if (cls == H5T_INTEGER && want_size && (H5Tget_sign(t) == H5T_SGN_2) != (want_signed != 0))
            problem = "wrong dtype signedness";
        else if (cls == H5T_STRING && H5Tis_variable_str(t) <= 0 && H5Tget_size(t) > MAX_STR_ATTR)
            problem = "string dtype too large";
    }
    if (!problem) {
        hsize_t got[8];
        int nd = H5Sget_simple_extent_ndims(sp);
        if (nd != rank) {
            problem = "wrong rank";
            snprintf(detail, sizeof detail, " (%d dims, expected %d)", nd, rank);
        } else {
            H5Sget_simple_extent_dims(sp, got, NULL);
            for (int k = 0; k < rank && !problem; k++)
                if (got[k] != dims[k]) {
                    problem = "wrong shape";
                    snprintf(detail, sizeof detail, " (dim %d is %llu, attributes say %llu)", k,
                             (unsigned long long)got[k], (unsigned long long)dims[k]);
                }
        }
    }
    if (!problem) {
        if (H5Pget_layout(dcpl) != H5D_CHUNKED) problem = "not chunked";
        else {
            hsize_t ch[8];
            if (H5Pget_chunk(dcpl, 8, ch) != rank) problem = "wrong chunk rank";
            for (int k = 0; k < rank && !problem; k++) {
                hsize_t want = chunk_exact ? chunk_exact[k] : dims[k];
                if (k == 0 && !chunk_exact) {
                    if (ch[0] < 1 || ch[0] > ((hsize_t)1 << 20)) problem = "bad chunk rows";
                } else if (ch[k] != want && !(k > 0 && dims[k] == 0)) {
                    problem = "wrong chunk shape";
                    snprintf(detail, sizeof detail, " (chunk dim %d is %llu, expected %llu)", k,
                             (unsigned long long)ch[k], (unsigned long long)want);
                }
            }
            /* every read decompresses a whole chunk: bound its size */
            double chunk_bytes = (double)H5Tget_size(t);
            for (int k = 0; k < rank && !problem; k++) chunk_bytes *= (double)ch[k];
            if (!problem && chunk_bytes > (double)SHARD_MAX_CHUNK_BYTES) {
                problem = "chunk too large";
                snprintf(detail, sizeof detail, " (%.0f bytes, limit %d)", chunk_bytes, SHARD_MAX_CHUNK_BYTES);
            }
        }
    }
    if (!problem) {
        int nf = H5Pget_nfilters(dcpl);
        if (nf < 0 || nf > 8) problem = "bad filter pipeline";
        for (int k = 0; k < nf && !problem; k++) {
            unsigned flags = 0, cd[8];
            size_t ncd = 8;
            char fname[64];
            H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)k, &flags, &ncd, cd, sizeof fname, fname, NULL);
            if (id < 0) problem = "bad filter pipeline";
            else if (H5Zfilter_avail(id) <= 0) {
                problem = "needs an HDF5 filter that is not available";
                snprintf(detail, sizeof detail, " (filter id %d)", (int)id);
            } else if (n_filters && id != ZSTD_FILTER_ID) {
                problem = "must use only the zstd filter 32015";
                snprintf(detail, sizeof detail, " (found filter id %d)", (int)id);
            }
        }
        if (n_filters) *n_filters = nf;
    }
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (problem) {
        seterr(err, eb, "%s: dataset /%s: %s%s", path, name, problem, detail);
        H5Dclose(d);
        return -1;
    }
    return d;
}

static void close_ids(Shard *s) {
    int64_t *ids[6] = {&s->d_images, &s->d_tokens, &s->d_lengths, &s->d_labels, &s->d_captions, &s->file};
    for (int i = 0; i < 5; i++)
        if (*ids[i] >= 0) H5Dclose((hid_t)*ids[i]);
    if (s->file >= 0) H5Fclose((hid_t)s->file);
    for (int i = 0; i < 6; i++) *ids[i] = -1;
}

/* with the lock held: opens `name` with fapl and validates into s */
static int open_locked(Shard *s, const char *name, hid_t fapl, const ShardLimits *lim, char *err, size_t eb) {
    const char *p = s->path;
    (void)name;
    hid_t f = H5Fopen(name, H5F_ACC_RDONLY, fapl);
    if (f < 0) {
        seterr(err, eb, "%s: not a readable HDF5 file (truncated or corrupt; re-create it with flip-prep)", p);
        return -1;
    }
    s->file = f;
    int max_hw = lim && lim->max_hw > 0 && lim->max_hw < SHARD_MAX_HW ? lim->max_hw : SHARD_MAX_HW;
    int max_T = lim && lim->max_T > 0 && lim->max_T < SHARD_MAX_T ? lim->max_T : SHARD_MAX_T;
    int max_v = lim && lim->max_vocab > 0 && lim->max_vocab < SHARD_MAX_VOCAB ? lim->max_vocab : SHARD_MAX_VOCAB;
    long max_n = lim && lim->max_n > 0 && lim->max_n < SHARD_MAX_N ? lim->max_n : SHARD_MAX_N;
    char fmt[64];
    if (attr_str(f, "format", fmt, sizeof fmt, p, err, eb)) return -1;
    if (strcmp(fmt, SHARD_FORMAT) != 0) {
        seterr(err, eb, "%s: attribute format = '%.40s', expected '%s' (not a flip shard)", p, fmt, SHARD_FORMAT);
        return -1;
    }
    int64_t v, n, H, W, C, T, V;
    if (attr_int(f, "version", 0, INT32_MAX, &v, p, err, eb)) return -1;
    if (v != SHARD_VERSION) {
        seterr(err, eb, "%s: shard format version %lld, this flip reads version %d (re-run flip-prep)", p,
               (long long)v, SHARD_VERSION);
        return -1;
    }
    if (attr_int(f, "n", 0, max_n, &n, p, err, eb) || attr_int(f, "H", 1, max_hw, &H, p, err, eb) ||
        attr_int(f, "W", 1, max_hw, &W, p, err, eb) || attr_int(f, "C", 1, 3, &C, p, err, eb) ||
        attr_int(f, "T", 1, max_T, &T, p, err, eb) || attr_int(f, "vocab_size", 1, max_v, &V, p, err, eb))
        return -1;
    if (C == 2) {
        seterr(err, eb, "%s: attribute C = 2, expected 1 or 3", p);
        return -1;
    }
    ShardMeta *m = &s->meta;
    m->n = (long)n;
    m->H = (int)H;
    m->W = (int)W;
    m->C = (int)C;
    m->T = (int)T;
    m->vocab_size = (int)V;
    if (attr_str(f, "vocab_sha256", m->vocab_sha256, sizeof m->vocab_sha256, p, err, eb)) return -1;
    if (!is_hex64(m->vocab_sha256)) {
        seterr(err, eb, "%s: attribute vocab_sha256 is not 64 hex characters", p);
        return -1;
    }
    if (attr_str(f, "tokenizer", m->tokenizer, sizeof m->tokenizer, p, err, eb) ||
        attr_str(f, "source", m->source, sizeof m->source, p, err, eb) ||
        attr_floats(f, "mean", m->mean, m->C, 0, p, err, eb) || attr_floats(f, "std", m->std, m->C, 1, p, err, eb))
        return -1;
    s->n = m->n;

    hsize_t di[4] = {(hsize_t)n, (hsize_t)H, (hsize_t)W, (hsize_t)C};
    hsize_t ci[4] = {1, (hsize_t)H, (hsize_t)W, (hsize_t)C};
    int nf = 0;
    hid_t d = open_dataset(f, "images", H5T_INTEGER, 1, 0, 4, di, ci, &nf, p, err, eb);
    if (d < 0) return -1;
    s->d_images = d;
    s->images_filtered = nf == 1;
    s->image_bytes = (size_t)H * (size_t)W * (size_t)C;
    s->max_chunk_bytes = s->images_filtered ? ZSTD_compressBound(s->image_bytes) + 4096 : s->image_bytes;

    hsize_t dt[2] = {(hsize_t)n, (hsize_t)T};
    d = open_dataset(f, "tokens", H5T_INTEGER, 0, 0, 2, dt, NULL, NULL, p, err, eb);
    if (d < 0) return -1;
    s->d_tokens = d;
    {
        hid_t t = H5Dget_type(d);
        size_t sz = t >= 0 ? H5Tget_size(t) : 0;
        H5T_sign_t sg = t >= 0 ? H5Tget_sign(t) : H5T_SGN_ERROR;
        if (t >= 0) H5Tclose(t);
        if (sz == 2 && sg == H5T_SGN_NONE) s->tokens_u16 = 1;
        else if (sz == 4 && sg == H5T_SGN_2) s->tokens_u16 = 0;
        else {
            seterr(err, eb, "%s: dataset /tokens: dtype must be uint16 or int32", p);
            return -1;
        }
    }
    if (s->tokens_u16 && V > 65536) {
        seterr(err, eb, "%s: /tokens is uint16 but vocab_size %lld does not fit", p, (long long)V);
        return -1;
    }
    hsize_t dn[1] = {(hsize_t)n};
    d = open_dataset(f, "lengths", H5T_INTEGER, 1, 0, 1, dn, NULL, NULL, p, err, eb);
    if (d < 0) return -1;
    s->d_lengths = d;
    if (H5Lexists(f, "labels", H5P_DEFAULT) > 0) {
        d = open_dataset(f, "labels", H5T_INTEGER, 4, 1, 1, dn, NULL, NULL, p, err, eb);
        if (d < 0) return -1;
        s->d_labels = d;
        s->has_labels = 1;
    }
    if (H5Lexists(f, "captions", H5P_DEFAULT) > 0) {
        d = open_dataset(f, "captions", H5T_STRING, 0, 0, 1, dn, NULL, NULL, p, err, eb);
        if (d < 0) return -1;
        s->d_captions = d;
        s->has_captions = 1;
    }
    return 0;
}

static void shard_init_empty(Shard *s, const char *path) {
    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", path);
    s->file = s->d_images = s->d_tokens = s->d_lengths = s->d_labels = s->d_captions = -1;
}

static int finish_open(Shard *s) {
    s->scratch = flip_calloc((size_t)s->meta.T, sizeof(int32_t), "shard token row");
    s->dctx = NULL; /* created on the first shard_read_sample with an image */
    return 0;
}

int shard_open(Shard *s, const char *path, const ShardLimits *limits, char *err, size_t err_bytes) {
    shard_init_empty(s, path ? path : "(null)");
    if (!path || !*path) {
        seterr(err, err_bytes, "shard_open: empty path");
        return -1;
    }
    if (strlen(path) >= sizeof s->path) {
        seterr(err, err_bytes, "%.200s...: path too long", path);
        return -1;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        seterr(err, err_bytes, "%s: cannot open shard: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        seterr(err, err_bytes, "%s: not a regular file", path);
        return -1;
    }
    H5Quiet q = h5_lock();
    int rc = open_locked(s, path, H5P_DEFAULT, limits, err, err_bytes);
    if (rc) close_ids(s);
    h5_unlock(q);
    if (rc) return rc;
    return finish_open(s);
}

void shard_close(Shard *s) {
    if (!s) return;
    if (s->file >= 0 || s->d_images >= 0) {
        H5Quiet q = h5_lock();
        close_ids(s);
        h5_unlock(q);
    }
    flip_free(s->scratch);
    shard_dctx_free(s->dctx);
    flip_free(s->raw);
    s->scratch = s->dctx = s->raw = NULL;
    s->raw_cap = 0;
}

void *shard_dctx_new(void) {
    ZSTD_DCtx *d = ZSTD_createDCtx();
    FLIP_CHECK(d, "shard: ZSTD_createDCtx failed (out of memory)");
    return d;
}

void shard_dctx_free(void *dctx) {
    if (dctx) ZSTD_freeDCtx(dctx);
}

static int check_index(const Shard *s, long i, char *err, size_t eb) {
    if (s->file < 0) {
        seterr(err, eb, "%s: shard is not open", s->path);
        return -1;
    }
    if (i < 0 || i >= s->n) {
        seterr(err, eb, "%s: sample %ld out of range [0, %ld)", s->path, i, s->n);
        return -1;
    }
    return 0;
}

int shard_read_image_raw(Shard *s, long i, void **raw, size_t *raw_cap, size_t *n_bytes, uint32_t *filter_mask,
                         char *err, size_t eb) {
    if (check_index(s, i, err, eb)) return -1;
    hsize_t off[4] = {(hsize_t)i, 0, 0, 0};
    int rc = 0;
    H5Quiet q = h5_lock();
    hsize_t sz = 0;
    if (H5Dget_chunk_storage_size((hid_t)s->d_images, off, &sz) < 0 || sz == 0) {
        seterr(err, eb, "%s: sample %ld: image chunk missing (truncated or corrupt shard)", s->path, i);
        rc = -1;
    } else if (sz > s->max_chunk_bytes) {
        seterr(err, eb, "%s: sample %ld: stored image chunk of %llu bytes exceeds the bound %zu (corrupt shard)",
               s->path, i, (unsigned long long)sz, s->max_chunk_bytes);
        rc = -1;
    } else {
        if (*raw_cap < sz) {
            flip_free(*raw);
            *raw = flip_malloc((size_t)sz, "raw image chunk");
            *raw_cap = (size_t)sz;
        }
        uint32_t mask = 0;
        if (H5Dread_chunk((hid_t)s->d_images, H5P_DEFAULT, off, &mask, *raw) < 0) {
            seterr(err, eb, "%s: sample %ld: cannot read image chunk (truncated or corrupt shard)", s->path, i);
            rc = -1;
        }
        *n_bytes = (size_t)sz;
        *filter_mask = mask;
    }
    h5_unlock(q);
    return rc;
}

int shard_decode_image(const Shard *s, long i, const void *raw, size_t n_bytes, uint32_t filter_mask,
                       uint8_t *image, void *dctx, char *err, size_t eb) {
    if (!s->images_filtered || (filter_mask & 1u)) {
        if (n_bytes != s->image_bytes) {
            seterr(err, eb, "%s: sample %ld: unfiltered image chunk has %zu bytes, expected %zu (corrupt shard)",
                   s->path, i, n_bytes, s->image_bytes);
            return -1;
        }
        memcpy(image, raw, n_bytes);
        return 0;
    }
    size_t got = ZSTD_decompressDCtx((ZSTD_DCtx *)dctx, image, s->image_bytes, raw, n_bytes);
    if (ZSTD_isError(got)) {
        seterr(err, eb, "%s: sample %ld: image decompression failed: %s (corrupt shard; re-create it)", s->path, i,
               ZSTD_getErrorName(got));
        return -1;
    }
    if (got != s->image_bytes) {
        seterr(err, eb, "%s: sample %ld: image decompressed to %zu bytes, expected %zu (corrupt shard)", s->path, i,
               got, s->image_bytes);
        return -1;
    }
    return 0;
}

/* one element (row) of a row dataset into buf with memory type mt; lock held */
static int read_row(hid_t d, hid_t mt, long i, int rank, hsize_t cols, void *buf) {
    hid_t fs = H5Dget_space(d);
    if (fs < 0) return -1;
    hsize_t start[2] = {(hsize_t)i, 0}, count[2] = {1, cols};
    int rc = -1;
    if (H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0) {
        hid_t ms = H5Screate_simple(rank, count, NULL);
        if (ms >= 0) {
            rc = H5Dread(d, mt, ms, fs, H5P_DEFAULT, buf) < 0 ? -1 : 0;
            H5Sclose(ms);
        }
    }
    H5Sclose(fs);
    return rc;
}

int shard_read_text(Shard *s, long i, int32_t *tokens, int *length, int32_t *label, char *err, size_t eb) {
    if (check_index(s, i, err, eb)) return -1;
    const int T = s->meta.T;
    int32_t *row = s->scratch;
    int len = 0;
    int32_t lab = 0;
    const char *what = NULL;
    H5Quiet q = h5_lock();
    if (read_row((hid_t)s->d_lengths, H5T_NATIVE_INT, i, 1, 1, &len) < 0) what = "lengths";
    else if (read_row((hid_t)s->d_tokens, H5T_NATIVE_INT32, i, 2, (hsize_t)T, row) < 0) what = "tokens";
    else if (s->has_labels && read_row((hid_t)s->d_labels, H5T_NATIVE_INT32, i, 1, 1, &lab) < 0) what = "labels";
    h5_unlock(q);
    if (what) {
        seterr(err, eb, "%s: sample %ld: cannot read /%s (decompression failed: corrupt or truncated shard)",
               s->path, i, what);
        return -1;
    }
    if (len < 1 || len > T) {
        seterr(err, eb, "%s: sample %ld: length %d outside [1, %d] (corrupt shard)", s->path, i, len, T);
        return -1;
    }
    for (int t = 0; t < len; t++)
        if (row[t] < 0 || row[t] >= s->meta.vocab_size) {
            seterr(err, eb, "%s: sample %ld: token %d has id %d outside [0, vocab_size=%d) (shard and vocabulary disagree; re-run flip-prep)",
                   s->path, i, t, (int)row[t], s->meta.vocab_size);
            return -1;
        }
    if (tokens) {
        memcpy(tokens, row, (size_t)len * sizeof(int32_t));
        memset(tokens + len, 0, (size_t)(T - len) * sizeof(int32_t));
    }
    if (length) *length = len;
    if (label) *label = lab;
    return 0;
}

int shard_read_sample(Shard *s, long i, uint8_t *image, int32_t *tokens, int *length, int32_t *label, char *err,
                      size_t eb) {
    if (shard_read_text(s, i, tokens, length, label, err, eb)) return -1;
    if (!image) return 0;
    if (!s->dctx) s->dctx = shard_dctx_new();
    size_t n_bytes = 0;
    uint32_t mask = 0;
    if (shard_read_image_raw(s, i, &s->raw, &s->raw_cap, &n_bytes, &mask, err, eb)) return -1;
    return shard_decode_image(s, i, s->raw, n_bytes, mask, image, s->dctx, err, eb);
}

int shard_read_caption(Shard *s, long i, char *buf, size_t buf_bytes, char *err, size_t eb) {
    if (check_index(s, i, err, eb)) return -1;
    if (buf_bytes == 0) return 0;
    buf[0] = '\0';
    if (!s->has_captions) return 0;
    int rc = 0;
    H5Quiet q = h5_lock();
    hid_t t = H5Dget_type((hid_t)s->d_captions);
    htri_t vl = t >= 0 ? H5Tis_variable_str(t) : -1;
    if (vl > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        char *str = NULL;
        if (read_row((hid_t)s->d_captions, mt, i, 1, 1, &str) < 0) rc = -1;
        else if (str) snprintf(buf, buf_bytes, "%s", str);
        if (str) H5free_memory(str);
        H5Tclose(mt);
    } else if (vl == 0) {
        size_t sz = H5Tget_size(t);
        char *tmp = flip_calloc(sz + 1, 1, "caption");
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, sz);
        H5Tset_cset(mt, H5Tget_cset(t));
        H5Tset_strpad(mt, H5T_STR_NULLPAD);
        if (read_row((hid_t)s->d_captions, mt, i, 1, 1, tmp) < 0) rc = -1;
        else snprintf(buf, buf_bytes, "%s", tmp);
        H5Tclose(mt);
        flip_free(tmp);
    } else {
        rc = -1;
    }
    if (t >= 0) H5Tclose(t);
    h5_unlock(q);
    if (rc) seterr(err, eb, "%s: sample %ld: cannot read /captions (corrupt shard)", s->path, i);
    return rc;
}

/* ---------------------------------------------------------------- fuzzing */

#define VALIDATE_TEXT_SAMPLES 64
#define VALIDATE_IMAGE_SAMPLES 4

int shard_validate_image(const void *buf, size_t n_bytes, char *err, size_t eb) {
    Shard s;
    shard_init_empty(&s, "(file image)");
    if (n_bytes < 8) {
        seterr(err, eb, "(file image): %zu bytes is too short for HDF5", n_bytes);
        return -1;
    }
    H5Quiet q = h5_lock();
    int rc = -1;
    /* a fresh name per call: HDF5 keeps a file whose close failed in its open
     * list, and a later open of the same name would share that broken state */
    static unsigned long n_images = 0;
    char name[64];
    snprintf(name, sizeof name, "flip-file-image-%lu.h5", n_images++);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_fapl_core(fapl, 1 << 16, 0) >= 0 && H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) >= 0 &&
        H5Pset_file_image(fapl, (void *)buf, n_bytes) >= 0)
        rc = open_locked(&s, name, fapl, NULL, err, eb);
    else
        seterr(err, eb, "(file image): cannot set up the in-memory file");
    if (fapl >= 0) H5Pclose(fapl);
    if (rc) close_ids(&s);
    h5_unlock(q);
    if (rc) return rc;
    finish_open(&s);
    uint8_t *image = flip_malloc(s.image_bytes, "validate image");
    int32_t *tokens = flip_malloc((size_t)s.meta.T * sizeof(int32_t), "validate tokens");
    char cap[256];
    for (long i = 0; i < s.n && i < VALIDATE_TEXT_SAMPLES && rc == 0; i++) {
        rc = shard_read_sample(&s, i, i < VALIDATE_IMAGE_SAMPLES ? image : NULL, tokens, NULL, NULL, err, eb);
        if (rc == 0) rc = shard_read_caption(&s, i, cap, sizeof cap, err, eb);
    }
    flip_free(image);
    flip_free(tokens);
    shard_close(&s);
    return rc;
}
