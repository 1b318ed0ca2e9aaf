/* test_rng_arena.c — the counter RNG (Philox4x32-10 known-answer vectors from
 * Random123, stream independence, distribution sanity) and the arena
 * (alignment, mark/reset, planning mode). */
#include <math.h>
#include <string.h>

#include "arena.h"
#include "rng.h"
#include "testlib.h"

static void test_philox_kat(void) {
    /* Random123 kat_vectors: philox4x32_10 */
    static const struct { uint32_t ctr[4], key[2], out[4]; } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
        {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu},
         {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
        {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u},
         {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint32_t out[4];
        rng_philox(out, kat[i].ctr, kat[i].key);
        TEST_CHECK(memcmp(out, kat[i].out, sizeof out) == 0,
                   "philox4x32-10 known answer %zu: got %08x %08x %08x %08x", i, out[0], out[1],
                   out[2], out[3]);
    }
}

static void test_streams(void) {
    Rng a, b, c;
    rng_init(&a, 42, FLIP_RNG_MASK, 7, 3);
    rng_init(&b, 42, FLIP_RNG_MASK, 7, 3);
    rng_init(&c, 42, FLIP_RNG_MASK, 8, 3);
    int same = 1, differ = 0;
    for (int i = 0; i < 100; i++) {
        uint32_t x = rng_u32(&a), y = rng_u32(&b), z = rng_u32(&c);
        same &= x == y;
        differ += x != z;
    }
    TEST_CHECK(same, "same (seed, domain, a, b) gives the same stream");
    TEST_CHECK(differ > 95, "a different index gives a different stream (%d/100 differ)", differ);
    Rng d, e;
    rng_init(&d, 42, FLIP_RNG_MASK, 7, 4);
    rng_init(&e, 43, FLIP_RNG_MASK, 7, 3);
    TEST_CHECK(rng_u64(&d) != rng_u64(&e), "step and seed change the stream");

    /* distribution sanity: mean/variance of uniform and normal, rng_below bounds */
    Rng r;
    rng_init(&r, 1, FLIP_RNG_TEST, 0, 0);
    const int n = 200000;
    double su = 0, suu = 0, sn = 0, snn = 0;
    int below_ok = 1, counts[7] = {0};
    for (int i = 0; i < n; i++) {
        double u = rng_uniform(&r);
        below_ok &= u >= 0.0 && u < 1.0;
        su += u; suu += u * u;
        double g = rng_normal(&r);
        sn += g; snn += g * g;
        uint32_t k = rng_below(&r, 7);
        below_ok &= k < 7;
        if (k < 7) counts[k]++;
    }
    double mu = su / n, vu = suu / n - mu * mu, mn = sn / n, vn = snn / n - mn * mn;
    /* 200k samples: standard errors ~6.5e-4 (uniform mean), ~2.2e-3 (normal mean) */
    TEST_CHECK(below_ok, "uniform in [0,1) and rng_below(7) < 7");
    TEST_CHECK(fabs(mu - 0.5) < 0.005 && fabs(vu - 1.0 / 12) < 0.002, "uniform mean %.4f var %.4f", mu, vu);
    TEST_CHECK(fabs(mn) < 0.015 && fabs(vn - 1) < 0.02, "normal mean %.4f var %.4f", mn, vn);
    int flat = 1;
    for (int k = 0; k < 7; k++) flat &= fabs(counts[k] - n / 7.0) < 5 * sqrt(n / 7.0);
    TEST_CHECK(flat, "rng_below(7) is flat within 5 sigma");
}

static void test_arena(void) {
    Arena plan;
    arena_plan_init(&plan, "plan");
    arena_alloc(&plan, 10);
    arena_floats(&plan, 100);
    size_t need = plan.used_bytes;
    TEST_CHECK(need == 64 + 400, "planning pass counts aligned bytes (%zu)", need);
    Arena a;
    arena_init(&a, need, "acts");
    char *p = arena_alloc(&a, 10);
    float *f = arena_floats(&a, 100);
    TEST_CHECK(((uintptr_t)p % 64) == 0 && ((uintptr_t)f % 64) == 0 && (char *)f - p == 64,
               "arena slices are 64-byte aligned and packed");
    size_t mark = arena_mark(&a);
    arena_reset(&a, 64);
    float *g = arena_floats(&a, 100);
    TEST_CHECK(g == f && arena_mark(&a) == mark, "mark/reset reuses memory");
    TEST_CHECK(a.peak_bytes == need, "peak tracked");
    arena_free(&a);
}

int main(void) {
    test_philox_kat();
    test_streams();
    test_arena();
    return test_finish();
}
