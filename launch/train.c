/* train.c — the flip-train loop and flip-eval driver (see train.h; DESIGN §3,
 * §5; docs/distributed.md). Collective throughout: every rank runs the same
 * code on the same decisions (all derived from all-reduced values), so no rank
 * ever waits in a collective the others skipped. User errors are agreed on by
 * all ranks before anyone returns, and printed once by rank 0. */
#include "train.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "comm.h"
#include "common.h"
#include "dnnl_util.h"
#include "eval.h"
#include "loader.h"
#include "metrics.h"
#include "model.h"
#include "ops.h"
#include "prof.h"

static volatile sig_atomic_t g_signal = 0;

static void on_signal(int sig) { g_signal = sig; }

/* The thread that takes the process's asynchronous signals: the only one
 * of ours that leaves them unblocked (MPI's own threads, started earlier,
 * may take one too; no compute kernel runs on either). */
static void *signal_thread(void *arg) {
    (void)arg;
    for (;;) pause();
    return NULL;
}

/* SIGTERM / SIGUSR1 set g_signal; the step loop checkpoints and exits.
 * Handlers never run on a compute thread: a handler frame pushed while
 * oneDNN's JIT GEMM runs lands in the heap (dnnl_util.c), so the signal
 * thread is started first, then the main thread blocks the async signals and
 * every thread it creates later (OpenMP pool, loader) inherits that. */
void train_install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    FLIP_CHECK(sigaction(SIGTERM, &sa, NULL) == 0, "sigaction(SIGTERM) failed: %s", strerror(errno));
    FLIP_CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction(SIGUSR1) failed: %s", strerror(errno));
    pthread_t th;
    int rc = pthread_create(&th, NULL, signal_thread, NULL);
    FLIP_CHECK(rc == 0, "pthread_create (signal thread) failed: %s", strerror(rc));
    rc = pthread_detach(th);
    FLIP_CHECK(rc == 0, "pthread_detach (signal thread) failed: %s", strerror(rc));
    flip_block_async_signals();
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* rank 0 prints one line "prog: message" */
static void say(const char *prog, const char *fmt, ...) FLIP_PRINTF(2, 3);
static void say(const char *prog, const char *fmt, ...) {
    if (comm_rank() != 0) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n", prog, msg);
    fflush(stderr);
}

/* every rank learns whether every rank succeeded */
static int all_ok(int ok) {
    comm_allreduce_min_int(&ok, 1);
    return ok;
}

static int mkdir_p(const char *path, char *err, size_t eb) {
    char tmp[OPT_PATH + 500];
    if (strlen(path) >= sizeof tmp) {
        snprintf(err, eb, "folder name too long: %.200s...", path);
        return -1;
    }
    memcpy(tmp, path, strlen(path) + 1);
    for (char *p = tmp + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(tmp, 0777) != 0 && errno != EEXIST) {
                snprintf(err, eb, "cannot create folder %s: %s (check --logs)", tmp, strerror(errno));
                return -1;
            }
            *p = c;
            if (!c) break;
        }
    }
    return 0;
}

/* Model config from the preset, the shards' metadata and explicit overrides. */
static int resolve_model(const Options *o, const ShardMeta *meta, const char *shard, FlipConfig *cfg, char *err,
                         size_t eb) {
    if (flip_config_preset(cfg, o->model) != 0) {
        snprintf(err, eb, "--model: unknown preset '%s' (known: %s)", o->model, flip_config_preset_names());
        return -1;
    }
    if (meta->H != meta->W) {
        snprintf(err, eb, "%s: images are %dx%d; flip needs square images (re-run flip-prep with --image-size)", shard,
                 meta->H, meta->W);
        return -1;
    }
#define MATCH(flag, val, shardval, what)                                                                   \
    if ((val) != 0 && (val) != (shardval)) {                                                               \
        snprintf(err, eb, "--" flag " %d does not match %s (" what " %d): omit the flag or re-run flip-prep", \
                 (val), shard, (shardval));                                                                \
        return -1;                                                                                         \
    }
    MATCH("image-size", o->image_size, meta->H, "image size")
    MATCH("channels", o->channels, meta->C, "channels")
    MATCH("context", o->context, meta->T, "text length T")
    MATCH("vocab-size", o->vocab_size, meta->vocab_size, "vocab_size")
#undef MATCH
    cfg->image_size = meta->H;
    cfg->channels = meta->C;
    cfg->context = meta->T;
    cfg->vocab = meta->vocab_size;
    for (int c = 0; c < 3; c++) {
        cfg->mean[c] = meta->mean[c < meta->C ? c : 0];
        cfg->std[c] = meta->std[c < meta->C ? c : 0];
    }
    /* size flags override the preset; a changed preset is named "custom" */
    char given[512] = "";
    size_t gl = 0;
    int changed = 0;
#define SIZE_FLAG(flag, field, val)                                                     \
    if ((val) > 0) {                                                                    \
        changed |= cfg->field != (val);                                                 \
        cfg->field = (val);                                                             \
        gl += (size_t)snprintf(given + gl, sizeof given - gl, " --" flag " %d", (val)); \
    }
    SIZE_FLAG("width", width, o->width)
    SIZE_FLAG("depth", depth, o->depth)
    SIZE_FLAG("heads", heads, o->heads)
    SIZE_FLAG("text-width", text_width, o->text_width)
    SIZE_FLAG("text-depth", text_depth, o->text_depth)
    SIZE_FLAG("text-heads", text_heads, o->text_heads)
    SIZE_FLAG("embed-dim", embed_dim, o->embed_dim)
    SIZE_FLAG("patch-size", patch, o->patch_size)
#undef SIZE_FLAG
    if (changed) snprintf(cfg->name, sizeof cfg->name, "custom");
    char msg[256];
    const char *bad = flip_config_check(cfg, msg, sizeof msg);
    if (bad) {
        snprintf(err, eb, "--model %s%s with the shards' %dx%dx%d images (%s): %s", o->model, given, meta->H, meta->W,
                 meta->C, shard, bad);
        return -1;
    }
    return 0;
}

typedef struct {
    const Options *o;
    int rank, world, B, G;
    FlipModel m;
    char run_dir[OPT_PATH + 400], ckpt_dir[OPT_PATH + 420];
    char config_text[16384];
    long adam_step;
    long total;      /* schedule length in steps */
    int bad_in_row;
    int plan_B, plan_N;  /* the activations' current plan (0: unknown, e.g. after an evaluation) */
    Metrics mt;
} Train;

/* plans the model's activations for (B, N) unless that is the current plan */
static void plan_model(Train *t, int B, int N) {
    if (t->plan_B == B && t->plan_N == N) return;
    flip_model_plan(&t->m, B, N);
    t->plan_B = B;
    t->plan_N = N;
}

static void save_checkpoint(Train *t, long steps_done) {
    if (t->rank == 0) {
        CheckpointState st;
        memset(&st, 0, sizeof st);
        st.step = steps_done;
        st.adam_step = t->adam_step;
        st.samples_seen = steps_done * (long)t->G;
        st.data_cursor = steps_done;
        st.total_steps = t->total;
        st.seed = t->o->seed;
        st.world_size = t->world;
        st.global_batch = t->G;
        st.bad_in_row = t->bad_in_row;
        snprintf(st.config, sizeof st.config, "%s", t->config_text);
        char path[OPT_PATH + 460];
        checkpoint_path(path, sizeof path, t->ckpt_dir, steps_done);
        checkpoint_save(path, &t->m, &st);
        const char *base = strrchr(path, '/');
        checkpoint_set_latest(t->ckpt_dir, base ? base + 1 : path);
        checkpoint_prune(t->ckpt_dir, t->o->save_keep);
    }
    comm_barrier(); /* the file exists for every rank once this returns */
}

/* value of "key = value" in a config text (options_format), or "(unset)" */
static void config_value(const char *text, const char *key, char *out, size_t n) {
    size_t kl = strlen(key);
    snprintf(out, n, "(unset)");
    for (const char *p = text; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        if (ll > kl + 3 && strncmp(p, key, kl) == 0 && strncmp(p + kl, " = ", 3) == 0) {
            snprintf(out, n, "%.*s", (int)(ll - kl - 3), p + kl + 3);
            return;
        }
        p = eol ? eol + 1 : NULL;
    }
}

/* one warning line per schedule/model flag that differs from the checkpoint's run */
static void warn_config_changes(const char *prog, const char *path, const char *saved, const char *now) {
    static const char *const keys[] = {"mask-ratio", "lr", "train-samples", "epochs", "unmasked-tune-samples",
                                       "model", "width", "depth", "heads", "text-width", "text-depth",
                                       "text-heads", "embed-dim", "patch-size", "image-size", "channels",
                                       "context", "vocab-size"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char a[512], b[512];
        config_value(saved, keys[i], a, sizeof a);
        config_value(now, keys[i], b, sizeof b);
        if (strcmp(a, b) != 0)
            fprintf(stderr, "%s: warning: --%s is %s, %s was written with %s (resuming anyway)\n", prog, keys[i], b,
                    path, a);
    }
}

static void run_evals(Train *t, long step, int N_train) {
    const Options *o = t->o;
    char err[2048];
    if (!o->zeroshot_data[0] && !o->val_data[0]) return; /* nothing to evaluate: the plan stays */
    t->plan_B = t->plan_N = 0; /* the evaluations plan the model for their own batches */
    if (o->zeroshot_data[0]) {
        ZeroShotResult zr;
        if (eval_zeroshot(&t->m, o->zeroshot_data, o->classnames, o->templates, o->vocab, o->eval_batch_size, &zr,
                          err, sizeof err) == 0) {
            char fields[256], human[256];
            snprintf(fields, sizeof fields, "\"n\":%ld,\"classes\":%d,\"top1\":%.6f,\"top5\":%.6f", zr.n, zr.n_classes,
                     zr.top1, zr.top5);
            snprintf(human, sizeof human, "top-1 %.2f%% top-5 %.2f%% (%ld images, %d classes)", 100 * zr.top1,
                     100 * zr.top5, zr.n, zr.n_classes);
            metrics_log_eval(&t->mt, step, "zeroshot", fields, human);
        } else {
            say("flip-train", "zero-shot evaluation skipped: %s", err);
        }
    }
    if (o->val_data[0]) {
        RetrievalResult rr;
        if (eval_retrieval(&t->m, o->val_data, o->eval_batch_size, &rr, err, sizeof err) == 0) {
            char fields[320], human[256];
            snprintf(fields, sizeof fields,
                     "\"n\":%ld,\"i2t_r1\":%.6f,\"i2t_r5\":%.6f,\"i2t_r10\":%.6f,\"t2i_r1\":%.6f,\"t2i_r5\":%.6f,"
                     "\"t2i_r10\":%.6f",
                     rr.n, rr.i2t[0], rr.i2t[1], rr.i2t[2], rr.t2i[0], rr.t2i[1], rr.t2i[2]);
            snprintf(human, sizeof human, "image->text R@1/5/10 %.1f/%.1f/%.1f%%, text->image %.1f/%.1f/%.1f%% (%ld pairs)",
                     100 * rr.i2t[0], 100 * rr.i2t[1], 100 * rr.i2t[2], 100 * rr.t2i[0], 100 * rr.t2i[1],
                     100 * rr.t2i[2], rr.n);
            metrics_log_eval(&t->mt, step, "retrieval", fields, human);
        } else {
            say("flip-train", "retrieval evaluation skipped: %s", err);
        }
        ValLossResult vr;
        if (eval_val_loss(&t->m, o->val_data, t->B, o->eval_batch_size, &vr, err, sizeof err) == 0) {
            char fields[256], human[256];
            snprintf(fields, sizeof fields, "\"n\":%ld,\"batches\":%ld,\"global_batch\":%ld,\"val_loss\":%.9g", vr.n,
                     vr.n_batches, vr.G, vr.loss);
            snprintf(human, sizeof human, "val_loss %.4f (unmasked, %ld global batches of %ld of the %ld pairs)",
                     vr.loss, vr.n_batches, vr.G, vr.n);
            metrics_log_eval(&t->mt, step, "val", fields, human);
        } else {
            say("flip-train", "validation loss evaluation skipped: %s", err);
        }
    }
    plan_model(t, t->B, N_train);
}

static void dump_params(const FlipModel *m, const char *path) {
    FILE *f = fopen(path, "wb");
    FLIP_CHECK(f != NULL, "--dump-params %s: cannot create (%s)", path, strerror(errno));
    FLIP_CHECK(fwrite(m->params, sizeof(float), m->n_params, f) == m->n_params, "--dump-params %s: write failed",
               path);
    FLIP_CHECK(fclose(f) == 0, "--dump-params %s: close failed", path);
}

/* comm_buckets_ready (starts bucket all-reduces from inside backward) timed as
 * comm wait under --profile */
static void ready_profiled(void *ctx, size_t offset, size_t count) {
    FLIP_PROF_BEGIN(FLIP_PROF_COMM);
    comm_buckets_ready(ctx, offset, count);
    FLIP_PROF_END();
}

int train_run(const Options *o) {
    const char *P = "flip-train";
    Train tr;
    memset(&tr, 0, sizeof tr);
    Train *t = &tr;
    t->o = o;
    t->rank = comm_rank();
    t->world = comm_size();
    char err[8192] = "";

    /* ---- batch sizes */
    if (o->global_batch_size) {
        if (o->global_batch_size % t->world != 0) {
            say(P, "--global-batch-size %d is not divisible by the %d ranks", o->global_batch_size, t->world);
            return FLIP_EXIT_USAGE;
        }
        if (o->batch_size && o->batch_size * t->world != o->global_batch_size) {
            say(P, "--batch-size %d x %d ranks != --global-batch-size %d: give only one", o->batch_size, t->world,
                o->global_batch_size);
            return FLIP_EXIT_USAGE;
        }
        t->B = o->global_batch_size / t->world;
    } else {
        t->B = o->batch_size;
    }
    t->G = t->B * t->world;

    /* ---- data */
    LoaderConfig lc;
    memset(&lc, 0, sizeof lc);
    lc.spec = o->train_data;
    lc.batch_size = t->B;
    lc.rank = t->rank;
    lc.world = t->world;
    lc.seed = o->seed;
    lc.augment = o->augment;
    lc.skip_bad = o->skip_bad;
    lc.prefetch = 2;
    Loader *ld = loader_open(&lc, err, sizeof err);
    if (!all_ok(ld != NULL)) {
        say(P, "--train-data: %s", ld ? "failed on another rank" : err);
        if (ld) loader_close(ld);
        return FLIP_EXIT_ERROR;
    }
    const ShardMeta *meta = loader_meta(ld);
    long spe = loader_steps_per_epoch(ld);
    if (spe < 1) {
        say(P, "--train-data %s holds %ld samples, fewer than one global batch of %d", o->train_data,
            loader_num_samples(ld), t->G);
        loader_close(ld);
        return FLIP_EXIT_ERROR;
    }
    /* --max-minutes alone: the length is fixed after timing the first steps;
     * until then a provisional length (the schedule is in warmup or ~flat) */
    const int budgeted = o->epochs == 0 && o->train_samples == 0;
    const long provisional = 1L << 40;
    long total = budgeted ? provisional
                 : o->epochs > 0 ? (long)ceil(o->epochs * (double)spe) : (o->train_samples + t->G - 1) / t->G;
    long tune = (o->unmasked_tune_samples + t->G - 1) / t->G;
    if (total < 1) total = 1;
    if (tune > total) {
        say(P, "--unmasked-tune-samples %ld is more than the whole run (%ld samples)", o->unmasked_tune_samples,
            total * t->G);
        loader_close(ld);
        return FLIP_EXIT_USAGE;
    }

    /* ---- model */
    FlipConfig cfg;
    int rc = resolve_model(o, meta, loader_shard_path(ld, 0), &cfg, err, sizeof err);
    if (rc) {
        say(P, "%s", err);
        loader_close(ld);
        return strncmp(err, "--", 2) == 0 ? FLIP_EXIT_USAGE : FLIP_EXIT_ERROR;
    }
    const int Np = flip_config_num_patches(&cfg);
    const int N_mask = flip_config_num_kept(&cfg, (float)o->mask_ratio);
    const int D = cfg.embed_dim;
    /* --precision bf16: linear-layer matmuls in bf16 (dnnl_util.h); a CPU
     * without AVX512-BF16 ends here with a one-line error */
    flip_set_precision(strcmp(o->precision, "bf16") == 0 ? FLIP_PRECISION_BF16 : FLIP_PRECISION_FP32);
    flip_model_init(&t->m, &cfg, o->seed);
    FlipModel *m = &t->m;
    const ParamTensor *ls = flip_model_find(m, "logit_scale");
    FLIP_CHECK(ls != NULL, "model has no logit_scale tensor");

    /* ---- run folder, resolved config */
    snprintf(t->run_dir, sizeof t->run_dir, "%s/%s", o->logs, o->name);
    snprintf(t->ckpt_dir, sizeof t->ckpt_dir, "%.1300s/checkpoints", t->run_dir);
    options_format(o, OPT_PROG_TRAIN, t->config_text, sizeof t->config_text);
    rc = 0;
    if (t->rank == 0) {
        rc = mkdir_p(t->ckpt_dir, err, sizeof err);
        if (!rc) {
            char path[OPT_PATH + 460];
            snprintf(path, sizeof path, "%.1300s/config.txt", t->run_dir);
            FILE *f = fopen(path, "w");
            if (!f) {
                snprintf(err, sizeof err, "cannot write %s: %s", path, strerror(errno));
                rc = -1;
            } else {
                fprintf(f, "# flip-train resolved configuration (%d ranks, B %d per rank, G %d)\n%s", t->world, t->B,
                        t->G, t->config_text);
                fprintf(f, "# model: %s image %d channels %d patch %d width %d depth %d heads %d text %dx%d heads %d "
                           "vocab %d T %d D %d (Np %d, kept %d)\n",
                        cfg.name, cfg.image_size, cfg.channels, cfg.patch, cfg.width, cfg.depth, cfg.heads,
                        cfg.text_width, cfg.text_depth, cfg.text_heads, cfg.vocab, cfg.context, cfg.embed_dim, Np,
                        N_mask);
                fclose(f);
            }
        }
    }
    if (!all_ok(rc == 0)) {
        say(P, "%s", rc ? err : "cannot create the run folder");
        flip_model_free(m);
        loader_close(ld);
        return FLIP_EXIT_ERROR;
    }

    /* ---- resume */
    long start = 0;
    if (o->resume[0]) {
        char path[OPT_PATH + 460];
        CheckpointState st;
        rc = checkpoint_resolve(o->resume, t->ckpt_dir, path, sizeof path, err, sizeof err);
        int fresh = rc != 0 && strcmp(o->resume, "latest") == 0;
        if (fresh) {
            say(P, "--resume latest: no checkpoint in %s yet, starting from step 0", t->ckpt_dir);
            rc = 0;
        } else if (rc == 0) {
            rc = checkpoint_load(path, m, 1, &st, err, sizeof err);
            if (rc == 0 && st.seed != o->seed) {
                snprintf(err, sizeof err, "%s: written with --seed %llu, this run has --seed %llu", path,
                         (unsigned long long)st.seed, (unsigned long long)o->seed);
                rc = -1;
            }
            if (rc == 0 && st.global_batch != t->G) {
                snprintf(err, sizeof err, "%s: written with global batch %d, this run has %d", path, st.global_batch,
                         t->G);
                rc = -1;
            }
            if (rc == 0) {
                start = st.step;
                if (budgeted && st.total_steps > 0 && st.total_steps < provisional) total = st.total_steps;
                t->adam_step = st.adam_step;
                t->bad_in_row = st.bad_in_row;
                if (t->rank == 0) warn_config_changes(P, path, st.config, t->config_text);
                if (st.world_size != t->world)
                    say(P, "note: %s was written by %d ranks, resuming on %d (equal up to float summation order, "
                           "not bit for bit)", path, st.world_size, t->world);
                say(P, "resumed from %s at step %ld", path, start);
            }
        }
        if (!all_ok(rc == 0)) {
            say(P, "--resume: %s", rc ? err : "failed on another rank");
            flip_model_free(m);
            loader_close(ld);
            return FLIP_EXIT_ERROR;
        }
    }

    t->total = total;
    int calibrated = !budgeted || total != provisional;

    /* ---- step buffers (setup: the step itself never allocates) */
    int N_cur = start >= total - tune ? Np : N_mask;
    plan_model(t, t->B, N_cur);
    GradBuckets *gb = comm_buckets_init(m->grads, m->tensors, m->n_tensors, o->bucket_mb);
    float *U = flip_malloc(sizeof(float) * (size_t)t->G * D, "gathered image embeddings");
    float *V = flip_malloc(sizeof(float) * (size_t)t->G * D, "gathered text embeddings");
    float *dU = flip_malloc(sizeof(float) * (size_t)t->G * D, "dU");
    float *dV = flip_malloc(sizeof(float) * (size_t)t->G * D, "dV");
    float *probs = flip_malloc(sizeof(float) * 2 * (size_t)t->B * t->G, "InfoNCE probabilities");
    int32_t *keep = flip_malloc(sizeof(int32_t) * (size_t)t->B * Np, "kept patch indices");
    Schedule sched;
    memset(&sched, 0, sizeof sched);
    sched.kind = strcmp(o->lr_scheduler, "const") == 0            ? FLIP_SCHED_CONST
                 : strcmp(o->lr_scheduler, "const-cooldown") == 0 ? FLIP_SCHED_CONST_COOLDOWN
                                                                  : FLIP_SCHED_COSINE;
    sched.base_lr = (float)o->lr;
    sched.warmup_steps = o->warmup;
    sched.total_steps = total;
    sched.min_lr = (float)o->min_lr;
    sched.cooldown_steps = o->cooldown_steps;
    AdamWConfig opt = {0.0f, (float)o->beta1, (float)o->beta2, (float)o->eps, (float)o->wd};

    double peak = o->peak_gflops;
    if (peak <= 0) {
        peak = metrics_peak_gflops(1.0);
        double p = peak;
        comm_allreduce_sum_f64(&p, 1);
        peak = p / t->world;
    }
    double iso = t->world > 1 ? comm_buckets_measure_isolated(gb, 3) : 0.0;
    if (o->resume[0] && t->rank == 0) metrics_drop_after(t->run_dir, start); /* those steps are re-run */
    metrics_open(&t->mt, t->run_dir, t->rank);
    if (t->rank == 0) {
        char len[64];
        if (calibrated) snprintf(len, sizeof len, "%ld steps", total);
        else snprintf(len, sizeof len, "steps to fill %g min", o->max_minutes);
        fprintf(stderr,
                "flip-train: %d ranks x B %d = G %d, %s (%ld per epoch, %ld unmasked), model %s %ld params, "
                "mask %.2f (N %d of %d), peak %.1f GFLOP/s per rank, %d grad buckets (%.1f ms all-reduce alone)\n",
                t->world, t->B, t->G, len, spe, tune, cfg.name, (long)m->n_params, o->mask_ratio, N_mask, Np, peak,
                comm_buckets_stats(gb).n_buckets, 1e3 * iso);
    }

    loader_seek(ld, start);
    const double t_train0 = now_s();
    double t_cal0 = t_train0;
    int rank_off = t->rank * t->B;
    long skipped = 0, win_steps = 0, win_images = 0;
    double win_t0 = now_s(), win_wait = 0, win_flops = 0, wait_total = 0;
    long wait_steps = 0;
    int exit_code = FLIP_EXIT_OK;
    long step = start;
    /* --profile: steps after the first (setup, first touch), each timed from
     * the step boundary to the optimizer update (checkpoints and evals not) */
    long prof_steps = 0;
    double prof_seconds = 0.0;
    for (; step < total; step++) {
        if (o->profile && step == start + 1) {
            flip_prof_enable(1);
            flip_prof_reset();
        }
        double t_step0 = now_s();
        /* ---- step boundary: signals (any rank's flag stops all) */
        int flags[2] = {(int)g_signal, 0};
        if (t->rank == 0 && o->max_minutes > 0) flags[1] = now_s() - t_train0 > 60.0 * o->max_minutes;
        FLIP_PROF_BEGIN(FLIP_PROF_COMM); /* also where a slower rank makes the others wait */
        comm_allreduce_max_int(flags, 2);
        FLIP_PROF_END();
        int sig = flags[0];
        if (flags[1]) {
            save_checkpoint(t, step);
            run_evals(t, step, N_cur);
            say(P, "--max-minutes %g reached: checkpoint saved at step %ld, stopping", o->max_minutes, step);
            break;
        }
        if (sig) {
            save_checkpoint(t, step);
            say(P, "received %s: checkpoint saved at step %ld, exiting", sig == SIGUSR1 ? "SIGUSR1" : "SIGTERM", step);
            break;
        }
        int N = step >= total - tune ? Np : N_mask;
        if (N != N_cur) {
            say(P, "step %ld: unmasked tuning (mask 0) for the last %ld steps", step, total - step);
            plan_model(t, t->B, N);
            N_cur = N;
        }
        FLIP_PROF_BEGIN(FLIP_PROF_DATA);
        const LoaderBatch *bt = loader_next(ld);
        FLIP_PROF_END();
        FLIP_CHECK(bt->B == t->B && bt->step == step, "loader returned batch of step %ld (B %d), expected %ld (B %d)",
                   bt->step, bt->B, step, t->B);
        if (N < Np)
            for (int b = 0; b < t->B; b++)
                flip_mask_keep(keep + (size_t)b * N, o->seed, step, (uint64_t)(rank_off + b), Np, N);

        flip_model_zero_grad(m);
        comm_buckets_reset(gb);
        flip_model_forward(m, bt->images, N < Np ? keep : NULL, bt->tokens, bt->lens);
        FLIP_PROF_BEGIN(FLIP_PROF_COMM);
        comm_allgather_rows(U, m->img_emb, t->B, D);
        comm_allgather_rows(V, m->txt_emb, t->B, D);
        FLIP_PROF_END();
        FLIP_PROF_BEGIN(FLIP_PROF_LOSS);
        float tparam = m->params[ls->offset], loss = 0.0f, dt = 0.0f;
        infonce_forward(&loss, probs, m->img_emb, m->txt_emb, U, V, tparam, t->B, t->G, D, rank_off);
        memset(m->dimg_emb, 0, sizeof(float) * (size_t)t->B * D);
        memset(m->dtxt_emb, 0, sizeof(float) * (size_t)t->B * D);
        memset(dU, 0, sizeof(float) * (size_t)t->G * D);
        memset(dV, 0, sizeof(float) * (size_t)t->G * D);
        infonce_backward(m->dimg_emb, m->dtxt_emb, dU, dV, &dt, 1.0f, probs, m->img_emb, m->txt_emb, U, V, tparam,
                         t->B, t->G, D, rank_off);
        FLIP_PROF_END();
        FLIP_PROF_BEGIN(FLIP_PROF_COMM);
        comm_reduce_scatter_rows(m->dimg_emb, dU, t->B, D);
        comm_reduce_scatter_rows(m->dtxt_emb, dV, t->B, D);
        FLIP_PROF_END();
        if (o->debug_nan_from_step > 0 && step + 1 >= o->debug_nan_from_step && t->rank == 0)
            m->dimg_emb[0] = NAN; /* test hook: one rank's gradient goes bad; the all-reduce spreads it */
        m->grads[ls->offset] += dt;
        flip_model_backward(m, m->dimg_emb, m->dtxt_emb, ready_profiled, gb);
        FLIP_PROF_BEGIN(FLIP_PROF_COMM);
        comm_buckets_wait(gb);
        double l = loss;
        comm_allreduce_sum_f64(&l, 1);
        FLIP_PROF_END();
        /* of the summed gradient; rank 0's value decides on every rank, so the
         * skip and the clip factor cannot differ in the last bits between ranks */
        FLIP_PROF_BEGIN(FLIP_PROF_OPTIMIZER);
        double gnorm = flip_model_grad_norm(m);
        FLIP_PROF_END();
        FLIP_PROF_BEGIN(FLIP_PROF_COMM);
        comm_bcast(&gnorm, sizeof gnorm, 0);
        FLIP_PROF_END();
        GradBucketStats bs = comm_buckets_stats(gb);
        win_wait += bs.last_wait_seconds;
        wait_total += bs.last_wait_seconds;
        wait_steps++;
        float lr = schedule_lr(&sched, step);
        if (!isfinite(l) || !isfinite(gnorm)) {
            skipped++;
            t->bad_in_row++;
            say(P, "step %ld: non-finite %s (loss %g, grad norm %g): step skipped (%d in a row)", step + 1,
                isfinite(l) ? "gradient" : "loss", l, gnorm, t->bad_in_row);
            if (t->bad_in_row >= o->max_bad_steps) {
                say(P, "stopping: %d non-finite steps in a row (--max-bad-steps %d); lower --lr, raise --warmup or "
                       "set --grad-clip-norm, then --resume latest", t->bad_in_row, o->max_bad_steps);
                exit_code = FLIP_EXIT_ERROR;
                step++;
                break;
            }
        } else {
            t->bad_in_row = 0;
            float scale = 1.0f;
            if (o->grad_clip_norm > 0 && gnorm > o->grad_clip_norm) scale = (float)(o->grad_clip_norm / gnorm);
            opt.lr = lr;
            t->adam_step++;
            flip_model_adamw(m, &opt, scale, t->adam_step);
        }
        if (flip_prof_enabled) {
            prof_seconds += now_s() - t_step0;
            prof_steps++;
        }
        long done = step + 1;
        if (!calibrated && done == start + 1) t_cal0 = now_s(); /* step 1 (setup, first touch) excluded */
        if (!calibrated && done == start + 6) {
            /* rank 0's measurement decides; every rank gets the same length */
            double step_s = (now_s() - t_cal0) / 5.0, left = 60.0 * o->max_minutes - (now_s() - t_train0);
            long more = left > 0 ? (long)(left / step_s) : 0;
            comm_bcast(&more, sizeof more, 0);
            total = done + more;
            if (tune > total - done) tune = total - done;
            t->total = total;
            sched.total_steps = total;
            calibrated = 1;
            say(P, "--max-minutes %g: %.3f s per step -> %ld steps in total (%ld more); a length from measured time "
                   "differs between machines and rank counts (give --train-samples to reproduce a run)",
                o->max_minutes, step_s, total, more);
        }
        win_steps++;
        win_images += t->G;
        /* the text tower ran the batch's longest caption (rank 0's stands for all) */
        win_flops += flip_config_train_flops_at(&cfg, N == Np ? 0.0f : (float)o->mask_ratio, m->text_positions) * t->G;
        if (done % o->log_every == 0 || done == total) {
            double dtw = now_s() - win_t0;
            MetricsRow r;
            memset(&r, 0, sizeof r);
            r.step = done;
            r.total_steps = total;
            r.samples = done * (long)t->G;
            r.loss = l;
            r.lr = lr;
            r.logit_scale = exp((double)m->params[ls->offset]);
            r.grad_norm = gnorm;
            r.images_per_s = dtw > 0 ? (double)win_images / dtw : 0;
            r.mfu = dtw > 0 ? win_flops / dtw / (peak * 1e9 * t->world) : 0;
            r.eta_s = win_steps ? dtw / (double)win_steps * (double)(total - done) : 0;
            r.mask_ratio = N == Np ? 0.0 : o->mask_ratio;
            r.comm_wait_s = win_wait / (double)win_steps;
            r.skipped = skipped;
            metrics_log_step(&t->mt, &r);
            win_t0 = now_s();
            win_steps = win_images = 0;
            win_wait = win_flops = 0;
        }
        int at_end = done == total;
        int stop = o->stop_at_step > 0 && done == o->stop_at_step;
        if ((o->save_frequency > 0 && done % o->save_frequency == 0) || at_end || stop) save_checkpoint(t, done);
        if ((o->zeroshot_frequency > 0 && done % o->zeroshot_frequency == 0 && !at_end) ||
            (at_end && (o->zeroshot_data[0] || o->val_data[0])))
            run_evals(t, done, N_cur);
        if (stop && !at_end) {
            say(P, "--stop-at-step %ld reached: checkpoint saved, exiting", done);
            step++;
            break;
        }
    }
    if (t->rank == 0 && wait_steps > 0 && t->world > 1) {
        double mean_wait = wait_total / (double)wait_steps;
        fprintf(stderr, "flip-train: gradient all-reduce %.2f ms/step alone, %.2f ms/step waited after backward: "
                        "%.0f%% hidden behind backward\n",
                1e3 * iso, 1e3 * mean_wait, iso > 0 ? 100.0 * fmax(0.0, 1.0 - mean_wait / iso) : 0.0);
    }
    if (o->profile) {
        flip_prof_enable(0);
        if (t->rank == 0 && prof_steps > 0) {
            char bd[1024];
            flip_prof_format(bd, sizeof bd, prof_steps, prof_seconds);
            fprintf(stderr, "flip-train: step breakdown on rank 0 over %ld steps, %.1f ms/step (ms/step, %% of step): %s\n",
                    prof_steps, 1e3 * prof_seconds / (double)prof_steps, bd);
        } else if (t->rank == 0) {
            fprintf(stderr, "flip-train: --profile: no step after the first ran, nothing to report\n");
        }
    }
    if (o->dump_params[0] && t->rank == 0 && exit_code == FLIP_EXIT_OK) dump_params(m, o->dump_params);
    comm_barrier();
    metrics_close(&t->mt);
    comm_buckets_free(gb);
    flip_free(U); flip_free(V); flip_free(dU); flip_free(dV); flip_free(probs); flip_free(keep);
    flip_model_free(m);
    loader_close(ld);
    return exit_code;
}

int eval_run(const Options *o) {
    const char *P = "flip-eval";
    char err[4096] = "";
    if (o->global_batch_size % comm_size() != 0) { /* the same on every rank */
        say(P, "--global-batch-size %d is not divisible by the %d ranks", o->global_batch_size, comm_size());
        return FLIP_EXIT_USAGE;
    }
    FlipConfig cfg;
    CheckpointState st;
    int rc = checkpoint_read_info(o->checkpoint, &cfg, &st, err, sizeof err);
    if (!all_ok(rc == 0)) {
        say(P, "--checkpoint: %s", rc ? err : "failed on another rank");
        return FLIP_EXIT_ERROR;
    }
    FlipModel m;
    flip_model_init(&m, &cfg, st.seed);
    rc = checkpoint_load(o->checkpoint, &m, 0, &st, err, sizeof err);
    if (!all_ok(rc == 0)) {
        say(P, "--checkpoint: %s", rc ? err : "failed on another rank");
        flip_model_free(&m);
        return FLIP_EXIT_ERROR;
    }
    int exit_code = FLIP_EXIT_OK;
    if (o->zeroshot_data[0]) {
        ZeroShotResult zr;
        if (eval_zeroshot(&m, o->zeroshot_data, o->classnames, o->templates, o->vocab, o->eval_batch_size, &zr, err,
                          sizeof err) == 0) {
            if (comm_rank() == 0)
                printf("{\"eval\":\"zeroshot\",\"checkpoint\":\"%s\",\"step\":%ld,\"n\":%ld,\"classes\":%d,"
                       "\"top1\":%.6f,\"top5\":%.6f}\n",
                       o->checkpoint, st.step, zr.n, zr.n_classes, zr.top1, zr.top5);
            say(P, "zero-shot top-1 %.2f%% top-5 %.2f%% on %ld images (%d classes)", 100 * zr.top1, 100 * zr.top5,
                zr.n, zr.n_classes);
        } else {
            say(P, "%s", err);
            exit_code = FLIP_EXIT_ERROR;
        }
    }
    if (o->val_data[0] && exit_code == FLIP_EXIT_OK) {
        RetrievalResult rr;
        if (eval_retrieval(&m, o->val_data, o->eval_batch_size, &rr, err, sizeof err) == 0) {
            if (comm_rank() == 0)
                printf("{\"eval\":\"retrieval\",\"checkpoint\":\"%s\",\"step\":%ld,\"n\":%ld,\"i2t_r1\":%.6f,"
                       "\"i2t_r5\":%.6f,\"i2t_r10\":%.6f,\"t2i_r1\":%.6f,\"t2i_r5\":%.6f,\"t2i_r10\":%.6f}\n",
                       o->checkpoint, st.step, rr.n, rr.i2t[0], rr.i2t[1], rr.i2t[2], rr.t2i[0], rr.t2i[1],
                       rr.t2i[2]);
            say(P, "retrieval image->text R@1/5/10 %.1f/%.1f/%.1f%%, text->image %.1f/%.1f/%.1f%% (%ld pairs)",
                100 * rr.i2t[0], 100 * rr.i2t[1], 100 * rr.i2t[2], 100 * rr.t2i[0], 100 * rr.t2i[1], 100 * rr.t2i[2],
                rr.n);
        } else {
            say(P, "%s", err);
            exit_code = FLIP_EXIT_ERROR;
        }
    }
    if (o->val_data[0] && o->global_batch_size > 0 && exit_code == FLIP_EXIT_OK) {
        ValLossResult vr;
        if (eval_val_loss(&m, o->val_data, o->global_batch_size / comm_size(), o->eval_batch_size, &vr, err,
                          sizeof err) == 0) {
            if (comm_rank() == 0)
                printf("{\"eval\":\"val\",\"checkpoint\":\"%s\",\"step\":%ld,\"n\":%ld,\"batches\":%ld,"
                       "\"global_batch\":%ld,\"val_loss\":%.9g}\n",
                       o->checkpoint, st.step, vr.n, vr.n_batches, vr.G, vr.loss);
            say(P, "val_loss %.4f (unmasked, %ld global batches of %ld of the %ld pairs)", vr.loss, vr.n_batches, vr.G,
                vr.n);
        } else {
            say(P, "%s", err);
            exit_code = FLIP_EXIT_ERROR;
        }
    }
    fflush(stdout);
    flip_model_free(&m);
    return exit_code;
}
