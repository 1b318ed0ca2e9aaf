/* eval.c — zero-shot classification and retrieval (see eval.h).
 * Reads shards directly (shard_read_sample) in a strided global order so no
 * sample is dropped, whatever the rank count and batch. */
#include "eval.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "common.h"
#include "loader.h"
#include "ops.h"
#include "shard.h"
#include "wordpiece.h"

/* ---- the shards of a spec, opened, as one indexable dataset */
typedef struct {
    int n_shards;
    Shard *shards;
    long *first;   /* global index of each shard's first sample */
    long n;
    ShardMeta meta;
    int has_labels;
    char first_path[1024];
} EvalData;

static int data_open(EvalData *d, const char *spec, char *err, size_t eb) {
    memset(d, 0, sizeof *d);
    LoaderConfig lc = {0};
    lc.spec = spec;
    lc.batch_size = 1;
    lc.rank = 0;
    lc.world = 1;
    lc.sequential = 1;
    char lerr[1024];
    Loader *l = loader_open(&lc, lerr, sizeof lerr);
    if (!l) { snprintf(err, eb, "%s", lerr); return -1; }
    d->meta = *loader_meta(l);
    d->has_labels = loader_has_labels(l);
    d->n_shards = loader_num_shards(l);
    d->shards = flip_calloc((size_t)d->n_shards, sizeof(Shard), "eval shards");
    d->first = flip_calloc((size_t)d->n_shards + 1, sizeof(long), "eval shard offsets");
    snprintf(d->first_path, sizeof d->first_path, "%s", loader_shard_path(l, 0));
    int rc = 0;
    for (int s = 0; s < d->n_shards && rc == 0; s++) {
        if (shard_open(&d->shards[s], loader_shard_path(l, s), NULL, err, eb)) rc = -1;
        else d->first[s + 1] = d->first[s] + d->shards[s].n;
    }
    d->n = d->first[d->n_shards];
    loader_close(l);
    return rc;
}

static void data_close(EvalData *d) {
    for (int s = 0; s < d->n_shards; s++) shard_close(&d->shards[s]);
    flip_free(d->shards);
    flip_free(d->first);
    memset(d, 0, sizeof *d);
}

/* data_open for --val-data caption shards, which must match the model's image
 * size, channels, context and vocabulary */
static int val_data_open(EvalData *d, const char *spec, const FlipConfig *c, char *err, size_t eb) {
    int rc = data_open(d, spec, err, eb);
    if (!rc && (d->meta.H != c->image_size || d->meta.W != c->image_size || d->meta.C != c->channels ||
                d->meta.T != c->context || d->meta.vocab_size > c->vocab)) {
        snprintf(err, eb, "--val-data %s: shards are %dx%dx%d T %d vocab %d, the model takes %dx%dx%d T %d vocab %d",
                 d->first_path, d->meta.H, d->meta.W, d->meta.C, d->meta.T, d->meta.vocab_size, c->image_size,
                 c->image_size, c->channels, c->context, c->vocab);
        rc = -1;
    }
    return rc;
}

static int data_read(EvalData *d, long g, uint8_t *img, int32_t *tok, int *len, int32_t *label, char *err,
                     size_t eb) {
    int s = 0;
    while (s + 1 < d->n_shards && g >= d->first[s + 1]) s++;
    return shard_read_sample(&d->shards[s], g - d->first[s], img, tok, len, label, err, eb);
}

/* all ranks agree on success; a failing rank's message reaches rank 0's err
 * only as a generic line (each rank reports its own through flip_warn). */
static int agree(int rc, char *err, size_t eb) {
    int ok = rc == 0;
    int all = ok;
    comm_allreduce_min_int(&all, 1);
    if (!all && ok) snprintf(err, eb, "evaluation failed on another rank (see its message)");
    return all ? 0 : -1;
}

/* ---- text files */
static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

/* Non-blank lines of path (trimmed), except comment lines starting with '#'. */
static char **read_lines(const char *path, int *n_out, const char *what, char *err, size_t eb) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, eb, "%s %s: cannot open (%s)", what, path, strerror(errno));
        return NULL;
    }
    int cap = 16, n = 0;
    char **lines = flip_calloc((size_t)cap, sizeof(char *), "lines");
    char buf[4096];
    while (fgets(buf, sizeof buf, f)) {
        char *s = trim(buf);
        if (!*s || *s == '#') continue;
        if (n == cap) {
            char **bigger = flip_calloc((size_t)cap * 2, sizeof(char *), "lines");
            memcpy(bigger, lines, sizeof(char *) * (size_t)n);
            flip_free(lines);
            lines = bigger;
            cap *= 2;
        }
        size_t len = strlen(s);
        lines[n] = flip_malloc(len + 1, "line");
        memcpy(lines[n], s, len + 1);
        n++;
    }
    fclose(f);
    if (n == 0) {
        flip_free(lines);
        snprintf(err, eb, "%s %s: no lines", what, path);
        return NULL;
    }
    *n_out = n;
    return lines;
}

static void free_lines(char **lines, int n) {
    if (!lines) return;
    for (int i = 0; i < n; i++) flip_free(lines[i]);
    flip_free(lines);
}

static void normalize(float *x, int D) {
    double s = 0;
    for (int k = 0; k < D; k++) s += (double)x[k] * x[k];
    float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
    for (int k = 0; k < D; k++) x[k] *= inv;
}

static float dot(const float *a, const float *b, int D) {
    float s = 0;
    for (int k = 0; k < D; k++) s += a[k] * b[k];
    return s;
}

/* class embeddings (K, D): mean over templates of normalised prompt
 * embeddings, renormalised (CLIP's zero-shot classifier). */
static int class_embeddings(FlipModel *m, Tokenizer *tk, char **classes, int K, char **tmpls, int Tm,
                            int B_eval, float *cls, const char *tmpl_path, char *err, size_t eb) {
    const int T = m->cfg.context, D = m->cfg.embed_dim;
    int32_t *tok = flip_calloc((size_t)B_eval * T, sizeof(int32_t), "prompt tokens");
    int *lens = flip_calloc((size_t)B_eval, sizeof(int), "prompt lens");
    float *emb = flip_malloc(sizeof(float) * (size_t)B_eval * D, "prompt embeddings");
    memset(cls, 0, sizeof(float) * (size_t)K * D);
    long total = (long)K * Tm;
    for (long p0 = 0; p0 < total; p0 += B_eval) {
        int nb = (int)(total - p0 < B_eval ? total - p0 : B_eval);
        for (int b = 0; b < B_eval; b++) {
            long p = p0 + (b < nb ? b : 0);
            int k = (int)(p / Tm), j = (int)(p % Tm);
            char prompt[8192];
            const char *ph = strstr(tmpls[j], "{}");
            if (!ph) {
                snprintf(err, eb, "--templates %s: template %d '%s' has no {} placeholder", tmpl_path, j + 1, tmpls[j]);
                flip_free(tok); flip_free(lens); flip_free(emb);
                return -1;
            }
            snprintf(prompt, sizeof prompt, "%.*s%s%s", (int)(ph - tmpls[j]), tmpls[j], classes[k], ph + 2);
            if (tokenizer_encode(tk, prompt, strlen(prompt), tok + (size_t)b * T, T, &lens[b]) != 0) {
                snprintf(err, eb, "prompt '%s' is not valid UTF-8 (check --classnames / --templates)", prompt);
                flip_free(tok); flip_free(lens); flip_free(emb);
                return -1;
            }
        }
        flip_model_encode_text(m, tok, lens, emb);
        for (int b = 0; b < nb; b++) {
            int k = (int)((p0 + b) / Tm);
            for (int d = 0; d < D; d++) cls[(size_t)k * D + d] += emb[(size_t)b * D + d];
        }
    }
    for (int k = 0; k < K; k++) normalize(cls + (size_t)k * D, D);
    flip_free(tok);
    flip_free(lens);
    flip_free(emb);
    return 0;
}

static int is_cased(const char *tokenizer_name) {
    return strstr(tokenizer_name, "cased") && !strstr(tokenizer_name, "uncased");
}

int eval_zeroshot(FlipModel *m, const char *spec, const char *classnames_path, const char *templates_path,
                  const char *vocab_path, int B_eval, ZeroShotResult *res, char *err, size_t eb) {
    memset(res, 0, sizeof *res);
    const FlipConfig *c = &m->cfg;
    EvalData d;
    char **classes = NULL, **tmpls = NULL;
    int K = 0, Tm = 0;
    Tokenizer *tk = NULL;
    int rc = data_open(&d, spec, err, eb);
    if (!rc && !d.has_labels) {
        snprintf(err, eb, "--zeroshot-data %s: shards have no /labels (make them with flip-prep --label-shards)", spec);
        rc = -1;
    }
    if (!rc && (d.meta.H != c->image_size || d.meta.W != c->image_size || d.meta.C != c->channels)) {
        snprintf(err, eb, "--zeroshot-data %s: images %dx%dx%d, the model takes %dx%dx%d", d.first_path, d.meta.H,
                 d.meta.W, d.meta.C, c->image_size, c->image_size, c->channels);
        rc = -1;
    }
    if (!rc && !(classes = read_lines(classnames_path, &K, "--classnames", err, eb))) rc = -1;
    if (!rc && !(tmpls = read_lines(templates_path, &Tm, "--templates", err, eb))) rc = -1;
    char vpath[2048];
    if (!rc) {
        if (vocab_path && vocab_path[0]) {
            snprintf(vpath, sizeof vpath, "%s", vocab_path);
        } else {
            const char *slash = strrchr(d.first_path, '/');
            if (slash) snprintf(vpath, sizeof vpath, "%.*s/vocab.txt", (int)(slash - d.first_path), d.first_path);
            else snprintf(vpath, sizeof vpath, "vocab.txt");
        }
        char terr[1024];
        tk = tokenizer_load(vpath, !is_cased(d.meta.tokenizer), terr, sizeof terr);
        if (!tk) {
            snprintf(err, eb, "zero-shot vocab: %s (pass --vocab FILE)", terr);
            rc = -1;
        }
    }
    if (!rc) {
        char sha[65];
        tokenizer_sha256(tk, sha);
        if (d.meta.vocab_sha256[0] && strcmp(sha, d.meta.vocab_sha256) != 0) {
            snprintf(err, eb, "vocab %s (sha256 %.12s...) is not the shards' vocab (%.12s...); pass the --vocab "
                     "used by flip-prep", vpath, sha, d.meta.vocab_sha256);
            rc = -1;
        } else if (tokenizer_vocab_size(tk) > c->vocab) {
            snprintf(err, eb, "vocab %s has %d tokens, the model only %d", vpath, tokenizer_vocab_size(tk), c->vocab);
            rc = -1;
        }
    }
    if (agree(rc, err, eb)) {
        if (tk) tokenizer_free(tk);
        free_lines(classes, K);
        free_lines(tmpls, Tm);
        data_close(&d);
        return -1;
    }
    const int D = c->embed_dim, T = c->context;
    flip_model_plan(m, B_eval, flip_config_num_patches(c));
    float *cls = flip_malloc(sizeof(float) * (size_t)K * D, "class embeddings");
    rc = class_embeddings(m, tk, classes, K, tmpls, Tm, B_eval, cls, templates_path, err, eb);
    size_t img_n = (size_t)c->image_size * c->image_size * c->channels;
    uint8_t *img = flip_malloc(img_n * (size_t)B_eval, "eval images");
    int32_t *tok = flip_malloc(sizeof(int32_t) * (size_t)T, "eval tokens");
    int32_t *labels = flip_calloc((size_t)B_eval, sizeof(int32_t), "eval labels");
    float *emb = flip_malloc(sizeof(float) * (size_t)B_eval * D, "eval image embeddings");
    float *score = flip_malloc(sizeof(float) * (size_t)K, "class scores");
    double counts[3] = {0, 0, 0}; /* n, top1, top5 */
    int rank = comm_rank(), world = comm_size();
    long g = rank;
    while (!rc && g < d.n) {
        int nb = 0;
        for (; nb < B_eval && g < d.n; nb++, g += world) {
            int len;
            if (data_read(&d, g, img + img_n * nb, tok, &len, &labels[nb], err, eb)) { rc = -1; break; }
            if (labels[nb] < 0 || labels[nb] >= K) {
                snprintf(err, eb, "%s: sample %ld has label %d, but --classnames %s lists %d classes", spec, g,
                         labels[nb], classnames_path, K);
                rc = -1;
                break;
            }
        }
        if (rc || nb == 0) break;
        for (int b = nb; b < B_eval; b++) memcpy(img + img_n * b, img, img_n); /* padding rows */
        flip_model_encode_image(m, img, emb);
        for (int b = 0; b < nb; b++) {
            for (int k = 0; k < K; k++) score[k] = dot(emb + (size_t)b * D, cls + (size_t)k * D, D);
            float own = score[labels[b]];
            int higher = 0;
            for (int k = 0; k < K; k++)
                if (score[k] > own || (score[k] == own && k < labels[b])) higher++;
            counts[0] += 1;
            counts[1] += higher < 1;
            counts[2] += higher < 5;
        }
    }
    rc = agree(rc, err, eb);
    if (!rc) {
        comm_allreduce_sum_f64(counts, 3);
        res->n = (long)counts[0];
        res->n_classes = K;
        res->top1 = counts[0] > 0 ? counts[1] / counts[0] : 0;
        res->top5 = counts[0] > 0 ? counts[2] / counts[0] : 0;
    }
    flip_free(cls); flip_free(img); flip_free(tok); flip_free(labels); flip_free(emb); flip_free(score);
    tokenizer_free(tk);
    free_lines(classes, K);
    free_lines(tmpls, Tm);
    data_close(&d);
    return rc;
}

int eval_retrieval(FlipModel *m, const char *spec, int B_eval, RetrievalResult *res, char *err, size_t eb) {
    memset(res, 0, sizeof *res);
    const FlipConfig *c = &m->cfg;
    EvalData d;
    int rc = val_data_open(&d, spec, c, err, eb);
    if (agree(rc, err, eb)) {
        data_close(&d);
        return -1;
    }
    const int D = c->embed_dim, T = c->context;
    const long n = d.n;
    flip_model_plan(m, B_eval, flip_config_num_patches(c));
    size_t img_n = (size_t)c->image_size * c->image_size * c->channels;
    uint8_t *img = flip_malloc(img_n * (size_t)B_eval, "eval images");
    int32_t *tok = flip_calloc((size_t)B_eval * T, sizeof(int32_t), "eval tokens");
    int *lens = flip_calloc((size_t)B_eval, sizeof(int), "eval lens");
    float *ie = flip_calloc((size_t)n * D, sizeof(float), "retrieval image embeddings");
    float *te = flip_calloc((size_t)n * D, sizeof(float), "retrieval text embeddings");
    float *emb = flip_malloc(sizeof(float) * (size_t)B_eval * D, "eval embeddings");
    long *idx = flip_malloc(sizeof(long) * (size_t)B_eval, "eval indices");
    int rank = comm_rank(), world = comm_size();
    long g = rank;
    while (!rc && g < n) {
        int nb = 0;
        for (; nb < B_eval && g < n; nb++, g += world) {
            idx[nb] = g;
            if (data_read(&d, g, img + img_n * nb, tok + (size_t)nb * T, &lens[nb], NULL, err, eb)) { rc = -1; break; }
        }
        if (rc || nb == 0) break;
        for (int b = nb; b < B_eval; b++) {
            memcpy(img + img_n * b, img, img_n);
            memcpy(tok + (size_t)b * T, tok, sizeof(int32_t) * (size_t)T);
            lens[b] = lens[0];
        }
        flip_model_encode_image(m, img, emb);
        for (int b = 0; b < nb; b++) memcpy(ie + (size_t)idx[b] * D, emb + (size_t)b * D, sizeof(float) * D);
        flip_model_encode_text(m, tok, lens, emb);
        for (int b = 0; b < nb; b++) memcpy(te + (size_t)idx[b] * D, emb + (size_t)b * D, sizeof(float) * D);
    }
    rc = agree(rc, err, eb);
    if (!rc) {
        /* every row was written by exactly one rank: the sum is the gather */
        comm_allreduce_sum_f32(ie, (size_t)n * D);
        comm_allreduce_sum_f32(te, (size_t)n * D);
        /* this rank's queries in blocks of QB: scores of a block against all n
         * candidates with one oneDNN matmul per direction (linear_forward);
         * the query's own pair is scored by the same matmul as its rivals */
        static const int ks[3] = {1, 5, 10};
        enum { QB = 256 };
        FLIP_CHECK(n < (1L << 31), "retrieval: %ld pairs exceed the matmul's int range", n);
        float *qi = flip_malloc(sizeof(float) * QB * (size_t)D, "retrieval image queries");
        float *qt = flip_malloc(sizeof(float) * QB * (size_t)D, "retrieval text queries");
        float *S = flip_malloc(sizeof(float) * QB * (size_t)n, "retrieval scores");
        long qs[QB];
        double cnt[7] = {0};
        for (long q = rank; q < n;) {
            int nb = 0;
            for (; nb < QB && q < n; nb++, q += world) {
                qs[nb] = q;
                memcpy(qi + (size_t)nb * D, ie + (size_t)q * D, sizeof(float) * D);
                memcpy(qt + (size_t)nb * D, te + (size_t)q * D, sizeof(float) * D);
            }
            for (int dir = 0; dir < 2; dir++) {
                /* dir 0: image -> all texts; dir 1: text -> all images */
                linear_forward(S, dir ? qt : qi, dir ? ie : te, NULL, nb, D, (int)n);
                for (int b = 0; b < nb; b++) {
                    const float *row = S + (size_t)b * n;
                    float own = row[qs[b]];
                    long higher = 0;
                    for (long j = 0; j < n; j++) higher += row[j] > own;
                    for (int k = 0; k < 3; k++) cnt[1 + 3 * dir + k] += higher < ks[k];
                }
            }
            cnt[0] += nb;
        }
        flip_free(qi);
        flip_free(qt);
        flip_free(S);
        comm_allreduce_sum_f64(cnt, 7);
        res->n = (long)cnt[0];
        for (int k = 0; k < 3; k++) {
            res->i2t[k] = cnt[0] > 0 ? cnt[1 + k] / cnt[0] : 0;
            res->t2i[k] = cnt[0] > 0 ? cnt[4 + k] / cnt[0] : 0;
        }
    }
    flip_free(img); flip_free(tok); flip_free(lens); flip_free(ie); flip_free(te); flip_free(emb); flip_free(idx);
    data_close(&d);
    return rc;
}

int eval_val_loss(FlipModel *m, const char *spec, int B, int B_eval, ValLossResult *res, char *err, size_t eb) {
    memset(res, 0, sizeof *res);
    const FlipConfig *c = &m->cfg;
    const int rank = comm_rank(), world = comm_size();
    const long G = (long)B * world;
    EvalData d;
    int rc = val_data_open(&d, spec, c, err, eb);
    if (!rc && d.n < G) {
        snprintf(err, eb, "--val-data %s: %ld pairs, fewer than one global batch of %ld (give more validation data)",
                 spec, d.n, G);
        rc = -1;
    }
    if (agree(rc, err, eb)) {
        data_close(&d);
        return -1;
    }
    FLIP_CHECK(G < (1L << 31), "validation loss: global batch %ld exceeds the int range", G);
    const ParamTensor *ls = flip_model_find(m, "logit_scale");
    FLIP_CHECK(ls != NULL, "model has no logit_scale tensor");
    const float t = m->params[ls->offset];
    const int D = c->embed_dim, T = c->context, Be = B_eval < B ? B_eval : B;
    flip_model_plan(m, Be, flip_config_num_patches(c));
    size_t img_n = (size_t)c->image_size * c->image_size * c->channels;
    uint8_t *img = flip_malloc(img_n * (size_t)Be, "val images");
    int32_t *tok = flip_calloc((size_t)Be * T, sizeof(int32_t), "val tokens");
    int *lens = flip_calloc((size_t)Be, sizeof(int), "val lens");
    float *emb = flip_malloc(sizeof(float) * (size_t)Be * D, "val embeddings");
    float *u = flip_malloc(sizeof(float) * (size_t)B * D, "val image embeddings");
    float *v = flip_malloc(sizeof(float) * (size_t)B * D, "val text embeddings");
    float *U = flip_malloc(sizeof(float) * (size_t)G * D, "val gathered image embeddings");
    float *V = flip_malloc(sizeof(float) * (size_t)G * D, "val gathered text embeddings");
    float *probs = flip_malloc(sizeof(float) * 2 * (size_t)B * (size_t)G, "val InfoNCE probabilities");
    const long n_batches = d.n / G;
    double sum = 0;
    for (long k = 0; k < n_batches && !rc; k++) {
        const long first = k * G + (long)rank * B; /* this rank's rows of batch k */
        for (int c0 = 0; c0 < B && !rc; c0 += Be) {
            int nc = B - c0 < Be ? B - c0 : Be;
            for (int b = 0; b < nc; b++)
                if (data_read(&d, first + c0 + b, img + img_n * b, tok + (size_t)b * T, &lens[b], NULL, err, eb)) {
                    rc = -1;
                    break;
                }
            if (rc) break;
            for (int b = nc; b < Be; b++) { /* padding rows of the last chunk */
                memcpy(img + img_n * b, img, img_n);
                memcpy(tok + (size_t)b * T, tok, sizeof(int32_t) * (size_t)T);
                lens[b] = lens[0];
            }
            flip_model_encode_image(m, img, emb);
            memcpy(u + (size_t)c0 * D, emb, sizeof(float) * (size_t)nc * D);
            flip_model_encode_text(m, tok, lens, emb);
            memcpy(v + (size_t)c0 * D, emb, sizeof(float) * (size_t)nc * D);
        }
        if (agree(rc, err, eb)) { /* before any collective: no rank is left waiting */
            rc = -1;
            break;
        }
        comm_allgather_rows(U, u, B, D);
        comm_allgather_rows(V, v, B, D);
        float part = 0.0f;
        infonce_forward(&part, probs, u, v, U, V, t, B, (int)G, D, rank * B);
        double l = part;
        comm_allreduce_sum_f64(&l, 1);
        sum += l;
    }
    if (!rc) {
        res->n = d.n;
        res->n_batches = n_batches;
        res->G = G;
        res->loss = sum / (double)n_batches;
    }
    flip_free(img); flip_free(tok); flip_free(lens); flip_free(emb);
    flip_free(u); flip_free(v); flip_free(U); flip_free(V); flip_free(probs);
    data_close(&d);
    return rc;
}
