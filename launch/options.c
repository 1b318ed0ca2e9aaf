/* options.c — table-driven flag parsing for flip-train / flip-eval (see
 * options.h). One table row per option: name, type, where it lives, range,
 * which programs accept it, help. The same table reads --config files and
 * writes the resolved config, so the three can never disagree. */
#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { T_STR, T_INT, T_LONG, T_DBL, T_U64 } OptType;

typedef struct {
    const char *name;
    OptType type;
    size_t off;
    size_t size;   /* T_STR: buffer bytes */
    double lo, hi; /* numeric range, inclusive */
    int progs;     /* OPT_PROG_* bits */
    const char *help;
} OptDef;

#define TR OPT_PROG_TRAIN
#define EV OPT_PROG_EVAL
#define S(f) T_STR, offsetof(Options, f), sizeof(((Options *)0)->f)
#define I(f) T_INT, offsetof(Options, f), 0
#define L(f) T_LONG, offsetof(Options, f), 0
#define D(f) T_DBL, offsetof(Options, f), 0
#define U(f) T_U64, offsetof(Options, f), 0
#define BIG 9.0e15

static const OptDef k_opts[] = {
    {"train-data", S(train_data), 0, 0, TR, "training shards: brace list, directory or manifest"},
    {"val-data", S(val_data), 0, 0, TR | EV, "caption shards: image<->text retrieval recall@1/5/10; flip-train also logs the unmasked validation InfoNCE loss (val_loss) at the training global batch"},
    {"zeroshot-data", S(zeroshot_data), 0, 0, TR | EV, "labelled shards for zero-shot classification"},
    {"classnames", S(classnames), 0, 0, TR | EV, "class names, one per line in label order"},
    {"templates", S(templates), 0, 0, TR | EV, "prompt templates, one per line, {} = class name"},
    {"vocab", S(vocab), 0, 0, TR | EV, "vocab.txt for zero-shot prompts (default: next to the shards)"},
    {"augment", I(augment), 0, 1, TR, "random resized crop + horizontal flip (0 or 1)"},
    {"skip-bad", I(skip_bad), 0, 1, TR | EV, "replace unreadable samples (counted) instead of failing (0 or 1)"},
    {"batch-size", I(batch_size), 0, 1 << 20, TR, "batch per rank (or use --global-batch-size)"},
    {"global-batch-size", I(global_batch_size), 0, 1 << 24, TR | EV, "global batch G = batch per rank x ranks (flip-eval: with --val-data, also the unmasked validation InfoNCE loss at this G, as flip-train logs it)"},
    {"epochs", D(epochs), 0, 1e6, TR, "passes over the training data (or use --train-samples)"},
    {"train-samples", L(train_samples), 0, BIG, TR, "samples to train on in total (or use --epochs)"},
    {"max-minutes", D(max_minutes), 0, 1e7, TR, "stop after this many minutes of training (checkpoint + final eval). Alone (no --epochs/--train-samples) it sets the run length and LR schedule from the step time measured on this machine, so the run is NOT reproducible: it differs between machines, loads and rank counts; give --train-samples for rank-count invariant runs"},
    {"stop-at-step", L(stop_at_step), 0, BIG, TR, "stop with a checkpoint after this step (0: run to the end)"},
    {"lr", D(lr), 0, 10, TR, "peak learning rate"},
    {"wd", D(wd), 0, 10, TR, "AdamW decoupled weight decay"},
    {"beta1", D(beta1), 0, 0.999999, TR, "AdamW beta1, in [0, 1)"},
    {"beta2", D(beta2), 0, 0.999999999, TR, "AdamW beta2, in [0, 1)"},
    {"eps", D(eps), 1e-30, 1, TR, "AdamW epsilon"},
    {"warmup", L(warmup), 0, BIG, TR, "linear warmup steps"},
    {"lr-scheduler", S(lr_scheduler), 0, 0, TR, "cosine | const | const-cooldown"},
    {"min-lr", D(min_lr), 0, 10, TR, "cosine floor / cooldown target"},
    {"cooldown-steps", L(cooldown_steps), 0, BIG, TR, "const-cooldown: final linear decay steps"},
    {"grad-clip-norm", D(grad_clip_norm), 0, 1e30, TR, "clip the global gradient L2 norm (0: off)"},
    {"max-bad-steps", I(max_bad_steps), 1, 1 << 30, TR, "stop after this many non-finite steps in a row"},
    {"model", S(model), 0, 0, TR, "model preset (the size flags below override its values)"},
    {"width", I(width), 0, 16384, TR, "vision width C (0: the preset's); a multiple of 4 and of --heads"},
    {"depth", I(depth), 0, 256, TR, "vision transformer blocks L (0: the preset's)"},
    {"heads", I(heads), 0, 16384, TR, "vision attention heads (0: the preset's); must divide the width"},
    {"text-width", I(text_width), 0, 16384, TR, "text width Ct (0: the preset's); a multiple of --text-heads"},
    {"text-depth", I(text_depth), 0, 256, TR, "text transformer blocks Lt (0: the preset's)"},
    {"text-heads", I(text_heads), 0, 16384, TR, "text attention heads (0: the preset's); must divide the text width"},
    {"embed-dim", I(embed_dim), 0, 16384, TR, "joint embedding D (0: the preset's)"},
    {"patch-size", I(patch_size), 0, 4096, TR, "image patch side p (0: the preset's); must divide the image size"},
    {"image-size", I(image_size), 0, 4096, TR, "image size (0: from the shards; must match them)"},
    {"channels", I(channels), 0, 3, TR, "image channels 1 or 3 (0: from the shards)"},
    {"vocab-size", I(vocab_size), 0, 1 << 24, TR, "vocabulary size (0: from the shards)"},
    {"context", I(context), 0, 512, TR, "text length T (0: from the shards)"},
    {"mask-ratio", D(mask_ratio), 0, 0.99, TR, "fraction of image patches dropped in pre-training"},
    {"unmasked-tune-samples", L(unmasked_tune_samples), 0, BIG, TR, "final samples trained at mask 0 (FLIP unmasked tuning)"},
    {"seed", U(seed), 0, 1.8e19, TR, "seed of init, data order, masks and augmentation"},
    {"precision", S(precision), 0, 0, TR | EV, "fp32 | bf16 (flip-train: linear-layer matmuls and their input activations in bf16 on AVX512-BF16, fp32 master weights)"},
    {"logs", S(logs), 0, 0, TR, "folder of runs"},
    {"name", S(name), 0, 0, TR, "run name: outputs go to <logs>/<name>/"},
    {"save-frequency", L(save_frequency), 0, BIG, TR, "steps between checkpoints (0: only at the end)"},
    {"save-keep", I(save_keep), 1, 1 << 20, TR, "keep the last K checkpoints"},
    {"resume", S(resume), 0, 0, TR, "latest | PATH of a checkpoint"},
    {"zeroshot-frequency", L(zeroshot_frequency), 0, BIG, TR, "steps between evaluations (0: only at the end)"},
    {"log-every", L(log_every), 1, BIG, TR, "steps between log lines"},
    {"dump-params", S(dump_params), 0, 0, TR, "write the final parameters as raw float32 (tests)"},
    {"debug-nan-from-step", L(debug_nan_from_step), 0, BIG, TR, "tests: make gradients non-finite from this 1-based step on (0: off)"},
    {"profile", I(profile), 0, 1, TR, "1: time every step by op class (matmul, attention, layernorm, gelu, loss, optimizer, embed, bf16 convert, comm wait, data wait) and print rank 0's breakdown at the end (costs ~1 clock read per op)"},
    {"threads", I(threads), 0, 1024, TR | EV, "OpenMP threads per rank (0: OMP_NUM_THREADS)"},
    {"peak-gflops", D(peak_gflops), 0, 1e9, TR, "per-rank peak GFLOP/s for MFU (0: measure a 1 s matmul)"},
    {"bucket-mb", D(bucket_mb), 0.001, 4096, TR, "gradient all-reduce bucket size in MB"},
    {"eval-batch-size", I(eval_batch_size), 1, 1 << 20, TR | EV, "evaluation batch per rank (the validation loss encodes in chunks of it; its global batch stays the training one)"},
    {"checkpoint", S(checkpoint), 0, 0, EV, "checkpoint to evaluate"},
};
#define N_OPTS ((int)(sizeof k_opts / sizeof k_opts[0]))

void options_defaults(Options *o) {
    memset(o, 0, sizeof *o);
    o->augment = 1;
    o->lr = 5e-4;
    o->wd = 0.2;
    o->beta1 = 0.9;
    o->beta2 = 0.95; /* FLIP (arXiv 2212.00794) Table 9: AdamW beta2 0.95 */
    /* 1e-6 (OpenCLIP), not 1e-8: parameters whose exact gradient is zero (the
     * attention key bias: softmax is shift-invariant) carry float noise ~1e-9
     * that eps 1e-8 would turn into lr-sized random updates, differing across
     * rank counts and breaking the invariance contract (DESIGN §3). */
    o->eps = 1e-6;
    o->warmup = 0;
    snprintf(o->lr_scheduler, sizeof o->lr_scheduler, "cosine");
    o->max_bad_steps = 5;
    snprintf(o->model, sizeof o->model, "tiny");
    o->mask_ratio = 0.5;
    o->seed = 0;
    snprintf(o->precision, sizeof o->precision, "fp32");
    snprintf(o->logs, sizeof o->logs, "logs");
    snprintf(o->name, sizeof o->name, "run");
    o->save_keep = 3;
    o->log_every = 10;
    o->bucket_mb = 4.0;
    o->eval_batch_size = 64;
}

static void set_err(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

static const OptDef *find_opt(const char *name, size_t len, int prog) {
    for (int i = 0; i < N_OPTS; i++)
        if ((k_opts[i].progs & prog) && strlen(k_opts[i].name) == len && strncmp(k_opts[i].name, name, len) == 0)
            return &k_opts[i];
    return NULL;
}

/* `where` names the flag ("--lr") or the config line ("run.cfg:3: lr"). */
static int set_value(Options *o, const OptDef *d, const char *val, const char *where, char *err, size_t eb) {
    char *p = (char *)o + d->off;
    if (d->type == T_STR) {
        size_t n = strlen(val);
        if (n == 0) { set_err(err, eb, "%s: empty value", where); return -1; }
        if (n >= d->size) { set_err(err, eb, "%s: value longer than %zu characters", where, d->size - 1); return -1; }
        memcpy(p, val, n + 1);
        return 0;
    }
    char *end = NULL;
    errno = 0;
    if (d->type == T_DBL) {
        double x = strtod(val, &end);
        if (end == val || *end || errno || !isfinite(x)) {
            set_err(err, eb, "%s: expected a number, got '%s'", where, val);
            return -1;
        }
        if (x < d->lo || x > d->hi) {
            set_err(err, eb, "%s: %s is out of range [%g, %g]", where, val, d->lo, d->hi);
            return -1;
        }
        *(double *)p = x;
        return 0;
    }
    if (d->type == T_U64) {
        if (val[0] == '-') { set_err(err, eb, "%s: expected a non-negative integer, got '%s'", where, val); return -1; }
        unsigned long long x = strtoull(val, &end, 10);
        if (end == val || *end || errno) {
            set_err(err, eb, "%s: expected a non-negative integer, got '%s'", where, val);
            return -1;
        }
        *(uint64_t *)p = (uint64_t)x;
        return 0;
    }
    long long x = strtoll(val, &end, 10);
    if (end == val || *end || errno) {
        set_err(err, eb, "%s: expected an integer, got '%s'", where, val);
        return -1;
    }
    if ((double)x < d->lo || (double)x > d->hi) {
        set_err(err, eb, "%s: %s is out of range [%.0f, %.0f]", where, val, d->lo, d->hi);
        return -1;
    }
    if (d->type == T_INT) *(int *)p = (int)x;
    else *(long *)p = (long)x;
    return 0;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

static int read_config(Options *o, int prog, const char *path, char *err, size_t eb) {
    FILE *f = fopen(path, "r");
    if (!f) { set_err(err, eb, "--config %s: cannot open (%s)", path, strerror(errno)); return -1; }
    char line[4096];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            set_err(err, eb, "%s:%d: line longer than %zu characters", path, lineno, sizeof line - 2);
            rc = -1;
            break;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *s = trim(line);
        if (!*s) continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            set_err(err, eb, "%s:%d: expected 'key = value', got '%s'", path, lineno, s);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        if (key[0] == '-' && key[1] == '-') key += 2;
        for (char *c = key; *c; c++)
            if (*c == '_') *c = '-';
        const OptDef *d = find_opt(key, strlen(key), prog);
        if (!d || strcmp(key, "config") == 0) {
            set_err(err, eb, "%s:%d: unknown key '%s' (see --help)", path, lineno, key);
            rc = -1;
            break;
        }
        char where[OPT_PATH + 300];
        snprintf(where, sizeof where, "%s:%d: %s", path, lineno, key);
        if (set_value(o, d, val, where, err, eb)) { rc = -1; break; }
    }
    fclose(f);
    return rc;
}

static int is_one_of(const char *s, const char *const *list) {
    for (; *list; list++)
        if (strcmp(s, *list) == 0) return 1;
    return 0;
}

static int check_combinations(const Options *o, int prog, char *err, size_t eb) {
    static const char *const scheds[] = {"cosine", "const", "const-cooldown", NULL};
    if (strcmp(o->precision, "fp32") != 0) {
        if (strcmp(o->precision, "bf16") != 0) {
            set_err(err, eb, "--precision: unknown '%s' (use fp32 or bf16)", o->precision);
            return -1;
        }
        if (prog == OPT_PROG_EVAL) {
            set_err(err, eb, "--precision bf16: flip-eval runs in fp32 (bf16 is a flip-train option)");
            return -1;
        }
    }
    if (prog == OPT_PROG_EVAL) {
        if (!o->checkpoint[0]) { set_err(err, eb, "--checkpoint: required (a checkpoint .h5 written by flip-train)"); return -1; }
        if (!o->zeroshot_data[0] && !o->val_data[0]) {
            set_err(err, eb, "nothing to evaluate: give --zeroshot-data (+ --classnames, --templates) and/or --val-data");
            return -1;
        }
    } else {
        if (!o->train_data[0]) { set_err(err, eb, "--train-data: required (shards written by flip-prep)"); return -1; }
        if (!is_one_of(o->lr_scheduler, scheds)) {
            set_err(err, eb, "--lr-scheduler: unknown '%s' (use cosine, const or const-cooldown)", o->lr_scheduler);
            return -1;
        }
        if (o->batch_size == 0 && o->global_batch_size == 0) {
            set_err(err, eb, "--batch-size or --global-batch-size: one is required");
            return -1;
        }
        if (o->epochs == 0 && o->train_samples == 0 && o->max_minutes == 0) {
            set_err(err, eb, "--epochs, --train-samples or --max-minutes: one is required");
            return -1;
        }
        if (o->epochs > 0 && o->train_samples > 0) {
            set_err(err, eb, "--epochs and --train-samples: give only one");
            return -1;
        }
        if (o->channels != 0 && o->channels != 1 && o->channels != 3) {
            set_err(err, eb, "--channels: %d is not 1 or 3", o->channels);
            return -1;
        }
        if (strcmp(o->lr_scheduler, "const-cooldown") == 0 && o->cooldown_steps == 0) {
            set_err(err, eb, "--lr-scheduler const-cooldown: needs --cooldown-steps > 0");
            return -1;
        }
        if (o->min_lr > o->lr) {
            set_err(err, eb, "--min-lr: %g is above --lr %g", o->min_lr, o->lr);
            return -1;
        }
    }
    if (o->zeroshot_data[0] && (!o->classnames[0] || !o->templates[0])) {
        set_err(err, eb, "--zeroshot-data: also needs --classnames FILE and --templates FILE");
        return -1;
    }
    return 0;
}

int options_parse(Options *o, OptProg prog, int argc, char **argv, char *err, size_t eb) {
    /* --config first, so the flags override it wherever it appears */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--config") == 0 || strncmp(a, "--config=", 9) == 0) {
            const char *path = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[i + 1] : NULL);
            if (!path || !*path) { set_err(err, eb, "--config: missing FILE"); return -1; }
            if (read_config(o, (int)prog, path, err, eb)) return -1;
            if (a[8] != '=') i++;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
        if (a[0] != '-' || a[1] != '-' || !a[2]) {
            set_err(err, eb, "unexpected argument '%s' (flags are --name VALUE; see --help)", a);
            return -1;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const char *val;
        if (eq) {
            val = eq + 1;
        } else {
            if (i + 1 >= argc) { set_err(err, eb, "--%.*s: missing value", (int)len, name); return -1; }
            val = argv[++i];
        }
        if (len == 6 && strncmp(name, "config", 6) == 0) continue; /* applied above */
        const OptDef *d = find_opt(name, len, (int)prog);
        if (!d) {
            set_err(err, eb, "--%.*s: unknown flag (see --help)", (int)len, name);
            return -1;
        }
        char where[128];
        snprintf(where, sizeof where, "--%s", d->name);
        if (set_value(o, d, val, where, err, eb)) return -1;
    }
    return check_combinations(o, (int)prog, err, eb);
}

void options_help(OptProg prog, const char *progname) {
    Options def;
    options_defaults(&def);
    printf("usage: %s [--config FILE] [--flag VALUE]...\n", progname);
    printf("  %-24s %s\n", "--config FILE", "key = value lines (flag names without --); flags override it");
    for (int i = 0; i < N_OPTS; i++) {
        const OptDef *d = &k_opts[i];
        if (!(d->progs & (int)prog)) continue;
        char dflt[64] = "";
        const char *p = (const char *)&def + d->off;
        switch (d->type) {
        case T_STR: if (*p) snprintf(dflt, sizeof dflt, " [%s]", p); break;
        case T_INT: snprintf(dflt, sizeof dflt, " [%d]", *(const int *)p); break;
        case T_LONG: snprintf(dflt, sizeof dflt, " [%ld]", *(const long *)p); break;
        case T_DBL: snprintf(dflt, sizeof dflt, " [%g]", *(const double *)p); break;
        case T_U64: snprintf(dflt, sizeof dflt, " [%llu]", (unsigned long long)*(const uint64_t *)p); break;
        }
        printf("  --%-22s %s%s\n", d->name, d->help, dflt);
    }
}

size_t options_format(const Options *o, OptProg prog, char *buf, size_t n) {
    size_t used = 0;
    if (n) buf[0] = '\0';
    for (int i = 0; i < N_OPTS; i++) {
        const OptDef *d = &k_opts[i];
        if (!(d->progs & (int)prog)) continue;
        const char *p = (const char *)o + d->off;
        char val[OPT_PATH + 64];
        switch (d->type) {
        case T_STR: snprintf(val, sizeof val, "%s", p); break;
        case T_INT: snprintf(val, sizeof val, "%d", *(const int *)p); break;
        case T_LONG: snprintf(val, sizeof val, "%ld", *(const long *)p); break;
        case T_DBL: snprintf(val, sizeof val, "%.17g", *(const double *)p); break;
        case T_U64: snprintf(val, sizeof val, "%llu", (unsigned long long)*(const uint64_t *)p); break;
        }
        if (d->type == T_STR && !val[0]) continue; /* unset: not re-readable as empty */
        int w = snprintf(buf + used, used < n ? n - used : 0, "%s = %s\n", d->name, val);
        if (w > 0) used += (size_t)w;
        if (used >= n) { if (n) buf[n - 1] = '\0'; return n ? n - 1 : 0; }
    }
    return used;
}
