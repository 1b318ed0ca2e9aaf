/* options.h — flags of flip-train and flip-eval (names follow OpenCLIP's
 * training script), a --config FILE of `key = value` lines (flags given on the
 * command line override it), validation of every value, and the resolved
 * configuration as text (config.txt, and the checkpoint's config attribute).
 *
 * Errors a user can cause give one line naming the flag (or file:line) and what
 * is expected; the mains print it (rank 0 only) and exit 2 on every rank.
 */
#ifndef FLIP_OPTIONS_H
#define FLIP_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#define OPT_PATH 1024

typedef enum { OPT_PROG_TRAIN = 1, OPT_PROG_EVAL = 2 } OptProg;

typedef struct {
    /* data */
    char train_data[OPT_PATH];     /* shard spec (brace list, directory, manifest) */
    char val_data[OPT_PATH];       /* caption shards for image<->text retrieval */
    char zeroshot_data[OPT_PATH];  /* labelled shards for zero-shot classification */
    char classnames[OPT_PATH];     /* one class name per line (label order) */
    char templates[OPT_PATH];      /* one template per line, "{}" = class name */
    char vocab[OPT_PATH];          /* vocab.txt for zero-shot prompts ("" = next to the shards) */
    int augment;                   /* random resized crop + flip (1) */
    int skip_bad;                  /* replace unreadable samples instead of failing */
    /* batch and length */
    int batch_size;                /* per rank (0: from --global-batch-size) */
    int global_batch_size;         /* G (0: batch_size x ranks) */
    double epochs;                 /* 0: from --train-samples */
    long train_samples;            /* 0: from --epochs */
    long stop_at_step;             /* stop (with a checkpoint) after this step; 0: run to the end */
    double max_minutes;            /* wall-clock budget (0: none); alone it also sets the length */
    /* optimizer and schedule */
    double lr, wd, beta1, beta2, eps;
    long warmup;                   /* steps */
    char lr_scheduler[32];         /* cosine | const | const-cooldown */
    double min_lr;                 /* cosine floor / cooldown target */
    long cooldown_steps;           /* const-cooldown: final linear decay steps */
    double grad_clip_norm;         /* 0: no clipping */
    int max_bad_steps;             /* stop after this many non-finite steps in a row */
    /* model */
    char model[32];                /* preset */
    /* model size overrides of the preset (0: the preset's value) */
    int width, depth, heads;                  /* vision C, L, H */
    int text_width, text_depth, text_heads;   /* text Ct, Lt, Ht */
    int embed_dim, patch_size;                /* D, p */
    int image_size, channels, vocab_size, context; /* 0: from the shards */
    double mask_ratio;             /* FLIP image masking during pre-training */
    long unmasked_tune_samples;    /* final phase at mask 0 (FLIP §3) */
    uint64_t seed;
    char precision[16];            /* fp32 */
    /* outputs */
    char logs[OPT_PATH];
    char name[256];
    long save_frequency;           /* steps between checkpoints (0: only at the end) */
    int save_keep;                 /* keep the last K checkpoints */
    char resume[OPT_PATH];         /* "", "latest" or a checkpoint path */
    long zeroshot_frequency;       /* steps between evaluations (0: only at the end) */
    long log_every;                /* steps between log lines */
    char dump_params[OPT_PATH];    /* write final params as raw float32 (tests) */
    long debug_nan_from_step;      /* tests: poison gradients from this step on (0: off) */
    /* machine */
    int threads;                   /* OpenMP threads per rank (0: leave as is) */
    int profile;                   /* 1: print rank 0's per-op-class step breakdown at the end */
    double peak_gflops;            /* per-rank peak for MFU (0: measure) */
    double bucket_mb;              /* gradient all-reduce bucket size */
    int eval_batch_size;           /* per rank */
    /* flip-eval */
    char checkpoint[OPT_PATH];
} Options;

/* Defaults of every option. */
void options_defaults(Options *o);
/* Parses argv: a --config FILE anywhere in argv is applied first, then the
 * flags (which override it). Returns 0; 1 if --help was given (the caller
 * prints options_help and exits 0); -1 with one line in err on a bad flag,
 * value, combination or config file. */
int options_parse(Options *o, OptProg prog, int argc, char **argv, char *err, size_t err_bytes);
/* The help text of prog to stdout. */
void options_help(OptProg prog, const char *progname);
/* Resolved configuration as "key = value" lines (re-readable by --config).
 * Returns the length written (truncated output is NUL-terminated). */
size_t options_format(const Options *o, OptProg prog, char *buf, size_t buf_bytes);

#endif
