/* wordpiece.c — BERT basic tokenization + WordPiece encoding, vocab.txt load
 * and save. The algorithm and its exact Unicode rules are in wordpiece.h; the
 * tables are generated (unicode_tables.h). vocab_learn lives in vocab_learn.c
 * and shares the basic tokenizer through wordpiece_basic.h.
 *
 * Ownership: a Tokenizer owns its token pool, the id array and the hash
 * table; tokenizer_free releases all of them. Encoding allocates per call
 * scratch buffers (offline use: flip-prep), never touching the Tokenizer. */
#include "wordpiece.h"
#include "wordpiece_basic.h"

#include "common.h"
#include "sha256.h"
#include "unicode_tables.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- Unicode */

static int uni_bits(uint32_t cp) {
    size_t lo = 0, hi = UNI_RUN_START_N; /* last run with start <= cp */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (uni_run_start[mid] <= cp) lo = mid; else hi = mid;
    }
    return uni_run_bits[lo];
}

static int find_u32(const uint32_t *a, size_t n, uint32_t key) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (a[mid] < key) lo = mid + 1; else hi = mid;
    }
    return (lo < n && a[lo] == key) ? (int)lo : -1;
}

static int uni_ccc(uint32_t cp) {
    size_t lo = 0, hi = UNI_CCC_START_N;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (uni_ccc_end[mid] < cp) lo = mid + 1; else hi = mid;
    }
    return (lo < UNI_CCC_START_N && uni_ccc_start[lo] <= cp) ? uni_ccc_val[lo] : 0;
}

/* Strict UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
 * Writes at most n code points; returns the count, or -1 if invalid. */
long wp_utf8_decode(uint32_t *out, const char *s, size_t n) {
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    long k = 0;
    while (i < n) {
        uint32_t c = p[i];
        int extra;
        uint32_t min;
        if (c < 0x80) { out[k++] = c; i++; continue; }
        else if ((c & 0xE0) == 0xC0) { extra = 1; min = 0x80; c &= 0x1F; }
        else if ((c & 0xF0) == 0xE0) { extra = 2; min = 0x800; c &= 0x0F; }
        else if ((c & 0xF8) == 0xF0) { extra = 3; min = 0x10000; c &= 0x07; }
        else return -1;
        if (n - i <= (size_t)extra) return -1;
        for (int j = 1; j <= extra; j++) {
            uint8_t b = p[i + (size_t)j];
            if ((b & 0xC0) != 0x80) return -1;
            c = (c << 6) | (b & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return -1;
        out[k++] = c;
        i += (size_t)extra + 1;
    }
    return k;
}

/* Encodes one code point (valid scalar value); returns bytes written (1..4). */
int wp_utf8_put(char *out, uint32_t c) {
    uint8_t *o = (uint8_t *)out;
    if (c < 0x80) { o[0] = (uint8_t)c; return 1; }
    if (c < 0x800) { o[0] = (uint8_t)(0xC0 | (c >> 6)); o[1] = (uint8_t)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (c >> 12));
        o[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (c >> 18));
    o[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

/* ------------------------------------------------------- basic tokenizer */

static void buf_reserve(uint32_t **buf, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    flip_free(*buf);
    *buf = flip_malloc(flip_mul_size(c, sizeof(uint32_t), "tokenizer scratch"), "tokenizer scratch");
    *cap = c;
}

void wp_scratch_free(WpScratch *s) {
    flip_free(s->clean);
    flip_free(s->lower);
    flip_free(s->nfd);
    memset(s, 0, sizeof *s);
}

/* Python str.lower() of tok[0..m) into out (capacity 3m); returns length. */
static size_t lower_token(uint32_t *out, const uint32_t *tok, size_t m) {
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        uint32_t c = tok[i];
        if (c < 0x80) { out[k++] = (c >= 'A' && c <= 'Z') ? c + 32 : c; continue; }
        if (c == 0x3A3) { /* final sigma: cased CI* SIGMA !(CI* cased) */
            size_t j = i;
            uint32_t prev = 0;
            int found = 0;
            while (j > 0) {
                prev = tok[--j];
                if (!(uni_bits(prev) & UNI_CASE_IGNORABLE)) { found = 1; break; }
            }
            int final = found && (uni_bits(prev) & UNI_CASED);
            if (final) {
                size_t f = i + 1;
                while (f < m && (uni_bits(tok[f]) & UNI_CASE_IGNORABLE)) f++;
                final = f == m || !(uni_bits(tok[f]) & UNI_CASED);
            }
            out[k++] = final ? 0x3C2 : 0x3C3;
            continue;
        }
        int idx = find_u32(uni_lower_from, UNI_LOWER_FROM_N, c);
        if (idx >= 0) { out[k++] = uni_lower_to[idx]; continue; }
        int multi = 0;
        for (int q = 0; q < UNI_N_LOWER_MULTI; q++)
            if (uni_lower_multi[q][0] == c) {
                for (int r = 1; r < 4 && uni_lower_multi[q][r]; r++) out[k++] = uni_lower_multi[q][r];
                multi = 1;
                break;
            }
        if (!multi) out[k++] = c;
    }
    return k;
}

/* NFD (full canonical decomposition + canonical ordering) of in[0..m), then
 * drops Mn marks; out capacity UNI_NFD_MAX_LEN * m. Returns length. */
static size_t strip_accents(uint32_t *out, const uint32_t *in, size_t m) {
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        uint32_t c = in[i];
        if (c < 0xC0) { out[k++] = c; continue; }
        if (c >= 0xAC00 && c <= 0xD7A3) { /* Hangul syllable */
            uint32_t s = c - 0xAC00;
            out[k++] = 0x1100 + s / 588;
            out[k++] = 0x1161 + (s % 588) / 28;
            if (s % 28) out[k++] = 0x11A7 + s % 28;
            continue;
        }
        int idx = find_u32(uni_nfd_cp, UNI_NFD_CP_N, c);
        if (idx < 0) { out[k++] = c; continue; }
        for (int r = 0; r < uni_nfd_len[idx]; r++) out[k++] = uni_nfd_data[uni_nfd_off[idx] + r];
    }
    /* canonical ordering: stable sort of each run of non-zero classes */
    for (size_t i = 1; i < k; i++) {
        int ci = uni_ccc(out[i]);
        if (ci == 0) continue;
        for (size_t j = i; j > 0; j--) {
            int cj = uni_ccc(out[j - 1]);
            if (cj <= ci) break; /* includes cj == 0 */
            uint32_t t = out[j - 1]; out[j - 1] = out[j]; out[j] = t;
        }
    }
    size_t w = 0;
    for (size_t i = 0; i < k; i++)
        if (!(uni_bits(out[i]) & UNI_MN)) out[w++] = out[i];
    return w;
}

int wp_basic_tokenize(const uint32_t *cps, size_t n, int lowercase, WpScratch *s, WpWordFn fn,
                      void *ctx) {
    /* 1-2: clean text, spaces around CJK ideographs */
    buf_reserve(&s->clean, &s->clean_cap, 3 * n + 1);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cps[i];
        int b = uni_bits(c);
        if (b & UNI_DROP) continue;
        if (b & UNI_SPACE) { s->clean[m++] = ' '; continue; }
        if (b & UNI_CJK) {
            s->clean[m++] = ' '; s->clean[m++] = c; s->clean[m++] = ' ';
            continue;
        }
        s->clean[m++] = c;
    }
    /* 3-4: whitespace split, lowercase + strip accents, punctuation split */
    size_t i = 0;
    while (i < m) {
        while (i < m && s->clean[i] == ' ') i++;
        size_t start = i;
        while (i < m && s->clean[i] != ' ') i++;
        if (i == start) break;
        const uint32_t *tok = s->clean + start;
        size_t len = i - start;
        if (lowercase) {
            buf_reserve(&s->lower, &s->lower_cap, 3 * len);
            size_t l1 = lower_token(s->lower, tok, len);
            buf_reserve(&s->nfd, &s->nfd_cap, (size_t)UNI_NFD_MAX_LEN * l1 + 3);
            len = strip_accents(s->nfd, s->lower, l1);
            tok = s->nfd;
        }
        size_t w0 = 0;
        for (size_t j = 0; j < len; j++) {
            if (uni_bits(tok[j]) & UNI_PUNCT) {
                if (j > w0 && fn(ctx, tok + w0, j - w0)) return 1;
                if (fn(ctx, tok + j, 1)) return 1;
                w0 = j + 1;
            }
        }
        if (len > w0 && fn(ctx, tok + w0, len - w0)) return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ vocabulary */

struct Tokenizer {
    int n;              /* V */
    char **tok;         /* (V) pointers into pool, NUL-terminated */
    uint32_t *tok_bytes;/* (V) */
    char *pool;
    int32_t *table;     /* open addressing, -1 empty */
    size_t table_mask;
    int lowercase;
    int pad, unk, cls, sep, mask;
    char sha[65];
};

uint64_t wp_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) { h ^= (uint8_t)s[i]; h *= 1099511628211ull; }
    return h ^ (h >> 29);
}

static int lookup(const Tokenizer *t, const char *s, size_t n) {
    size_t h = (size_t)wp_hash(s, n) & t->table_mask;
    for (;;) {
        int32_t id = t->table[h];
        if (id < 0) return -1;
        if (t->tok_bytes[id] == n && memcmp(t->tok[id], s, n) == 0) return id;
        h = (h + 1) & t->table_mask;
    }
}

static void where(char *out, size_t out_bytes, const char *src, int index) {
    if (src) snprintf(out, out_bytes, "%s:%d", src, index + 1);
    else snprintf(out, out_bytes, "vocabulary token %d", index);
}

/* Builds a Tokenizer from n (pointer, length) tokens. src: file name for
 * errors ("file:line"), or NULL ("vocabulary token i"). */
static Tokenizer *build(const char *const *toks, const size_t *lens, int n, int lowercase,
                        const char *src, char *err, size_t err_bytes) {
    char at[600];
    if (n <= 0) {
        snprintf(err, err_bytes, "%s: empty vocabulary; expected one token per line (BERT vocab.txt)",
                 src ? src : "vocabulary");
        return NULL;
    }
    size_t pool_bytes = 0;
    uint32_t *tmp = NULL;
    size_t tmp_cap = 0;
    for (int i = 0; i < n; i++) {
        where(at, sizeof at, src, i);
        if (lens[i] == 0) {
            snprintf(err, err_bytes, "%s: empty token; remove the blank line or put a token on it", at);
            flip_free(tmp);
            return NULL;
        }
        if (lens[i] > 4096) {
            snprintf(err, err_bytes, "%s: token of %zu bytes is too long (max 4096); is this a vocab.txt?",
                     at, lens[i]);
            flip_free(tmp);
            return NULL;
        }
        buf_reserve(&tmp, &tmp_cap, lens[i]);
        if (wp_utf8_decode(tmp, toks[i], lens[i]) < 0) {
            snprintf(err, err_bytes, "%s: token is not valid UTF-8; re-save the vocabulary as UTF-8", at);
            flip_free(tmp);
            return NULL;
        }
        for (size_t j = 0; j < lens[i]; j++) {
            char c = toks[i][j];
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
                snprintf(err, err_bytes, "%s: token '%.*s' contains whitespace; a vocab.txt has one token per line",
                         at, (int)(lens[i] < 40 ? lens[i] : 40), toks[i]);
                flip_free(tmp);
                return NULL;
            }
        }
        pool_bytes += lens[i] + 1;
    }
    flip_free(tmp);

    Tokenizer *t = flip_calloc(1, sizeof *t, "tokenizer");
    t->n = n;
    t->lowercase = lowercase ? 1 : 0;
    t->tok = flip_calloc((size_t)n, sizeof(char *), "tokenizer ids");
    t->tok_bytes = flip_calloc((size_t)n, sizeof(uint32_t), "tokenizer ids");
    t->pool = flip_malloc(pool_bytes, "tokenizer pool");
    size_t cap = 16;
    while (cap < 2 * (size_t)n) cap *= 2;
    t->table = flip_malloc(flip_mul_size(cap, sizeof(int32_t), "tokenizer table"), "tokenizer table");
    memset(t->table, 0xFF, cap * sizeof(int32_t));
    t->table_mask = cap - 1;
    char *p = t->pool;
    for (int i = 0; i < n; i++) {
        memcpy(p, toks[i], lens[i]);
        p[lens[i]] = '\0';
        t->tok[i] = p;
        t->tok_bytes[i] = (uint32_t)lens[i];
        p += lens[i] + 1;
        int prev = lookup(t, t->tok[i], lens[i]);
        if (prev >= 0) {
            where(at, sizeof at, src, i);
            char first[600];
            where(first, sizeof first, src, prev);
            snprintf(err, err_bytes, "%s: duplicate token '%.*s' (first at %s); each token must appear once",
                     at, (int)(lens[i] < 40 ? lens[i] : 40), toks[i], first);
            tokenizer_free(t);
            return NULL;
        }
        size_t h = (size_t)wp_hash(t->tok[i], lens[i]) & t->table_mask;
        while (t->table[h] >= 0) h = (h + 1) & t->table_mask;
        t->table[h] = i;
    }
    static const char *const need[4] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]"};
    int *slot[4] = {&t->pad, &t->unk, &t->cls, &t->sep};
    for (int k = 0; k < 4; k++) {
        *slot[k] = lookup(t, need[k], strlen(need[k]));
        if (*slot[k] < 0) {
            snprintf(err, err_bytes, "%s: vocabulary has no %s token; a BERT vocab.txt needs [PAD] [UNK] [CLS] [SEP]",
                     src ? src : "vocabulary", need[k]);
            tokenizer_free(t);
            return NULL;
        }
    }
    t->mask = lookup(t, "[MASK]", 6);
    Sha256 h;
    sha256_init(&h);
    for (int i = 0; i < n; i++) {
        sha256_update(&h, t->tok[i], t->tok_bytes[i]);
        sha256_update(&h, "\n", 1);
    }
    uint8_t d[32];
    sha256_final(&h, d);
    sha256_hex(t->sha, d);
    return t;
}

Tokenizer *tokenizer_from_tokens(const char *const *tokens, int n, int lowercase, char *err,
                                 size_t err_bytes) {
    FLIP_CHECK(n == 0 || tokens, "tokenizer_from_tokens: tokens is NULL");
    size_t *lens = flip_calloc(n > 0 ? (size_t)n : 1, sizeof(size_t), "token lengths");
    for (int i = 0; i < n; i++) {
        FLIP_CHECK(tokens[i], "tokenizer_from_tokens: token %d is NULL", i);
        lens[i] = strlen(tokens[i]);
    }
    Tokenizer *t = build(tokens, lens, n, lowercase, NULL, err, err_bytes);
    flip_free(lens);
    return t;
}

Tokenizer *tokenizer_load(const char *vocab_path, int lowercase, char *err, size_t err_bytes) {
    FILE *f = fopen(vocab_path, "rb");
    if (!f) {
        snprintf(err, err_bytes, "%s: cannot open vocabulary: %s; pass a BERT vocab.txt path",
                 vocab_path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *data = flip_malloc(cap, "vocab file");
    for (;;) {
        if (n == cap) {
            char *bigger = flip_malloc(flip_mul_size(cap, 2, "vocab file"), "vocab file");
            memcpy(bigger, data, n);
            flip_free(data);
            data = bigger;
            cap *= 2;
        }
        size_t got = fread(data + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        snprintf(err, err_bytes, "%s: read error; check the file", vocab_path);
        flip_free(data);
        return NULL;
    }
    size_t n_lines = 0;
    for (size_t i = 0; i < n; i++) n_lines += data[i] == '\n';
    if (n > 0 && data[n - 1] != '\n') n_lines++;
    if (n_lines > (size_t)INT32_MAX / 2) {
        snprintf(err, err_bytes, "%s: %zu lines is too many for a vocabulary", vocab_path, n_lines);
        flip_free(data);
        return NULL;
    }
    const char **toks = flip_calloc(n_lines ? n_lines : 1, sizeof(char *), "vocab lines");
    size_t *lens = flip_calloc(n_lines ? n_lines : 1, sizeof(size_t), "vocab lines");
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || data[i] == '\n') {
            if (i == n && start == n) break;
            size_t len = i - start;
            if (len > 0 && data[start + len - 1] == '\r') len--;
            toks[k] = data + start;
            lens[k] = len;
            k++;
            start = i + 1;
        }
    }
    Tokenizer *t = build(toks, lens, (int)k, lowercase, vocab_path, err, err_bytes);
    flip_free(toks);
    flip_free(lens);
    flip_free(data);
    return t;
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    flip_free(t->tok);
    flip_free(t->tok_bytes);
    flip_free(t->pool);
    flip_free(t->table);
    flip_free(t);
}

int tokenizer_vocab_size(const Tokenizer *t) { return t->n; }
const char *tokenizer_token(const Tokenizer *t, int id) {
    return (id >= 0 && id < t->n) ? t->tok[id] : NULL;
}
int tokenizer_id(const Tokenizer *t, const char *tok) { return lookup(t, tok, strlen(tok)); }
int tokenizer_lowercase(const Tokenizer *t) { return t->lowercase; }
int tokenizer_pad_id(const Tokenizer *t) { return t->pad; }
int tokenizer_unk_id(const Tokenizer *t) { return t->unk; }
int tokenizer_cls_id(const Tokenizer *t) { return t->cls; }
int tokenizer_sep_id(const Tokenizer *t) { return t->sep; }
int tokenizer_mask_id(const Tokenizer *t) { return t->mask; }
void tokenizer_sha256(const Tokenizer *t, char hex[65]) { memcpy(hex, t->sha, 65); }

int tokenizer_save(const Tokenizer *t, const char *path, char *err, size_t err_bytes) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        snprintf(err, err_bytes, "%s: cannot write vocabulary: %s", path, strerror(errno));
        return -1;
    }
    int bad = 0;
    for (int i = 0; i < t->n && !bad; i++)
        bad = fwrite(t->tok[i], 1, t->tok_bytes[i], f) != t->tok_bytes[i] || fputc('\n', f) == EOF;
    if (fclose(f) != 0) bad = 1;
    if (bad) {
        snprintf(err, err_bytes, "%s: write error while saving the vocabulary (disk full?)", path);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------- encoding */

typedef struct {
    const Tokenizer *t;
    int32_t *ids;
    int max_ids;   /* ids written only below this */
    int n;         /* pieces produced */
    int stop_at;   /* stop once n >= stop_at (INT32_MAX: never) */
} Sink;

static void emit(Sink *k, int32_t id) {
    if (k->n < k->max_ids) k->ids[k->n] = id;
    k->n++;
}

/* WordPiece greedy longest-match-first of one word. */
static int wordpiece_word(void *ctx, const uint32_t *w, size_t m) {
    Sink *k = ctx;
    const Tokenizer *t = k->t;
    if (m > TOKENIZER_MAX_CHARS_PER_WORD) {
        emit(k, t->unk);
        return k->n >= k->stop_at;
    }
    char buf[2 + 4 * TOKENIZER_MAX_CHARS_PER_WORD];
    int off[TOKENIZER_MAX_CHARS_PER_WORD + 1];
    off[0] = 2;
    buf[0] = buf[1] = '#';
    for (size_t i = 0; i < m; i++) off[i + 1] = off[i] + wp_utf8_put(buf + off[i], w[i]);
    int n0 = k->n;
    size_t start = 0;
    while (start < m) {
        int id = -1;
        size_t end = m;
        for (; end > start; end--) {
            /* "##" + piece for continuations: the two bytes before off[start] */
            const char *s = start ? buf + off[start] - 2 : buf + off[0];
            size_t len = (size_t)(off[end] - off[start]) + (start ? 2 : 0);
            char save0 = 0, save1 = 0;
            if (start) { /* temporarily write "##" in front of the piece */
                save0 = buf[off[start] - 2];
                save1 = buf[off[start] - 1];
                buf[off[start] - 2] = '#';
                buf[off[start] - 1] = '#';
            }
            id = lookup(t, s, len);
            if (start) { buf[off[start] - 2] = save0; buf[off[start] - 1] = save1; }
            if (id >= 0) break;
        }
        if (id < 0) { /* unmatchable: the whole word is [UNK] */
            k->n = n0;
            emit(k, t->unk);
            return k->n >= k->stop_at;
        }
        emit(k, id);
        start = end;
    }
    return k->n >= k->stop_at;
}

/* Decodes (strictly) into a fresh buffer; NULL + *n = -1 if invalid. */
static uint32_t *decode(const char *utf8, size_t n_bytes, long *n) {
    uint32_t *cps = flip_malloc(flip_mul_size(n_bytes + 1, sizeof(uint32_t), "tokenizer input"),
                                "tokenizer input");
    *n = wp_utf8_decode(cps, utf8, n_bytes);
    if (*n < 0) {
        flip_free(cps);
        return NULL;
    }
    return cps;
}

static void run(const Tokenizer *t, const uint32_t *cps, size_t n, Sink *k) {
    WpScratch s = {0};
    wp_basic_tokenize(cps, n, t->lowercase, &s, wordpiece_word, k);
    wp_scratch_free(&s);
}

int tokenizer_tokenize(const Tokenizer *t, const char *utf8, size_t n_bytes, int32_t *ids,
                       int max_ids, int *n_ids) {
    FLIP_CHECK(t && (utf8 || n_bytes == 0) && (ids || max_ids <= 0) && n_ids,
               "tokenizer_tokenize: NULL argument");
    long n;
    uint32_t *cps = decode(utf8 ? utf8 : "", n_bytes, &n);
    if (!cps) return -1;
    int32_t dummy;
    Sink k = {t, ids ? ids : &dummy, max_ids > 0 ? max_ids : 0, 0, INT32_MAX};
    run(t, cps, (size_t)n, &k);
    flip_free(cps);
    *n_ids = k.n;
    return 0;
}

int tokenizer_encode(const Tokenizer *t, const char *utf8, size_t n_bytes, int32_t *ids, int T,
                     int *length) {
    FLIP_CHECK(t && (utf8 || n_bytes == 0) && ids && length, "tokenizer_encode: NULL argument");
    FLIP_CHECK(T >= 2, "tokenizer_encode: T = %d, need T >= 2 for [CLS] and [SEP]", T);
    long n_cps;
    uint32_t *cps = decode(utf8 ? utf8 : "", n_bytes, &n_cps);
    if (!cps) return -1;
    Sink k = {t, ids + 1, T - 2, 0, T - 2};
    if (T > 2) run(t, cps, (size_t)n_cps, &k);
    flip_free(cps);
    int n = k.n < T - 2 ? k.n : T - 2;
    ids[0] = t->cls;
    ids[n + 1] = t->sep;
    for (int i = n + 2; i < T; i++) ids[i] = t->pad;
    *length = n + 2;
    return 0;
}
