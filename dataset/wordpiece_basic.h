/* wordpiece_basic.h — internal to dataset/wordpiece.c and vocab_learn.c: the
 * BERT basic tokenizer (clean, CJK split, lowercase + accent strip,
 * punctuation split) as a word callback, strict UTF-8 and the token hash.
 * Not part of the public API (use wordpiece.h). */
#ifndef FLIP_WORDPIECE_BASIC_H
#define FLIP_WORDPIECE_BASIC_H

#include <stddef.h>
#include <stdint.h>

/* Per-call scratch buffers (grown on demand; owned by the caller's struct,
 * released with wp_scratch_free). Zero-initialise before first use. */
typedef struct {
    uint32_t *clean, *lower, *nfd;
    size_t clean_cap, lower_cap, nfd_cap;
} WpScratch;

/* Called for every basic-tokenizer word w[0..m) (code points, m >= 1);
 * return non-zero to stop early. */
typedef int (*WpWordFn)(void *ctx, const uint32_t *w, size_t m);

/* Returns 1 if fn stopped early, else 0. */
int wp_basic_tokenize(const uint32_t *cps, size_t n, int lowercase, WpScratch *s, WpWordFn fn,
                      void *ctx);
void wp_scratch_free(WpScratch *s);

/* Strict UTF-8 decode of s[0..n) into out (capacity n): code point count, or -1. */
long wp_utf8_decode(uint32_t *out, const char *s, size_t n);
/* One code point to UTF-8; returns 1..4 bytes written. */
int wp_utf8_put(char *out, uint32_t c);
uint64_t wp_hash(const char *s, size_t n);

#endif
