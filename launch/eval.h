/* eval.h — evaluation of a FLIP model, always unmasked (inference unmasking,
 * DESIGN §2): zero-shot classification on labelled shards (class names x
 * prompt templates -> text embeddings averaged per class and renormalised;
 * top-1 / top-5 accuracy) and image<->text retrieval recall@1/5/10 on caption
 * shards (one caption per image; a query's rank is the number of candidates
 * scoring strictly higher than its own pair), and the validation InfoNCE loss
 * at a fixed global batch on caption shards.
 *
 * Collective: every rank calls with the same arguments; rank r evaluates the
 * samples with global index i = r (mod ranks) and the counts are summed, so the
 * result does not depend on the rank count. The model is re-planned to
 * (B_eval, Np); the caller re-plans for training afterwards.
 * Errors a user can cause (missing or mismatched files) return -1 with one
 * line in err on every rank (the ranks agree before any collective).
 */
#ifndef FLIP_EVAL_H
#define FLIP_EVAL_H

#include <stddef.h>

#include "model.h"

typedef struct {
    long n;             /* images evaluated */
    int n_classes;
    double top1, top5;  /* fractions */
} ZeroShotResult;

typedef struct {
    long n;             /* image-caption pairs */
    double i2t[3];      /* image->text recall@1, @5, @10 */
    double t2i[3];      /* text->image recall@1, @5, @10 */
} RetrievalResult;

/* classnames: one name per line in label order; templates: one per line with
 * "{}" for the class name; in both, blank lines and lines starting with '#'
 * are skipped. vocab: vocab.txt path, or NULL/"" for <folder of the first
 * shard>/vocab.txt. */
int eval_zeroshot(FlipModel *m, const char *data_spec, const char *classnames_path,
                  const char *templates_path, const char *vocab_path, int B_eval,
                  ZeroShotResult *res, char *err, size_t err_bytes);
int eval_retrieval(FlipModel *m, const char *data_spec, int B_eval, RetrievalResult *res, char *err,
                   size_t err_bytes);

typedef struct {
    long n;             /* image-caption pairs in the validation shards */
    long n_batches;     /* full global batches evaluated (n / G; the rest is dropped) */
    long G;             /* global batch = B x ranks */
    double loss;        /* mean over the batches of the global InfoNCE loss */
} ValLossResult;

/* Validation loss: flip-train's global InfoNCE loss (DESIGN §2), unmasked and
 * without gradients, on caption shards. The samples, in shard order (no
 * shuffle, no augmentation), are cut into consecutive global batches of
 * G = B x ranks; the remainder (< G) is dropped; the result is the mean of the
 * batches' losses at the model's current temperature. As in training, rank r
 * encodes rows [rB, (r+1)B) of each batch, the embeddings are all-gathered and
 * each rank computes the InfoNCE block of its rows, so the loss depends only
 * on G, not on the rank count (up to float summation order). Encoding runs in
 * chunks of at most B_eval rows (memory only: it does not change the result).
 * Fewer than G pairs is an error (-1, one line). */
int eval_val_loss(FlipModel *m, const char *data_spec, int B, int B_eval, ValLossResult *res, char *err,
                  size_t err_bytes);

#endif
