/* test_sha256.c — SHA-256 against the FIPS 180-4 / NIST test vectors ("", "abc",
 * the 448- and 896-bit messages, one million 'a'), streaming in uneven chunks
 * equal to one-shot, and the padding boundaries (lengths 0..130) plus
 * sha256_file against coreutils' sha256sum. */
#include "testlib.h"
#include "sha256.h"

#include <string.h>
#include <unistd.h>

static void hex_of(char hex[65], const void *data, size_t n) {
    uint8_t d[32];
    sha256(d, data, n);
    sha256_hex(hex, d);
}

int main(void) {
    static const struct { const char *msg; const char *want; } kv[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    char hex[65];
    for (int i = 0; i < 4; i++) {
        hex_of(hex, kv[i].msg, strlen(kv[i].msg));
        TEST_CHECK(strcmp(hex, kv[i].want) == 0, "vector %d (%zu bytes): %s", i, strlen(kv[i].msg), hex);
    }
    /* one million 'a', streamed in chunks of 1..997 bytes */
    static char a[1000000];
    memset(a, 'a', sizeof a);
    Sha256 s;
    sha256_init(&s);
    size_t off = 0, step = 1;
    while (off < sizeof a) {
        size_t n = step < sizeof a - off ? step : sizeof a - off;
        sha256_update(&s, a + off, n);
        off += n;
        step = step % 997 + 1;
    }
    uint8_t d[32];
    sha256_final(&s, d);
    sha256_hex(hex, d);
    TEST_CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0,
               "one million 'a' streamed: %s", hex);

    /* padding boundaries: byte-by-byte streaming == one-shot == sha256sum */
    char path[] = "/tmp/flip_test_sha256_XXXXXX";
    int fd = mkstemp(path);
    TEST_CHECK(fd >= 0, "temp file");
    if (fd < 0) return test_finish();
    close(fd);
    int n_same = 0, n_ext = 0;
    uint8_t msg[131];
    for (int i = 0; i < 131; i++) msg[i] = (uint8_t)(i * 37 + 11);
    for (size_t len = 0; len <= 130; len++) {
        char one[65], str[65], file[65], ext[65] = "", err[256];
        hex_of(one, msg, len);
        sha256_init(&s);
        for (size_t i = 0; i < len; i++) sha256_update(&s, msg + i, 1);
        sha256_final(&s, d);
        sha256_hex(str, d);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(msg, 1, len, f) != len) { fprintf(stderr, "write %s failed\n", path); return 2; }
        fclose(f);
        int rc = sha256_file(file, path, err, sizeof err);
        n_same += rc == 0 && strcmp(one, str) == 0 && strcmp(one, file) == 0;
        if (len == 55 || len == 56 || len == 63 || len == 64 || len == 119 || len == 120) {
            char cmd[128];
            snprintf(cmd, sizeof cmd, "sha256sum %s", path);
            FILE *p = popen(cmd, "r");
            if (p && fscanf(p, "%64s", ext) == 1 && strcmp(ext, one) == 0) n_ext++;
            if (p) pclose(p);
        }
    }
    TEST_CHECK(n_same == 131, "lengths 0..130: one-shot == byte-by-byte == sha256_file (%d/131)", n_same);
    TEST_CHECK(n_ext == 6, "padding boundaries 55,56,63,64,119,120 match sha256sum (%d/6)", n_ext);
    char err[256];
    unlink(path);
    TEST_CHECK(sha256_file(hex, path, err, sizeof err) == -1 && strstr(err, path), "missing file: %s", err);
    return test_finish();
}
