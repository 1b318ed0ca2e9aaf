/* prep.c — flip-prep: flags, the reader -> workers -> ordered writer pipeline,
 * progress, skip accounting, manifest and resume (see prep.h).
 *
 * Threads: the reader calls source_next and fills a ring of Q slots in input
 * order; workers claim filled slots in order and decode/resize/tokenize into
 * the slot's own buffers; the calling thread (the writer) consumes slot
 * n_written only when it is done, so output order is input order for any
 * number of workers. One mutex guards the counters; every HDF5 call is on the
 * writer thread. Ownership: each slot owns its pixel and token buffers; a
 * slot's SourceItem is freed by the writer after use. */
#include "prep.h"

#include "brace.h"
#include "common.h"
#include "image.h"
#include "sha256.h"
#include "shard.h"
#include "sources.h"
#include "wordpiece.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PREP_MAX_WARNINGS 20
#define PREP_VOCAB_MAX_TEXTS 2000000L
#define PREP_TOKENIZER_NAME "wordpiece-uncased"

static const float CLIP_MEAN[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float CLIP_STD[3] = {0.26862954f, 0.26130258f, 0.27577711f};
static const float FMNIST_MEAN = 0.2860f, FMNIST_STD = 0.3530f;

typedef struct {
    int mode; /* 0 shards, 1 vocab */
    SourceKind kind;
    int kind_set;
    const char **inputs;
    int n_inputs;
    const char *output;
    const char *vocab;
    long learn_vocab; /* shards: learn a vocabulary of this size (0: --vocab) */
    long vocab_size;  /* vocab mode: --size */
    long image_size, channels, context, shard_size, workers, zstd_level, limit;
    const char *prefix;
    int strict, keep_captions, label_shards;
    const char *labels, *classes, *templates;
    unsigned long long template_seed;
    int template_seed_set;
    float mean[3], std[3];
    int n_mean, n_std;
} PrepConfig;

/* ---- flags --------------------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(f,
        "flip-prep " FLIP_PREP_VERSION " — turn raw image-text pairs into flip shards\n"
        "\n"
        "usage:\n"
        "  flip-prep shards --source csv|tsv|tar|idx|folder --input PATH [PATH...] --output DIR\n"
        "                   (--vocab vocab.txt | --learn-vocab SIZE) [options]\n"
        "  flip-prep vocab  --source csv|tsv|tar|idx|folder --input PATH [PATH...] --size SIZE --output vocab.txt\n"
        "\n"
        "inputs:\n"
        "  --source KIND        csv or tsv table of (image path, caption); tar: webdataset shards\n"
        "                       (key.jpg/png + key.txt, as img2dataset writes); idx: IDX images + labels;\n"
        "                       folder: image folders, each x.jpg/x.png with its caption in x.txt beside it\n"
        "                       (recursive, sorted path order; an image without x.txt: 'missing file')\n"
        "  --input PATH...      one or more files (folders for --source folder); brace lists allowed:\n"
        "                       'data/{00000..00099}.tar'\n"
        "  --limit N            stop after N written samples (vocab learning: the first N items)\n"
        "idx only:\n"
        "  --labels FILE        IDX label file (required)\n"
        "  --classes FILE       class names, one per line, in label order (required)\n"
        "  --templates FILE     caption templates, one per line, {} = class name ('#' comments);\n"
        "                       default 'a photo of a {}.'\n"
        "  --template-seed N    seed of the per-sample template draw (default 0)\n"
        "  --label-shards       also write /labels (shards for zero-shot evaluation)\n"
        "output:\n"
        "  --output DIR         shards, vocab.txt and manifest.json go here (vocab mode: the vocab file)\n"
        "  --vocab FILE         use this BERT-style vocab.txt (copied to DIR/vocab.txt)\n"
        "  --learn-vocab SIZE   learn a WordPiece vocabulary of at most SIZE tokens from the captions\n"
        "  --size SIZE          vocab mode: vocabulary size\n"
        "  --image-size S       resize the shorter side to S and center-crop S x S (default 224)\n"
        "  --channels 3|1       RGB or grayscale (default 3)\n"
        "  --context T          token row length incl. [CLS]/[SEP] (default 32)\n"
        "  --shard-size N       samples per shard (default 10000)\n"
        "  --prefix NAME        shard names NAME-000000.h5 ... (default train)\n"
        "  --zstd-level L       1..22 (default 3)\n"
        "  --keep-captions      also store the caption strings (/captions)\n"
        "  --mean A[,B,C]       normalisation mean attribute (default CLIP's; 1 channel 0.2860)\n"
        "  --std A[,B,C]        normalisation std attribute (default CLIP's; 1 channel 0.3530)\n"
        "run:\n"
        "  --workers N          decode/resize/tokenize threads (default: number of cores)\n"
        "  --strict             the first skipped item is a fatal error (exit 1)\n"
        "  --help               this text\n"
        "\n"
        "Unreadable, corrupt or missing images and empty or non-UTF-8 captions are skipped,\n"
        "counted by reason and warned about (first %d). A re-run with the same flags keeps the\n"
        "complete shards and redoes the rest. Exit: 0 ok, 2 bad flags, 1 fatal error.\n",
        PREP_MAX_WARNINGS);
}

static int flag_error(const char *fmt, ...) FLIP_PRINTF(1, 2);
static int flag_error(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "flip-prep: %s\n", msg);
    return 2;
}

static int parse_long(const char *flag, const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi)
        return flag_error("%s must be an integer in [%ld, %ld], got '%s'", flag, lo, hi, v);
    *out = x;
    return 0;
}

static int parse_floats(const char *flag, const char *v, float *out, int *n) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    *n = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        char *end;
        errno = 0;
        double x = strtod(tok, &end);
        if (*n == 3 || !*tok || *end || errno || !isfinite(x) || x < -10 || x > 10)
            return flag_error("%s takes 1 or 3 comma-separated numbers (e.g. 0.5 or 0.48,0.46,0.41), got '%s'", flag, v);
        out[(*n)++] = (float)x;
    }
    if (*n != 1 && *n != 3)
        return flag_error("%s takes 1 or 3 comma-separated numbers, got '%s'", flag, v);
    return 0;
}

/* 0 ok, 2 bad flags, 3 help printed */
static int parse_flags(PrepConfig *c, int argc, char **argv) {
    memset(c, 0, sizeof *c);
    c->image_size = 224;
    c->channels = 3;
    c->context = 32;
    c->shard_size = 10000;
    c->zstd_level = SHARD_ZSTD_LEVEL_DEFAULT;
    c->limit = -1;
    c->prefix = "train";
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    c->workers = cores > 0 ? (cores > 256 ? 256 : cores) : 1;
    c->inputs = flip_calloc((size_t)argc + 1, sizeof(char *), "inputs");
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 3;
        }
    if (argc < 2) return flag_error("missing command: 'shards' or 'vocab' (see flip-prep --help)");
    if (strcmp(argv[1], "shards") == 0) c->mode = 0;
    else if (strcmp(argv[1], "vocab") == 0) c->mode = 1;
    else return flag_error("unknown command '%s': the first argument is 'shards' or 'vocab' (see flip-prep --help)", argv[1]);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) return flag_error("unexpected argument '%s' (flags start with --; see --help)", a);
        char name[64];
        const char *eq = strchr(a, '='), *val = NULL;
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        if (nl >= sizeof name) return flag_error("unknown flag '%.60s...' (see flip-prep --help)", a);
        memcpy(name, a, nl);
        name[nl] = 0;
        static const char *const bools[] = {"--strict", "--keep-captions", "--label-shards", NULL};
        int is_bool = 0;
        for (int k = 0; bools[k]; k++)
            if (strcmp(name, bools[k]) == 0) is_bool = 1;
        if (is_bool) {
            if (eq) return flag_error("%s takes no value", name);
            if (strcmp(name, "--strict") == 0) c->strict = 1;
            else if (strcmp(name, "--keep-captions") == 0) c->keep_captions = 1;
            else c->label_shards = 1;
            continue;
        }
        if (eq) val = eq + 1;
        else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) val = argv[++i];
        else return flag_error("%s needs a value (see flip-prep --help)", name);
        if (!*val) return flag_error("%s needs a non-empty value", name);
        if (strcmp(name, "--source") == 0) {
            if (source_kind_parse(val, &c->kind) != 0)
                return flag_error("--source must be one of csv, tsv, tar, idx, folder; got '%s'", val);
            c->kind_set = 1;
        } else if (strcmp(name, "--input") == 0) {
            c->inputs[c->n_inputs++] = val;
            while (!eq && i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) c->inputs[c->n_inputs++] = argv[++i];
        } else if (strcmp(name, "--output") == 0) c->output = val;
        else if (strcmp(name, "--vocab") == 0) c->vocab = val;
        else if (strcmp(name, "--prefix") == 0) {
            for (const char *p = val; *p; p++)
                if (*p == '/' || *p == ' ' || *p == '{' || *p == '}')
                    return flag_error("--prefix must be a plain file-name prefix (no '/', spaces or braces), got '%s'", val);
            c->prefix = val;
        } else if (strcmp(name, "--labels") == 0) c->labels = val;
        else if (strcmp(name, "--classes") == 0) c->classes = val;
        else if (strcmp(name, "--templates") == 0) c->templates = val;
        else if (strcmp(name, "--template-seed") == 0) {
            char *end;
            errno = 0;
            c->template_seed = strtoull(val, &end, 10);
            if (*end || errno || val[0] == '-')
                return flag_error("--template-seed must be a non-negative integer, got '%s'", val);
            c->template_seed_set = 1;
        } else if (strcmp(name, "--learn-vocab") == 0) {
            if (parse_long(name, val, 16, SHARD_MAX_VOCAB, &c->learn_vocab)) return 2;
        } else if (strcmp(name, "--size") == 0) {
            if (parse_long(name, val, 16, SHARD_MAX_VOCAB, &c->vocab_size)) return 2;
        } else if (strcmp(name, "--image-size") == 0) {
            if (parse_long(name, val, 1, SHARD_MAX_HW, &c->image_size)) return 2;
        } else if (strcmp(name, "--channels") == 0) {
            if (strcmp(val, "1") != 0 && strcmp(val, "3") != 0)
                return flag_error("--channels must be 3 (RGB) or 1 (grayscale), got '%s'", val);
            c->channels = val[0] - '0';
        } else if (strcmp(name, "--context") == 0) {
            if (parse_long(name, val, 2, SHARD_MAX_T, &c->context)) return 2;
        } else if (strcmp(name, "--shard-size") == 0) {
            if (parse_long(name, val, 1, 2147483647L, &c->shard_size)) return 2;
        } else if (strcmp(name, "--workers") == 0) {
            if (parse_long(name, val, 1, 256, &c->workers)) return 2;
        } else if (strcmp(name, "--zstd-level") == 0) {
            if (parse_long(name, val, 1, 22, &c->zstd_level)) return 2;
        } else if (strcmp(name, "--limit") == 0) {
            if (parse_long(name, val, 1, 2147483647L, &c->limit)) return 2;
        } else if (strcmp(name, "--mean") == 0) {
            if (parse_floats(name, val, c->mean, &c->n_mean)) return 2;
        } else if (strcmp(name, "--std") == 0) {
            if (parse_floats(name, val, c->std, &c->n_std)) return 2;
            for (int k = 0; k < c->n_std; k++)
                if (!(c->std[k] > 0)) return flag_error("--std values must be > 0, got '%s'", val);
        } else {
            return flag_error("unknown flag '%s' (see flip-prep --help)", name);
        }
    }
    if (!c->kind_set) return flag_error("--source is required (csv, tsv, tar, idx or folder)");
    if (c->n_inputs == 0) return flag_error("--input is required");
    if (!c->output) return flag_error(c->mode ? "--output FILE (the vocab.txt to write) is required" : "--output DIR is required");
    if (c->kind == SOURCE_IDX) {
        if (!c->labels) return flag_error("--source idx needs --labels FILE (the IDX label file)");
        if (!c->classes) return flag_error("--source idx needs --classes FILE (one class name per line)");
    } else {
        const char *idx_only = c->labels ? "--labels" : c->classes ? "--classes" : c->templates ? "--templates"
                             : c->label_shards ? "--label-shards" : c->template_seed_set ? "--template-seed" : NULL;
        if (idx_only) return flag_error("%s only applies to --source idx", idx_only);
    }
    if (c->mode == 1) {
        if (!c->vocab_size) return flag_error("vocab: --size SIZE is required");
        if (c->vocab || c->learn_vocab) return flag_error("vocab: use --size, not --vocab/--learn-vocab");
    } else {
        if (!c->vocab == !c->learn_vocab)
            return flag_error("shards: give exactly one of --vocab FILE or --learn-vocab SIZE");
        if (c->vocab_size) return flag_error("--size belongs to 'flip-prep vocab'; use --learn-vocab SIZE with shards");
    }
    if (c->n_mean && c->n_mean != c->channels)
        return flag_error("--mean needs %ld value(s) for --channels %ld", c->channels, c->channels);
    if (c->n_std && c->n_std != c->channels)
        return flag_error("--std needs %ld value(s) for --channels %ld", c->channels, c->channels);
    return 0;
}

/* ---- small helpers -------------------------------------------------------- */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int mkdir_p(const char *dir) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
            *p = '/';
        }
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
    struct stat st;
    return stat(buf, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

static uint64_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

typedef struct { /* growable text */
    char *s;
    size_t n, cap;
} Text;

static void text_add(Text *t, const char *fmt, ...) FLIP_PRINTF(2, 3);
static void text_add(Text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (t->n + (size_t)need + 1 > t->cap) {
        size_t cap = (t->n + (size_t)need + 1) * 2;
        char *s = flip_malloc(cap, "text");
        if (t->n) memcpy(s, t->s, t->n);
        flip_free(t->s);
        t->s = s;
        t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->n, (size_t)need + 1, fmt, ap);
    va_end(ap);
    t->n += (size_t)need;
}

/* ---- manifest ------------------------------------------------------------- */

typedef struct {
    char file[256];
    long n, first_item, n_items;
    long skipped[SKIP_N_REASONS];
    unsigned long long bytes_in, bytes_out;
} ShardEntry;

typedef struct {
    const PrepConfig *cfg;
    const Source *src;
    char fingerprint[65];
    char vocab_sha[65];
    int vocab_size;
    float mean[3], std[3];
    ShardEntry *shards;
    int n_shards, cap_shards;
    /* totals over the whole output (reused shards included) */
    long written, items;
    long skipped[SKIP_N_REASONS];
    unsigned long long bytes_in, bytes_out;
    double seconds;
    /* measured pixel statistics of the samples written by this run */
    uint64_t px_sum[3], px_sumsq[3], px_count;
} Manifest;

static void manifest_push(Manifest *m, const ShardEntry *e) {
    if (m->n_shards == m->cap_shards) {
        int cap = m->cap_shards ? m->cap_shards * 2 : 16;
        ShardEntry *s = flip_malloc(sizeof(ShardEntry) * (size_t)cap, "manifest shards");
        if (m->n_shards) memcpy(s, m->shards, sizeof(ShardEntry) * (size_t)m->n_shards);
        flip_free(m->shards);
        m->shards = s;
        m->cap_shards = cap;
    }
    m->shards[m->n_shards++] = *e;
}

static void measured_stats(const Manifest *m, int C, double *mean, double *std) {
    for (int c = 0; c < C; c++) {
        double n = (double)m->px_count;
        double mu = n > 0 ? (double)m->px_sum[c] / n / 255.0 : 0;
        double var = n > 0 ? (double)m->px_sumsq[c] / n / (255.0 * 255.0) - mu * mu : 0;
        mean[c] = mu;
        std[c] = var > 0 ? sqrt(var) : 0;
    }
}

/* Writes DIR/manifest.json via a temporary file and rename. */
static void manifest_write(const Manifest *m, int complete) {
    const PrepConfig *c = m->cfg;
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/manifest.json", c->output);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    FLIP_CHECK(f, "%s: cannot write the manifest (%s); check that --output is writable", tmp, strerror(errno));
    int C = (int)c->channels;
    fprintf(f, "{\n  \"format\": \"flip-manifest\",\n  \"version\": 1,\n  \"created_by\": \"flip-prep " FLIP_PREP_VERSION "\",\n");
    fprintf(f, "  \"complete\": %s,\n  \"fingerprint\": \"%s\",\n", complete ? "true" : "false", m->fingerprint);
    fprintf(f, "  \"source\": \"%s\",\n  \"inputs\": [", source_kind_name(c->kind));
    for (int i = 0; i < source_n_files(m->src); i++) {
        if (i) fputs(", ", f);
        json_str(f, source_file(m->src, i));
    }
    fprintf(f, "],\n  \"image_size\": %ld,\n  \"channels\": %d,\n  \"context\": %ld,\n", c->image_size, C, c->context);
    fprintf(f, "  \"tokenizer\": \"%s\",\n  \"vocab\": \"vocab.txt\",\n  \"vocab_size\": %d,\n  \"vocab_sha256\": \"%s\",\n",
            PREP_TOKENIZER_NAME, m->vocab_size, m->vocab_sha);
    fprintf(f, "  \"mean\": [");
    for (int k = 0; k < C; k++) fprintf(f, "%s%.8g", k ? ", " : "", (double)m->mean[k]);
    fprintf(f, "],\n  \"std\": [");
    for (int k = 0; k < C; k++) fprintf(f, "%s%.8g", k ? ", " : "", (double)m->std[k]);
    double mm[3], ms[3];
    measured_stats(m, C, mm, ms);
    fprintf(f, "],\n  \"measured_mean\": [");
    for (int k = 0; k < C; k++) fprintf(f, "%s%.6f", k ? ", " : "", mm[k]);
    fprintf(f, "],\n  \"measured_std\": [");
    for (int k = 0; k < C; k++) fprintf(f, "%s%.6f", k ? ", " : "", ms[k]);
    fprintf(f, "],\n  \"measured_over_samples\": %llu,\n",
            (unsigned long long)(m->px_count / ((uint64_t)c->image_size * (uint64_t)c->image_size)));
    fprintf(f, "  \"shard_size\": %ld,\n  \"labels\": %s,\n  \"captions\": %s,\n", c->shard_size,
            c->label_shards ? "true" : "false", c->keep_captions ? "true" : "false");
    fprintf(f, "  \"shards\": [\n");
    for (int i = 0; i < m->n_shards; i++) {
        const ShardEntry *e = &m->shards[i];
        fprintf(f, "    {\"file\": \"%s\", \"n\": %ld, \"first_item\": %ld, \"n_items\": %ld, \"skipped\": [%ld, %ld, %ld, %ld, %ld], "
                   "\"bytes_in\": %llu, \"bytes_out\": %llu}%s\n",
                e->file, e->n, e->first_item, e->n_items, e->skipped[1], e->skipped[2], e->skipped[3], e->skipped[4],
                e->skipped[5], e->bytes_in, e->bytes_out, i + 1 < m->n_shards ? "," : "");
    }
    fprintf(f, "  ],\n  \"totals\": {\"samples\": %ld, \"items\": %ld, \"skipped\": {", m->written, m->items);
    for (int r = 1; r < SKIP_N_REASONS; r++)
        fprintf(f, "%s\"%s\": %ld", r > 1 ? ", " : "", skip_reason_name((SkipReason)r), m->skipped[r]);
    fprintf(f, "}, \"bytes_in\": %llu, \"bytes_out\": %llu, \"seconds\": %.3f}\n}\n", m->bytes_in, m->bytes_out,
            m->seconds);
    FLIP_CHECK(fflush(f) == 0 && fsync(fileno(f)) == 0 && fclose(f) == 0, "%s: write failed (%s); disk full?", tmp,
               strerror(errno));
    FLIP_CHECK(rename(tmp, path) == 0, "cannot rename %s to %s (%s)", tmp, path, strerror(errno));
}

/* Reads the shard entries of a previous run's manifest if its fingerprint
 * matches; returns the number of entries (0: none usable). */
static int manifest_load(const char *dir, const char *fingerprint, ShardEntry **out, int *complete) {
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    size_t n;
    int e;
    char *text = (char *)source_read_file(path, &n, &e);
    *out = NULL;
    *complete = 0;
    if (!text) return 0;
    char fp[65] = "";
    const char *p = strstr(text, "\"fingerprint\": \"");
    if (p) sscanf(p, "\"fingerprint\": \"%64[0-9a-f]\"", fp);
    if (strcmp(fp, fingerprint) != 0) {
        flip_free(text);
        return -1;
    }
    *complete = strstr(text, "\"complete\": true") != NULL;
    int cap = 16, count = 0;
    ShardEntry *es = flip_malloc(sizeof(ShardEntry) * (size_t)cap, "manifest shards");
    for (p = strstr(text, "{\"file\": \""); p; p = strstr(p + 1, "{\"file\": \"")) {
        ShardEntry s;
        memset(&s, 0, sizeof s);
        int got = sscanf(p, "{\"file\": \"%255[^\"]\", \"n\": %ld, \"first_item\": %ld, \"n_items\": %ld, \"skipped\": [%ld, %ld, %ld, %ld, %ld], "
                            "\"bytes_in\": %llu, \"bytes_out\": %llu}",
                         s.file, &s.n, &s.first_item, &s.n_items, &s.skipped[1], &s.skipped[2], &s.skipped[3],
                         &s.skipped[4], &s.skipped[5], &s.bytes_in, &s.bytes_out);
        if (got != 11) break;
        if (count == cap) {
            ShardEntry *b = flip_malloc(sizeof(ShardEntry) * (size_t)cap * 2, "manifest shards");
            memcpy(b, es, sizeof(ShardEntry) * (size_t)count);
            flip_free(es);
            es = b;
            cap *= 2;
        }
        es[count++] = s;
    }
    flip_free(text);
    *out = es;
    return count;
}

/* ---- pipeline ------------------------------------------------------------- */

typedef struct {
    SourceItem item;
    uint8_t *pixels; /* (S, S, C) */
    int32_t *tokens; /* (T) */
    int length;
    SkipReason skip;
    char reason[512];
    size_t bytes_in;
    double fraction;
    int done;
} Slot;

typedef struct {
    const Tokenizer *tok;
    Source *src;
    int S, C, T;
    Slot *slots;
    long Q;
    pthread_mutex_t mu;
    pthread_cond_t cv_reader, cv_worker, cv_writer;
    long n_read, n_claimed, n_written;
    long skip_items; /* resume: items with index < skip_items are dropped by the reader */
    int reader_done, reader_failed, stop;
    char reader_err[512];
} Pipe;

static void *reader_main(void *arg) {
    Pipe *p = arg;
    for (;;) {
        SourceItem it;
        char err[512];
        int r = source_next(p->src, &it, err, sizeof err);
        double frac = source_fraction(p->src);
        if (r == 1 && it.index < p->skip_items) {
            source_item_free(&it);
            continue;
        }
        pthread_mutex_lock(&p->mu);
        if (r != 1) {
            if (r < 0) {
                p->reader_failed = 1;
                snprintf(p->reader_err, sizeof p->reader_err, "%s", err);
            }
            break;
        }
        while (!p->stop && p->n_read - p->n_written >= p->Q) pthread_cond_wait(&p->cv_reader, &p->mu);
        if (p->stop) {
            source_item_free(&it);
            break;
        }
        Slot *s = &p->slots[p->n_read % p->Q];
        s->item = it;
        s->done = 0;
        s->fraction = frac;
        p->n_read++;
        pthread_cond_broadcast(&p->cv_worker);
        pthread_mutex_unlock(&p->mu);
    }
    p->reader_done = 1;
    pthread_cond_broadcast(&p->cv_worker);
    pthread_cond_broadcast(&p->cv_writer);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void luma_or_replicate(uint8_t *dst, int C, const uint8_t *src, int c, size_t n_px) {
    for (size_t i = 0; i < n_px; i++) {
        if (C == 3) dst[3 * i] = dst[3 * i + 1] = dst[3 * i + 2] = src[i];
        else dst[i] = (uint8_t)((299 * src[3 * i] + 587 * src[3 * i + 1] + 114 * src[3 * i + 2] + 500) / 1000);
    }
    (void)c;
}

static void process(const Pipe *p, Slot *s) {
    SourceItem *it = &s->item;
    s->skip = it->skip;
    s->bytes_in = it->bytes_in;
    s->length = 0;
    s->reason[0] = 0;
    if (s->skip != SKIP_NONE) {
        snprintf(s->reason, sizeof s->reason, "%s", it->reason);
        return;
    }
    Image img = {0};
    uint8_t *conv = NULL;
    const uint8_t *px;
    int w, h;
    if (it->raw_w > 0) { /* idx: raw pixels */
        px = it->data;
        w = it->raw_w;
        h = it->raw_h;
        if (it->raw_c != p->C) {
            conv = flip_malloc((size_t)w * (size_t)h * (size_t)p->C, "channel conversion");
            luma_or_replicate(conv, p->C, it->data, it->raw_c, (size_t)w * (size_t)h);
            px = conv;
        }
    } else {
        const uint8_t *data = it->data;
        size_t n = it->n_bytes;
        uint8_t *file = NULL;
        if (it->path) {
            int e;
            file = source_read_file(it->path, &n, &e);
            if (!file) {
                s->skip = (e == ENOENT || e == ENOTDIR) ? SKIP_MISSING : SKIP_UNREADABLE;
                snprintf(s->reason, sizeof s->reason, "%.400s: %s", it->path, strerror(e));
                return;
            }
            data = file;
            s->bytes_in += n;
        }
        char err[256];
        ImageStatus st = image_decode(&img, data, n, p->C, p->S, err, sizeof err);
        flip_free(file);
        if (st != IMAGE_OK) {
            s->skip = SKIP_CORRUPT;
            snprintf(s->reason, sizeof s->reason, "%s", err);
            return;
        }
        px = img.pixels;
        w = img.w;
        h = img.h;
    }
    if (w == p->S && h == p->S) memcpy(s->pixels, px, (size_t)w * (size_t)h * (size_t)p->C);
    else image_resize_crop(s->pixels, p->S, px, w, h, p->C);
    image_free(&img);
    flip_free(conv);
    if (tokenizer_encode(p->tok, it->caption, it->caption_bytes, s->tokens, p->T, &s->length) != 0) {
        s->skip = SKIP_BAD_UTF8;
        snprintf(s->reason, sizeof s->reason, "caption is not valid UTF-8");
    }
}

static void *worker_main(void *arg) {
    Pipe *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->n_claimed == p->n_read && !p->reader_done) pthread_cond_wait(&p->cv_worker, &p->mu);
        if (p->stop || p->n_claimed == p->n_read) break;
        Slot *s = &p->slots[p->n_claimed % p->Q];
        p->n_claimed++;
        pthread_mutex_unlock(&p->mu);
        process(p, s);
        pthread_mutex_lock(&p->mu);
        s->done = 1;
        pthread_cond_broadcast(&p->cv_writer);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- progress ------------------------------------------------------------- */

typedef struct {
    int tty;
    double t0, last;
    double f0;      /* input fraction at the first item of this run */
    long written0;  /* samples already present (resume) */
    int printed;
} Progress;

static void fmt_hms(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, n, "?");
        return;
    }
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

static void progress_update(Progress *pr, const Manifest *m, double fraction, long limit, int final) {
    double t = now_s();
    if (!final && t - pr->last < (pr->tty ? 0.25 : 5.0)) return;
    pr->last = t;
    double el = t - pr->t0;
    long done = m->written - pr->written0;
    double rate = el > 0 ? (double)done / el : 0;
    double f = fraction - pr->f0, todo = 1.0 - fraction;
    if (limit > 0) {
        double fl = (double)(m->written - pr->written0) / (double)(limit - pr->written0 > 0 ? limit - pr->written0 : 1);
        if (fl > f) {
            f = fl;
            todo = 1.0 - fl;
        }
    }
    char eta[32], elapsed[32];
    fmt_hms(eta, sizeof eta, f > 1e-6 ? el * todo / f : -1);
    fmt_hms(elapsed, sizeof elapsed, el);
    long skipped = 0;
    for (int r = 1; r < SKIP_N_REASONS; r++) skipped += m->skipped[r];
    char line[256];
    snprintf(line, sizeof line, "flip-prep: %ld written, %ld skipped, %.1f samples/s, %3.0f%%, elapsed %s, ETA %s",
             m->written, skipped, rate, 100.0 * (fraction > 1 ? 1 : fraction), elapsed, eta);
    if (pr->tty) {
        fprintf(stderr, "\r%s\033[K", line);
        pr->printed = 1;
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

/* ---- vocabulary ----------------------------------------------------------- */

static Tokenizer *learn_vocabulary(const PrepConfig *c, SourceConfig sc, long size) {
    char err[1024];
    sc.captions_only = 1;
    Source *s = source_open(&sc, err, sizeof err);
    if (!s) {
        fprintf(stderr, "flip-prep: %s\n", err);
        return NULL;
    }
    long cap = 1024, n = 0, max = PREP_VOCAB_MAX_TEXTS;
    if (c->limit > 0 && c->limit < max) max = c->limit;
    char **texts = flip_malloc(sizeof(char *) * (size_t)cap, "captions");
    double t0 = now_s();
    for (long items = 0; items < max;) {
        SourceItem it;
        int r = source_next(s, &it, err, sizeof err);
        if (r < 0) {
            fprintf(stderr, "flip-prep: %s\n", err);
            for (long i = 0; i < n; i++) flip_free(texts[i]);
            flip_free(texts);
            source_close(s);
            return NULL;
        }
        if (r == 0) break;
        items++;
        if (it.skip == SKIP_NONE && it.caption) {
            if (n == cap) {
                char **b = flip_malloc(sizeof(char *) * (size_t)cap * 2, "captions");
                memcpy(b, texts, sizeof(char *) * (size_t)n);
                flip_free(texts);
                texts = b;
                cap *= 2;
            }
            texts[n++] = it.caption;
            it.caption = NULL;
        }
        source_item_free(&it);
    }
    source_close(s);
    fprintf(stderr, "flip-prep: learning a WordPiece vocabulary of at most %ld tokens from %ld captions\n", size, n);
    Tokenizer *t = vocab_learn((const char *const *)texts, (size_t)n, (int)size, 1, err, sizeof err);
    for (long i = 0; i < n; i++) flip_free(texts[i]);
    flip_free(texts);
    if (!t) {
        fprintf(stderr, "flip-prep: vocabulary learning failed: %s\n", err);
        return NULL;
    }
    fprintf(stderr, "flip-prep: learned %d tokens in %.1f s\n", tokenizer_vocab_size(t), now_s() - t0);
    return t;
}

/* ---- shards --------------------------------------------------------------- */

static void shard_name(char *buf, size_t n, const PrepConfig *c, int k) {
    snprintf(buf, n, "%s-%06d.h5", c->prefix, k);
}

static void build_fingerprint(Manifest *m, const PrepConfig *c, const SourceConfig *sc) {
    Text t = {0};
    text_add(&t, "flip-prep %s\nsource %s\n", FLIP_PREP_VERSION, source_kind_name(c->kind));
    for (int i = 0; i < source_n_files(m->src); i++) text_add(&t, "input %s\n", source_file(m->src, i));
    if (c->kind == SOURCE_FOLDER) text_add(&t, "images %ld\n", source_n_items(m->src)); /* new images: redo */
    if (c->kind == SOURCE_IDX) {
        char hex[65], err[512];
        text_add(&t, "labels %s\n", sc->labels_path);
        if (sha256_file(hex, sc->classes_path, err, sizeof err) == 0) text_add(&t, "classes %s\n", hex);
        if (sc->templates_path && sha256_file(hex, sc->templates_path, err, sizeof err) == 0)
            text_add(&t, "templates %s\n", hex);
        text_add(&t, "template_seed %llu\n", c->template_seed);
    }
    text_add(&t, "S %ld C %ld T %ld vocab %s shard_size %ld prefix %s zstd %ld captions %d labels %d limit %ld\n",
             c->image_size, c->channels, c->context, m->vocab_sha, c->shard_size, c->prefix, c->zstd_level,
             c->keep_captions, c->label_shards, c->limit);
    for (int k = 0; k < c->channels; k++) text_add(&t, "norm %.8g %.8g\n", (double)m->mean[k], (double)m->std[k]);
    uint8_t d[32];
    sha256(d, t.s, t.n);
    sha256_hex(m->fingerprint, d);
    flip_free(t.s);
}

static void print_summary(const Manifest *m, double seconds, long warned, long run_written) {
    long skipped = 0;
    for (int r = 1; r < SKIP_N_REASONS; r++) skipped += m->skipped[r];
    if (warned > PREP_MAX_WARNINGS) flip_warn("... %ld more skipped items not shown", warned - PREP_MAX_WARNINGS);
    double ratio = m->bytes_out ? (double)m->bytes_in / (double)m->bytes_out : 0;
    printf("flip-prep: wrote %ld samples in %d shards to %s; skipped %ld (unreadable image %ld, corrupt image %ld, "
           "empty caption %ld, non-UTF-8 caption %ld, missing file %ld); bytes in %.1f MB, out %.1f MB, "
           "ratio %.2f; %.1f s (%.1f samples/s)\n",
           m->written, m->n_shards, m->cfg->output, skipped, m->skipped[SKIP_UNREADABLE], m->skipped[SKIP_CORRUPT],
           m->skipped[SKIP_EMPTY_CAPTION], m->skipped[SKIP_BAD_UTF8], m->skipped[SKIP_MISSING], m->bytes_in / 1e6,
           m->bytes_out / 1e6, ratio, seconds, seconds > 0 ? run_written / seconds : 0.0);
    if (m->px_count) {
        double mm[3], ms[3];
        measured_stats(m, (int)m->cfg->channels, mm, ms);
        printf("flip-prep: pixel mean/std of the %llu images written by this run: mean",
               (unsigned long long)(m->px_count / ((uint64_t)m->cfg->image_size * (uint64_t)m->cfg->image_size)));
        for (int k = 0; k < m->cfg->channels; k++) printf(" %.4f", mm[k]);
        printf(", std");
        for (int k = 0; k < m->cfg->channels; k++) printf(" %.4f", ms[k]);
        printf(" (attributes: mean");
        for (int k = 0; k < m->cfg->channels; k++) printf(" %.4f", (double)m->mean[k]);
        printf(", std");
        for (int k = 0; k < m->cfg->channels; k++) printf(" %.4f", (double)m->std[k]);
        printf(")\n");
    }
    fflush(stdout);
}

static int run_shards(const PrepConfig *c, const SourceConfig *sc) {
    double t_start = now_s();
    if (mkdir_p(c->output) != 0) {
        fprintf(stderr, "flip-prep: cannot create --output directory %s (%s)\n", c->output, strerror(errno));
        return 1;
    }
    char err[1024];
    Tokenizer *tok;
    if (c->vocab) {
        tok = tokenizer_load(c->vocab, 1, err, sizeof err);
        if (!tok) {
            fprintf(stderr, "flip-prep: --vocab: %s\n", err);
            return 1;
        }
    } else {
        tok = learn_vocabulary(c, *sc, c->learn_vocab);
        if (!tok) return 1;
    }
    char vocab_out[4096];
    snprintf(vocab_out, sizeof vocab_out, "%s/vocab.txt", c->output);
    if (tokenizer_save(tok, vocab_out, err, sizeof err) != 0) {
        fprintf(stderr, "flip-prep: %s\n", err);
        tokenizer_free(tok);
        return 1;
    }
    Source *src = source_open(sc, err, sizeof err);
    if (!src) {
        fprintf(stderr, "flip-prep: %s\n", err);
        tokenizer_free(tok);
        return 1;
    }

    Manifest m;
    memset(&m, 0, sizeof m);
    m.cfg = c;
    m.src = src;
    m.vocab_size = tokenizer_vocab_size(tok);
    tokenizer_sha256(tok, m.vocab_sha);
    int C = (int)c->channels, S = (int)c->image_size, T = (int)c->context;
    for (int k = 0; k < C; k++) {
        m.mean[k] = c->n_mean ? c->mean[k] : C == 3 ? CLIP_MEAN[k] : FMNIST_MEAN;
        m.std[k] = c->n_std ? c->std[k] : C == 3 ? CLIP_STD[k] : FMNIST_STD;
    }
    build_fingerprint(&m, c, sc);

    /* resume: keep the leading shards of a matching previous run */
    ShardEntry *old = NULL;
    int complete = 0;
    int n_old = manifest_load(c->output, m.fingerprint, &old, &complete);
    if (n_old < 0) {
        fprintf(stderr, "flip-prep: %s/manifest.json is from a different configuration; rewriting every shard\n", c->output);
        n_old = 0;
    }
    int reused = 0;
    for (int k = 0; k < n_old; k++) {
        char want[256], path[4400];
        shard_name(want, sizeof want, c, k);
        snprintf(path, sizeof path, "%s/%s", c->output, old[k].file);
        if (strcmp(want, old[k].file) != 0) break;
        Shard sh;
        memset(&sh, 0, sizeof sh);
        int ok = shard_open(&sh, path, NULL, err, sizeof err) == 0 && sh.n == old[k].n &&
                 strcmp(sh.meta.vocab_sha256, m.vocab_sha) == 0;
        shard_close(&sh);
        if (!ok) break;
        manifest_push(&m, &old[k]);
        m.written += old[k].n;
        m.items += old[k].n_items;
        for (int r = 1; r < SKIP_N_REASONS; r++) m.skipped[r] += old[k].skipped[r];
        m.bytes_in += old[k].bytes_in;
        m.bytes_out += old[k].bytes_out;
        reused++;
    }
    flip_free(old);
    if (reused) fprintf(stderr, "flip-prep: keeping %d complete shard(s) (%ld samples) from the previous run\n", reused, m.written);
    if (complete && reused == n_old && reused > 0) {
        printf("flip-prep: %s is up to date (%d shards, %ld samples); nothing to do\n", c->output, m.n_shards, m.written);
        source_close(src);
        tokenizer_free(tok);
        flip_free(m.shards);
        return 0;
    }

    /* pipeline */
    Pipe p;
    memset(&p, 0, sizeof p);
    p.tok = tok;
    p.src = src;
    p.S = S;
    p.C = C;
    p.T = T;
    p.Q = 4 * c->workers + 16;
    p.skip_items = m.items;
    p.slots = flip_calloc((size_t)p.Q, sizeof(Slot), "pipeline slots");
    size_t img_bytes = (size_t)S * (size_t)S * (size_t)C;
    for (long i = 0; i < p.Q; i++) {
        p.slots[i].pixels = flip_malloc(img_bytes, "slot image");
        p.slots[i].tokens = flip_malloc(sizeof(int32_t) * (size_t)T, "slot tokens");
    }
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv_reader, NULL);
    pthread_cond_init(&p.cv_worker, NULL);
    pthread_cond_init(&p.cv_writer, NULL);
    pthread_t reader, *workers = flip_malloc(sizeof(pthread_t) * (size_t)c->workers, "workers");
    int stop_now = c->limit > 0 && m.written >= c->limit;
    FLIP_CHECK(pthread_create(&reader, NULL, reader_main, &p) == 0, "cannot start the reader thread");
    for (long i = 0; i < c->workers; i++)
        FLIP_CHECK(pthread_create(&workers[i], NULL, worker_main, &p) == 0, "cannot start worker thread %ld", i);

    ShardMeta meta;
    memset(&meta, 0, sizeof meta);
    meta.H = meta.W = S;
    meta.C = C;
    meta.T = T;
    meta.vocab_size = m.vocab_size;
    memcpy(meta.vocab_sha256, m.vocab_sha, 65);
    snprintf(meta.tokenizer, sizeof meta.tokenizer, "%s", PREP_TOKENIZER_NAME);
    if (source_n_files(src) > 1)
        snprintf(meta.source, sizeof meta.source, "%s: %.200s (+%d more)", source_kind_name(c->kind), source_file(src, 0),
                 source_n_files(src) - 1);
    else
        snprintf(meta.source, sizeof meta.source, "%s: %.240s", source_kind_name(c->kind), source_file(src, 0));
    for (int k = 0; k < C; k++) {
        meta.mean[k] = m.mean[k];
        meta.std[k] = m.std[k];
    }

    Progress pr = {.tty = isatty(2), .t0 = now_s(), .f0 = -1, .written0 = m.written};
    pr.last = pr.t0;
    ShardWriter *w = NULL;
    ShardEntry cur;
    memset(&cur, 0, sizeof cur);
    cur.first_item = m.items;
    long warned = 0, run_written = 0;
    int rc = 0;
    double fraction = 0;
    char fatal[1024] = "";
    while (!stop_now) {
        pthread_mutex_lock(&p.mu);
        while (!(p.n_written < p.n_read && p.slots[p.n_written % p.Q].done) &&
               !(p.reader_done && p.n_written == p.n_read))
            pthread_cond_wait(&p.cv_writer, &p.mu);
        if (p.n_written == p.n_read && p.reader_done) {
            if (p.reader_failed) {
                snprintf(fatal, sizeof fatal, "%s", p.reader_err);
                rc = 1;
            }
            pthread_mutex_unlock(&p.mu);
            break;
        }
        Slot *s = &p.slots[p.n_written % p.Q];
        pthread_mutex_unlock(&p.mu);

        if (pr.f0 < 0) pr.f0 = s->fraction;
        fraction = s->fraction;
        m.items++;
        cur.n_items++;
        m.bytes_in += s->bytes_in;
        cur.bytes_in += s->bytes_in;
        if (s->skip != SKIP_NONE) {
            m.skipped[s->skip]++;
            cur.skipped[s->skip]++;
            if (c->strict) {
                snprintf(fatal, sizeof fatal, "--strict: %.400s: %s: %.400s", s->item.name, skip_reason_name(s->skip),
                         s->reason);
                rc = 1;
            } else if (++warned <= PREP_MAX_WARNINGS) {
                if (pr.tty && pr.printed) fputc('\n', stderr);
                flip_warn("skipped %s: %s: %s", s->item.name, skip_reason_name(s->skip), s->reason);
            }
        } else {
            if (!w) {
                shard_name(cur.file, sizeof cur.file, c, m.n_shards);
                char path[4400];
                snprintf(path, sizeof path, "%s/%s", c->output, cur.file);
                w = shard_writer_open(path, &meta, (int)c->zstd_level, c->keep_captions, c->label_shards);
            }
            shard_writer_add(w, s->pixels, s->tokens, s->length, s->item.caption, s->item.label);
            for (size_t i = 0; i < img_bytes; i += (size_t)C)
                for (int k = 0; k < C; k++) {
                    uint64_t v = s->pixels[i + (size_t)k];
                    m.px_sum[k] += v;
                    m.px_sumsq[k] += v * v;
                }
            m.px_count += img_bytes / (size_t)C;
            m.written++;
            run_written++;
            cur.n++;
            if (cur.n == c->shard_size) {
                shard_writer_close(w);
                w = NULL;
                char path[4400];
                snprintf(path, sizeof path, "%s/%s", c->output, cur.file);
                cur.bytes_out = file_size(path);
                m.bytes_out += cur.bytes_out;
                manifest_push(&m, &cur);
                m.seconds = now_s() - t_start;
                manifest_write(&m, 0);
                memset(&cur, 0, sizeof cur);
                cur.first_item = m.items;
            }
        }
        source_item_free(&s->item);
        pthread_mutex_lock(&p.mu);
        p.n_written++;
        pthread_cond_signal(&p.cv_reader);
        pthread_mutex_unlock(&p.mu);
        if (rc) break;
        if (c->limit > 0 && m.written >= c->limit) break;
        if ((m.items & 15) == 0) progress_update(&pr, &m, fraction, c->limit, 0);
    }
    /* stop and join every thread, then free what is left in the ring */
    pthread_mutex_lock(&p.mu);
    p.stop = 1;
    pthread_cond_broadcast(&p.cv_reader);
    pthread_cond_broadcast(&p.cv_worker);
    pthread_cond_broadcast(&p.cv_writer);
    pthread_mutex_unlock(&p.mu);
    pthread_join(reader, NULL);
    for (long i = 0; i < c->workers; i++) pthread_join(workers[i], NULL);
    for (long k = p.n_written; k < p.n_read; k++) source_item_free(&p.slots[k % p.Q].item);

    if (pr.tty && pr.printed) {
        progress_update(&pr, &m, fraction, c->limit, 1);
        fputc('\n', stderr);
    }
    if (rc) {
        /* the unfinished shard is not kept: the writer has no abort, so close
         * it (which renames <name>.tmp) and remove the file; it is in no
         * manifest, and a re-run redoes it */
        if (w) {
            char path[4400];
            snprintf(path, sizeof path, "%s/%s", c->output, cur.file);
            shard_writer_close(w);
            unlink(path);
        }
        fprintf(stderr, "flip-prep: %s\n", fatal);
    } else {
        if (w) { /* the last, partial shard */
            shard_writer_close(w);
            char path[4400];
            snprintf(path, sizeof path, "%s/%s", c->output, cur.file);
            cur.bytes_out = file_size(path);
            m.bytes_out += cur.bytes_out;
            manifest_push(&m, &cur);
        }
        /* shards beyond the new count are stale leftovers of an earlier run */
        for (int k = m.n_shards;; k++) {
            char name[256], path[4400], tmp[4500];
            shard_name(name, sizeof name, c, k);
            snprintf(path, sizeof path, "%s/%s", c->output, name);
            snprintf(tmp, sizeof tmp, "%s.tmp", path);
            int a = unlink(path) == 0, b = unlink(tmp) == 0;
            if (!a && !b) break;
            fprintf(stderr, "flip-prep: removed stale %s from an earlier run\n", name);
        }
        m.seconds = now_s() - t_start;
        manifest_write(&m, 1);
        print_summary(&m, m.seconds, warned, run_written);
        if (m.written == 0) {
            fprintf(stderr, "flip-prep: no sample was written (%ld items, all skipped); check the inputs and the warnings above\n",
                    m.items);
            rc = 1;
        }
    }
    for (long i = 0; i < p.Q; i++) {
        flip_free(p.slots[i].pixels);
        flip_free(p.slots[i].tokens);
    }
    flip_free(p.slots);
    flip_free(workers);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv_reader);
    pthread_cond_destroy(&p.cv_worker);
    pthread_cond_destroy(&p.cv_writer);
    source_close(src);
    tokenizer_free(tok);
    flip_free(m.shards);
    return rc;
}

static int run_vocab(const PrepConfig *c, const SourceConfig *sc) {
    Tokenizer *tok = learn_vocabulary(c, *sc, c->vocab_size);
    if (!tok) return 1;
    char err[1024];
    int rc = tokenizer_save(tok, c->output, err, sizeof err);
    if (rc != 0) fprintf(stderr, "flip-prep: %s\n", err);
    else {
        char hex[65];
        tokenizer_sha256(tok, hex);
        printf("flip-prep: wrote %d tokens to %s (sha256 %s)\n", tokenizer_vocab_size(tok), c->output, hex);
    }
    tokenizer_free(tok);
    return rc ? 1 : 0;
}

int prep_main(int argc, char **argv) {
    PrepConfig c;
    int r = parse_flags(&c, argc, argv);
    if (r) {
        flip_free(c.inputs);
        return r == 3 ? 0 : 2;
    }
    SourceConfig sc = {.kind = c.kind, .inputs = c.inputs, .n_inputs = c.n_inputs, .labels_path = c.labels,
                       .classes_path = c.classes, .templates_path = c.templates,
                       .template_seed = (uint64_t)c.template_seed};
    int rc = c.mode == 1 ? run_vocab(&c, &sc) : run_shards(&c, &sc);
    flip_free(c.inputs);
    return rc;
}
