#!/bin/bash
# test_fuzz_tokenizer.sh — builds tests/dataset/fuzz_tokenizer.c with clang
# -fsanitize=fuzzer,address,undefined and runs it for a bounded time
# (FLIP_FUZZ_SECONDS, default 15) from a small seed corpus. Any crash,
# sanitizer report or invariant violation fails the test (libFuzzer exits
# non-zero and leaves the crashing input in the work folder, printed below).
set -euo pipefail
: "${FLIP_BUILD_DIR:?run through ctest}" "${FLIP_SOURCE_DIR:?run through ctest}"
command -v clang >/dev/null || { echo "clang not found: run launch/install-deps" >&2; exit 1; }
src="$FLIP_SOURCE_DIR"
out="$FLIP_BUILD_DIR/fuzz-tokenizer"
mkdir -p "$out/corpus"
clang -std=c11 -g -O1 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -I"$src/core" -I"$src/dataset" \
  "$src/tests/dataset/fuzz_tokenizer.c" "$src/dataset/wordpiece.c" "$src/dataset/vocab_learn.c" \
  "$src/dataset/sha256.c" "$src/core/common.c" -o "$out/fuzz_tokenizer"
# seeds: byte 0 = T/case selector, then text
printf '\x05Hello W\xc3\xb6rld, don'"'"'t!' > "$out/corpus/seed1"
printf '\x45\xce\x9f\xce\x94\xce\x9f\xce\xa3 \xe4\xb8\xad\xe6\x96\x87 unaffable\n12 ab\nab' > "$out/corpus/seed2"
printf '\x01\xed\xa0\x80\xc3' > "$out/corpus/seed3"
printf '\x3f[PAD]\n[UNK]\n[CLS]\n[SEP]\nab\nab' > "$out/corpus/seed4"
cd "$out"
rm -f crash-* leak-* timeout-* oom-*
set +e
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
  ./fuzz_tokenizer -max_total_time="${FLIP_FUZZ_SECONDS:-15}" -max_len=2048 -timeout=10 \
  -rss_limit_mb=1024 -print_final_stats=1 corpus > fuzz.log 2>&1
rc=$?
set -e
tail -n 40 fuzz.log
if [ "$rc" -ne 0 ]; then
  echo "fuzz_tokenizer FAILED (exit $rc); crashing inputs:" >&2
  for f in "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-*; do
    [ -e "$f" ] && echo "  $f" >&2
  done
  exit 1
fi
echo "fuzz_tokenizer: no crash in ${FLIP_FUZZ_SECONDS:-15} s"
