#!/bin/bash
# test_tokenizer_ref.sh — differential test: flip's C BERT tokenizer against a
# plain-Python transcription of HF transformers' BasicTokenizer +
# WordpieceTokenizer (bert_ref.py) on random Unicode text (accents, Greek
# final sigma, Hangul, CJK, controls, exotic whitespace, combining marks,
# astral code points, invalid UTF-8), both lowercase modes. Any mismatch fails.
set -euo pipefail
: "${FLIP_BUILD_DIR:?run through ctest}" "${FLIP_SOURCE_DIR:?run through ctest}"
prog="$FLIP_BUILD_DIR/tests/dataset_prog_tokenize"
[ -x "$prog" ] || { echo "missing $prog: build the tests first" >&2; exit 1; }
[ -x /usr/bin/python3 ] || { echo "/usr/bin/python3 missing: run launch/install-deps" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 "$FLIP_SOURCE_DIR/tests/dataset/bert_ref.py" "$prog" "$work" 5000 20261127
