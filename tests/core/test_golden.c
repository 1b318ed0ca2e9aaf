/* test_golden.c — the C FLIP model against PyTorch golden values.
 *
 * tests/data/golden_small.h5 (written by tests/data/gen_golden.py, float64
 * PyTorch, DESIGN §2) holds a small config, a batch (images, tokens, lens),
 * every parameter by name, and for two cases (mask50: explicit kept indices,
 * N = Np/2; mask0: all patches) the loss, the normalised embeddings and the
 * gradient of every parameter. This test builds the model from the stored
 * config, overwrites every parameter by name (a name missing on either side
 * or a shape mismatch fails), runs flip_model_loss_and_grad with the stored
 * keep on the fast path and on the use_ref path, and compares everything.
 * The unmasked case is also run with keep = NULL and through the evaluation
 * encoders (flip_model_encode_image / _text).
 *
 * File: argv[1], else $FLIP_SOURCE_DIR/tests/data/golden_small.h5 (ctest sets it).
 * Tolerances: TOL_GOLDEN_* in tests/tolerances.h.
 */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "model.h"
#include "testlib.h"
#include "tolerances.h"

static const char *g_path; /* the golden file, named in every error */

#define H5_OK(call)                                                                        \
    do {                                                                                   \
        if ((call) < 0)                                                                    \
            FLIP_FATAL("%s: HDF5 call failed: %s (regenerate with tests/data/gen_golden.py)", \
                       g_path, #call);                                                     \
    } while (0)

/* 1 if every component of the slash-separated path exists below loc. */
static int h5_exists(hid_t loc, const char *path) {
    char buf[256];
    FLIP_CHECK(strlen(path) < sizeof buf, "golden path too long: %s", path);
    strcpy(buf, path);
    for (char *s = buf; ; s++) {
        if (*s == '/' || *s == '\0') {
            char save = *s;
            *s = '\0';
            htri_t e = H5Lexists(loc, buf, H5P_DEFAULT);
            *s = save;
            if (e <= 0) return 0;
            if (save == '\0') return 1;
        }
    }
}

static int attr_int(hid_t f, const char *name) {
    FLIP_CHECK(H5Aexists(f, name) > 0, "%s: root attribute '%s' missing; regenerate with "
               "tests/data/gen_golden.py", g_path, name);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    H5_OK(a);
    int v = 0;
    H5_OK(H5Aread(a, H5T_NATIVE_INT, &v));
    H5_OK(H5Aclose(a));
    return v;
}

static void attr_floats(hid_t f, const char *name, float *out, int n) {
    FLIP_CHECK(H5Aexists(f, name) > 0, "%s: root attribute '%s' missing", g_path, name);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    H5_OK(a);
    hid_t sp = H5Aget_space(a);
    H5_OK(sp);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    FLIP_CHECK(np == n, "%s: attribute '%s' has %lld values, expected %d", g_path, name,
               (long long)np, n);
    H5_OK(H5Aread(a, H5T_NATIVE_FLOAT, out));
    H5_OK(H5Sclose(sp));
    H5_OK(H5Aclose(a));
}

/* Reads a dataset converted to memtype (elem bytes each); NULL if the path is absent.
 * ndim/dims receive its shape (up to 4 dims). Caller frees with flip_free. */
static void *read_ds(hid_t f, const char *path, hid_t memtype, size_t elem, int *ndim,
                     hsize_t dims[4]) {
    if (!h5_exists(f, path)) return NULL;
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    H5_OK(d);
    hid_t sp = H5Dget_space(d);
    H5_OK(sp);
    int nd = H5Sget_simple_extent_ndims(sp);
    FLIP_CHECK(nd >= 0 && nd <= 4, "%s: dataset %s has %d dims (at most 4 expected)", g_path, path, nd);
    hsize_t dd[4] = {1, 1, 1, 1};
    H5_OK(H5Sget_simple_extent_dims(sp, dd, NULL));
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= (size_t)dd[i];
    void *buf = flip_malloc(flip_mul_size(n ? n : 1, elem, path), path);
    if (n) H5_OK(H5Dread(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf));
    H5_OK(H5Sclose(sp));
    H5_OK(H5Dclose(d));
    if (ndim) *ndim = nd;
    if (dims) for (int i = 0; i < 4; i++) dims[i] = dd[i];
    return buf;
}

/* A dataset that must exist, with an expected element count. */
static void *need_ds(hid_t f, const char *path, hid_t memtype, size_t elem, size_t n_expect) {
    int nd;
    hsize_t dims[4];
    void *buf = read_ds(f, path, memtype, elem, &nd, dims);
    FLIP_CHECK(buf, "%s: dataset %s missing; regenerate with tests/data/gen_golden.py", g_path, path);
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= (size_t)dims[i];
    FLIP_CHECK(n == n_expect, "%s: dataset %s has %zu values, expected %zu", g_path, path, n, n_expect);
    return buf;
}

static size_t tensor_count_shape(int ndim, const int *shape) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    return n;
}

/* Loads every /params/<name> into the model. Returns the number of problems
 * (names missing on either side, shape mismatches), each reported. */
static int load_params(hid_t f, FlipModel *m) {
    int bad = 0, n_loaded = 0;
    hid_t g = H5Gopen2(f, "params", H5P_DEFAULT);
    FLIP_CHECK(g >= 0, "%s: group /params missing", g_path);
    H5G_info_t info;
    H5_OK(H5Gget_info(g, &info));
    for (hsize_t i = 0; i < info.nlinks; i++) {
        char name[128], path[160];
        ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name,
                                         H5P_DEFAULT);
        FLIP_CHECK(len > 0 && (size_t)len < sizeof name, "%s: bad link name in /params", g_path);
        snprintf(path, sizeof path, "params/%s", name);
        const ParamTensor *t = flip_model_find(m, name);
        if (!t) {
            test_report(0, "file parameter %s does not exist in the C model", name);
            bad++;
            continue;
        }
        int nd;
        hsize_t dims[4];
        float *v = read_ds(f, path, H5T_NATIVE_FLOAT, sizeof(float), &nd, dims);
        int same = nd == t->ndim;
        for (int k = 0; same && k < nd; k++) same = dims[k] == (hsize_t)t->shape[k];
        if (!same || tensor_count_shape(t->ndim, t->shape) != t->count) {
            test_report(0, "parameter %s: file shape (%d dims: %llu %llu %llu %llu) != model shape "
                        "(%d dims: %d %d %d %d)", name, nd, (unsigned long long)dims[0],
                        (unsigned long long)dims[1], (unsigned long long)dims[2],
                        (unsigned long long)dims[3], t->ndim, t->shape[0], t->shape[1],
                        t->shape[2], t->shape[3]);
            bad++;
        } else {
            memcpy(m->params + t->offset, v, t->count * sizeof(float));
            n_loaded++;
        }
        flip_free(v);
    }
    for (int i = 0; i < m->n_tensors; i++) {
        if (H5Lexists(g, m->tensors[i].name, H5P_DEFAULT) <= 0) {
            test_report(0, "C model parameter %s is not in the golden file", m->tensors[i].name);
            bad++;
        }
    }
    H5_OK(H5Gclose(g));
    test_report(bad == 0 && n_loaded == m->n_tensors,
                "parameters: %d of %d C tensors loaded by name, %llu in the file, %d problems",
                n_loaded, m->n_tensors, (unsigned long long)info.nlinks, bad);
    return bad;
}

/* |got - ref| <= atol + rtol |ref| with atol = atol_rel * max|ref| of the tensor:
 * gradients of different tensors differ in scale by orders of magnitude, so the
 * absolute part follows the tensor's own scale. Returns 1 if all pass; worst
 * error relative to max|ref| goes to *worst. */
static int close_scaled(const float *got, const float *ref, size_t n, double atol_rel,
                        double rtol, double *worst, size_t *n_bad_out) {
    double mx = 0, w = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs((double)ref[i]));
    size_t n_bad = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (double)ref[i]);
        if (!isfinite(got[i]) || e > atol_rel * mx + rtol * fabs((double)ref[i])) n_bad++;
        if (mx > 0) w = fmax(w, e / mx);
    }
    *worst = isfinite(w) ? w : INFINITY;
    *n_bad_out = n_bad;
    return n_bad == 0 && mx > 0;
}

typedef struct {
    int B, S, Ci, T, D, valid_vocab;
    uint8_t *images; /* (B, S, S, Ci) */
    int32_t *tokens; /* (B, T) */
    int *lens;       /* (B) */
} Batch;

/* Exact-zero rule: token ids >= valid_vocab occur only at padded positions, so
 * their token_embed gradient rows must be exactly 0; rows of ids used at valid
 * positions must not be all zero. */
static void check_token_rows(const FlipModel *m, const Batch *bt, const char *tag) {
    const ParamTensor *t = flip_model_find(m, "text.token_embed.weight");
    if (!t) return; /* reported by load_params */
    int V = t->shape[0], Ct = t->shape[1];
    int *used = flip_calloc((size_t)V, sizeof(int), "used token ids");
    for (int b = 0; b < bt->B; b++)
        for (int s = 0; s < bt->lens[b]; s++) used[bt->tokens[(size_t)b * bt->T + s]] = 1;
    size_t leaked = 0;
    int dead = 0;
    for (int v = 0; v < V; v++) {
        const float *row = m->grads + t->offset + (size_t)v * Ct;
        int nz = 0;
        for (int c = 0; c < Ct; c++) nz += row[c] != 0.0f;
        if (v >= bt->valid_vocab) leaked += (size_t)nz;
        else if (used[v] && nz == 0) dead++;
    }
    test_report(leaked == 0 && dead == 0,
                "%s: token_embed grad rows of padded-only ids exactly zero (nonzero %zu), "
                "rows of used ids live (dead %d)", tag, leaked, dead);
    flip_free(used);
}

/* Compares loss, embeddings and every gradient after a loss_and_grad. */
static void compare_step(hid_t f, const FlipModel *m, const Batch *bt, const char *cas,
                         const char *tag, float loss, double gloss, const double *gimg,
                         const double *gtxt) {
    char what[160];
    snprintf(what, sizeof what, "%s loss (golden %.8f)", tag, gloss);
    test_close(what, &loss, &gloss, 1, TOL_GOLDEN_LOSS_ATOL, TOL_GOLDEN_LOSS_RTOL);
    size_t nBD = (size_t)bt->B * (size_t)bt->D;
    snprintf(what, sizeof what, "%s img_emb", tag);
    test_close(what, m->img_emb, gimg, nBD, TOL_GOLDEN_EMB_ATOL, TOL_GOLDEN_EMB_RTOL);
    snprintf(what, sizeof what, "%s txt_emb", tag);
    test_close(what, m->txt_emb, gtxt, nBD, TOL_GOLDEN_EMB_ATOL, TOL_GOLDEN_EMB_RTOL);

    int n_bad_tensors = 0, n_cmp = 0;
    double worst_all = 0;
    const char *worst_name = "-";
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        char path[192];
        snprintf(path, sizeof path, "golden/%s/grads/%s", cas, t->name);
        int nd;
        hsize_t dims[4];
        float *ref = read_ds(f, path, H5T_NATIVE_FLOAT, sizeof(float), &nd, dims);
        if (!ref) {
            test_report(0, "%s: golden gradient %s missing", tag, t->name);
            n_bad_tensors++;
            continue;
        }
        size_t n = 1;
        for (int k = 0; k < nd; k++) n *= (size_t)dims[k];
        if (n != t->count) {
            test_report(0, "%s: golden gradient %s has %zu values, model %zu", tag, t->name, n, t->count);
            n_bad_tensors++;
            flip_free(ref);
            continue;
        }
        double worst;
        size_t n_bad;
        int ok = close_scaled(m->grads + t->offset, ref, n, TOL_GOLDEN_GRAD_ATOL_REL,
                              TOL_GOLDEN_GRAD_RTOL, &worst, &n_bad);
        if (!ok) {
            size_t wi = 0;
            double we = -1;
            for (size_t k = 0; k < n; k++) {
                double e = fabs((double)m->grads[t->offset + k] - ref[k]);
                if (!(e <= we)) { we = e; wi = k; }
            }
            test_report(0, "%s: grad %s: %zu of %zu outside bounds, max err/max|ref| %.3g "
                        "(worst [%zu] got %.8g ref %.8g)", tag, t->name, n_bad, n, worst, wi,
                        (double)m->grads[t->offset + wi], (double)ref[wi]);
            n_bad_tensors++;
        }
        if (worst > worst_all) { worst_all = worst; worst_name = t->name; }
        n_cmp++;
        flip_free(ref);
    }
    test_report(n_bad_tensors == 0, "%s: gradients of %d tensors vs golden, worst err/max|ref| %.3g (%s)",
                tag, n_cmp, worst_all, worst_name);
    check_token_rows(m, bt, tag);
}

static void normalise_rows(float *x, int B, int D) {
    for (int b = 0; b < B; b++) {
        double s = 0;
        for (int d = 0; d < D; d++) s += (double)x[(size_t)b * D + d] * x[(size_t)b * D + d];
        double r = s > 0 ? 1.0 / sqrt(s) : 0.0;
        for (int d = 0; d < D; d++) x[(size_t)b * D + d] = (float)(x[(size_t)b * D + d] * r);
    }
}

static void run_case(hid_t f, FlipModel *m, const Batch *bt, const char *cas) {
    char path[160];
    int nd;
    hsize_t dims[4];
    snprintf(path, sizeof path, "inputs/keep/%s", cas);
    int32_t *keep = read_ds(f, path, H5T_NATIVE_INT32, sizeof(int32_t), &nd, dims);
    FLIP_CHECK(keep, "%s: dataset %s missing; regenerate with tests/data/gen_golden.py", g_path, path);
    FLIP_CHECK(nd == 2 && (int)dims[0] == bt->B, "%s: %s must be (B=%d, N)", g_path, path, bt->B);
    int N = (int)dims[1], Np = flip_config_num_patches(&m->cfg);
    FLIP_CHECK(N >= 1 && N <= Np, "%s: %s has N = %d outside [1, %d]", g_path, path, N, Np);
    int sorted = 1;
    for (int b = 0; b < bt->B; b++)
        for (int n = 0; n < N; n++) {
            int32_t k = keep[(size_t)b * N + n];
            if (k < 0 || k >= Np || (n > 0 && k <= keep[(size_t)b * N + n - 1])) sorted = 0;
        }
    test_report(sorted, "%s: stored keep (%d x %d of Np %d) ascending, in range", cas, bt->B, N, Np);

    snprintf(path, sizeof path, "golden/%s/loss", cas);
    double *gloss = need_ds(f, path, H5T_NATIVE_DOUBLE, sizeof(double), 1);
    size_t nBD = (size_t)bt->B * (size_t)bt->D;
    snprintf(path, sizeof path, "golden/%s/img_emb", cas);
    double *gimg = need_ds(f, path, H5T_NATIVE_DOUBLE, sizeof(double), nBD);
    snprintf(path, sizeof path, "golden/%s/txt_emb", cas);
    double *gtxt = need_ds(f, path, H5T_NATIVE_DOUBLE, sizeof(double), nBD);

    flip_model_plan(m, bt->B, N);
    float loss_keep[2] = {0, 0};
    for (int use_ref = 0; use_ref <= 1; use_ref++) {
        char tag[64];
        snprintf(tag, sizeof tag, "%s %s", cas, use_ref ? "ref" : "fast");
        m->use_ref = use_ref;
        float loss = flip_model_loss_and_grad(m, bt->images, keep, bt->tokens, bt->lens);
        loss_keep[use_ref] = loss;
        compare_step(f, m, bt, cas, tag, loss, *gloss, gimg, gtxt);
    }

    if (N == Np) {
        /* unmasked: keep = NULL must be the same model (DESIGN §2: evaluation runs unmasked) */
        float *img = flip_malloc(nBD * sizeof(float), "encoded images");
        float *txt = flip_malloc(nBD * sizeof(float), "encoded texts");
        for (int use_ref = 0; use_ref <= 1; use_ref++) {
            char tag[64], what[128];
            snprintf(tag, sizeof tag, "%s keep=NULL %s", cas, use_ref ? "ref" : "fast");
            m->use_ref = use_ref;
            float loss = flip_model_loss_and_grad(m, bt->images, NULL, bt->tokens, bt->lens);
            compare_step(f, m, bt, cas, tag, loss, *gloss, gimg, gtxt);
            double lk = loss_keep[use_ref];
            snprintf(what, sizeof what, "%s: loss equals the explicit all-patch keep's", tag);
            test_close(what, &loss, &lk, 1, TOL_GOLDEN_LOSS_ATOL, TOL_GOLDEN_LOSS_RTOL);

            snprintf(tag, sizeof tag, "%s encode_image/text %s", cas, use_ref ? "ref" : "fast");
            flip_model_encode_image(m, bt->images, img);
            flip_model_encode_text(m, bt->tokens, bt->lens, txt);
            normalise_rows(img, bt->B, bt->D); /* idempotent if already normalised */
            normalise_rows(txt, bt->B, bt->D);
            snprintf(what, sizeof what, "%s image", tag);
            test_close(what, img, gimg, nBD, TOL_GOLDEN_EMB_ATOL, TOL_GOLDEN_EMB_RTOL);
            snprintf(what, sizeof what, "%s text", tag);
            test_close(what, txt, gtxt, nBD, TOL_GOLDEN_EMB_ATOL, TOL_GOLDEN_EMB_RTOL);
        }
        flip_free(img);
        flip_free(txt);
    }
    m->use_ref = 0;
    flip_free(keep);
    flip_free(gloss);
    flip_free(gimg);
    flip_free(gtxt);
}

/* The golden file itself must be non-trivial: every gradient finite and not
 * all zero (token_embed aside: only a few of its rows are used). */
static void check_golden_trust(hid_t f, const FlipModel *m, const char *cas) {
    int bad = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        char path[192];
        snprintf(path, sizeof path, "golden/%s/grads/%s", cas, m->tensors[i].name);
        int nd;
        hsize_t dims[4];
        float *g = read_ds(f, path, H5T_NATIVE_FLOAT, sizeof(float), &nd, dims);
        if (!g) continue; /* reported by compare_step */
        size_t n = 1, zeros = 0, nonfinite = 0;
        for (int k = 0; k < nd; k++) n *= (size_t)dims[k];
        for (size_t k = 0; k < n; k++) {
            if (!isfinite(g[k])) nonfinite++;
            else if (g[k] == 0.0f) zeros++;
        }
        int is_tok = strcmp(m->tensors[i].name, "text.token_embed.weight") == 0;
        /* qkv bias: the key third is zero in exact arithmetic (softmax shift invariance) */
        int is_qkvb = strstr(m->tensors[i].name, "attn.qkv.bias") != NULL;
        size_t allowed = is_tok ? n - 1 : is_qkvb ? n / 3 : 0;
        if (nonfinite || zeros > allowed) {
            test_report(0, "golden %s grad %s: %zu zeros (allowed %zu), %zu non-finite", cas,
                        m->tensors[i].name, zeros, allowed, nonfinite);
            bad++;
        }
        flip_free(g);
    }
    test_report(bad == 0, "golden %s: every gradient finite and live", cas);
}

int main(int argc, char **argv) {
    char path_buf[4096];
    if (argc > 1) {
        g_path = argv[1];
    } else {
        const char *src = getenv("FLIP_SOURCE_DIR");
        FLIP_CHECK(src && *src, "FLIP_SOURCE_DIR is not set: run through ctest, set it to the flip "
                   "source tree, or pass the golden file as the first argument");
        snprintf(path_buf, sizeof path_buf, "%s/tests/data/golden_small.h5", src);
        g_path = path_buf;
    }
    H5_OK(H5Eset_auto2(H5E_DEFAULT, NULL, NULL)); /* our messages name file and dataset */
    hid_t f = H5Fopen(g_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    FLIP_CHECK(f >= 0, "%s: cannot open the golden file (regenerate with tests/data/gen_golden.py)", g_path);

    FlipConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.name, sizeof cfg.name, "custom");
    cfg.image_size = attr_int(f, "image_size");
    cfg.channels = attr_int(f, "channels");
    cfg.patch = attr_int(f, "patch");
    cfg.width = attr_int(f, "width");
    cfg.depth = attr_int(f, "depth");
    cfg.heads = attr_int(f, "heads");
    cfg.text_width = attr_int(f, "text_width");
    cfg.text_depth = attr_int(f, "text_depth");
    cfg.text_heads = attr_int(f, "text_heads");
    cfg.vocab = attr_int(f, "vocab");
    cfg.context = attr_int(f, "context");
    cfg.embed_dim = attr_int(f, "embed_dim");
    cfg.mlp_ratio = attr_int(f, "mlp_ratio");
    FLIP_CHECK(cfg.channels >= 1 && cfg.channels <= 3, "%s: channels %d not in 1..3", g_path, cfg.channels);
    attr_floats(f, "mean", cfg.mean, cfg.channels);
    attr_floats(f, "std", cfg.std, cfg.channels);
    char msg[256];
    const char *why = flip_config_check(&cfg, msg, sizeof msg);
    FLIP_CHECK(!why, "%s: stored config rejected: %s", g_path, why);

    Batch bt;
    bt.B = attr_int(f, "batch");
    bt.valid_vocab = attr_int(f, "valid_vocab");
    bt.S = cfg.image_size;
    bt.Ci = cfg.channels;
    bt.T = cfg.context;
    bt.D = cfg.embed_dim;
    bt.images = need_ds(f, "inputs/images", H5T_NATIVE_UINT8, 1,
                        (size_t)bt.B * bt.S * bt.S * bt.Ci);
    bt.tokens = need_ds(f, "inputs/tokens", H5T_NATIVE_INT32, sizeof(int32_t), (size_t)bt.B * bt.T);
    bt.lens = need_ds(f, "inputs/lens", H5T_NATIVE_INT, sizeof(int), (size_t)bt.B);
    int padded = 0, full = 0;
    for (int b = 0; b < bt.B; b++) {
        FLIP_CHECK(bt.lens[b] >= 1 && bt.lens[b] <= bt.T, "%s: lens[%d] = %d outside [1, %d]",
                   g_path, b, bt.lens[b], bt.T);
        padded += bt.lens[b] < bt.T;
        full += bt.lens[b] == bt.T;
    }
    test_report(padded > 0 && full > 0, "batch B=%d: %d padded and %d full captions", bt.B, padded, full);

    FlipModel m;
    flip_model_init(&m, &cfg, 1234);
    printf("golden file %s: %d tensors, %zu parameters in the C model\n", g_path, m.n_tensors,
           m.n_params);
    load_params(f, &m);
    const ParamTensor *ls = flip_model_find(&m, "logit_scale");
    if (ls) printf("logit_scale t = %.6f after loading\n", (double)m.params[ls->offset]);

    static const char *cases[] = {"mask50", "mask0"};
    for (int c = 0; c < 2; c++) {
        check_golden_trust(f, &m, cases[c]);
        run_case(f, &m, &bt, cases[c]);
    }

    flip_model_free(&m);
    flip_free(bt.images);
    flip_free(bt.tokens);
    flip_free(bt.lens);
    H5_OK(H5Fclose(f));
    return test_finish();
}
