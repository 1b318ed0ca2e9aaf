/* test_infonce.c — the local block of the global symmetric InfoNCE loss.
 *
 * 1. Single process (B = G): fast and _ref loss against a direct double
 *    computation of CLIP's loss (rows and columns of the G x G logits), and two
 *    known values (identical unit vectors; orthonormal pairs).
 * 2. Fast vs _ref over odd shapes (B = 1, G = 1, offsets, D not a multiple of 16,
 *    sizes that split the sgemm calls across threads): loss, probs, gradients.
 * 3. Central finite differences (double, _ref path) of the loss w.r.t. u, v, U,
 *    V and t on a block with offset > 0, and of the single-process loss w.r.t.
 *    the shared embeddings (u aliases U): du + dU is the full gradient.
 * 4. Block property (what makes the distributed loss exact): splitting the
 *    G-batch into R blocks of B = G/R rows at offsets rB, summing the losses and
 *    scattering dU, dV back to their owners gives the single-block loss and
 *    gradients, for R = 1, 2, 4, on both paths.
 * 5. The dt path where p[target] underflows (0 or denormal) matches the reference.
 * Every gradient gets a trust check. */
#include <float.h>
#include <string.h>

#include "common.h"
#include "ops.h"
#include "rng.h"
#include "testlib.h"
#include "tolerances.h"

static Rng g_rng;

static float *fbuf(size_t n) { return flip_calloc(n ? n : 1, sizeof(float), "test buffer"); }
static double *dbuf(size_t n) { return flip_calloc(n ? n : 1, sizeof(double), "test buffer"); }

/* G random unit rows of D */
static void fill_unit(float *x, int G, int D) {
    for (int g = 0; g < G; g++) {
        double s = 0.0;
        for (int i = 0; i < D; i++) {
            x[(size_t)g * D + i] = (float)rng_normal(&g_rng);
            s += (double)x[(size_t)g * D + i] * x[(size_t)g * D + i];
        }
        for (int i = 0; i < D; i++) x[(size_t)g * D + i] = (float)(x[(size_t)g * D + i] / sqrt(s));
    }
}

/* CLIP's loss computed directly in double: (CE over rows + CE over columns) / 2 of
 * logits[i, j] = exp(t) u_i . v_j, each CE averaged over the G rows. */
static double direct_loss(const float *u, const float *v, double t, int G, int D) {
    double s = exp(t), rows = 0.0, cols = 0.0;
    double *l = dbuf((size_t)G * G);
    for (int i = 0; i < G; i++)
        for (int j = 0; j < G; j++) {
            double d = 0.0;
            for (int k = 0; k < D; k++) d += (double)u[(size_t)i * D + k] * v[(size_t)j * D + k];
            l[(size_t)i * G + j] = s * d;
        }
    for (int i = 0; i < G; i++) {
        double mr = -INFINITY, mc = -INFINITY, sr = 0.0, sc = 0.0;
        for (int j = 0; j < G; j++) {
            mr = fmax(mr, l[(size_t)i * G + j]);
            mc = fmax(mc, l[(size_t)j * G + i]);
        }
        for (int j = 0; j < G; j++) {
            sr += exp(l[(size_t)i * G + j] - mr);
            sc += exp(l[(size_t)j * G + i] - mc);
        }
        rows += mr + log(sr) - l[(size_t)i * G + i];
        cols += mc + log(sc) - l[(size_t)i * G + i];
    }
    flip_free(l);
    return 0.5 * (rows / G + cols / G);
}

typedef void (*FwdFn)(float *, float *, const float *, const float *, const float *,
                      const float *, float, int, int, int, int);
typedef void (*BwdFn)(float *, float *, float *, float *, float *, float, const float *,
                      const float *, const float *, const float *, const float *, float, int,
                      int, int, int);

/* ---- 1. direct computation and known values ---- */

static void test_direct(int G, int D, float t) {
    float *u = fbuf((size_t)G * D), *v = fbuf((size_t)G * D), *probs = fbuf((size_t)2 * G * G);
    fill_unit(u, G, D);
    fill_unit(v, G, D);
    for (int i = 0; i < G * D; i++) v[i] = 0.6f * v[i] + 0.8f * u[i]; /* correlated pairs */
    double want = direct_loss(u, v, t, G, D);
    float lf = 0.0f, lr = 0.0f;
    infonce_forward(&lf, probs, u, v, u, v, t, G, G, D, 0);
    infonce_forward_ref(&lr, probs, u, v, u, v, t, G, G, D, 0);
    char what[96];
    snprintf(what, sizeof what, "infonce fast loss vs direct G=%d D=%d t=%.3g", G, D, (double)t);
    test_close(what, &lf, &want, 1, TOL_OP_ATOL, TOL_OP_RTOL);
    snprintf(what, sizeof what, "infonce ref loss vs direct G=%d D=%d t=%.3g", G, D, (double)t);
    test_close(what, &lr, &want, 1, 0.0, 1e-6);
    flip_free(u);
    flip_free(v);
    flip_free(probs);
}

static void test_known_values(void) {
    int G = 6, D = 8;
    float *u = fbuf((size_t)G * D), *probs = fbuf((size_t)2 * G * G);
    /* identical unit vectors, s = 1: every logit is 1, each CE is log G */
    for (int g = 0; g < G; g++) u[(size_t)g * D + 2] = 1.0f;
    float lf = 0.0f, lr = 0.0f;
    double want = log((double)G);
    infonce_forward(&lf, probs, u, u, u, u, 0.0f, G, G, D, 0);
    infonce_forward_ref(&lr, probs, u, u, u, u, 0.0f, G, G, D, 0);
    test_close("infonce identical unit vectors s=1: loss = log G (fast)", &lf, &want, 1, 0.0, 1e-6);
    test_close("infonce identical unit vectors s=1: loss = log G (ref)", &lr, &want, 1, 0.0, 1e-6);
    int uniform = 1;
    for (int i = 0; i < 2 * G * G; i++)
        if (fabsf(probs[i] - 1.0f / G) > 1e-7f) uniform = 0;
    TEST_CHECK(uniform, "infonce identical unit vectors: probs all 1/G");
    /* orthonormal pairs u_i = v_i = e_i, s = e^t: CE = -s + log(e^s + G - 1) */
    memset(u, 0, (size_t)G * D * sizeof(float));
    for (int g = 0; g < G; g++) u[(size_t)g * D + g] = 1.0f;
    float ts[2] = {0.0f, 2.0f};
    for (int k = 0; k < 2; k++) {
        double s = exp((double)ts[k]);
        want = -s + log(exp(s) + G - 1);
        infonce_forward(&lf, probs, u, u, u, u, ts[k], G, G, D, 0);
        infonce_forward_ref(&lr, probs, u, u, u, u, ts[k], G, G, D, 0);
        char what[96];
        snprintf(what, sizeof what, "infonce orthonormal pairs t=%g: -s + log(e^s + G - 1) (fast)",
                 (double)ts[k]);
        test_close(what, &lf, &want, 1, TOL_OP_ATOL, TOL_OP_RTOL);
        snprintf(what, sizeof what, "infonce orthonormal pairs t=%g (ref)", (double)ts[k]);
        test_close(what, &lr, &want, 1, 0.0, 1e-6);
    }
    /* G = 1: a single logit, zero loss and zero gradients */
    float one[3] = {0.6f, 0.8f, 0.0f}, p2[2], g1[3] = {0}, g2[3] = {0}, dt = 0.0f;
    infonce_forward(&lf, p2, one, one, one, one, 1.0f, 1, 1, 3, 0);
    infonce_backward(g1, g2, g1, g2, &dt, 1.0f, p2, one, one, one, one, 1.0f, 1, 1, 3, 0);
    TEST_CHECK(lf == 0.0f && p2[0] == 1.0f && p2[1] == 1.0f && dt == 0.0f && g1[0] == 0.0f &&
                   g2[1] == 0.0f,
               "infonce G=1: loss 0, probs 1, zero gradients (loss %g dt %g)", (double)lf,
               (double)dt);
    flip_free(u);
    flip_free(probs);
}

/* ---- 2. fast vs ref ---- */

static void test_fast_vs_ref(int B, int G, int D, int offset, float t, float dloss) {
    size_t nb = (size_t)B * D, ng = (size_t)G * D, np = (size_t)2 * B * G;
    float *U = fbuf(ng), *V = fbuf(ng), *pf = fbuf(np), *pr = fbuf(np);
    fill_unit(U, G, D);
    fill_unit(V, G, D);
    const float *u = U + (size_t)offset * D, *v = V + (size_t)offset * D;
    float lf, lr;
    infonce_forward(&lf, pf, u, v, U, V, t, B, G, D, offset);
    infonce_forward_ref(&lr, pr, u, v, U, V, t, B, G, D, offset);
    char what[160];
    snprintf(what, sizeof what, "infonce B=%d G=%d D=%d off=%d t=%.3g loss", B, G, D, offset,
             (double)t);
    test_close_f(what, &lf, &lr, 1, TOL_OP_ATOL, TOL_OP_RTOL);
    snprintf(what, sizeof what, "infonce B=%d G=%d D=%d off=%d probs", B, G, D, offset);
    test_close_f(what, pf, pr, np, TOL_OP_ATOL, TOL_OP_RTOL);

    /* backward from a non-zero start: it must add */
    float *g[2][4], base[4] = {0.5f, -0.25f, 0.125f, 1.0f};
    size_t sz[4] = {nb, nb, ng, ng};
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 4; j++) {
            g[k][j] = fbuf(sz[j]);
            for (size_t i = 0; i < sz[j]; i++) g[k][j][i] = k == 0 ? base[j] : 0.0f;
        }
    float dtf = 0.75f, dtr = 0.0f;
    infonce_backward(g[0][0], g[0][1], g[0][2], g[0][3], &dtf, dloss, pf, u, v, U, V, t, B, G,
                     D, offset);
    infonce_backward_ref(g[1][0], g[1][1], g[1][2], g[1][3], &dtr, dloss, pr, u, v, U, V, t, B,
                         G, D, offset);
    const char *names[4] = {"du", "dv", "dU", "dV"};
    for (int j = 0; j < 4; j++) {
        for (size_t i = 0; i < sz[j]; i++) g[0][j][i] -= base[j];
        snprintf(what, sizeof what, "infonce B=%d G=%d D=%d off=%d %s (+=)", B, G, D, offset,
                 names[j]);
        /* gradients are O(s/G); the atol scales with them */
        test_close_f(what, g[0][j], g[1][j], sz[j], TOL_OP_ATOL, TOL_OP_RTOL);
        if (G > 1) {
            snprintf(what, sizeof what, "infonce B=%d G=%d D=%d %s", B, G, D, names[j]);
            test_trust_grad(what, g[1][j], sz[j], 0.01);
        }
    }
    dtf -= 0.75f;
    snprintf(what, sizeof what, "infonce B=%d G=%d D=%d off=%d dt (+=)", B, G, D, offset);
    test_close_f(what, &dtf, &dtr, 1, TOL_OP_ATOL, TOL_OP_RTOL);
    /* NULL outputs skipped: only dV and dt */
    float *dV2 = fbuf(ng), dt2 = 0.0f;
    infonce_backward(NULL, NULL, NULL, dV2, &dt2, dloss, pf, u, v, U, V, t, B, G, D, offset);
    snprintf(what, sizeof what, "infonce B=%d G=%d off=%d NULL du/dv/dU: dV", B, G, offset);
    test_close_f(what, dV2, g[1][3], ng, TOL_OP_ATOL, TOL_OP_RTOL);
    flip_free(dV2);
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 4; j++) flip_free(g[k][j]);
    flip_free(U);
    flip_free(V);
    flip_free(pf);
    flip_free(pr);
}

/* ---- 3. finite differences on the _ref path ---- */

typedef struct {
    const float *u, *v, *U, *V;
    float *probs;
    float t;
    float dloss;
    int B, G, D, offset;
} NceCtx;

static double nce_f(const NceCtx *c) {
    float l;
    infonce_forward_ref(&l, c->probs, c->u, c->v, c->U, c->V, c->t, c->B, c->G, c->D, c->offset);
    return (double)c->dloss * l;
}

/* central difference of dloss * loss w.r.t. x[i]; the loss is stored as float, so
 * the noise floor FLT_EPSILON |loss| / h joins the absolute tolerance */
static void nce_fd(const char *what, float *x, size_t n, const float *g, int n_samples, double h,
                   const NceCtx *c) {
    size_t m = n <= (size_t)n_samples ? n : (size_t)n_samples;
    float *got = fbuf(m);
    double *want = dbuf(m);
    double noise = FLT_EPSILON * fabs(nce_f(c)) / h;
    for (size_t j = 0; j < m; j++) {
        size_t i = n <= (size_t)n_samples ? j : rng_below(&g_rng, (uint32_t)n);
        float x0 = x[i], xp = (float)(x0 + h), xm = (float)(x0 - h);
        x[i] = xp;
        double fp = nce_f(c);
        x[i] = xm;
        double fm = nce_f(c);
        x[i] = x0;
        want[j] = (fp - fm) / ((double)xp - (double)xm);
        got[j] = g[i];
    }
    char name[160];
    snprintf(name, sizeof name, "FD %s", what);
    test_close(name, got, want, m, TOL_FD_ATOL + noise, TOL_FD_RTOL);
    flip_free(got);
    flip_free(want);
}

static void test_fd_block(int B, int G, int D, int offset, float t, float dloss) {
    size_t nb = (size_t)B * D, ng = (size_t)G * D;
    float *u = fbuf(nb), *v = fbuf(nb), *U = fbuf(ng), *V = fbuf(ng), *probs = fbuf(2 * (size_t)B * G);
    fill_unit(U, G, D);
    fill_unit(V, G, D);
    /* u, v close to (not equal to) their gathered copies: independent inputs */
    for (size_t i = 0; i < nb; i++) {
        u[i] = U[(size_t)offset * D + i] + 0.05f * (float)rng_normal(&g_rng);
        v[i] = V[(size_t)offset * D + i] + 0.05f * (float)rng_normal(&g_rng);
    }
    float *du = fbuf(nb), *dv = fbuf(nb), *dU = fbuf(ng), *dV = fbuf(ng), dt = 0.0f, l;
    infonce_forward_ref(&l, probs, u, v, U, V, t, B, G, D, offset);
    infonce_backward_ref(du, dv, dU, dV, &dt, dloss, probs, u, v, U, V, t, B, G, D, offset);
    NceCtx c = {u, v, U, V, probs, t, dloss, B, G, D, offset};
    char what[128];
    double h = 1e-3;
    snprintf(what, sizeof what, "infonce B=%d G=%d off=%d t=%.3g d/du", B, G, offset, (double)t);
    nce_fd(what, u, nb, du, 16, h, &c);
    snprintf(what, sizeof what, "infonce B=%d G=%d off=%d t=%.3g d/dv", B, G, offset, (double)t);
    nce_fd(what, v, nb, dv, 16, h, &c);
    snprintf(what, sizeof what, "infonce B=%d G=%d off=%d t=%.3g d/dU", B, G, offset, (double)t);
    nce_fd(what, U, ng, dU, 16, h, &c);
    snprintf(what, sizeof what, "infonce B=%d G=%d off=%d t=%.3g d/dV", B, G, offset, (double)t);
    nce_fd(what, V, ng, dV, 16, h, &c);
    snprintf(what, sizeof what, "infonce B=%d G=%d off=%d t=%.3g d/dt", B, G, offset, (double)t);
    nce_fd(what, &c.t, 1, &dt, 1, h, &c);
    flip_free(u);
    flip_free(v);
    flip_free(U);
    flip_free(V);
    flip_free(probs);
    flip_free(du);
    flip_free(dv);
    flip_free(dU);
    flip_free(dV);
}

/* single process: u aliases U and v aliases V, so the FD sees du + dU */
static void test_fd_shared(int G, int D, float t) {
    size_t ng = (size_t)G * D;
    float *E = fbuf(ng), *F = fbuf(ng), *probs = fbuf(2 * (size_t)G * G);
    fill_unit(E, G, D);
    fill_unit(F, G, D);
    float *du = fbuf(ng), *dv = fbuf(ng), *dU = fbuf(ng), *dV = fbuf(ng), dt = 0.0f, l;
    infonce_forward_ref(&l, probs, E, F, E, F, t, G, G, D, 0);
    infonce_backward_ref(du, dv, dU, dV, &dt, 1.0f, probs, E, F, E, F, t, G, G, D, 0);
    for (size_t i = 0; i < ng; i++) {
        du[i] += dU[i];
        dv[i] += dV[i];
    }
    NceCtx c = {E, F, E, F, probs, t, 1.0f, G, G, D, 0};
    char what[128];
    snprintf(what, sizeof what, "infonce single G=%d t=%.3g d/d(u=U) = du + dU", G, (double)t);
    nce_fd(what, E, ng, du, 16, 1e-3, &c);
    snprintf(what, sizeof what, "infonce single G=%d t=%.3g d/d(v=V) = dv + dV", G, (double)t);
    nce_fd(what, F, ng, dv, 16, 1e-3, &c);
    test_trust_grad("infonce single du + dU", du, ng, 0.01);
    flip_free(E);
    flip_free(F);
    flip_free(probs);
    flip_free(du);
    flip_free(dv);
    flip_free(dU);
    flip_free(dV);
}

/* ---- 4. block property ---- */

static void test_blocks(int G, int D, float t, int R, int use_ref) {
    FwdFn fwd = use_ref ? infonce_forward_ref : infonce_forward;
    BwdFn bwd = use_ref ? infonce_backward_ref : infonce_backward;
    size_t ng = (size_t)G * D;
    float *U = fbuf(ng), *V = fbuf(ng);
    fill_unit(U, G, D);
    fill_unit(V, G, D);
    for (size_t i = 0; i < ng; i++) V[i] = 0.5f * V[i] + 0.5f * U[i];
    /* one block, B = G */
    float *probs1 = fbuf(2 * (size_t)G * G), l1, dt1 = 0.0f;
    float *du1 = fbuf(ng), *dv1 = fbuf(ng);
    fwd(&l1, probs1, U, V, U, V, t, G, G, D, 0);
    bwd(du1, dv1, du1, dv1, &dt1, 1.0f, probs1, U, V, U, V, t, G, G, D, 0);
    /* R blocks: rank r owns rows [rB, (r+1)B) */
    int B = G / R;
    float *probsR = fbuf(2 * (size_t)B * G), lsum = 0.0f, dtsum = 0.0f;
    float *duR = fbuf(ng), *dvR = fbuf(ng);   /* each rank's du, dv at its own rows */
    float *dUsum = fbuf(ng), *dVsum = fbuf(ng); /* sum over ranks of dU, dV (reduce) */
    float *dUr = fbuf(ng), *dVr = fbuf(ng);
    for (int r = 0; r < R; r++) {
        float lr, dtr = 0.0f;
        const float *u = U + (size_t)r * B * D, *v = V + (size_t)r * B * D;
        fwd(&lr, probsR, u, v, U, V, t, B, G, D, r * B);
        memset(dUr, 0, ng * sizeof(float));
        memset(dVr, 0, ng * sizeof(float));
        bwd(duR + (size_t)r * B * D, dvR + (size_t)r * B * D, dUr, dVr, &dtr, 1.0f, probsR, u, v,
            U, V, t, B, G, D, r * B);
        lsum += lr;
        dtsum += dtr;
        for (size_t i = 0; i < ng; i++) {
            dUsum[i] += dUr[i];
            dVsum[i] += dVr[i];
        }
    }
    /* scatter: rank r adds rows [rB, (r+1)B) of the summed dU, dV to its du, dv */
    for (size_t i = 0; i < ng; i++) {
        duR[i] += dUsum[i];
        dvR[i] += dVsum[i];
    }
    char what[128];
    const char *path = use_ref ? "ref" : "fast";
    snprintf(what, sizeof what, "infonce blocks %s G=%d R=%d: summed loss", path, G, R);
    test_close_f(what, &lsum, &l1, 1, TOL_OP_ATOL, TOL_OP_RTOL);
    snprintf(what, sizeof what, "infonce blocks %s G=%d R=%d: du + scattered dU", path, G, R);
    test_close_f(what, duR, du1, ng, TOL_OP_ATOL, TOL_OP_RTOL);
    snprintf(what, sizeof what, "infonce blocks %s G=%d R=%d: dv + scattered dV", path, G, R);
    test_close_f(what, dvR, dv1, ng, TOL_OP_ATOL, TOL_OP_RTOL);
    snprintf(what, sizeof what, "infonce blocks %s G=%d R=%d: summed dt", path, G, R);
    test_close_f(what, &dtsum, &dt1, 1, TOL_OP_ATOL, TOL_OP_RTOL);
    snprintf(what, sizeof what, "infonce blocks %s G=%d R=%d du", path, G, R);
    test_trust_grad(what, duR, ng, 0.01);
    float *bufs[] = {U, V, probs1, du1, dv1, probsR, duR, dvR, dUsum, dVsum, dUr, dVr};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) flip_free(bufs[i]);
}

/* ---- 5. underflowed target probability ---- */

static void test_underflow(void) {
    int G = 3, D = 4, B = 1;
    float U[12] = {0}, V[12] = {0}, probs[2][3], probsr[2][3];
    float t = (float)log(100.0);
    U[0] = 1.0f;               /* u_0 = e0 */
    V[0] = -1.0f;              /* its text is anti-aligned: logit -100 */
    V[4] = 1.0f;               /* another text aligned: logit +100 */
    V[9] = 1.0f;
    U[5] = 1.0f;
    U[10] = 1.0f;
    float lf, lr, dtf = 0.0f, dtr = 0.0f;
    float du[4] = {0}, dv[4] = {0}, dur[4] = {0}, dvr[4] = {0};
    infonce_forward(&lf, &probs[0][0], U, V, U, V, t, B, G, D, 0);
    infonce_forward_ref(&lr, &probsr[0][0], U, V, U, V, t, B, G, D, 0);
    TEST_CHECK(probs[0][0] == 0.0f && probs[1][0] < FLT_MIN,
               "infonce underflow case: p[target] is 0 / denormal (%g, %g)", (double)probs[0][0],
               (double)probs[1][0]);
    test_close_f("infonce underflow: loss fast vs ref", &lf, &lr, 1, TOL_OP_ATOL, TOL_OP_RTOL);
    infonce_backward(du, dv, NULL, NULL, &dtf, 1.0f, &probs[0][0], U, V, U, V, t, B, G, D, 0);
    infonce_backward_ref(dur, dvr, NULL, NULL, &dtr, 1.0f, &probsr[0][0], U, V, U, V, t, B, G, D,
                         0);
    test_close_f("infonce underflow: dt fast vs ref", &dtf, &dtr, 1, TOL_OP_ATOL, TOL_OP_RTOL);
    test_close_f("infonce underflow: du fast vs ref", du, dur, 4, TOL_OP_ATOL, TOL_OP_RTOL);
    TEST_CHECK(isfinite(dtf) && dtf != 0.0f, "infonce underflow: dt finite, non-zero (%g)",
               (double)dtf);
}

int main(void) {
    rng_init(&g_rng, 4321, FLIP_RNG_TEST, 2, 0);

    test_direct(8, 16, 2.659f);
    test_direct(31, 24, 0.0f);
    test_direct(64, 64, 4.605f);
    test_known_values();

    test_fast_vs_ref(1, 1, 1, 0, 1.0f, 1.0f);
    test_fast_vs_ref(1, 5, 7, 3, 2.659f, 1.0f);
    test_fast_vs_ref(8, 8, 32, 0, 2.659f, 1.0f);
    test_fast_vs_ref(13, 52, 33, 26, 2.659f, 0.5f);
    test_fast_vs_ref(64, 256, 128, 64, 4.605f, 1.0f);
    test_fast_vs_ref(100, 400, 256, 300, 2.659f, 1.0f);

    test_fd_block(3, 9, 5, 3, 1.0f, 1.3f);
    test_fd_block(4, 16, 12, 8, 2.659f, 1.0f);
    test_fd_block(1, 4, 3, 0, 0.0f, 1.0f);
    test_fd_shared(6, 8, 2.0f);

    for (int use_ref = 0; use_ref < 2; use_ref++)
        for (int R = 1; R <= 4; R *= 2) test_blocks(16, 24, 2.659f, R, use_ref);
    test_blocks(64, 40, 4.0f, 4, 0);

    test_underflow();
    return test_finish();
}
