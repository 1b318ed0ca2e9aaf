/* fuzz_tokenizer.c — libFuzzer target for the BERT tokenizer, vocab building
 * and vocab learning (built and run by test_fuzz_tokenizer.sh with
 * -fsanitize=fuzzer,address,undefined).
 *
 * Input: byte 0 picks T (2..65) and the case mode; the rest is the text.
 * Checked invariants (abort on violation): encode returns 0 iff tokenize
 * does; [CLS] first, [SEP] at length-1, [PAD] after, 2 <= length <= T, every
 * id in [0, V); tokenize's count is stable between a counting and a writing
 * call; on invalid UTF-8 ids are untouched. The same bytes, split on '\n',
 * also go to tokenizer_from_tokens and (short inputs) vocab_learn. */
#include "wordpiece.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)

static const char *const VOCAB[] = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "##a", "##b", "ab", "##ab", "é", "e",
    "##e", "中", "σ", "ς", "!", "'", "the", "##s", "un", "##aff", "##able", "1", "##2", "ß", "i",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static Tokenizer *tk[2];
    char err[256];
    if (!tk[0]) {
        for (int c = 0; c < 2; c++) {
            tk[c] = tokenizer_from_tokens(VOCAB, (int)(sizeof VOCAB / sizeof VOCAB[0]), c, err, sizeof err);
            REQUIRE(tk[c]);
        }
    }
    if (size == 0) return 0;
    int T = 2 + data[0] % 64;
    const Tokenizer *t = tk[(data[0] >> 6) & 1];
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    int V = tokenizer_vocab_size(t);

    int32_t ids[66];
    for (int i = 0; i < 66; i++) ids[i] = -5;
    int len = -5;
    int rc = tokenizer_encode(t, text, n, ids, T, &len);
    int n_count = -1;
    int rc2 = tokenizer_tokenize(t, text, n, NULL, 0, &n_count);
    REQUIRE(rc == rc2);
    if (rc != 0) {
        REQUIRE(rc == -1 && len == -5);
        for (int i = 0; i < 66; i++) REQUIRE(ids[i] == -5);
    } else {
        REQUIRE(len >= 2 && len <= T);
        REQUIRE(ids[0] == tokenizer_cls_id(t) && ids[len - 1] == tokenizer_sep_id(t));
        for (int i = 1; i < len - 1; i++) REQUIRE(ids[i] >= 0 && ids[i] < V && ids[i] != tokenizer_pad_id(t));
        for (int i = len; i < T; i++) REQUIRE(ids[i] == tokenizer_pad_id(t));
        for (int i = T; i < 66; i++) REQUIRE(ids[i] == -5);
        REQUIRE(len - 2 == (n_count < T - 2 ? n_count : T - 2));
        int32_t *all = malloc(((size_t)n_count + 1) * sizeof(int32_t));
        REQUIRE(all);
        int n2 = -1;
        REQUIRE(tokenizer_tokenize(t, text, n, all, n_count, &n2) == 0 && n2 == n_count);
        for (int i = 0; i < n_count; i++) REQUIRE(all[i] >= 0 && all[i] < V);
        for (int i = 0; i < len - 2; i++) REQUIRE(all[i] == ids[i + 1]);
        free(all);
    }

    /* the bytes as a vocabulary (one token per line) and as a corpus */
    char *copy = malloc(n + 1);
    REQUIRE(copy);
    memcpy(copy, text, n);
    copy[n] = '\0';
    const char *lines[64];
    int n_lines = 0;
    char *p = copy;
    while (n_lines < 64) {
        lines[n_lines++] = p;
        char *nl = strchr(p, '\n');
        if (!nl) break;
        *nl = '\0';
        p = nl + 1;
    }
    Tokenizer *v = tokenizer_from_tokens(lines, n_lines, 1, err, sizeof err);
    if (v) {
        REQUIRE(tokenizer_vocab_size(v) == n_lines && tokenizer_id(v, "[UNK]") == tokenizer_unk_id(v));
        tokenizer_free(v);
    } else {
        REQUIRE(err[0] != '\0' && !strchr(err, '\n'));
    }
    if (n < 512) {
        Tokenizer *l = vocab_learn(lines, (size_t)n_lines, 5 + 2 * 300 + 40, data[0] & 1, err, sizeof err);
        if (l) {
            for (int i = 0; i < n_lines; i++) {
                int m = 0;
                if (tokenizer_tokenize(l, lines[i], strlen(lines[i]), NULL, 0, &m) != 0) continue;
                int32_t *w = malloc(((size_t)m + 1) * sizeof(int32_t));
                REQUIRE(w);
                REQUIRE(tokenizer_tokenize(l, lines[i], strlen(lines[i]), w, m, &m) == 0);
                for (int j = 0; j < m; j++) /* learned vocab covers its corpus (words <= 100 chars) */
                    REQUIRE(w[j] != tokenizer_unk_id(l) || strlen(lines[i]) > 100);
                free(w);
            }
            tokenizer_free(l);
        }
    }
    free(copy);
    return 0;
}
