/* prep.h — flip-prep, the offline tool that turns raw image–text pairs into
 * flip shards (DESIGN §4). launch/main_flip_prep.c is a thin main over
 * prep_main; `flip-prep --help` lists every flag.
 *
 *   flip-prep shards --source csv|tsv|tar|idx|folder --input PATH... --output DIR
 *                    (--vocab vocab.txt | --learn-vocab SIZE) [options]
 *   flip-prep vocab  --source ... --input ... --size SIZE --output vocab.txt
 *
 * Pipeline: one reader thread (sources.h, input order) -> N worker threads
 * (read file, decode, resize shorter side + center crop, tokenize) -> the
 * calling thread writes samples in input order, so the shards do not depend
 * on --workers. Shard k holds written samples [k*shard_size, (k+1)*shard_size).
 *
 * Outputs in DIR: <prefix>-000000.h5 ..., vocab.txt, manifest.json (rewritten
 * after every shard; "complete": true at the end). A re-run with the same
 * configuration (fingerprint in the manifest) keeps every leading shard whose
 * file validates and holds the manifest's n, resumes after the input items it
 * consumed, and redoes the rest (an unfinished <shard>.tmp is overwritten).
 *
 * Normalisation attributes (mean/std): 3 channels: CLIP's (0.48145466,
 * 0.4578275, 0.40821073) / (0.26862954, 0.26130258, 0.27577711); 1 channel:
 * the Fashion-MNIST values 0.2860 / 0.3530 (fixed, so train and test splits
 * agree); --mean/--std override. The measured pixel mean/std of the written
 * images is printed and stored in the manifest.
 *
 * Exit codes: 0 success, 2 bad flags (one line naming the flag), 1 fatal
 * errors (unreadable inputs, --strict skip, no sample written).
 */
#ifndef FLIP_PREP_H
#define FLIP_PREP_H

#define FLIP_PREP_VERSION "1.0.0"

/* Runs flip-prep; returns the process exit code. */
int prep_main(int argc, char **argv);

#endif
