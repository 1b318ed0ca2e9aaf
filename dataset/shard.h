/* shard.h — the flip shard format v1 (DESIGN §4): writer, validating reader.
 *
 * A shard is one HDF5 file:
 *   /images   uint8 (n, H, W, C), chunk (1, H, W, C), zstd filter 32015
 *             (cd_values[0] = level): each chunk is one plain zstd frame, the
 *             format of the registered Zstandard filter (hdf5plugin, h5py).
 *   /tokens   uint16 (vocab_size <= 65535) or int32, (n, T), chunk
 *             (SHARD_ROWS_PER_CHUNK, T), zstd; rows padded with 0 after length.
 *   /lengths  uint8 (n), chunk SHARD_ROWS_PER_CHUNK, zstd; 1 <= length <= T.
 *   /captions optional, variable-length UTF-8 strings (n), chunked.
 *   /labels   optional, int32 (n), chunked, zstd.
 *   root attributes: format = "flip-shard", version = 1, n, H, W, C, T,
 *   vocab_size, vocab_sha256 (64 hex chars), tokenizer, source (strings),
 *   mean, std (float[C]).
 *
 * Thread safety: Debian's HDF5 is not thread-safe, so every function here that
 * calls HDF5 takes one process-wide mutex. shard_read_image_raw (under the
 * lock) + shard_decode_image (no lock, zstd only) let a prefetch thread
 * decompress while another thread uses HDF5.
 *
 * Errors: the writer is used by flip-prep on data it produced, so writer
 * failures are fatal (FLIP_CHECK). The reader validates untrusted files: it
 * returns nonzero and writes one line "<file>: <problem>" (and the sample index
 * where one is involved) into err; it never crashes on a bad file.
 *
 * Ownership: shard_writer_open allocates the ShardWriter, shard_writer_close
 * frees it. shard_open fills a caller-owned Shard; shard_close releases what
 * it holds (safe on a zeroed Shard and after a failed shard_open).
 */
#ifndef FLIP_SHARD_H
#define FLIP_SHARD_H

#include <stddef.h>
#include <stdint.h>

#define SHARD_FORMAT "flip-shard"
#define SHARD_VERSION 1
#define SHARD_ZSTD_FILTER_ID 32015
#define SHARD_ZSTD_LEVEL_DEFAULT 3
#define SHARD_ROWS_PER_CHUNK 256 /* tokens/lengths/labels/captions chunk rows */

/* Hard validation limits (DESIGN §4). */
#define SHARD_MAX_HW 4096
#define SHARD_MAX_T 512
#define SHARD_MAX_VOCAB (1 << 24)
#define SHARD_MAX_N 2147483648L /* 2^31 */

typedef struct {
    long n;              /* samples (reader: from the file; writer: ignored, counted) */
    int H, W, C;         /* image height, width, channels (C in {1, 3}) */
    int T;               /* token row length (context) */
    int vocab_size;      /* token ids are in [0, vocab_size) */
    char vocab_sha256[65]; /* 64 lowercase hex chars + NUL */
    char tokenizer[64];  /* e.g. "wordpiece" */
    char source[256];    /* free text: where the samples came from */
    float mean[3], std[3]; /* per-channel normalisation, first C used */
} ShardMeta;

/* Optional stricter limits for shard_open; NULL = the hard limits above.
 * A zero field means "the hard limit". */
typedef struct {
    int max_hw;
    int max_T;
    int max_vocab;
    long max_n;
} ShardLimits;

/* ---- writer (flip-prep) ---- */
typedef struct ShardWriter ShardWriter;

/* Creates "<path>.tmp" (truncating). zstd_level in [1, 22] (<= 0: default 3).
 * meta->n is ignored; H, W, C, T, vocab_size, vocab_sha256, tokenizer, source,
 * mean and std are written as attributes. Fatal on any failure. */
ShardWriter *shard_writer_open(const char *path, const ShardMeta *meta, int zstd_level,
                               int with_captions, int with_labels);
/* Appends one sample. image (H, W, C) uint8; tokens (T) int32 with ids in
 * [0, vocab_size), only the first `length` used (the rest stored as 0);
 * 1 <= length <= T; caption UTF-8 (NULL -> "") used if with_captions; label
 * used if with_labels. Returns the sample's index in the shard (a shard holds
 * fewer than 2^31 samples; more is a fatal error). */
int shard_writer_add(ShardWriter *w, const uint8_t *image, const int32_t *tokens, int length,
                      const char *caption, int32_t label);
/* Writes n, flushes, closes, fsyncs and renames "<path>.tmp" -> path; frees w. */
void shard_writer_close(ShardWriter *w);

/* ---- reader / validator ---- */
typedef struct {
    char path[1024];
    ShardMeta meta;
    long n;
    int has_captions, has_labels;
    int tokens_u16;       /* /tokens stored as uint16 */
    int images_filtered;  /* /images pipeline is [zstd 32015] (else no filter) */
    size_t image_bytes;   /* H*W*C */
    size_t max_chunk_bytes; /* upper bound accepted for a stored image chunk */
    int64_t file, d_images, d_tokens, d_lengths, d_labels, d_captions; /* hid_t, -1 = none */
    void *scratch;        /* (T) token row conversion buffer */
    void *dctx;           /* ZSTD_DCtx for shard_read_sample */
    void *raw;            /* raw chunk buffer for shard_read_sample */
    size_t raw_cap;
} Shard;

/* Opens and validates path: every attribute (presence, type, range), every
 * dataset's shape, dtype and chunking against n/H/W/C/T, before anything is
 * sized by the file is allocated. 0 on success; else nonzero, s left closed,
 * and err holds one line naming the file and the problem. */
int shard_open(Shard *s, const char *path, const ShardLimits *limits, char *err, size_t err_bytes);
void shard_close(Shard *s);

/* Reads sample i (0 <= i < n): image (H, W, C) may be NULL; tokens (T) int32
 * (zero padded after length) may be NULL; length, label may be NULL (label is
 * 0 when the shard has no labels). Token ids are checked against vocab_size
 * and length against [1, T], always. 0 on success; else nonzero with one line
 * naming the file and sample index (decompression failure, bad token, bad
 * length). */
int shard_read_sample(Shard *s, long i, uint8_t *image, int32_t *tokens, int *length,
                      int32_t *label, char *err, size_t err_bytes);
/* Caption of sample i into buf (truncated to buf_bytes-1, NUL-terminated);
 * "" when the shard has no captions. 0 on success. */
int shard_read_caption(Shard *s, long i, char *buf, size_t buf_bytes, char *err, size_t err_bytes);

/* Two-phase image read for prefetch threads. shard_read_image_raw reads the
 * stored chunk of sample i into *raw (grown with flip_malloc as needed,
 * capacity *raw_cap; caller frees with flip_free) under the HDF5 lock;
 * shard_decode_image decompresses it into image (H, W, C) without the lock.
 * dctx: from shard_dctx_new, one per thread. */
int shard_read_image_raw(Shard *s, long i, void **raw, size_t *raw_cap, size_t *n_bytes,
                         uint32_t *filter_mask, char *err, size_t err_bytes);
int shard_decode_image(const Shard *s, long i, const void *raw, size_t n_bytes, uint32_t filter_mask,
                       uint8_t *image, void *dctx, char *err, size_t err_bytes);
/* Tokens, length and label of sample i (as in shard_read_sample, no image). */
int shard_read_text(Shard *s, long i, int32_t *tokens, int *length, int32_t *label, char *err,
                    size_t err_bytes);
void *shard_dctx_new(void);
void shard_dctx_free(void *dctx);

/* Validation of an in-memory HDF5 file image (the fuzz target): like
 * shard_open + reading every sample's text and the first samples' images. */
int shard_validate_image(const void *buf, size_t n_bytes, char *err, size_t err_bytes);

#endif
