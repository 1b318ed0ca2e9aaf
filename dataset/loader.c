/* loader.c — global sample order, per-rank slice, prefetch thread (loader.h).
 *
 * Queue: prefetch + 1 slots; slot s % n_slots holds step s. The producer (one
 * pthread) fills EMPTY slots in step order; loader_next hands out READY slots
 * in step order and holds one (HELD) until the next call, so `prefetch`
 * batches are read ahead while the trainer uses the current one. The
 * producer owns the epoch permutation and its scratch buffers; the consumer
 * only touches slot states under `mu`.
 *
 * Reading a sample: shard_read_text (HDF5, under shard.c's lock),
 * shard_read_image_raw (H5Dread_chunk, under the lock), shard_decode_image
 * (zstd, no lock), then the optional augmentation (no lock).
 */
#include "loader.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "augment.h"
#include "brace.h"
#include "common.h"
#include "rng.h"

#define LOADER_MAX_WARN 10     /* skip_bad warnings printed per loader */
#define LOADER_MAX_PREFETCH 64 /* batches read ahead at most */

enum { SLOT_EMPTY = 0, SLOT_READY = 1, SLOT_HELD = 2 };

typedef struct {
    LoaderBatch b;
    int state;
    int failed;     /* the producer could not fill this batch: err says why */
    char err[1400];
} Slot;

struct Loader {
    LoaderConfig cfg;
    int n_shards;
    Shard *shards;  /* (n_shards) */
    long *offset;   /* (n_shards + 1) global index of each shard's row 0 */
    ShardMeta meta; /* shard 0's, n = total */
    long total, steps_per_epoch;
    int G, has_labels;
    size_t image_bytes;

    /* producer-owned */
    uint32_t *perm; /* (total) permutation of perm_epoch */
    long perm_epoch;
    void *raw;
    size_t raw_cap;
    void *dctx;
    uint8_t *img_tmp; /* (H, W, C) pre-augmentation */
    int n_skipped, n_warned;

    /* queue */
    pthread_mutex_t mu;
    pthread_cond_t cv_prod, cv_cons;
    pthread_t thread;
    int running, stop;
    Slot *slots;
    int n_slots;
    long next_produce, next_consume;
    int held; /* slot index held by the consumer, -1 none */
};

static void seterr(char *err, size_t err_bytes, const char *fmt, ...) FLIP_PRINTF(3, 4);
static void seterr(char *err, size_t err_bytes, const char *fmt, ...) {
    if (!err || err_bytes == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_bytes, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ shard lists */

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* dir + "/" + name (name kept when absolute or dir empty) */
static void push_joined(BraceList *out, const char *dir, const char *name) {
    if (name[0] == '/' || !dir[0]) {
        brace_list_push(out, name);
        return;
    }
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = flip_malloc(n, "shard path");
    snprintf(p, n, "%s/%s", dir, name);
    brace_list_push(out, p);
    flip_free(p);
}

static int list_directory(BraceList *out, const char *dir, char *err, size_t eb) {
    DIR *d = opendir(dir);
    if (!d) {
        seterr(err, eb, "%s: cannot list shard directory: %s", dir, strerror(errno));
        return -1;
    }
    BraceList names = {0};
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && ends_with(e->d_name, ".h5")) brace_list_push(&names, e->d_name);
    closedir(d);
    if (names.n == 0) {
        seterr(err, eb, "%s: directory holds no *.h5 shards (run flip-prep, or point --train-data at the shard folder)", dir);
        brace_list_free(&names);
        return -1;
    }
    qsort(names.items, names.n, sizeof(char *), cmp_str);
    for (size_t i = 0; i < names.n; i++) push_joined(out, dir, names.items[i]);
    brace_list_free(&names);
    return 0;
}

static char *read_small_file(const char *path, size_t max_bytes, char *err, size_t eb) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        seterr(err, eb, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = flip_malloc(max_bytes + 1, "manifest");
    size_t n = fread(buf, 1, max_bytes + 1, f);
    fclose(f);
    if (n > max_bytes) {
        seterr(err, eb, "%s: manifest larger than %zu bytes", path, max_bytes);
        flip_free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* manifest: JSON (every string value ending in .h5) or one path per line */
static int read_manifest(BraceList *out, const char *path, char *err, size_t eb) {
    char *text = read_small_file(path, (size_t)64 << 20, err, eb);
    if (!text) return -1;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else dir[0] = '\0';
    size_t before = out->n;
    const char *p = text;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p == '{' || *p == '[') {
        size_t cap = 256, k;
        char *s = flip_malloc(cap, "manifest string");
        for (; *p; p++) {
            if (*p != '"') continue;
            k = 0;
            for (p++; *p && *p != '"'; p++) {
                char c = *p;
                if (c == '\\' && p[1]) {
                    p++;
                    c = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
                }
                if (k + 2 > cap) {
                    char *ns = flip_malloc(cap * 2, "manifest string");
                    memcpy(ns, s, k);
                    flip_free(s);
                    s = ns;
                    cap *= 2;
                }
                s[k++] = c;
            }
            s[k] = '\0';
            if (ends_with(s, ".h5")) push_joined(out, dir, s);
            if (!*p) break;
        }
        flip_free(s);
    } else {
        char *save = NULL;
        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            while (*line == ' ' || *line == '\t') line++;
            size_t n = strlen(line);
            while (n && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r')) line[--n] = '\0';
            if (!n || line[0] == '#') continue;
            push_joined(out, dir, line);
        }
    }
    flip_free(text);
    if (out->n == before) {
        seterr(err, eb, "%s: manifest lists no shards (expected *.h5 paths)", path);
        return -1;
    }
    return 0;
}

static int is_hdf5_file(const char *path) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char buf[8];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(buf, 1, 8, f);
    fclose(f);
    return n == 8 && memcmp(buf, sig, 8) == 0;
}

static int expand_spec(BraceList *out, const char *spec, char *err, size_t eb) {
    char *copy = flip_malloc(strlen(spec) + 1, "loader spec");
    memcpy(copy, spec, strlen(spec) + 1);
    int rc = 0;
    char *save = NULL;
    for (char *part = strtok_r(copy, ":", &save); part && rc == 0; part = strtok_r(NULL, ":", &save)) {
        if (strchr(part, '{')) {
            brace_expand(out, part);
            continue;
        }
        struct stat st;
        if (stat(part, &st) != 0) {
            seterr(err, eb, "%s: no such shard, directory or manifest (%s)", part, strerror(errno));
            rc = -1;
        } else if (S_ISDIR(st.st_mode)) {
            rc = list_directory(out, part, err, eb);
        } else if (ends_with(part, ".h5") || is_hdf5_file(part)) {
            brace_list_push(out, part);
        } else {
            rc = read_manifest(out, part, err, eb);
        }
    }
    flip_free(copy);
    if (rc == 0 && out->n == 0) {
        seterr(err, eb, "data spec '%s' names no shards", spec);
        rc = -1;
    }
    return rc;
}

/* ----------------------------------------------------------------- order */

static void build_perm(uint32_t *perm, long total, uint64_t seed, long epoch, int sequential) {
    for (long i = 0; i < total; i++) perm[i] = (uint32_t)i;
    if (sequential) return;
    Rng r;
    rng_init(&r, seed, FLIP_RNG_SHUFFLE, 0, (uint64_t)epoch);
    for (long i = total - 1; i > 0; i--) {
        uint32_t j = rng_below(&r, (uint32_t)(i + 1));
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

uint64_t loader_sample_at(Loader *l, long epoch, long pos) {
    FLIP_CHECK(pos >= 0 && pos < l->total, "loader_sample_at: position %ld outside [0, %ld)", pos, l->total);
    uint32_t *perm = flip_malloc(sizeof(uint32_t) * (size_t)l->total, "permutation");
    build_perm(perm, l->total, l->cfg.seed, epoch, l->cfg.sequential);
    uint64_t v = perm[pos];
    flip_free(perm);
    return v;
}

static int shard_of(const Loader *l, uint64_t idx) {
    int lo = 0, hi = l->n_shards - 1;
    while (lo < hi) { /* last shard with offset <= idx */
        int mid = (lo + hi + 1) / 2;
        if ((uint64_t)l->offset[mid] <= idx) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* reads dataset sample idx into row b of batch; 0 or -1 with err */
static int read_one(Loader *l, LoaderBatch *bt, int b, uint64_t idx, char *err, size_t eb) {
    int si = shard_of(l, idx);
    Shard *s = &l->shards[si];
    long i = (long)(idx - (uint64_t)l->offset[si]);
    const int T = l->meta.T;
    int32_t lab = 0;
    if (shard_read_text(s, i, bt->tokens + (size_t)b * T, &bt->lens[b], &lab, err, eb)) return -1;
    if (bt->labels) bt->labels[b] = lab;
    size_t n_bytes = 0;
    uint32_t mask = 0;
    if (shard_read_image_raw(s, i, &l->raw, &l->raw_cap, &n_bytes, &mask, err, eb)) return -1;
    uint8_t *dst = l->cfg.augment ? l->img_tmp : bt->images + (size_t)b * l->image_bytes;
    return shard_decode_image(s, i, l->raw, n_bytes, mask, dst, l->dctx, err, eb);
}

/* 0, or -1 with a one-line message in msg (a bad sample without skip_bad) */
static int fill_batch(Loader *l, LoaderBatch *bt, long step, char *msg, size_t msg_bytes) {
    const long spe = l->steps_per_epoch;
    const int B = l->cfg.batch_size;
    long epoch = step / spe, j = step % spe;
    if (l->perm_epoch != epoch) {
        build_perm(l->perm, l->total, l->cfg.seed, epoch, l->cfg.sequential);
        l->perm_epoch = epoch;
    }
    bt->step = step;
    bt->epoch = epoch;
    bt->B = B;
    char err[1200] = "";
    for (int b = 0; b < B; b++) {
        long row = (long)l->cfg.rank * B + b; /* row of the global batch */
        long pos = j * l->G + row;
        uint64_t idx = 0;
        long tries = 0;
        for (;; tries++) {
            if (tries >= l->total) { /* on the prefetch thread: no FLIP_CHECK here (it cannot MPI_Abort) */
                seterr(msg, msg_bytes,
                       "loader: no readable sample in the whole dataset (%ld samples, %d shards); last error: %s",
                       l->total, l->n_shards, err);
                return -1;
            }
            idx = l->perm[(pos + tries) % l->total];
            if (read_one(l, bt, b, idx, err, sizeof err) == 0) break;
            if (!l->cfg.skip_bad) {
                seterr(msg, msg_bytes, "%s (step %ld; re-create the shard, or let the loader skip bad samples)", err,
                       step);
                return -1;
            }
            l->n_skipped++;
            if (l->n_warned < LOADER_MAX_WARN) {
                l->n_warned++;
                flip_warn("skipping bad sample: %s%s", err,
                          l->n_warned == LOADER_MAX_WARN ? " (further skips are counted, not printed)" : "");
            }
        }
        bt->sample_ids[b] = idx;
        if (l->cfg.augment) {
            Rng r;
            rng_init(&r, l->cfg.seed, FLIP_RNG_AUGMENT, (uint64_t)row, (uint64_t)step);
            augment_image(bt->images + (size_t)b * l->image_bytes, l->img_tmp, l->meta.H, l->meta.W, l->meta.C, &r);
        }
    }
    bt->n_skipped_total = l->n_skipped;
    return 0;
}

/* ---------------------------------------------------------------- thread */

static void *producer_main(void *arg) {
    Loader *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        long step = l->next_produce;
        Slot *sl = &l->slots[step % l->n_slots];
        while (!l->stop && sl->state != SLOT_EMPTY) pthread_cond_wait(&l->cv_prod, &l->mu);
        if (l->stop) break;
        pthread_mutex_unlock(&l->mu);
        int rc = fill_batch(l, &sl->b, step, sl->err, sizeof sl->err);
        pthread_mutex_lock(&l->mu);
        sl->failed = rc != 0;
        sl->state = SLOT_READY;
        l->next_produce = step + 1;
        pthread_cond_broadcast(&l->cv_cons);
        if (rc) break; /* the consumer reports it (on its own thread: MPI_Abort is called from there) */
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void stop_thread(Loader *l) {
    if (!l->running) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv_prod);
    pthread_mutex_unlock(&l->mu);
    FLIP_CHECK(pthread_join(l->thread, NULL) == 0, "loader: pthread_join failed");
    l->running = 0;
}

void loader_seek(Loader *l, long step) {
    FLIP_CHECK(step >= 0, "loader_seek: negative step %ld", step);
    stop_thread(l);
    for (int i = 0; i < l->n_slots; i++) {
        l->slots[i].state = SLOT_EMPTY;
        l->slots[i].failed = 0;
    }
    l->held = -1;
    l->next_produce = l->next_consume = step;
    l->stop = 0;
    FLIP_CHECK(pthread_create(&l->thread, NULL, producer_main, l) == 0,
               "loader: cannot start the prefetch thread (pthread_create failed)");
    l->running = 1;
}

const LoaderBatch *loader_next(Loader *l) {
    if (!l->running) loader_seek(l, l->next_consume);
    pthread_mutex_lock(&l->mu);
    if (l->held >= 0) {
        l->slots[l->held].state = SLOT_EMPTY;
        l->held = -1;
        pthread_cond_broadcast(&l->cv_prod);
    }
    int k = (int)(l->next_consume % l->n_slots);
    Slot *sl = &l->slots[k];
    while (sl->state != SLOT_READY) pthread_cond_wait(&l->cv_cons, &l->mu);
    if (sl->failed) {
        pthread_mutex_unlock(&l->mu);
        FLIP_FATAL("%s", sl->err);
    }
    sl->state = SLOT_HELD;
    l->held = k;
    l->next_consume++;
    pthread_mutex_unlock(&l->mu);
    return &sl->b;
}

/* ------------------------------------------------------------- lifecycle */

static int meta_mismatch(const Shard *a, const Shard *b, char *err, size_t eb) {
    const ShardMeta *x = &a->meta, *y = &b->meta;
    const char *what = NULL;
    long u = 0, v = 0;
    if (x->H != y->H) what = "H", u = x->H, v = y->H;
    else if (x->W != y->W) what = "W", u = x->W, v = y->W;
    else if (x->C != y->C) what = "C", u = x->C, v = y->C;
    else if (x->T != y->T) what = "T", u = x->T, v = y->T;
    else if (x->vocab_size != y->vocab_size) what = "vocab_size", u = x->vocab_size, v = y->vocab_size;
    if (what) {
        seterr(err, eb, "%s: %s = %ld but %s has %s = %ld (all shards of one run must agree; re-run flip-prep)", b->path,
               what, v, a->path, what, u);
        return -1;
    }
    if (strcmp(x->vocab_sha256, y->vocab_sha256) != 0) {
        seterr(err, eb, "%s: vocab_sha256 differs from %s (shards tokenized with different vocabularies)", b->path,
               a->path);
        return -1;
    }
    if (a->has_labels != b->has_labels) {
        seterr(err, eb, "%s: %s /labels but %s %s (mix of labelled and unlabelled shards)", b->path,
               b->has_labels ? "has" : "lacks", a->path, a->has_labels ? "has them" : "does not");
        return -1;
    }
    return 0;
}

Loader *loader_open(const LoaderConfig *cfg, char *err, size_t err_bytes) {
    if (!cfg || !cfg->spec || !cfg->spec[0]) {
        seterr(err, err_bytes, "loader: no data spec given (a shard directory, brace list or manifest)");
        return NULL;
    }
    if (cfg->batch_size < 1 || cfg->world < 1 || cfg->rank < 0 || cfg->rank >= cfg->world) {
        seterr(err, err_bytes, "loader: batch size %d / rank %d / world %d invalid (need B >= 1, 0 <= rank < world)",
               cfg->batch_size, cfg->rank, cfg->world);
        return NULL;
    }
    if (cfg->prefetch > LOADER_MAX_PREFETCH) {
        seterr(err, err_bytes, "loader: prefetch %d batches is more than %d", cfg->prefetch, LOADER_MAX_PREFETCH);
        return NULL;
    }
    BraceList paths = {0};
    if (expand_spec(&paths, cfg->spec, err, err_bytes)) {
        brace_list_free(&paths);
        return NULL;
    }
    if (paths.n > 1000000) {
        seterr(err, err_bytes, "%s: %zu shards is more than the loader supports (1e6)", cfg->spec, paths.n);
        brace_list_free(&paths);
        return NULL;
    }
    Loader *l = flip_calloc(1, sizeof *l, "Loader");
    l->cfg = *cfg;
    l->cfg.spec = NULL; /* borrowed by the caller; not kept */
    if (l->cfg.prefetch <= 0) l->cfg.prefetch = 2;
    l->held = -1;
    l->perm_epoch = -1;
    l->shards = flip_calloc(paths.n, sizeof(Shard), "loader shards");
    l->offset = flip_calloc(paths.n + 1, sizeof(long), "loader shard offsets");
    int rc = 0;
    for (size_t i = 0; i < paths.n && rc == 0; i++) {
        rc = shard_open(&l->shards[i], paths.items[i], NULL, err, err_bytes);
        if (rc == 0) {
            l->n_shards = (int)i + 1;
            if (i > 0) rc = meta_mismatch(&l->shards[0], &l->shards[i], err, err_bytes);
            l->offset[i + 1] = l->offset[i] + l->shards[i].n;
        }
    }
    brace_list_free(&paths);
    if (rc == 0) {
        l->total = l->offset[l->n_shards];
        l->G = cfg->batch_size * cfg->world;
        if (l->total > (long)UINT32_MAX) {
            seterr(err, err_bytes, "%s: %ld samples exceed the loader's 2^32 - 1 limit", cfg->spec, l->total);
            rc = -1;
        } else if (l->total < l->G) {
            seterr(err, err_bytes, "%s: %ld samples in %d shard(s) is less than one global batch of %d (B=%d x %d ranks); lower the batch size or add data",
                   cfg->spec, l->total, l->n_shards, l->G, cfg->batch_size, cfg->world);
            rc = -1;
        }
    }
    if (rc) {
        loader_close(l);
        return NULL;
    }
    l->meta = l->shards[0].meta;
    l->meta.n = l->total;
    l->has_labels = l->shards[0].has_labels;
    for (int i = 1; i < l->n_shards; i++)
        for (int c = 0; c < l->meta.C; c++)
            if (l->shards[i].meta.mean[c] != l->meta.mean[c] || l->shards[i].meta.std[c] != l->meta.std[c]) {
                flip_warn("%s: mean/std differ from %s; using the first shard's", l->shards[i].path, l->shards[0].path);
                c = l->meta.C;
                i = l->n_shards;
            }
    l->steps_per_epoch = l->total / l->G;
    l->image_bytes = (size_t)l->meta.H * l->meta.W * l->meta.C;
    const int B = cfg->batch_size, T = l->meta.T;
    l->perm = flip_malloc(sizeof(uint32_t) * (size_t)l->total, "epoch permutation");
    l->dctx = shard_dctx_new();
    l->img_tmp = flip_malloc(l->image_bytes, "augment source image");
    l->n_slots = l->cfg.prefetch + 1;
    l->slots = flip_calloc((size_t)l->n_slots, sizeof(Slot), "loader slots");
    for (int i = 0; i < l->n_slots; i++) {
        LoaderBatch *b = &l->slots[i].b;
        b->images = flip_malloc(flip_mul_size((size_t)B, l->image_bytes, "batch images"), "batch images");
        b->tokens = flip_calloc((size_t)B * T, sizeof(int32_t), "batch tokens");
        b->lens = flip_calloc((size_t)B, sizeof(int), "batch lengths");
        b->labels = l->has_labels ? flip_calloc((size_t)B, sizeof(int32_t), "batch labels") : NULL;
        b->sample_ids = flip_calloc((size_t)B, sizeof(uint64_t), "batch sample ids");
    }
    FLIP_CHECK(pthread_mutex_init(&l->mu, NULL) == 0, "loader: pthread_mutex_init failed");
    FLIP_CHECK(pthread_cond_init(&l->cv_prod, NULL) == 0, "loader: pthread_cond_init failed");
    FLIP_CHECK(pthread_cond_init(&l->cv_cons, NULL) == 0, "loader: pthread_cond_init failed");
    return l;
}

void loader_close(Loader *l) {
    if (!l) return;
    int sync_ready = l->slots != NULL; /* mutex/conds exist only after a full open */
    stop_thread(l);
    for (int i = 0; i < l->n_shards; i++) shard_close(&l->shards[i]);
    flip_free(l->shards);
    flip_free(l->offset);
    for (int i = 0; i < l->n_slots; i++) {
        LoaderBatch *b = &l->slots[i].b;
        flip_free(b->images);
        flip_free(b->tokens);
        flip_free(b->lens);
        flip_free(b->labels);
        flip_free(b->sample_ids);
    }
    flip_free(l->slots);
    flip_free(l->perm);
    flip_free(l->raw);
    shard_dctx_free(l->dctx);
    flip_free(l->img_tmp);
    if (sync_ready) {
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv_prod);
        pthread_cond_destroy(&l->cv_cons);
    }
    flip_free(l);
}

const ShardMeta *loader_meta(const Loader *l) { return &l->meta; }
long loader_num_samples(const Loader *l) { return l->total; }
int loader_num_shards(const Loader *l) { return l->n_shards; }
const char *loader_shard_path(const Loader *l, int shard) {
    FLIP_CHECK(shard >= 0 && shard < l->n_shards, "loader_shard_path: shard %d outside [0, %d)", shard, l->n_shards);
    return l->shards[shard].path;
}
long loader_steps_per_epoch(const Loader *l) { return l->steps_per_epoch; }
int loader_has_labels(const Loader *l) { return l->has_labels; }
