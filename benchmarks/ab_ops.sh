#!/usr/bin/env bash
# benchmarks/ab_ops.sh — A/B of two matmul implementation choices on bench_ops's
# rows, robust to a noisy shared machine: ROUNDS interleaved runs of each
# (A, B, A, B, ...), then per row the minimum fwd / bwd ms of each side and the
# change from A to B.
#
# usage: benchmarks/ab_ops.sh [--build DIR] [--rounds N] A B [bench_ops args...]
#   A, B: --matmul-impl values (auto, gemm, brgemm); default --rounds 5
#   bench_ops args default to: --seconds 0.3 --no-blas
# example (the fc2 figures of prefer_gemm in core/dnnl_util.c):
#   OMP_NUM_THREADS=2 benchmarks/ab_ops.sh --rounds 3 gemm auto
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=$src/build rounds=5
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=${2:?--build needs a folder}; shift ;;
    --rounds) rounds=${2:?--rounds needs a count}; shift ;;
    *) break ;;
  esac
  shift
done
case $rounds in ''|*[!0-9]*) rounds=0 ;; *) rounds=$((10#$rounds)) ;; esac
[ "$rounds" -ge 1 ] || { echo "ab_ops.sh: --rounds must be a whole number >= 1" >&2; exit 2; }
[ $# -ge 2 ] || { echo "usage: benchmarks/ab_ops.sh [--build DIR] [--rounds N] A B [bench_ops args...]" >&2; exit 2; }
a=$1 b=$2
shift 2
[ $# -gt 0 ] || set -- --seconds 0.3 --no-blas
[ -x "$build/bench_ops" ] || { echo "ab_ops.sh: $build/bench_ops missing: build the project first (cmake --build $build)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for ((i = 0; i < rounds; i++)); do
  # data rows only: no '#' comments, no header
  "$build/bench_ops" "$@" --matmul-impl "$a" | grep -v -e '^#' -e '^preset' >> "$tmp/a.txt"
  "$build/bench_ops" "$@" --matmul-impl "$b" | grep -v -e '^#' -e '^preset' >> "$tmp/b.txt"
done
# a row: preset mask op shape words..., then fwd ms, GFLOP/s, bwd ms, GFLOP/s and 3 peak columns
awk -v A="$a" -v B="$b" '
  { key = $1; for (i = 2; i <= NF - 7; i++) key = key " " $i
    side = FILENAME ~ /\/b\.txt$/ ? "B" : "A"; f = $(NF - 6) + 0; w = $(NF - 4) + 0
    if (!(key in seen)) { seen[key] = 1; order[++cnt] = key }
    if (!((side, key) in fmin) || f < fmin[side, key]) fmin[side, key] = f
    if (!((side, key) in bmin) || w < bmin[side, key]) bmin[side, key] = w }
  END {
    printf "# minimum over the rounds, ms: %s -> %s\n", A, B
    for (i = 1; i <= cnt; i++) { k = order[i]
      printf "%-46s fwd %9.3f -> %9.3f (%+6.1f%%)  bwd %9.3f -> %9.3f (%+6.1f%%)\n", k,
        fmin["A", k], fmin["B", k], 100 * (fmin["B", k] / fmin["A", k] - 1),
        bmin["A", k], bmin["B", k], 100 * (bmin["B", k] / bmin["A", k] - 1) } }
' "$tmp/a.txt" "$tmp/b.txt"
