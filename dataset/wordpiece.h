/* wordpiece.h — BERT-compatible WordPiece tokenizer and vocabulary learning.
 *
 * Encoding follows HF transformers' BertTokenizer (BasicTokenizer +
 * WordpieceTokenizer, itself google-research/bert tokenization.py) under
 * Python 3:
 *   1. clean: drop U+0000, U+FFFD and control characters (Unicode category
 *      C*, except \t \n \r); whitespace (\t \n \r, space, Zs, and the line /
 *      paragraph separators U+2028/2029 that Python's str.split() uses) -> ' '.
 *   2. spaces around CJK ideographs (the BERT code point ranges).
 *   3. split on whitespace; per word, if lowercase: Python str.lower() (with
 *      the Greek final-sigma rule) then NFD and drop Mn marks (accents).
 *   4. split on punctuation (ASCII 33-47, 58-64, 91-96, 123-126 and P*).
 *   5. WordPiece: greedy longest-match-first with "##" continuation pieces; a
 *      word of more than 100 code points, or one that cannot be covered, is a
 *      single [UNK].
 * The Unicode tables come from dataset/gen_unicode_tables.py (Python's
 * unicodedata), for the whole code space.
 *
 * Vocabulary learning (vocab_learn) is WordPiece training as in HF
 * tokenizers' WordPieceTrainer: words from steps 1-4, counted; specials
 * [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, then every character seen (sorted
 * by code point), then the "##" form of every character seen, then BPE merges
 * of the most frequent adjacent pair (frequency >= 2; ties broken by the byte
 * order of the left, then right piece) until vocab_size. Deterministic.
 *
 * Ownership: tokenizer_load / tokenizer_from_tokens / vocab_learn return a
 * Tokenizer the caller releases with tokenizer_free. A Tokenizer is read-only
 * after creation, so encode may run on several threads at once.
 *
 * Errors a user can cause (missing file, duplicate token, bad UTF-8 in the
 * vocab, missing special token) return NULL / -1 with one line in err naming
 * the file and line (or token index) and what to do. Programming errors
 * (T < 2, NULL pointers) are fatal via FLIP_CHECK.
 */
#ifndef FLIP_WORDPIECE_H
#define FLIP_WORDPIECE_H

#include <stddef.h>
#include <stdint.h>

#define TOKENIZER_MAX_CHARS_PER_WORD 100

typedef struct Tokenizer Tokenizer;

/* Reads a BERT vocab.txt (one token per line, id = line number - 1; a trailing
 * "\r" is dropped). NULL + err "path:line: ..." on a missing file, an empty
 * file, an empty token or one containing whitespace, invalid UTF-8, a
 * duplicate token, or missing [PAD]/[UNK]/[CLS]/[SEP]. [MASK] is optional. */
Tokenizer *tokenizer_load(const char *vocab_path, int lowercase, char *err, size_t err_bytes);
/* Same checks on an in-memory list (errors name the token index). */
Tokenizer *tokenizer_from_tokens(const char *const *tokens, int n, int lowercase, char *err,
                                 size_t err_bytes);
void tokenizer_free(Tokenizer *t);

int tokenizer_vocab_size(const Tokenizer *t);     /* V */
const char *tokenizer_token(const Tokenizer *t, int id); /* NULL if id out of range */
int tokenizer_id(const Tokenizer *t, const char *tok);   /* -1 if absent */
int tokenizer_lowercase(const Tokenizer *t);
int tokenizer_pad_id(const Tokenizer *t);
int tokenizer_unk_id(const Tokenizer *t);
int tokenizer_cls_id(const Tokenizer *t);
int tokenizer_sep_id(const Tokenizer *t);
int tokenizer_mask_id(const Tokenizer *t);        /* -1 if the vocab has no [MASK] */

/* SHA-256 (lowercase hex + NUL) of the vocab file content: "token\n" per id
 * in id order, i.e. exactly the bytes tokenizer_save writes. */
void tokenizer_sha256(const Tokenizer *t, char hex[65]);
/* Writes vocab.txt ("token\n" per id); 0, or -1 + one-line err. */
int tokenizer_save(const Tokenizer *t, const char *path, char *err, size_t err_bytes);

/* ids (T): [CLS] pieces... [SEP] [PAD]...; pieces are truncated so [SEP]
 * always fits; *length = number of non-[PAD] entries (2..T). T >= 2.
 * Returns 0, or -1 if utf8[0..n_bytes) is not valid UTF-8 (ids and *length
 * untouched). NUL bytes inside the range are valid input (and dropped). */
int tokenizer_encode(const Tokenizer *t, const char *utf8, size_t n_bytes, int32_t *ids, int T,
                     int *length);
/* The WordPiece ids without [CLS]/[SEP]/padding: writes at most max_ids ids,
 * *n_ids = the full count (may exceed max_ids). Returns 0, or -1 on invalid
 * UTF-8 (nothing written). */
int tokenizer_tokenize(const Tokenizer *t, const char *utf8, size_t n_bytes, int32_t *ids,
                       int max_ids, int *n_ids);

/* Learns a vocabulary of at most vocab_size tokens from texts (each a
 * NUL-terminated UTF-8 string; invalid UTF-8 texts are skipped and counted in
 * a warning). NULL + one-line err if vocab_size is smaller than the specials
 * plus the characters seen (2 per distinct character + 5), or if no text
 * holds a word. The result may be smaller than vocab_size when no pair
 * occurs twice any more. */
Tokenizer *vocab_learn(const char *const *texts, size_t n_texts, int vocab_size, int lowercase,
                       char *err, size_t err_bytes);

#endif
