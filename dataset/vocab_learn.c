/* vocab_learn.c — WordPiece vocabulary learning (BPE merges with "##"
 * continuation pieces, as HF tokenizers' WordPieceTrainer).
 *
 * 1. Every text goes through the BERT basic tokenizer (wordpiece.h steps
 *    1-4); distinct words are counted. Words longer than 100 code points are
 *    skipped (the encoder maps them to [UNK] anyway).
 * 2. Vocabulary: [PAD] [UNK] [CLS] [SEP] [MASK], every character seen (by
 *    code point), then "##" + every character seen. A word is the sequence
 *    c0, ##c1, ##c2, ...
 * 3. Repeatedly merge the most frequent adjacent pair (a, b) (frequency =
 *    sum of the counts of the words holding it, each occurrence counted) into
 *    a + b without b's "##"; ties go to the byte-wise smaller a, then b. Stop
 *    at vocab_size tokens or when the best pair occurs fewer than 2 times.
 *    A merge whose string already exists reuses that token.
 *
 * Incremental bookkeeping (cost ~ the symbols of the words a merge touches):
 * pair counts in a hash map; for each pair the list of words that held it
 * (may hold stale entries: checked on use); a max-heap with lazy deletion.
 * Only pairs containing the new token can gain count, so only they are
 * (re)pushed; a popped entry whose count is stale is re-pushed with its
 * current count. Everything is in deterministic order.
 */
#include "wordpiece.h"
#include "wordpiece_basic.h"

#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_FREQUENCY 2

/* ---- growable arrays */
typedef struct { int32_t *v; size_t n, cap; } I32Vec;

static void i32_push(I32Vec *a, int32_t x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 4;
        int32_t *v = flip_malloc(flip_mul_size(cap, sizeof(int32_t), "vocab_learn"), "vocab_learn");
        if (a->n) memcpy(v, a->v, a->n * sizeof(int32_t));
        flip_free(a->v);
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
}

static void *grow(void *old, size_t old_count, size_t new_count, size_t size) {
    void *p = flip_malloc(flip_mul_size(new_count, size, "vocab_learn"), "vocab_learn");
    if (old_count) memcpy(p, old, old_count * size);
    flip_free(old);
    return p;
}

/* ---- string set: token strings -> id (the vocabulary being built) */
typedef struct {
    char **s;
    size_t *len;
    size_t n, cap;
    int32_t *table;
    size_t mask;
} StrSet;

static int32_t strset_find(const StrSet *t, const char *s, size_t n) {
    size_t h = (size_t)wp_hash(s, n) & t->mask;
    for (;; h = (h + 1) & t->mask) {
        int32_t id = t->table[h];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->s[id], s, n) == 0) return id;
    }
}

static void strset_rehash(StrSet *t, size_t cap) {
    flip_free(t->table);
    t->table = flip_malloc(flip_mul_size(cap, sizeof(int32_t), "vocab_learn"), "vocab_learn");
    memset(t->table, 0xFF, cap * sizeof(int32_t));
    t->mask = cap - 1;
    for (size_t i = 0; i < t->n; i++) {
        size_t h = (size_t)wp_hash(t->s[i], t->len[i]) & t->mask;
        while (t->table[h] >= 0) h = (h + 1) & t->mask;
        t->table[h] = (int32_t)i;
    }
}

/* returns the id of s (added if absent) */
static int32_t strset_add(StrSet *t, const char *s, size_t n) {
    if (!t->table) strset_rehash(t, 64);
    int32_t id = strset_find(t, s, n);
    if (id >= 0) return id;
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        t->s = grow(t->s, t->n, cap, sizeof(char *));
        t->len = grow(t->len, t->n, cap, sizeof(size_t));
        t->cap = cap;
    }
    char *c = flip_malloc(n + 1, "vocab_learn token");
    memcpy(c, s, n);
    c[n] = '\0';
    t->s[t->n] = c;
    t->len[t->n] = n;
    t->n++;
    if (2 * t->n > t->mask + 1) strset_rehash(t, 2 * (t->mask + 1));
    else {
        size_t h = (size_t)wp_hash(s, n) & t->mask;
        while (t->table[h] >= 0) h = (h + 1) & t->mask;
        t->table[h] = (int32_t)(t->n - 1);
    }
    return (int32_t)(t->n - 1);
}

static void strset_free(StrSet *t) {
    for (size_t i = 0; i < t->n; i++) flip_free(t->s[i]);
    flip_free(t->s);
    flip_free(t->len);
    flip_free(t->table);
}

/* ---- word counting: distinct words (UTF-8 bytes) with counts, via StrSet */
typedef struct {
    StrSet words;
    int64_t *count; /* parallel to words */
    size_t count_cap;
} WordCount;

static int count_word(void *ctx, const uint32_t *w, size_t m) {
    WordCount *wc = ctx;
    if (m > TOKENIZER_MAX_CHARS_PER_WORD) return 0;
    char buf[4 * TOKENIZER_MAX_CHARS_PER_WORD];
    size_t n = 0;
    for (size_t i = 0; i < m; i++) n += (size_t)wp_utf8_put(buf + n, w[i]);
    int32_t id = strset_add(&wc->words, buf, n);
    if ((size_t)id >= wc->count_cap) {
        size_t cap = wc->count_cap ? 2 * wc->count_cap : 64;
        wc->count = grow(wc->count, wc->count_cap, cap, sizeof(int64_t));
        memset(wc->count + wc->count_cap, 0, (cap - wc->count_cap) * sizeof(int64_t));
        wc->count_cap = cap;
    }
    wc->count[id]++;
    return 0;
}

/* ---- pairs */
typedef struct {
    int32_t a, b;
    int64_t count;
    I32Vec words;   /* words that held the pair (maybe stale, maybe repeated) */
    int touched;    /* merge iteration that last raised it */
} Pair;

typedef struct {
    Pair *p;
    size_t n, cap;
    int32_t *table; /* hash (a, b) -> pair index */
    size_t mask;
} PairMap;

static size_t pair_hash(int32_t a, int32_t b) {
    uint64_t x = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
    return (size_t)x;
}

static void pairmap_rehash(PairMap *m, size_t cap) {
    flip_free(m->table);
    m->table = flip_malloc(flip_mul_size(cap, sizeof(int32_t), "vocab_learn"), "vocab_learn");
    memset(m->table, 0xFF, cap * sizeof(int32_t));
    m->mask = cap - 1;
    for (size_t i = 0; i < m->n; i++) {
        size_t h = pair_hash(m->p[i].a, m->p[i].b) & m->mask;
        while (m->table[h] >= 0) h = (h + 1) & m->mask;
        m->table[h] = (int32_t)i;
    }
}

static int32_t pair_get(PairMap *m, int32_t a, int32_t b) {
    if (!m->table) pairmap_rehash(m, 1024);
    size_t h = pair_hash(a, b) & m->mask;
    for (;; h = (h + 1) & m->mask) {
        int32_t i = m->table[h];
        if (i < 0) break;
        if (m->p[i].a == a && m->p[i].b == b) return i;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 1024;
        m->p = grow(m->p, m->n, cap, sizeof(Pair));
        m->cap = cap;
    }
    Pair *p = &m->p[m->n];
    memset(p, 0, sizeof *p);
    p->a = a;
    p->b = b;
    p->touched = -1;
    m->table[h] = (int32_t)m->n;
    m->n++;
    if (2 * m->n > m->mask + 1) pairmap_rehash(m, 2 * (m->mask + 1));
    return (int32_t)(m->n - 1);
}

/* ---- max-heap of (count, pair) */
typedef struct { int64_t count; int32_t pair; } HeapItem;
typedef struct {
    HeapItem *v;
    size_t n, cap;
    const PairMap *pm;
    const StrSet *vocab;
} Heap;

/* 1 if x ranks above y: higher count, then smaller a string, then smaller b */
static int heap_above(const Heap *h, HeapItem x, HeapItem y) {
    if (x.count != y.count) return x.count > y.count;
    const Pair *px = &h->pm->p[x.pair], *py = &h->pm->p[y.pair];
    int c = strcmp(h->vocab->s[px->a], h->vocab->s[py->a]);
    if (c) return c < 0;
    return strcmp(h->vocab->s[px->b], h->vocab->s[py->b]) < 0;
}

static void heap_push(Heap *h, int64_t count, int32_t pair) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 1024;
        h->v = grow(h->v, h->n, cap, sizeof(HeapItem));
        h->cap = cap;
    }
    size_t i = h->n++;
    h->v[i] = (HeapItem){count, pair};
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!heap_above(h, h->v[i], h->v[up])) break;
        HeapItem t = h->v[i]; h->v[i] = h->v[up]; h->v[up] = t;
        i = up;
    }
}

static HeapItem heap_pop(Heap *h) {
    HeapItem top = h->v[0];
    h->v[0] = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        if (l < h->n && heap_above(h, h->v[l], h->v[best])) best = l;
        if (r < h->n && heap_above(h, h->v[r], h->v[best])) best = r;
        if (best == i) break;
        HeapItem t = h->v[i]; h->v[i] = h->v[best]; h->v[best] = t;
        i = best;
    }
    return top;
}

static int cmp_u32(const void *x, const void *y) {
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

Tokenizer *vocab_learn(const char *const *texts, size_t n_texts, int vocab_size, int lowercase,
                       char *err, size_t err_bytes) {
    FLIP_CHECK(texts || n_texts == 0, "vocab_learn: texts is NULL");
    /* 1. count words */
    WordCount wc = {0};
    WpScratch scratch = {0};
    uint32_t *cps = NULL;
    size_t cps_cap = 0, n_invalid = 0;
    for (size_t i = 0; i < n_texts; i++) {
        FLIP_CHECK(texts[i], "vocab_learn: text %zu is NULL", i);
        size_t nb = strlen(texts[i]);
        if (nb + 1 > cps_cap) {
            cps_cap = 2 * (nb + 1);
            flip_free(cps);
            cps = flip_malloc(flip_mul_size(cps_cap, sizeof(uint32_t), "vocab_learn"), "vocab_learn");
        }
        long n = wp_utf8_decode(cps, texts[i], nb);
        if (n < 0) { n_invalid++; continue; }
        wp_basic_tokenize(cps, (size_t)n, lowercase, &scratch, count_word, &wc);
    }
    flip_free(cps);
    wp_scratch_free(&scratch);
    if (n_invalid) flip_warn("vocab_learn: skipped %zu of %zu texts that are not valid UTF-8", n_invalid, n_texts);
    size_t n_words = wc.words.n;
    if (n_words == 0) {
        snprintf(err, err_bytes, "vocab_learn: none of the %zu texts holds a word; check the captions", n_texts);
        strset_free(&wc.words);
        flip_free(wc.count);
        return NULL;
    }

    /* 2. alphabet */
    size_t n_chars_total = 0;
    for (size_t w = 0; w < n_words; w++) n_chars_total += wc.words.len[w];
    uint32_t *alpha = flip_malloc(flip_mul_size(n_chars_total, sizeof(uint32_t), "vocab_learn"), "vocab_learn");
    size_t n_alpha = 0;
    for (size_t w = 0; w < n_words; w++) {
        long k = wp_utf8_decode(alpha + n_alpha, wc.words.s[w], wc.words.len[w]);
        FLIP_CHECK(k > 0, "vocab_learn: internal UTF-8 error");
        n_alpha += (size_t)k;
    }
    qsort(alpha, n_alpha, sizeof(uint32_t), cmp_u32);
    size_t u = 0;
    for (size_t i = 0; i < n_alpha; i++)
        if (u == 0 || alpha[u - 1] != alpha[i]) alpha[u++] = alpha[i];
    n_alpha = u;
    static const char *const specials[5] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    if (vocab_size < 5 || (size_t)vocab_size < 5 + 2 * n_alpha) {
        snprintf(err, err_bytes,
                 "vocab_learn: vocab_size %d is smaller than the %zu specials and characters (5 + 2 x %zu "
                 "distinct characters); raise the vocabulary size",
                 vocab_size, 5 + 2 * n_alpha, n_alpha);
        flip_free(alpha);
        strset_free(&wc.words);
        flip_free(wc.count);
        return NULL;
    }
    StrSet vocab = {0};
    for (int i = 0; i < 5; i++) strset_add(&vocab, specials[i], strlen(specials[i]));
    char piece[8 + 4 * TOKENIZER_MAX_CHARS_PER_WORD * 2];
    for (size_t i = 0; i < n_alpha; i++) {
        int k = wp_utf8_put(piece, alpha[i]);
        strset_add(&vocab, piece, (size_t)k);
    }
    piece[0] = piece[1] = '#';
    for (size_t i = 0; i < n_alpha; i++) {
        int k = wp_utf8_put(piece + 2, alpha[i]);
        strset_add(&vocab, piece, (size_t)k + 2);
    }
    flip_free(alpha);

    /* words as symbol sequences: sym[off[w] .. off[w] + len[w]) */
    size_t *off = flip_malloc(flip_mul_size(n_words, sizeof(size_t), "vocab_learn"), "vocab_learn");
    int32_t *len = flip_malloc(flip_mul_size(n_words, sizeof(int32_t), "vocab_learn"), "vocab_learn");
    int32_t *sym = flip_malloc(flip_mul_size(n_chars_total, sizeof(int32_t), "vocab_learn"), "vocab_learn");
    int *stamp = flip_malloc(flip_mul_size(n_words, sizeof(int), "vocab_learn"), "vocab_learn");
    uint32_t wcp[TOKENIZER_MAX_CHARS_PER_WORD];
    size_t pos = 0;
    for (size_t w = 0; w < n_words; w++) {
        long m = wp_utf8_decode(wcp, wc.words.s[w], wc.words.len[w]);
        off[w] = pos;
        len[w] = (int32_t)m;
        stamp[w] = -1;
        for (long i = 0; i < m; i++) {
            int k = 0;
            if (i > 0) { piece[0] = piece[1] = '#'; k = 2; }
            k += wp_utf8_put(piece + k, wcp[i]);
            int32_t id = strset_find(&vocab, piece, (size_t)k);
            FLIP_CHECK(id >= 0, "vocab_learn: internal error: character missing from the alphabet");
            sym[pos++] = id;
        }
    }

    /* 3. pair counts and merges */
    PairMap pm = {0};
    for (size_t w = 0; w < n_words; w++) {
        int32_t *s = sym + off[w];
        for (int32_t i = 0; i + 1 < len[w]; i++) {
            int32_t pi = pair_get(&pm, s[i], s[i + 1]);
            pm.p[pi].count += wc.count[w];
            I32Vec *lst = &pm.p[pi].words;
            if (lst->n == 0 || lst->v[lst->n - 1] != (int32_t)w) i32_push(lst, (int32_t)w);
        }
    }
    Heap heap = {0};
    heap.pm = &pm;
    heap.vocab = &vocab;
    for (size_t i = 0; i < pm.n; i++)
        if (pm.p[i].count >= MIN_FREQUENCY) heap_push(&heap, pm.p[i].count, (int32_t)i);

    I32Vec touched = {0};
    int iter = 0;
    while (vocab.n < (size_t)vocab_size && heap.n > 0) {
        HeapItem top = heap_pop(&heap);
        int64_t cur = pm.p[top.pair].count;
        if (cur != top.count) {
            if (cur >= MIN_FREQUENCY) heap_push(&heap, cur, top.pair);
            continue;
        }
        if (cur < MIN_FREQUENCY) break;
        int32_t a = pm.p[top.pair].a, b = pm.p[top.pair].b;
        size_t la = vocab.len[a], lb = vocab.len[b] - 2; /* b always starts with "##" */
        char *merged = flip_malloc(la + lb + 1, "vocab_learn");
        memcpy(merged, vocab.s[a], la);
        memcpy(merged + la, vocab.s[b] + 2, lb);
        int32_t nt = strset_add(&vocab, merged, la + lb);
        flip_free(merged);
        touched.n = 0;
        /* walk the words that held (a, b); the list does not grow here
         * (new pairs contain nt, which is neither a nor b) */
        for (size_t q = 0; q < pm.p[top.pair].words.n; q++) {
            int32_t w = pm.p[top.pair].words.v[q]; /* re-read: pm.p may move */
            if (stamp[w] == iter) continue;
            stamp[w] = iter;
            int32_t *s = sym + off[w];
            int32_t m = len[w], has = 0;
            for (int32_t i = 0; i + 1 < m && !has; i++) has = s[i] == a && s[i + 1] == b;
            if (!has) continue;
            int64_t c = wc.count[w];
            for (int32_t i = 0; i + 1 < m; i++) pm.p[pair_get(&pm, s[i], s[i + 1])].count -= c;
            int32_t k = 0;
            for (int32_t i = 0; i < m; i++) {
                if (i + 1 < m && s[i] == a && s[i + 1] == b) { s[k++] = nt; i++; }
                else s[k++] = s[i];
            }
            len[w] = m = k;
            for (int32_t i = 0; i + 1 < m; i++) {
                int32_t pi = pair_get(&pm, s[i], s[i + 1]);
                Pair *p = &pm.p[pi];
                p->count += c;
                if (p->a == nt || p->b == nt) {
                    if (p->words.n == 0 || p->words.v[p->words.n - 1] != w) i32_push(&p->words, w);
                    if (p->touched != iter) { p->touched = iter; i32_push(&touched, pi); }
                }
            }
        }
        for (size_t q = 0; q < touched.n; q++) {
            Pair *p = &pm.p[touched.v[q]];
            if (p->count >= MIN_FREQUENCY) heap_push(&heap, p->count, touched.v[q]);
        }
        iter++;
    }

    Tokenizer *t = tokenizer_from_tokens((const char *const *)vocab.s, (int)vocab.n, lowercase, err, err_bytes);

    flip_free(touched.v);
    flip_free(heap.v);
    for (size_t i = 0; i < pm.n; i++) flip_free(pm.p[i].words.v);
    flip_free(pm.p);
    flip_free(pm.table);
    flip_free(off);
    flip_free(len);
    flip_free(sym);
    flip_free(stamp);
    strset_free(&vocab);
    strset_free(&wc.words);
    flip_free(wc.count);
    return t;
}
