/* sha256.h — SHA-256 (FIPS 180-4), streaming and one-shot, for the vocab and
 * shard fingerprints. No allocation; the context is a plain value. */
#ifndef FLIP_SHA256_H
#define FLIP_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t n_bytes;   /* total bytes hashed so far */
    uint8_t buf[64];
    size_t buf_bytes;   /* 0..63 pending bytes in buf */
} Sha256;

void sha256_init(Sha256 *s);
void sha256_update(Sha256 *s, const void *data, size_t n_bytes);
void sha256_final(Sha256 *s, uint8_t digest[32]);
/* one-shot */
void sha256(uint8_t digest[32], const void *data, size_t n_bytes);
/* 64 lowercase hex chars + NUL */
void sha256_hex(char hex[65], const uint8_t digest[32]);
/* Hashes a whole file; 0, or -1 + one-line err naming the file. */
int sha256_file(char hex[65], const char *path, char *err, size_t err_bytes);

#endif
