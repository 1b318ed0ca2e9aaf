/* loader.h — the training data loader: global sample order, per-rank slice,
 * prefetch thread, augmentation (DESIGN §3, §4).
 *
 * Global order (rank-count invariant by construction):
 *   - the dataset is the concatenation of the shards in spec order; the global
 *     index of row j of shard s is (samples in shards before s) + j;
 *   - epoch e is the permutation of all samples drawn by Fisher–Yates with
 *     rng_below from Rng(seed, FLIP_RNG_SHUFFLE, 0, e);
 *   - global step k covers positions [jG, (j+1)G) of epoch e = k / S, with
 *     j = k % S, S = steps_per_epoch = floor(total / G), G = B * world (the
 *     epoch's tail is dropped); rank r takes rows [rB, (r+1)B).
 *   - augmentation (if on): random resized crop (area scale U(0.4, 1), aspect
 *     ratio log-uniform in [3/4, 4/3], bilinear, back to H x W) then a
 *     horizontal flip with probability 1/2, from
 *     Rng(seed, FLIP_RNG_AUGMENT, rB + b (row of the global batch), k).
 *   - skip_bad: a sample that fails to read (decompression error, token id >=
 *     vocab_size, bad length) is replaced by the next readable sample in the
 *     epoch's order (positions p+1, p+2, ... wrapping), a rule that depends only
 *     on the position, so every rank count produces the same stream. Without
 *     skip_bad such a sample is fatal: loader_next calls FLIP_FATAL naming the
 *     file and sample — on the caller's thread, so the MPI abort hook runs on
 *     the thread that owns MPI (MPI_THREAD_FUNNELED).
 *
 * The prefetch thread reads and decompresses the next `prefetch` batches into
 * a bounded queue. It never calls MPI itself; bad samples are reported by
 * loader_next, and only failures that cannot be handed over (out of memory, no
 * readable sample in the whole dataset) end the process from the thread. HDF5 calls are serialized by shard.c's
 * process-wide lock; zstd decompression and augmentation run outside it.
 *
 * Ownership: loader_open allocates everything; loader_close joins the thread
 * and frees it. A LoaderBatch returned by loader_next is borrowed and valid
 * until the next loader_next / loader_seek / loader_close.
 */
#ifndef FLIP_LOADER_H
#define FLIP_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "shard.h"

typedef struct {
    const char *spec; /* brace list "dir/train-{000000..000127}.h5", a directory
                         (all *.h5 in name order), one .h5 file, or a manifest
                         file (text: one shard path per line; or flip-prep's
                         manifest.json: every string value ending in .h5);
                         relative paths in a manifest are relative to its folder;
                         several specs may be joined with ':' */
    int batch_size;   /* B, local (this rank) */
    int rank, world;  /* 0 <= rank < world */
    uint64_t seed;
    int augment;      /* random resized crop + horizontal flip */
    int skip_bad;     /* replace unreadable samples (counted) instead of failing */
    int prefetch;     /* batches read ahead (<= 0: default 2; at most 64) */
    int sequential;   /* 1: identity order in every epoch (evaluation); 0: shuffled */
} LoaderConfig;

typedef struct {
    long step;              /* global step of this batch */
    long epoch;
    int B;
    uint8_t *images;        /* (B, H, W, C) */
    int32_t *tokens;        /* (B, T), zero padded after lens[b] */
    int *lens;              /* (B) in [1, T] */
    int32_t *labels;        /* (B), or NULL when the shards have no /labels */
    uint64_t *sample_ids;   /* (B) global dataset index of each row (after skip_bad) */
    int n_skipped_total;    /* samples replaced by skip_bad on this rank so far */
} LoaderBatch;

typedef struct Loader Loader;

/* Validates every shard (shard_open) and checks all agree on H, W, C, T,
 * vocab_size, vocab_sha256 and on having /labels. NULL + one-line error in err
 * (naming the shard and the mismatch, or the bad config field). */
Loader *loader_open(const LoaderConfig *cfg, char *err, size_t err_bytes);
/* Shared metadata (n = total samples over all shards). */
const ShardMeta *loader_meta(const Loader *l);
long loader_num_samples(const Loader *l);
int loader_num_shards(const Loader *l);
const char *loader_shard_path(const Loader *l, int shard);
long loader_steps_per_epoch(const Loader *l); /* floor(total / (B * world)) */
int loader_has_labels(const Loader *l);
/* The next batch is global step `step` (resume); (re)starts the prefetch thread. */
void loader_seek(Loader *l, long step);
/* Blocks until the next batch is ready (implicit loader_seek(0) on first use). */
const LoaderBatch *loader_next(Loader *l);
void loader_close(Loader *l);

/* The dataset index at position `pos` of epoch `epoch` (exposed for tests and
 * evaluation tools; computes the epoch permutation, O(total)). */
uint64_t loader_sample_at(Loader *l, long epoch, long pos);

#endif
