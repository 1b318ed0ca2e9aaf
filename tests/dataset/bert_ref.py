#!/usr/bin/python3
"""bert_ref.py — reference for tests/dataset/test_tokenizer_ref.sh: the BERT
tokenizer as HF transformers' BasicTokenizer + WordpieceTokenizer (which is
google-research/bert tokenization.py with C* as control), transcribed to plain
Python 3, plus a random-text generator. Compares flip's C tokenizer
(tests/dataset_prog_tokenize) with it on random Unicode text.

usage: bert_ref.py <prog_tokenize> <workdir> <n_texts> <seed>
Exit code 0 iff every text gives the same ids (both lowercase modes)."""
import random
import struct
import subprocess
import sys
import unicodedata


def _is_whitespace(c):
    return c in " \t\n\r" or unicodedata.category(c) == "Zs"


def _is_control(c):
    if c in "\t\n\r":
        return False
    return unicodedata.category(c).startswith("C")


def _is_punctuation(c):
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(c).startswith("P")


def _is_chinese_char(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def whitespace_tokenize(text):
    text = text.strip()
    return text.split() if text else []


def basic_tokenize(text, lower):
    out = []
    for c in text:
        cp = ord(c)
        if cp == 0 or cp == 0xFFFD or _is_control(c):
            continue
        out.append(" " if _is_whitespace(c) else c)
    text = "".join(out)
    out = []
    for c in text:
        if _is_chinese_char(ord(c)):
            out += [" ", c, " "]
        else:
            out.append(c)
    text = "".join(out)
    split_tokens = []
    for token in whitespace_tokenize(text):
        if lower:
            token = token.lower()
            token = "".join(c for c in unicodedata.normalize("NFD", token)
                            if unicodedata.category(c) != "Mn")
        words, new = [], True
        for c in token:
            if _is_punctuation(c):
                words.append([c])
                new = True
            else:
                if new:
                    words.append([])
                new = False
                words[-1].append(c)
        split_tokens += ["".join(w) for w in words]
    return whitespace_tokenize(" ".join(split_tokens))


def wordpiece(token, vocab, unk="[UNK]", max_chars=100):
    chars = list(token)
    if len(chars) > max_chars:
        return [unk]
    start, sub = 0, []
    while start < len(chars):
        end, cur = len(chars), None
        while start < end:
            s = "".join(chars[start:end])
            if start > 0:
                s = "##" + s
            if s in vocab:
                cur = s
                break
            end -= 1
        if cur is None:
            return [unk]
        sub.append(cur)
        start = end
    return sub


def encode(text, vocab, lower):
    ids = []
    for tok in basic_tokenize(text, lower):
        ids += [vocab[p] for p in wordpiece(tok, vocab)]
    return ids


POOLS = [
    "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789",
    " \t\n\r", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    "àáâãäåæçèéêëìíîïñòóöøùúûüýÿÀÉÎÕÜŸĀăĄćČďĒğĪıİŁńŒšŢŨŴŽǅǍǗȘȚ",
    "ΑΒΓΔΣσςΩαβγδωάέήίόύώΐΰϊϋΆΈΉΊΌΎΏ", "АБВГДЕЁЖЗИЙКЛабвгдеёжзийкл", "中文字漢語日本語你好世界豈更",
    "한국어안녕하세요", "ひらがなカタカナ", "\u0300\u0301\u0302\u0308\u0327\u0345\u05b0\u0591",
    "\u00a0\u2000\u2003\u3000\u2028\u2029\u0085\u000b\u000c\u001c", "\u0000\u0001\u007f\u200b\u200d\ufeff\ufffd\u00ad",
    "\u2014\u2018\u2019\u201c\u201d\u00bf\u00a1\u00b7\u3001\u3002\uff01\uff0c", "😀🎉🚀𝔘𝕏𠀀𪜀",
    "\u1e9e\u0130\u212a\u2126\u1f88\u1fbc\u01c4\u03f4",
]


def random_text(rng):
    n = rng.randint(0, 40)
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.85:
            pool = rng.choice(POOLS)
            out.append(rng.choice(pool))
        elif r < 0.95:
            out.append(chr(rng.randint(0x80, 0xFFFF)))
        else:
            out.append(chr(rng.randint(0x10000, 0x10FFFF)))
    s = "".join(out)
    # surrogates cannot be encoded: replace them
    return "".join(c if not 0xD800 <= ord(c) <= 0xDFFF else "x" for c in s)


def make_vocab(texts, rng):
    toks = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    seen = set(toks)
    words = set()
    for t in texts:
        words.update(basic_tokenize(t, True))
        words.update(basic_tokenize(t, False))
    for w in sorted(words):
        for _ in range(3):
            i = rng.randint(0, len(w) - 1)
            j = rng.randint(i + 1, len(w))
            piece = w[i:j]
            if i > 0:
                piece = "##" + piece
            if rng.random() < 0.9 and piece not in seen and not any(c.isspace() for c in piece):
                seen.add(piece)
                toks.append(piece)
    return toks


def main():
    prog, work, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    texts = [random_text(rng) for _ in range(n)]
    texts += ["Héllo Wörld", "don't!", "ΟΔΟΣ. ΣΑΣ Σ aΣ ΑΣ́ Σ.Σ", "İstanbul ǅemal", "a" * 100, "b" * 101,
              "\u212b\u0041\u030a\u1e9b\u0323 \u0061\u0323\u0302 \u0071\u0307\u0323",
              "\u1d165\u1d16d", "\U0001D165\U0001D16D\u0301\U0001D165"]
    vocab_list = make_vocab(texts, rng)
    vocab = {t: i for i, t in enumerate(vocab_list)}
    with open(work + "/vocab.txt", "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in vocab_list))
    blobs = [t.encode("utf-8") for t in texts]
    bad = [b"\xff", b"ab\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"ok\x80"]
    blobs += bad
    with open(work + "/texts.bin", "wb") as f:
        for b in blobs:
            f.write(struct.pack("<I", len(b)) + b)
    n_fail = 0
    for lower in (1, 0):
        res = subprocess.run([prog, work + "/vocab.txt", str(lower), work + "/texts.bin"],
                             capture_output=True)
        if res.returncode != 0:
            print("prog_tokenize failed:", res.stderr.decode(errors="replace"))
            return 1
        lines = res.stdout.decode().split("\n")[:-1]
        if len(lines) != len(blobs):
            print("line count %d != %d" % (len(lines), len(blobs)))
            return 1
        for i, b in enumerate(blobs):
            try:
                text = b.decode("utf-8")
                want = " ".join(str(x) for x in encode(text, vocab, lower))
            except UnicodeDecodeError:
                want = "INVALID"
            if lines[i] != want:
                n_fail += 1
                if n_fail <= 10:
                    print("MISMATCH lower=%d text=%r\n  C:  %s\n  py: %s" % (lower, b, lines[i], want))
    print("%d texts x 2 modes, %d mismatches, vocab %d" % (len(blobs), n_fail, len(vocab_list)))
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
