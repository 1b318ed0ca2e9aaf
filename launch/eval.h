/* eval.h — evaluation of a FLIP model, always unmasked (inference unmasking,
 * DESIGN §2): zero-shot classification on labelled shards (class names x
 * prompt templates -> text embeddings averaged per class and renormalised;
 * top-1 / top-5 accuracy) and image<->text retrieval recall@1/5/10 on caption
 * shards (one caption per image; a query's rank is the number of candidates
 * scoring strictly higher than its own pair).
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

#endif
