/* prog_collectives.c — MPI checks of comm/ (run by test_collectives.sh under
 * mpirun -np 1, 2, 4). Every rank runs every check; the exit code is the
 * verdict (mpirun fails if any rank fails). Rank 0 prints the ok lines.
 *   1. all-gather / reduce-scatter: exact contents and the adjoint identity
 *      <y, AG x> = <RS y, x> summed over ranks.
 *   2. bucketed all-reduce (small buckets, chunked requests, ready reported in
 *      pieces, one bucket left unreported) == MPI_Allreduce sum.
 *   3. the distributed gradient of the model (each rank B rows, all-gather,
 *      local InfoNCE block, reduce-scatter, backward, bucketed all-reduce) ==
 *      one process's loss_and_grad on the whole global batch G.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testlib.h"
#include "tolerances.h"

#include "comm.h"
#include "common.h"
#include "model.h"
#include "ops.h"
#include "rng.h"

static int g_rank, g_size;

/* a check that all ranks agree on: fails everywhere if it fails anywhere */
static void check_all(int ok, const char *what) {
    comm_allreduce_min_int(&ok, 1);
    TEST_CHECK(ok, "%s (all %d ranks)", what, g_size);
}

static void fill(float *x, size_t n, uint64_t a, uint64_t b) {
    Rng r;
    rng_init(&r, 1234, FLIP_RNG_TEST, a, b);
    for (size_t i = 0; i < n; i++) x[i] = (float)(2.0 * rng_uniform(&r) - 1.0);
}

static void test_gather_adjoint(void) {
    const int B = 3, D = 5, G = B * g_size;
    float *x = flip_malloc(sizeof(float) * B * D, "x");
    float *X = flip_malloc(sizeof(float) * G * D, "X");
    float *y = flip_malloc(sizeof(float) * G * D, "y");
    float *z = flip_calloc((size_t)B * D, sizeof(float), "z");
    float *tmp = flip_malloc(sizeof(float) * G * D, "tmp");
    fill(x, (size_t)B * D, 1, (uint64_t)g_rank);
    fill(y, (size_t)G * D, 2, (uint64_t)g_rank);
    comm_allgather_rows(X, x, B, D);
    /* exact contents: row block r is rank r's x */
    int ok = 1;
    for (int r = 0; r < g_size; r++) {
        fill(tmp, (size_t)B * D, 1, (uint64_t)r);
        if (memcmp(tmp, X + (size_t)r * B * D, sizeof(float) * B * D) != 0) ok = 0;
    }
    check_all(ok, "allgather rows: block r equals rank r's rows, bit for bit");
    for (int i = 0; i < B * D; i++) z[i] = 0.5f; /* reduce-scatter adds (+=) */
    comm_reduce_scatter_rows(z, y, B, D);
    double *want = flip_calloc((size_t)B * D, sizeof(double), "want");
    for (int r = 0; r < g_size; r++) {
        fill(tmp, (size_t)G * D, 2, (uint64_t)r);
        for (int i = 0; i < B * D; i++) want[i] += tmp[(size_t)g_rank * B * D + i];
    }
    for (int i = 0; i < B * D; i++) want[i] += 0.5;
    ok = test_close("reduce-scatter rows (+= into out) vs sum of owners' rows", z, want,
                    (size_t)B * D, TOL_COMM_SUM_ATOL, TOL_COMM_SUM_RTOL);
    check_all(ok, "reduce-scatter contents");
    /* adjoint: <y, AG x> = <RS y, x>, both summed over ranks */
    for (int i = 0; i < B * D; i++) z[i] = 0.0f;
    comm_reduce_scatter_rows(z, y, B, D);
    double s[2] = {0, 0};
    for (int i = 0; i < G * D; i++) s[0] += (double)y[i] * X[i];
    for (int i = 0; i < B * D; i++) s[1] += (double)z[i] * x[i];
    comm_allreduce_sum_f64(s, 2);
    double rel = fabs(s[0] - s[1]) / (fabs(s[0]) + 1e-30);
    check_all(rel <= TOL_COMM_ADJOINT_RTOL && s[0] != 0.0, "adjoint <y, AG x> = <RS y, x>");
    if (g_rank == 0) printf("  adjoint: <y,AGx>=%.9g <RSy,x>=%.9g rel=%.2g\n", s[0], s[1], rel);
    flip_free(want);
    flip_free(x); flip_free(X); flip_free(y); flip_free(z); flip_free(tmp);
}

static void test_buckets(void) {
    /* a fake tensor table with gaps between tensors (padding) */
    enum { NT = 7 };
    const size_t counts[NT] = {5, 300, 17, 64, 1, 129, 40};
    ParamTensor t[NT];
    memset(t, 0, sizeof t);
    size_t off = 0;
    for (int i = 0; i < NT; i++) {
        snprintf(t[i].name, sizeof t[i].name, "fake.%d", i);
        t[i].offset = off;
        t[i].count = counts[i];
        off += counts[i] + (i % 2 ? 3 : 0);
    }
    size_t n = off;
    float *g = flip_malloc(sizeof(float) * n, "grads");
    float *ref = flip_malloc(sizeof(float) * n, "ref");
    for (int round = 0; round < 2; round++) {
        fill(g, n, 3 + (uint64_t)round, (uint64_t)g_rank);
        memcpy(ref, g, sizeof(float) * n);
        comm_allreduce_sum_f32(ref, n);
        /* 0.0002 MB = 52 floats per bucket; chunks of 13 floats */
        GradBuckets *gb = comm_buckets_init(g, t, NT, 0.0002);
        comm_buckets_set_chunk(gb, 13);
        GradBucketStats st = comm_buckets_stats(gb);
        check_all(st.n_buckets >= 3, "several buckets for a 0.0002 MB bucket size");
        comm_buckets_reset(gb);
        /* backward order: last tensor first; report each tensor in two pieces,
         * except (round 1) tensor 2, never reported: started late at wait */
        for (int i = NT - 1; i >= 0; i--) {
            if (round == 1 && i == 2) continue;
            size_t half = t[i].count / 2;
            if (half) comm_buckets_ready(gb, t[i].offset + half, t[i].count - half);
            comm_buckets_ready(gb, t[i].offset, half ? half : t[i].count);
        }
        comm_buckets_wait(gb);
        st = comm_buckets_stats(gb);
        int ok = 1;
        for (int i = 0; i < NT; i++)
            for (size_t k = 0; k < t[i].count; k++) {
                size_t j = t[i].offset + k;
                if (fabsf(g[j] - ref[j]) > TOL_COMM_SUM_ATOL + TOL_COMM_SUM_RTOL * fabsf(ref[j])) ok = 0;
            }
        char what[160];
        snprintf(what, sizeof what, "bucketed all-reduce (%d buckets, chunks of 13%s) == MPI_Allreduce sum",
                 st.n_buckets, round ? ", one tensor unreported" : "");
        check_all(ok, what);
        check_all(st.late_buckets == (round ? 1 : 0), round ? "the unreported bucket is counted late"
                                                           : "no late bucket when all are reported");
        /* buckets cover every tensor, in reverse arena order, disjoint */
        int cover = 1;
        size_t prev_off = (size_t)-1;
        for (int i = 0; i < st.n_buckets; i++) {
            size_t bo, bc;
            comm_buckets_span(gb, i, &bo, &bc);
            if (bo + bc > prev_off) cover = 0;
            prev_off = bo;
        }
        size_t b0o, b0c;
        comm_buckets_span(gb, 0, &b0o, &b0c);
        if (b0o + b0c != t[NT - 1].offset + t[NT - 1].count || prev_off != 0) cover = 0;
        check_all(cover, "bucket spans: disjoint, reverse arena order, cover first..last tensor");
        double iso = comm_buckets_measure_isolated(gb, 2);
        check_all(iso >= 0.0, "isolated all-reduce timing");
        comm_buckets_free(gb);
    }
    flip_free(g);
    flip_free(ref);
}

/* the reduced model of the test: every code path of tiny, small sizes */
static void small_config(FlipConfig *cfg) {
    FLIP_CHECK(flip_config_preset(cfg, "tiny") == 0, "no tiny preset");
    snprintf(cfg->name, sizeof cfg->name, "custom");
    cfg->image_size = 8;
    cfg->channels = 3;
    cfg->patch = 2;
    cfg->width = 16; cfg->depth = 2; cfg->heads = 2;
    cfg->text_width = 12; cfg->text_depth = 1; cfg->text_heads = 2;
    cfg->vocab = 40;
    cfg->context = 6;
    cfg->embed_dim = 8;
    char msg[256];
    const char *bad = flip_config_check(cfg, msg, sizeof msg);
    FLIP_CHECK(bad == NULL, "test config invalid: %s", bad);
}

static void make_rows(uint8_t *img, int32_t *tok, int *lens, int32_t *keep, const FlipConfig *cfg,
                      int first, int B, int Np, int N, long step) {
    size_t img_n = (size_t)cfg->image_size * cfg->image_size * cfg->channels;
    for (int b = 0; b < B; b++) {
        Rng r;
        rng_init(&r, 77, FLIP_RNG_TEST, (uint64_t)(first + b), 9);
        for (size_t i = 0; i < img_n; i++) img[(size_t)b * img_n + i] = (uint8_t)rng_below(&r, 256);
        lens[b] = 1 + (int)rng_below(&r, (uint32_t)cfg->context);
        for (int k = 0; k < cfg->context; k++)
            tok[(size_t)b * cfg->context + k] = k < lens[b] ? (int32_t)rng_below(&r, (uint32_t)cfg->vocab) : 0;
        flip_mask_keep(keep + (size_t)b * N, 5, step, (uint64_t)(first + b), Np, N);
    }
}

static void test_model_grad(void) {
    FlipConfig cfg;
    small_config(&cfg);
    const int B = 2, G = B * g_size, D = cfg.embed_dim;
    const int Np = flip_config_num_patches(&cfg), N = flip_config_num_kept(&cfg, 0.5f);
    size_t img_n = (size_t)cfg.image_size * cfg.image_size * cfg.channels;
    uint8_t *img = flip_malloc(img_n * G, "images");
    int32_t *tok = flip_malloc(sizeof(int32_t) * G * cfg.context, "tokens");
    int *lens = flip_malloc(sizeof(int) * G, "lens");
    int32_t *keep = flip_malloc(sizeof(int32_t) * G * N, "keep");
    make_rows(img, tok, lens, keep, &cfg, 0, G, Np, N, 3);
    int off = g_rank * B;

    /* distributed: this rank's B rows */
    FlipModel m;
    flip_model_init(&m, &cfg, 42);
    flip_model_plan(&m, B, N);
    GradBuckets *gb = comm_buckets_init(m.grads, m.tensors, m.n_tensors, 0.001);
    float *U = flip_malloc(sizeof(float) * G * D, "U"), *V = flip_malloc(sizeof(float) * G * D, "V");
    float *dU = flip_calloc((size_t)G * D, sizeof(float), "dU");
    float *dV = flip_calloc((size_t)G * D, sizeof(float), "dV");
    float *probs = flip_malloc(sizeof(float) * 2 * B * G, "probs");
    const ParamTensor *ls = flip_model_find(&m, "logit_scale");
    FLIP_CHECK(ls != NULL, "model has no logit_scale");
    flip_model_zero_grad(&m);
    comm_buckets_reset(gb);
    flip_model_forward(&m, img + img_n * off, keep + (size_t)off * N, tok + (size_t)off * cfg.context,
                       lens + off);
    comm_allgather_rows(U, m.img_emb, B, D);
    comm_allgather_rows(V, m.txt_emb, B, D);
    float loss = 0, dt = 0;
    float t = m.params[ls->offset];
    infonce_forward(&loss, probs, m.img_emb, m.txt_emb, U, V, t, B, G, D, off);
    memset(m.dimg_emb, 0, sizeof(float) * B * D);
    memset(m.dtxt_emb, 0, sizeof(float) * B * D);
    infonce_backward(m.dimg_emb, m.dtxt_emb, dU, dV, &dt, 1.0f, probs, m.img_emb, m.txt_emb, U, V, t,
                     B, G, D, off);
    comm_reduce_scatter_rows(m.dimg_emb, dU, B, D);
    comm_reduce_scatter_rows(m.dtxt_emb, dV, B, D);
    m.grads[ls->offset] += dt;
    flip_model_backward(&m, m.dimg_emb, m.dtxt_emb, comm_buckets_ready, gb);
    comm_buckets_wait(gb);
    double loss_sum = loss;
    comm_allreduce_sum_f64(&loss_sum, 1);
    GradBucketStats st = comm_buckets_stats(gb);
    check_all(st.late_buckets == 0, "model backward reports every bucket complete (overlap works)");

    /* reference: one process, the whole global batch */
    FlipModel r;
    flip_model_init(&r, &cfg, 42);
    flip_model_plan(&r, G, N);
    float ref_loss = flip_model_loss_and_grad(&r, img, keep, tok, lens);
    int ok = fabs(loss_sum - ref_loss) <= TOL_DIST_ATOL + TOL_DIST_RTOL * fabs(ref_loss) && isfinite(ref_loss);
    char what[200];
    snprintf(what, sizeof what, "global loss summed over ranks %.7f == single-process loss %.7f", loss_sum,
             (double)ref_loss);
    check_all(ok, what);
    int all_ok = 1;
    for (int i = 0; i < m.n_tensors; i++) {
        const ParamTensor *pt = &m.tensors[i];
        snprintf(what, sizeof what, "grad %s (np=%d)", pt->name, g_size);
        if (!test_close_f(what, m.grads + pt->offset, r.grads + pt->offset, pt->count, TOL_DIST_ATOL,
                          TOL_DIST_RTOL))
            all_ok = 0;
    }
    check_all(all_ok, "every parameter gradient: distributed == single process on G rows");
    /* the comparison is meaningful only if the gradient is not trivially zero */
    size_t zeros_ok = 1;
    for (int i = 0; i < m.n_tensors; i++) {
        const ParamTensor *pt = &m.tensors[i];
        if (strstr(pt->name, "token_embed")) continue; /* unused vocab rows are exactly zero */
        if (!test_trust_grad(pt->name, m.grads + pt->offset, pt->count, 0.5)) zeros_ok = 0;
    }
    check_all((int)zeros_ok, "trust: no gradient all zero, mostly zero or non-finite");
    comm_buckets_free(gb);
    flip_model_free(&m);
    flip_model_free(&r);
    flip_free(U); flip_free(V); flip_free(dU); flip_free(dV); flip_free(probs);
    flip_free(img); flip_free(tok); flip_free(lens); flip_free(keep);
}

int main(int argc, char **argv) {
    comm_init(&argc, &argv);
    g_rank = comm_rank();
    g_size = comm_size();
    if (g_rank != 0 && !freopen("/dev/null", "w", stdout)) FLIP_FATAL("cannot silence stdout");
    if (g_rank == 0) printf("prog_collectives: %d ranks\n", g_size);
    test_gather_adjoint();
    test_buckets();
    test_model_grad();
    int rc = test_finish();
    comm_finalize();
    return rc;
}
