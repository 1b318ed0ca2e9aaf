#!/usr/bin/env bash
# test_fuzz_shard.sh — ctest smoke run of the shard-validator fuzzer: builds
# tests/dataset/fuzz_shard.c with clang + ASan/UBSan/libFuzzer and fuzzes for
# FLIP_FUZZ_SECONDS (default 10). Fails on any crash attributed to flip's code
# (see fuzz_shard.sh for how crashes inside the system libhdf5 are classified).
set -u
src=${FLIP_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
work=$(mktemp -d /tmp/flip_test_fuzz_shard_XXXXXX)
bash "$src/tests/dataset/fuzz_shard.sh" "${FLIP_FUZZ_SECONDS:-10}" "$work"
rc=$?
if [ $rc = 0 ]; then
  rm -rf "$work"
else
  echo "test_fuzz_shard: artifacts kept in $work" >&2
fi
exit $rc
