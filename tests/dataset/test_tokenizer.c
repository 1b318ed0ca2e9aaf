/* test_tokenizer.c — hand-checked BERT-uncased tokenizations with a small
 * vocabulary, vocab.txt load errors, save/load round trip + fingerprint, and
 * WordPiece vocabulary learning (hand-computed merges, determinism, no [UNK]
 * on its own corpus). The random differential test against a Python
 * transcription of HF's BertTokenizer is test_tokenizer_ref.sh. */
#include "testlib.h"
#include "wordpiece.h"
#include "sha256.h"

#include <string.h>
#include <unistd.h>

static const char *const VOCAB[] = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "hello", "world", "##world", "don", "'", "t", "!", "un", "##aff", "##able",
    "12", "##3", "5", ".", ",", "中", "文", "a", "##a", "οδος", "σας", "the", "cat", "cafe",
};
#define N_VOCAB ((int)(sizeof VOCAB / sizeof VOCAB[0]))

static Tokenizer *tk;
static char tmpdir[256];

/* tokenizes text and compares the pieces (space separated) with want */
static void check_pieces(const char *text, size_t n, const char *want, const char *what) {
    int32_t ids[256];
    int n_ids = -1;
    int rc = tokenizer_tokenize(tk, text, n, ids, 256, &n_ids);
    char got[2048] = "";
    for (int i = 0; rc == 0 && i < n_ids && i < 256; i++) {
        if (i) strcat(got, " ");
        strcat(got, tokenizer_token(tk, ids[i]));
    }
    TEST_CHECK(rc == 0 && strcmp(got, want) == 0, "%s: got \"%s\" want \"%s\"", what, got, want);
}
#define PIECES(text, want, what) check_pieces(text, strlen(text), want, what)

static void write_file(const char *path, const char *content, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(content, 1, n, f) != n) { fprintf(stderr, "cannot write %s\n", path); exit(2); }
    fclose(f);
}

/* loading content must fail with one line mentioning every needle */
static void check_load_error(const char *content, const char *needle1, const char *needle2,
                             const char *what) {
    char path[512], err[512] = "";
    snprintf(path, sizeof path, "%s/bad_vocab.txt", tmpdir);
    write_file(path, content, strlen(content));
    Tokenizer *t = tokenizer_load(path, 1, err, sizeof err);
    int ok = !t && strstr(err, needle1) && (!needle2 || strstr(err, needle2)) && !strchr(err, '\n');
    TEST_CHECK(ok, "%s: error \"%s\"", what, err);
    tokenizer_free(t);
}

static void test_encode(void) {
    PIECES("Héllo Wörld", "hello world", "accents stripped, lowercased");
    PIECES("HELLO\tworld\n", "hello world", "tab/newline are whitespace");
    PIECES("don't!", "don ' t !", "punctuation split");
    PIECES("123 12.5, 5", "12 ##3 12 . 5 , 5", "numbers");
    PIECES("xyz hello", "[UNK] hello", "unknown word");
    PIECES("unaffable", "un ##aff ##able", "## continuation pieces");
    PIECES("中文", "中 文", "CJK ideographs split");
    PIECES("hel\x01lo\x7f wor\xe2\x80\x8bld", "hello world", "control + zero-width (Cf) chars dropped");
    PIECES("hello\xe2\x80\x8bworld", "hello ##world", "dropped Cf joins words");
    PIECES("hello\xc2\xa0world\xe3\x80\x80the\xe2\x80\xa8" "cat", "hello world the cat",
           "NBSP, ideographic space, line separator split words");
    PIECES("ΟΔΟΣ ΣΑΣ", "οδος σας", "Greek final sigma");
    PIECES("Cafe\xcc\x81 CAFÉ", "cafe cafe", "combining and precomposed accents");
    PIECES("", "", "empty text");
    PIECES("  \t ", "", "whitespace only");
    check_pieces("hello\0world", 11, "hello ##world", "NUL byte dropped");

    char longw[256];
    memset(longw, 'a', 100);
    longw[100] = '\0';
    int32_t ids[256];
    int n = -1;
    int rc = tokenizer_tokenize(tk, longw, 100, ids, 256, &n);
    TEST_CHECK(rc == 0 && n == 100 &&
                   ids[0] == tokenizer_id(tk, "a") && ids[99] == tokenizer_id(tk, "##a"),
               "100-char word -> a ##a x99 (n=%d)", n);
    memset(longw, 'a', 101);
    longw[101] = '\0';
    PIECES(longw, "[UNK]", "101-char word -> [UNK]");

    /* encode: [CLS] ... [SEP] [PAD]..., truncation keeps [SEP] */
    int32_t e[8];
    int len = -1;
    const int CLS = tokenizer_cls_id(tk), SEP = tokenizer_sep_id(tk), PAD = tokenizer_pad_id(tk);
    rc = tokenizer_encode(tk, "", 0, e, 8, &len);
    TEST_CHECK(rc == 0 && len == 2 && e[0] == CLS &&
                   e[1] == SEP && e[2] == PAD && e[7] == PAD,
               "empty text -> [CLS] [SEP] [PAD]... (len %d)", len);
    const char *hw = "hello world hello world";
    rc = tokenizer_encode(tk, hw, strlen(hw), e, 5, &len);
    TEST_CHECK(rc == 0 && len == 5 && e[0] == CLS &&
                   e[1] == tokenizer_id(tk, "hello") && e[3] == tokenizer_id(tk, "hello") && e[4] == SEP,
               "truncated to T=5 keeps [SEP] last (len %d)", len);
    TEST_CHECK(tokenizer_encode(tk, hw, strlen(hw), e, 2, &len) == 0 && len == 2 && e[0] == CLS &&
                   e[1] == SEP,
               "T=2 -> [CLS] [SEP]");
    rc = tokenizer_encode(tk, hw, strlen(hw), e, 8, &len);
    TEST_CHECK(rc == 0 && len == 6 && e[5] == SEP &&
                   e[6] == PAD && e[7] == PAD,
               "T=8 padded after [SEP] (len %d)", len);

    /* invalid UTF-8: -1, ids and length untouched */
    static const char *const bad[] = {"\xff", "ab\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80"};
    for (int i = 0; i < 5; i++) {
        for (int j = 0; j < 8; j++) e[j] = -7;
        len = -7;
        rc = tokenizer_encode(tk, bad[i], strlen(bad[i]), e, 8, &len);
        int untouched = len == -7;
        for (int j = 0; j < 8; j++) untouched &= e[j] == -7;
        TEST_CHECK(rc == -1 && untouched, "invalid UTF-8 case %d rejected, ids untouched", i);
    }

    /* cased mode: no lowercasing, no accent stripping */
    char err[256];
    Tokenizer *cased = tokenizer_from_tokens(VOCAB, N_VOCAB, 0, err, sizeof err);
    TEST_CHECK(cased != NULL, "cased tokenizer built");
    if (cased) {
        n = -1;
        TEST_CHECK(tokenizer_tokenize(cased, "Hello hello", 11, ids, 8, &n) == 0 && n == 2 &&
                       ids[0] == tokenizer_unk_id(cased) && ids[1] == tokenizer_id(cased, "hello"),
                   "cased: Hello -> [UNK], hello -> hello");
        tokenizer_free(cased);
    }
}

static void test_vocab_io(void) {
    TEST_CHECK(tokenizer_vocab_size(tk) == N_VOCAB && tokenizer_pad_id(tk) == 0 &&
                   tokenizer_unk_id(tk) == 1 && tokenizer_cls_id(tk) == 2 && tokenizer_sep_id(tk) == 3 &&
                   tokenizer_mask_id(tk) == 4 && tokenizer_id(tk, "nope") == -1 &&
                   tokenizer_token(tk, N_VOCAB) == NULL && strcmp(tokenizer_token(tk, 6), "world") == 0,
               "vocab accessors");
    char path[512], err[512], hex[65], hex2[65], hexf[65];
    snprintf(path, sizeof path, "%s/vocab.txt", tmpdir);
    TEST_CHECK(tokenizer_save(tk, path, err, sizeof err) == 0, "save vocab.txt");
    Tokenizer *t2 = tokenizer_load(path, 1, err, sizeof err);
    TEST_CHECK(t2 != NULL, "reload saved vocab (%s)", t2 ? "ok" : err);
    tokenizer_sha256(tk, hex);
    TEST_CHECK(sha256_file(hexf, path, err, sizeof err) == 0 && strcmp(hex, hexf) == 0,
               "tokenizer_sha256 == sha256 of the saved file (%s)", hex);
    if (t2) {
        tokenizer_sha256(t2, hex2);
        int same = tokenizer_vocab_size(t2) == N_VOCAB && strcmp(hex, hex2) == 0;
        for (int i = 0; i < N_VOCAB && same; i++) same = strcmp(tokenizer_token(t2, i), VOCAB[i]) == 0;
        TEST_CHECK(same, "round trip keeps tokens, ids and fingerprint");
        tokenizer_free(t2);
    }
    /* CRLF line ends and no final newline load the same tokens */
    const char *crlf = "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nhello";
    write_file(path, crlf, strlen(crlf));
    t2 = tokenizer_load(path, 1, err, sizeof err);
    TEST_CHECK(t2 && tokenizer_vocab_size(t2) == 5 && tokenizer_id(t2, "hello") == 4 &&
                   tokenizer_mask_id(t2) == -1,
               "CRLF vocab without final newline, no [MASK]");
    tokenizer_free(t2);

    snprintf(path, sizeof path, "%s/missing_vocab.txt", tmpdir);
    t2 = tokenizer_load(path, 1, err, sizeof err);
    TEST_CHECK(!t2 && strstr(err, path) && !strchr(err, '\n'), "missing file: \"%s\"", err);
    check_load_error("", "bad_vocab.txt", "empty", "empty file");
    check_load_error("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nworld\nhello\n", "bad_vocab.txt:7:", "duplicate",
                     "duplicate token names file:line");
    check_load_error("[PAD]\n[UNK]\n\n[CLS]\n[SEP]\n", "bad_vocab.txt:3:", "empty token",
                     "blank line names file:line");
    check_load_error("[PAD]\n[UNK]\n[CLS]\nhello\n", "bad_vocab.txt", "[SEP]", "missing [SEP]");
    check_load_error("[PAD]\n[UNK]\n[CLS]\n[SEP]\nab\xff\n", "bad_vocab.txt:5:", "UTF-8",
                     "invalid UTF-8 names file:line");
    check_load_error("[PAD]\n[UNK]\n[CLS]\n[SEP]\na b\n", "bad_vocab.txt:5:", "whitespace",
                     "token with a space");
    static const char *const dup[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "x", "x"};
    t2 = tokenizer_from_tokens(dup, 6, 1, err, sizeof err);
    TEST_CHECK(!t2 && strstr(err, "vocabulary token 5") && strstr(err, "duplicate"),
               "from_tokens duplicate: \"%s\"", err);
}

/* tokens of a learned vocabulary from id `from`, space separated */
static void tokens_from(const Tokenizer *t, int from, char *out, size_t out_bytes) {
    out[0] = '\0';
    for (int i = from; i < tokenizer_vocab_size(t); i++) {
        if (i > from) strncat(out, " ", out_bytes - strlen(out) - 1);
        strncat(out, tokenizer_token(t, i), out_bytes - strlen(out) - 1);
    }
}

static void test_learn(void) {
    char err[512], got[4096];
    /* hand-computed: alphabet a b c d -> 5 specials + 4 + 4 ##forms = 13 */
    const char *c1[] = {"ab ab", "AB cd"};
    Tokenizer *t = vocab_learn(c1, 2, 100, 1, err, sizeof err);
    TEST_CHECK(t != NULL, "learn tiny corpus (%s)", t ? "ok" : err);
    if (t) {
        tokens_from(t, 0, got, sizeof got);
        TEST_CHECK(strcmp(got, "[PAD] [UNK] [CLS] [SEP] [MASK] a b c d ##a ##b ##c ##d ab") == 0,
                   "ab x3 merged, cd x1 below min frequency: \"%s\"", got);
        tokenizer_free(t);
    }
    const char *c2[] = {"ab cd", "cd ab"};
    t = vocab_learn(c2, 2, 14, 1, err, sizeof err);
    TEST_CHECK(t && tokenizer_vocab_size(t) == 14 && strcmp(tokenizer_token(t, 13), "ab") == 0,
               "tie (ab, cd both x2) -> byte order picks ab; vocab_size 14 stops");
    tokenizer_free(t);
    const char *c3[] = {"abc abc"};
    t = vocab_learn(c3, 1, 100, 1, err, sizeof err);
    if (t) tokens_from(t, 11, got, sizeof got); /* 5 specials + a b c ##a ##b ##c */
    TEST_CHECK(t && strcmp(got, "##bc abc") == 0,
               "tie (a,##b) vs (##b,##c): '#' < 'a' merges ##bc first, then abc: \"%s\"", t ? got : err);
    tokenizer_free(t);
    t = vocab_learn(c1, 2, 12, 1, err, sizeof err);
    TEST_CHECK(!t && strstr(err, "vocab_size 12") && !strchr(err, '\n'), "vocab_size too small: \"%s\"", err);
    const char *c4[] = {"", "  ", "\x01"};
    t = vocab_learn(c4, 3, 100, 1, err, sizeof err);
    TEST_CHECK(!t && strstr(err, "word"), "no words: \"%s\"", err);

    /* a small caption corpus: deterministic, no [UNK] on its own text */
    static const char *const subj[] = {"A dog", "Two cats", "The red car", "A smiling child", "An old man",
                                       "Une fête", "Ein Hund", "The bird"};
    static const char *const verb[] = {"runs on", "sleeps under", "jumps over", "sits beside", "looks at"};
    static const char *const obj[] = {"the grass.", "a wooden table!", "the beach, at sunset", "two boxes",
                                      "the café's door", "snow-covered hills"};
    enum { N_TEXT = 8 * 5 * 6 };
    char texts[N_TEXT][128];
    const char *ptr[N_TEXT];
    int k = 0;
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 5; j++)
            for (int l = 0; l < 6; l++, k++) {
                snprintf(texts[k], sizeof texts[k], "%s %s %s", subj[i], verb[j], obj[l]);
                ptr[k] = texts[k];
            }
    Tokenizer *a = vocab_learn(ptr, N_TEXT, 120, 1, err, sizeof err);
    Tokenizer *b = vocab_learn(ptr, N_TEXT, 120, 1, err, sizeof err);
    TEST_CHECK(a && b, "learn caption corpus (%s)", a && b ? "ok" : err);
    if (!a || !b) { tokenizer_free(a); tokenizer_free(b); return; }
    char ha[65], hb[65];
    tokenizer_sha256(a, ha);
    tokenizer_sha256(b, hb);
    TEST_CHECK(strcmp(ha, hb) == 0 && tokenizer_vocab_size(a) == tokenizer_vocab_size(b),
               "deterministic (sha %.16s, V=%d)", ha, tokenizer_vocab_size(a));
    TEST_CHECK(tokenizer_vocab_size(a) == 120, "reached vocab_size 120 (V=%d)", tokenizer_vocab_size(a));
    TEST_CHECK(tokenizer_id(a, "the") >= 0 && tokenizer_id(a, "[MASK]") == 4 && tokenizer_id(a, "##e") >= 0 &&
                   tokenizer_id(a, "e") >= 0 && tokenizer_id(a, "é") < 0 && tokenizer_id(a, "##ê") < 0 &&
                   tokenizer_id(a, "A") < 0,
               "frequent words merged, specials first, accents stripped before learning");
    int unk = 0, total = 0, single_the = 0;
    for (int i = 0; i < N_TEXT; i++) {
        int32_t ids[128];
        int n = 0;
        tokenizer_tokenize(a, ptr[i], strlen(ptr[i]), ids, 128, &n);
        for (int j = 0; j < n && j < 128; j++) unk += ids[j] == tokenizer_unk_id(a);
        total += n;
    }
    int32_t ids[4];
    int n = 0;
    tokenizer_tokenize(a, "The", 3, ids, 4, &n);
    single_the = n == 1 && ids[0] == tokenizer_id(a, "the");
    TEST_CHECK(unk == 0 && total > N_TEXT * 5, "corpus re-tokenizes with no [UNK] (%d pieces)", total);
    TEST_CHECK(single_the, "\"The\" is one learned token");
    /* a smaller budget is a prefix of the larger one (merges are greedy) */
    Tokenizer *c = vocab_learn(ptr, N_TEXT, 100, 1, err, sizeof err);
    int prefix = c && tokenizer_vocab_size(c) == 100;
    for (int i = 0; prefix && i < 100; i++) prefix = strcmp(tokenizer_token(a, i), tokenizer_token(c, i)) == 0;
    TEST_CHECK(prefix, "vocab_size 100 is a prefix of vocab_size 120");
    tokenizer_free(a);
    tokenizer_free(b);
    tokenizer_free(c);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/flip_test_tokenizer_XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 2; }
    char err[256];
    tk = tokenizer_from_tokens(VOCAB, N_VOCAB, 1, err, sizeof err);
    TEST_CHECK(tk != NULL, "build test vocab (%s)", tk ? "ok" : err);
    if (!tk) return test_finish();
    test_encode();
    test_vocab_io();
    test_learn();
    tokenizer_free(tk);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmpdir);
    return test_finish();
}
