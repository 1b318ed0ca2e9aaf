/* checkpoint.c — HDF5 checkpoints (see checkpoint.h, DESIGN §5).
 * Layout: three groups of float32 datasets named like the parameters, plus
 * root attributes. No filters, so h5py reads it without plugins. */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

#define CKPT_FORMAT "flip-checkpoint"
#define CKPT_VERSION 1

#define H5_CHECK(call) \
    do { if ((call) < 0) FLIP_FATAL("HDF5 call failed writing a checkpoint: %s", #call); } while (0)

/* ---- writing (fatal on failure: our own output) */

static void attr_i64(hid_t loc, const char *name, long long v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    H5_CHECK(sp);
    hid_t a = H5Acreate2(loc, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK(a);
    H5_CHECK(H5Awrite(a, H5T_NATIVE_LLONG, &v));
    H5_CHECK(H5Aclose(a));
    H5_CHECK(H5Sclose(sp));
}

static void attr_u64(hid_t loc, const char *name, uint64_t v) {
    unsigned long long x = v;
    hid_t sp = H5Screate(H5S_SCALAR);
    H5_CHECK(sp);
    hid_t a = H5Acreate2(loc, name, H5T_STD_U64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK(a);
    H5_CHECK(H5Awrite(a, H5T_NATIVE_ULLONG, &x));
    H5_CHECK(H5Aclose(a));
    H5_CHECK(H5Sclose(sp));
}

static void attr_f32v(hid_t loc, const char *name, const float *v, int n) {
    hsize_t dims[1] = {(hsize_t)n};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    H5_CHECK(sp);
    hid_t a = H5Acreate2(loc, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK(a);
    H5_CHECK(H5Awrite(a, H5T_NATIVE_FLOAT, v));
    H5_CHECK(H5Aclose(a));
    H5_CHECK(H5Sclose(sp));
}

static void attr_str(hid_t loc, const char *name, const char *s) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5_CHECK(t);
    H5_CHECK(H5Tset_size(t, strlen(s) + 1));
    H5_CHECK(H5Tset_cset(t, H5T_CSET_UTF8));
    hid_t sp = H5Screate(H5S_SCALAR);
    H5_CHECK(sp);
    hid_t a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK(a);
    H5_CHECK(H5Awrite(a, t, s));
    H5_CHECK(H5Aclose(a));
    H5_CHECK(H5Sclose(sp));
    H5_CHECK(H5Tclose(t));
}

static void write_group(hid_t file, const char *group, const FlipModel *m, const float *base) {
    hid_t g = H5Gcreate2(file, group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK(g);
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        hsize_t dims[4];
        for (int k = 0; k < t->ndim; k++) dims[k] = (hsize_t)t->shape[k];
        hid_t sp = H5Screate_simple(t->ndim, dims, NULL);
        H5_CHECK(sp);
        hid_t d = H5Dcreate2(g, t->name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (d < 0) FLIP_FATAL("cannot create checkpoint dataset /%s/%s", group, t->name);
        H5_CHECK(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, base + t->offset));
        H5_CHECK(H5Dclose(d));
        H5_CHECK(H5Sclose(sp));
    }
    H5_CHECK(H5Gclose(g));
}

static void write_model_config(hid_t f, const FlipConfig *c) {
    attr_str(f, "model_name", c->name);
    attr_i64(f, "model_image_size", c->image_size);
    attr_i64(f, "model_channels", c->channels);
    attr_i64(f, "model_patch", c->patch);
    attr_i64(f, "model_width", c->width);
    attr_i64(f, "model_depth", c->depth);
    attr_i64(f, "model_heads", c->heads);
    attr_i64(f, "model_text_width", c->text_width);
    attr_i64(f, "model_text_depth", c->text_depth);
    attr_i64(f, "model_text_heads", c->text_heads);
    attr_i64(f, "model_vocab", c->vocab);
    attr_i64(f, "model_context", c->context);
    attr_i64(f, "model_embed_dim", c->embed_dim);
    attr_i64(f, "model_mlp_ratio", c->mlp_ratio);
    attr_f32v(f, "model_mean", c->mean, 3);
    attr_f32v(f, "model_std", c->std, 3);
}

static void fsync_path(const char *path, int is_dir) {
    int fd = open(path, is_dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    FLIP_CHECK(fd >= 0, "cannot open %s to fsync: %s", path, strerror(errno));
    FLIP_CHECK(fsync(fd) == 0 || (is_dir && errno == EINVAL), "fsync %s failed: %s", path, strerror(errno));
    close(fd);
}

static void dir_of(const char *path, char *dir, size_t n) {
    snprintf(dir, n, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) dir[1] = '\0';
    else if (slash) *slash = '\0';
    else snprintf(dir, n, ".");
}

void checkpoint_save(const char *path, const FlipModel *m, const CheckpointState *st) {
    char tmp[4096];
    FLIP_CHECK(strlen(path) + 5 < sizeof tmp, "checkpoint path too long: %s", path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* a failure is our one line, not an HDF5 error stack */
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    FLIP_CHECK(f >= 0, "cannot create checkpoint %s (is the --logs folder writable?)", tmp);
    attr_str(f, "format", CKPT_FORMAT);
    attr_i64(f, "version", CKPT_VERSION);
    attr_i64(f, "step", st->step);
    attr_i64(f, "adam_step", st->adam_step);
    attr_i64(f, "samples_seen", st->samples_seen);
    attr_i64(f, "data_cursor", st->data_cursor);
    attr_i64(f, "total_steps", st->total_steps);
    attr_u64(f, "seed", st->seed);
    attr_i64(f, "world_size", st->world_size);
    attr_i64(f, "global_batch", st->global_batch);
    attr_i64(f, "bad_in_row", st->bad_in_row);
    attr_str(f, "config", st->config);
    write_model_config(f, &m->cfg);
    write_group(f, "params", m, m->params);
    write_group(f, "adam_m", m, m->adam_m);
    write_group(f, "adam_v", m, m->adam_v);
    H5_CHECK(H5Fclose(f));
    fsync_path(tmp, 0);
    FLIP_CHECK(rename(tmp, path) == 0, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    fsync_path(dir, 1);
}

/* ---- reading (errors returned: the file is the user's) */

static int read_i64(hid_t f, const char *path, const char *name, long long *v, char *err, size_t eb) {
    if (H5Aexists(f, name) <= 0) {
        snprintf(err, eb, "%s: not a flip checkpoint (attribute '%s' missing)", path, name);
        return -1;
    }
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    int rc = a >= 0 && H5Aread(a, H5T_NATIVE_LLONG, v) >= 0 ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    if (rc) snprintf(err, eb, "%s: cannot read attribute '%s'", path, name);
    return rc;
}

static int read_str(hid_t f, const char *path, const char *name, char *out, size_t n, char *err, size_t eb) {
    if (H5Aexists(f, name) <= 0) {
        snprintf(err, eb, "%s: not a flip checkpoint (attribute '%s' missing)", path, name);
        return -1;
    }
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    hid_t ft = a >= 0 ? H5Aget_type(a) : -1;
    int rc = -1;
    if (ft >= 0 && H5Tget_class(ft) == H5T_STRING && !H5Tis_variable_str(ft)) {
        size_t sz = H5Tget_size(ft);
        char *buf = flip_calloc(sz + 1, 1, "checkpoint string attribute");
        hid_t mt = H5Tcopy(H5T_C_S1);
        if (mt >= 0 && H5Tset_size(mt, sz) >= 0 && H5Tset_cset(mt, H5Tget_cset(ft)) >= 0 &&
            H5Tset_strpad(mt, H5Tget_strpad(ft)) >= 0 && H5Aread(a, mt, buf) >= 0) {
            snprintf(out, n, "%s", buf);
            rc = 0;
        }
        if (mt >= 0) H5Tclose(mt);
        flip_free(buf);
    }
    if (ft >= 0) H5Tclose(ft);
    if (a >= 0) H5Aclose(a);
    if (rc) snprintf(err, eb, "%s: attribute '%s' is not a fixed-length string", path, name);
    return rc;
}

static int read_f32v(hid_t f, const char *path, const char *name, float *v, char *err, size_t eb) {
    hid_t a = H5Aexists(f, name) > 0 ? H5Aopen(f, name, H5P_DEFAULT) : -1;
    hid_t sp = a >= 0 ? H5Aget_space(a) : -1;
    int rc = -1;
    if (sp >= 0 && H5Sget_simple_extent_npoints(sp) == 3 && H5Aread(a, H5T_NATIVE_FLOAT, v) >= 0) rc = 0;
    if (sp >= 0) H5Sclose(sp);
    if (a >= 0) H5Aclose(a);
    if (rc) snprintf(err, eb, "%s: attribute '%s' missing or not float[3]", path, name);
    return rc;
}

static hid_t open_checkpoint(const char *path, char *err, size_t eb) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors are reported by us, one line */
    if (access(path, R_OK) != 0) {
        snprintf(err, eb, "%s: cannot read checkpoint (%s)", path, strerror(errno));
        return -1;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        snprintf(err, eb, "%s: not an HDF5 file (truncated or not a checkpoint)", path);
        return -1;
    }
    char fmt[64];
    if (read_str(f, path, "format", fmt, sizeof fmt, err, eb) || strcmp(fmt, CKPT_FORMAT) != 0) {
        snprintf(err, eb, "%s: not a flip checkpoint (format attribute missing or not '%s')", path, CKPT_FORMAT);
        H5Fclose(f);
        return -1;
    }
    long long ver = 0;
    if (read_i64(f, path, "version", &ver, err, eb) || ver != CKPT_VERSION) {
        snprintf(err, eb, "%s: checkpoint version %lld, this flip reads version %d", path, ver, CKPT_VERSION);
        H5Fclose(f);
        return -1;
    }
    return f;
}

static int read_info(hid_t f, const char *path, FlipConfig *c, CheckpointState *st, char *err, size_t eb) {
    long long v[21];
    static const char *const names[] = {"step", "adam_step", "samples_seen", "data_cursor", "world_size",
                                        "global_batch", "bad_in_row", "model_image_size", "model_channels",
                                        "model_patch", "model_width", "model_depth", "model_heads",
                                        "model_text_width", "model_text_depth", "model_text_heads",
                                        "model_vocab", "model_context", "model_embed_dim", "model_mlp_ratio",
                                        "total_steps"};
    for (int i = 0; i < 21; i++)
        if (read_i64(f, path, names[i], &v[i], err, eb)) return -1;
    memset(st, 0, sizeof *st);
    st->step = (long)v[0];
    st->adam_step = (long)v[1];
    st->samples_seen = (long)v[2];
    st->data_cursor = (long)v[3];
    st->world_size = (int)v[4];
    st->global_batch = (int)v[5];
    st->bad_in_row = (int)v[6];
    memset(c, 0, sizeof *c);
    c->image_size = (int)v[7];
    c->channels = (int)v[8];
    c->patch = (int)v[9];
    c->width = (int)v[10];
    c->depth = (int)v[11];
    c->heads = (int)v[12];
    c->text_width = (int)v[13];
    c->text_depth = (int)v[14];
    c->text_heads = (int)v[15];
    c->vocab = (int)v[16];
    c->context = (int)v[17];
    c->embed_dim = (int)v[18];
    c->mlp_ratio = (int)v[19];
    st->total_steps = (long)v[20];
    if (read_str(f, path, "model_name", c->name, sizeof c->name, err, eb)) return -1;
    if (read_f32v(f, path, "model_mean", c->mean, err, eb)) return -1;
    if (read_f32v(f, path, "model_std", c->std, err, eb)) return -1;
    if (read_str(f, path, "config", st->config, sizeof st->config, err, eb)) return -1;
    hid_t a = H5Aopen(f, "seed", H5P_DEFAULT);
    unsigned long long seed = 0;
    int ok = a >= 0 && H5Aread(a, H5T_NATIVE_ULLONG, &seed) >= 0;
    if (a >= 0) H5Aclose(a);
    if (!ok) { snprintf(err, eb, "%s: cannot read attribute 'seed'", path); return -1; }
    st->seed = seed;
    char msg[256];
    const char *bad = flip_config_check(c, msg, sizeof msg);
    if (bad) { snprintf(err, eb, "%s: invalid model config: %s", path, bad); return -1; }
    return 0;
}

int checkpoint_read_info(const char *path, FlipConfig *cfg, CheckpointState *st, char *err, size_t eb) {
    hid_t f = open_checkpoint(path, err, eb);
    if (f < 0) return -1;
    int rc = read_info(f, path, cfg, st, err, eb);
    H5Fclose(f);
    return rc;
}

const char *checkpoint_config_diff(const FlipConfig *a, const FlipConfig *b, char *msg, size_t n) {
#define DIFF(field) \
    if (a->field != b->field) { snprintf(msg, n, #field " %d != %d", a->field, b->field); return msg; }
    DIFF(image_size) DIFF(channels) DIFF(patch) DIFF(width) DIFF(depth) DIFF(heads)
    DIFF(text_width) DIFF(text_depth) DIFF(text_heads) DIFF(vocab) DIFF(context) DIFF(embed_dim)
    DIFF(mlp_ratio)
#undef DIFF
    for (int c = 0; c < 3; c++)
        if (a->mean[c] != b->mean[c] || a->std[c] != b->std[c]) {
            snprintf(msg, n, "normalisation mean/std of channel %d differ", c);
            return msg;
        }
    return NULL;
}

static int read_group(hid_t f, const char *path, const char *group, const FlipModel *m, float *base,
                      char *err, size_t eb) {
    hid_t g = H5Lexists(f, group, H5P_DEFAULT) > 0 ? H5Gopen2(f, group, H5P_DEFAULT) : -1;
    if (g < 0) { snprintf(err, eb, "%s: group /%s missing", path, group); return -1; }
    int rc = 0;
    for (int i = 0; i < m->n_tensors && rc == 0; i++) {
        const ParamTensor *t = &m->tensors[i];
        hid_t d = H5Lexists(g, t->name, H5P_DEFAULT) > 0 ? H5Dopen2(g, t->name, H5P_DEFAULT) : -1;
        if (d < 0) {
            snprintf(err, eb, "%s: dataset /%s/%s missing", path, group, t->name);
            rc = -1;
            break;
        }
        hid_t sp = H5Dget_space(d);
        hsize_t dims[8];
        int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
        int same = nd == t->ndim && nd <= 4;
        if (same) {
            H5Sget_simple_extent_dims(sp, dims, NULL);
            for (int k = 0; k < nd; k++) same &= dims[k] == (hsize_t)t->shape[k];
        }
        if (!same) {
            snprintf(err, eb, "%s: dataset /%s/%s has another shape than this model's", path, group, t->name);
            rc = -1;
        } else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, base + t->offset) < 0) {
            snprintf(err, eb, "%s: cannot read /%s/%s (truncated file?)", path, group, t->name);
            rc = -1;
        }
        if (sp >= 0) H5Sclose(sp);
        H5Dclose(d);
    }
    H5Gclose(g);
    return rc;
}

int checkpoint_load(const char *path, FlipModel *m, int with_adam, CheckpointState *st, char *err, size_t eb) {
    hid_t f = open_checkpoint(path, err, eb);
    if (f < 0) return -1;
    FlipConfig c;
    int rc = read_info(f, path, &c, st, err, eb);
    char msg[256];
    const char *diff = rc ? NULL : checkpoint_config_diff(&c, &m->cfg, msg, sizeof msg);
    if (diff) {
        snprintf(err, eb, "%s: checkpoint model differs from this run's model: %s (checkpoint vs run; "
                 "use the same --model and overrides)", path, diff);
        rc = -1;
    }
    if (!rc) rc = read_group(f, path, "params", m, m->params, err, eb);
    if (!rc && with_adam) rc = read_group(f, path, "adam_m", m, m->adam_m, err, eb);
    if (!rc && with_adam) rc = read_group(f, path, "adam_v", m, m->adam_v, err, eb);
    H5Fclose(f);
    return rc;
}

void checkpoint_path(char *out, size_t n, const char *dir, long step) {
    snprintf(out, n, "%s/step-%08ld.h5", dir, step);
}

void checkpoint_set_latest(const char *dir, const char *file_name) {
    char link[4096], tmp[4200];
    snprintf(link, sizeof link, "%s/latest", dir);
    snprintf(tmp, sizeof tmp, "%s/.latest.tmp", dir);
    unlink(tmp);
    FLIP_CHECK(symlink(file_name, tmp) == 0, "cannot create symlink %s: %s", tmp, strerror(errno));
    FLIP_CHECK(rename(tmp, link) == 0, "cannot rename %s to %s: %s", tmp, link, strerror(errno));
    fsync_path(dir, 1); /* the new link survives a crash before anything is pruned */
}

int checkpoint_resolve(const char *resume, const char *dir, char *out, size_t n, char *err, size_t eb) {
    if (strcmp(resume, "latest") != 0) {
        snprintf(out, n, "%s", resume);
        return 0;
    }
    char link[4096], target[4096];
    snprintf(link, sizeof link, "%s/latest", dir);
    ssize_t len = readlink(link, target, sizeof target - 1);
    if (len < 0) {
        snprintf(err, eb, "--resume latest: no checkpoint yet (%s: %s)", link, strerror(errno));
        return -1;
    }
    target[len] = '\0';
    if (target[0] == '/') snprintf(out, n, "%s", target);
    else snprintf(out, n, "%s/%s", dir, target);
    return 0;
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? -1 : (x > y);
}

/* step of a file name "step-%08ld.h5", or -1 */
static long step_of_name(const char *name) {
    long s;
    char tail[8];
    if (sscanf(name, "step-%ld.h%1s", &s, tail) == 2 && strlen(name) == 16 && strcmp(name + 13, ".h5") == 0) return s;
    return -1;
}

void checkpoint_prune(const char *dir, int keep) {
    /* the step `latest` points to is the one just saved: it is never deleted */
    char link[4096], target[4096];
    snprintf(link, sizeof link, "%s/latest", dir);
    ssize_t len = readlink(link, target, sizeof target - 1);
    if (len < 0) return; /* nothing known to be current: delete nothing */
    target[len] = '\0';
    const char *base = strrchr(target, '/');
    long current = step_of_name(base ? base + 1 : target);
    if (current < 0) return;
    DIR *d = opendir(dir);
    if (!d) return;
    long steps[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 4096) {
        long s = step_of_name(e->d_name);
        if (s >= 0) steps[n++] = s;
    }
    closedir(d);
    qsort(steps, (size_t)n, sizeof(long), cmp_long);
    /* steps after the current one belong to an abandoned future (a resume
     * from an older checkpoint); of the rest the `keep` newest stay */
    int n_past = 0;
    while (n_past < n && steps[n_past] <= current) n_past++;
    for (int i = 0; i < n; i++) {
        if (steps[i] == current || (i < n_past && i >= n_past - keep)) continue;
        char p[4096];
        checkpoint_path(p, sizeof p, dir, steps[i]);
        if (unlink(p) != 0) flip_warn("cannot delete old checkpoint %s: %s", p, strerror(errno));
    }
}
