/* test_adamw.c — AdamW update against a hand-computed 2-step example (step 2
 * cross-checked with torch.optim.AdamW in float64), fast vs _ref over many
 * steps, sumsq, and the learning-rate schedules at warmup / middle / end. */
#include <string.h>

#include "common.h"
#include "ops.h"
#include "rng.h"
#include "testlib.h"
#include "tolerances.h"

static void test_hand_example(int use_ref) {
    /* lr 0.01, betas (0.9, 0.999), eps 1e-8, wd 0.1, grad_scale 0.5.
     * Step 1, element 0: g = 0.05, m = 0.005, v = 2.5e-6, mhat = 0.05,
     *   vhat = 0.0025, mhat / (sqrt(vhat) + eps) = 0.9999998,
     *   param = 1 - 0.01 (0.9999998 + 0.1 * 1) = 0.989000002.
     * Element 1: g = -0.1 -> ratio -0.99999990, param = -2 - 0.01 (-0.9999999 - 0.2)
     *   = -1.988000001. Element 2: g = 0 -> m = v = 0, param = 0.5 - 0.01 * 0.05 = 0.4995.
     * Step 2 (grads 0.3, 0.1, -0.4): values from torch.optim.AdamW (float64). */
    float param[3] = {1.0f, -2.0f, 0.5f}, m[3] = {0}, v[3] = {0};
    const float g1[3] = {0.1f, -0.2f, 0.0f}, g2[3] = {0.3f, 0.1f, -0.4f};
    const double want1[3] = {0.989000002, -1.988000001, 0.4995};
    const double want2[3] = {0.978833191629, -1.983348630939, 0.506441867710};
    /* moments by hand: m2 = b1 (1 - b1) g1 + (1 - b1) g2, v2 = b2 (1 - b2) g1^2 + (1 - b2) g2^2
     * with g = 0.5 grad, evaluated with the float-rounded betas (0.999f = 0.99900001) */
    double want_m[3], want_v[3];
    for (int i = 0; i < 3; i++) {
        double b1 = 0.9f, b2 = 0.999f, a = 0.5 * (double)g1[i], b = 0.5 * (double)g2[i];
        want_m[i] = b1 * (1 - b1) * a + (1 - b1) * b;
        want_v[i] = b2 * (1 - b2) * a * a + (1 - b2) * b * b;
    }
    void (*upd)(float *, const float *, float *, float *, size_t, float, float, float, float,
                float, float, long) = use_ref ? adamw_update_ref : adamw_update;
    const char *path = use_ref ? "ref" : "fast";
    char what[96];
    upd(param, g1, m, v, 3, 0.01f, 0.9f, 0.999f, 1e-8f, 0.1f, 0.5f, 1);
    snprintf(what, sizeof what, "adamw %s hand example step 1 params", path);
    test_close(what, param, want1, 3, TOL_ADAMW_ATOL, 0.0);
    upd(param, g2, m, v, 3, 0.01f, 0.9f, 0.999f, 1e-8f, 0.1f, 0.5f, 2);
    snprintf(what, sizeof what, "adamw %s hand example step 2 params (torch)", path);
    test_close(what, param, want2, 3, TOL_ADAMW_ATOL, 0.0);
    snprintf(what, sizeof what, "adamw %s step 2 first moment", path);
    test_close(what, m, want_m, 3, 0.0, 1e-6);
    snprintf(what, sizeof what, "adamw %s step 2 second moment", path);
    test_close(what, v, want_v, 3, 0.0, 1e-6);
}

static void test_fast_vs_ref(size_t n, int steps) {
    Rng r;
    rng_init(&r, 77, FLIP_RNG_TEST, 3, n);
    float *p = flip_malloc(n * sizeof(float), "p"), *pr = flip_malloc(n * sizeof(float), "pr");
    float *m = flip_calloc(n, sizeof(float), "m"), *mr = flip_calloc(n, sizeof(float), "mr");
    float *v = flip_calloc(n, sizeof(float), "v"), *vr = flip_calloc(n, sizeof(float), "vr");
    float *g = flip_malloc(n * sizeof(float), "g");
    for (size_t i = 0; i < n; i++) p[i] = pr[i] = (float)rng_normal(&r);
    for (int s = 1; s <= steps; s++) {
        for (size_t i = 0; i < n; i++) g[i] = (float)(0.01 * rng_normal(&r));
        float wd = s % 2 ? 0.05f : 0.0f, scale = s == 3 ? 0.25f : 1.0f;
        adamw_update(p, g, m, v, n, 1e-3f, 0.9f, 0.98f, 1e-6f, wd, scale, s);
        adamw_update_ref(pr, g, mr, vr, n, 1e-3f, 0.9f, 0.98f, 1e-6f, wd, scale, s);
    }
    char what[96];
    snprintf(what, sizeof what, "adamw fast vs ref n=%zu after %d steps: params", n, steps);
    test_close_f(what, p, pr, n, TOL_OP_ATOL, TOL_OP_RTOL);
    snprintf(what, sizeof what, "adamw fast vs ref n=%zu: m", n);
    test_close_f(what, m, mr, n, TOL_OP_ATOL, TOL_OP_RTOL);
    snprintf(what, sizeof what, "adamw fast vs ref n=%zu: v", n);
    test_close_f(what, v, vr, n, TOL_OP_ATOL, TOL_OP_RTOL);
    /* every parameter moved (trust: an update that did nothing would pass fast == ref) */
    size_t unchanged = 0;
    rng_init(&r, 77, FLIP_RNG_TEST, 3, n);
    for (size_t i = 0; i < n; i++)
        if (p[i] == (float)rng_normal(&r)) unchanged++;
    /* +-lr steps of random sign can cancel exactly in float for a handful of entries */
    TEST_CHECK(unchanged * 10000 <= n, "adamw n=%zu: parameters updated (%zu unchanged)", n,
               unchanged);
    float *bufs[] = {p, pr, m, mr, v, vr, g};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) flip_free(bufs[i]);
}

static void test_sumsq(size_t n) {
    float *x = flip_malloc(n * sizeof(float), "x");
    Rng r;
    rng_init(&r, 5, FLIP_RNG_TEST, 4, 0);
    double want = 0.0;
    for (size_t i = 0; i < n; i++) {
        x[i] = (float)rng_normal(&r);
        want += (double)x[i] * x[i];
    }
    double got = sumsq(x, n);
    TEST_CHECK(fabs(got - want) <= 1e-12 * want, "sumsq n=%zu: %.15g vs %.15g", n, got, want);
    flip_free(x);
}

static void check_lr(const char *what, const Schedule *s, long step, double want) {
    float got = schedule_lr(s, step);
    char name[128];
    snprintf(name, sizeof name, "schedule %s step %ld", what, step);
    test_close(name, &got, &want, 1, 0.0, 1e-6);
}

static void test_schedules(void) {
    const double pi = 3.14159265358979323846;
    Schedule cos_s = {FLIP_SCHED_COSINE, 1e-3f, 10, 110, 1e-5f, 0};
    check_lr("cosine warmup start", &cos_s, 0, 0.0);
    check_lr("cosine warmup mid", &cos_s, 5, 5e-4);
    check_lr("cosine warmup end", &cos_s, 10, 1e-3);
    check_lr("cosine quarter", &cos_s, 35, 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + cos(pi * 0.25)));
    check_lr("cosine middle", &cos_s, 60, 0.5 * (1e-3 + 1e-5));
    check_lr("cosine end", &cos_s, 110, 1e-5);
    check_lr("cosine past end", &cos_s, 500, 1e-5);
    /* monotone non-increasing after warmup */
    int mono = 1;
    for (long k = 10; k < 120; k++)
        if (schedule_lr(&cos_s, k + 1) > schedule_lr(&cos_s, k)) mono = 0;
    TEST_CHECK(mono, "schedule cosine: non-increasing after warmup");

    Schedule const_s = {FLIP_SCHED_CONST, 2e-4f, 4, 100, 0.0f, 0};
    check_lr("const warmup", &const_s, 1, 5e-5);
    check_lr("const middle", &const_s, 50, 2e-4);
    check_lr("const end", &const_s, 100, 2e-4);

    Schedule cd = {FLIP_SCHED_CONST_COOLDOWN, 1e-3f, 10, 100, 1e-4f, 20};
    check_lr("const-cooldown warmup", &cd, 3, 3e-4);
    check_lr("const-cooldown plateau", &cd, 79, 1e-3);
    check_lr("const-cooldown start", &cd, 80, 1e-3);
    check_lr("const-cooldown middle", &cd, 90, 0.5 * (1e-3 + 1e-4));
    check_lr("const-cooldown end", &cd, 100, 1e-4);
    check_lr("const-cooldown past end", &cd, 150, 1e-4);

    Schedule nowarm = {FLIP_SCHED_COSINE, 1e-3f, 0, 100, 0.0f, 0};
    check_lr("cosine no warmup step 0", &nowarm, 0, 1e-3);
}

int main(void) {
    test_hand_example(0);
    test_hand_example(1);
    test_fast_vs_ref(1, 3);
    test_fast_vs_ref(1000003, 5);
    test_sumsq(1);
    test_sumsq(1000003);
    test_schedules();
    return test_finish();
}
