/* rng.h — counter-based random numbers (Philox4x32-10, Salmon et al. SC'11).
 *
 * A stream is named by (seed, domain, a, b): the same name gives the same
 * numbers on any rank, in any order, so a sample's mask depends only on
 * (seed, step, global sample index) and initialisation only on the seed.
 * Counter layout: ctr = {block index, domain, lo32(a), hi32(a)}; key derived
 * from (seed, b) with splitmix64. Each block yields 4 uint32.
 */
#ifndef FLIP_RNG_H
#define FLIP_RNG_H

#include <stdint.h>

enum {
    FLIP_RNG_INIT = 1,     /* a = parameter tensor index, b = 0 */
    FLIP_RNG_MASK = 2,     /* a = global sample index, b = step */
    FLIP_RNG_SHUFFLE = 3,  /* a = 0, b = epoch */
    FLIP_RNG_AUGMENT = 4,  /* a = global sample index, b = step */
    FLIP_RNG_TEXTMASK = 5, /* a = global sample index, b = step */
    FLIP_RNG_TEST = 99     /* tests and synthetic data */
};

typedef struct {
    uint32_t key[2];
    uint32_t ctr[4];
    uint32_t buf[4];
    int pos; /* next unused word of buf; 4 = empty */
} Rng;

/* One Philox4x32-10 block. */
void rng_philox(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2]);

void rng_init(Rng *r, uint64_t seed, uint32_t domain, uint64_t a, uint64_t b);
uint32_t rng_u32(Rng *r);
uint64_t rng_u64(Rng *r);
double rng_uniform(Rng *r);           /* [0, 1), 53 bits */
uint32_t rng_below(Rng *r, uint32_t n); /* uniform in [0, n), unbiased; n > 0 */
double rng_normal(Rng *r);            /* standard normal (Box–Muller) */

#endif
