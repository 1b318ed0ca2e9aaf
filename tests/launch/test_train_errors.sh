#!/usr/bin/env bash
# test_train_errors.sh — user errors of flip-train / flip-eval give exactly one
# line on stderr naming the flag or file, and exit 2 (bad flags) or 1 (bad
# data, checkpoint, too many non-finite steps), also under mpirun with 2 ranks
# (only rank 0 prints, every rank exits); a corrupt sample ends the job (or is
# skipped with --skip-bad 1).
set -u
. "$(dirname "$0")/../lib.sh"
mkdir -p "$tmp/data"
"$B/tests/launch_prog_make_shards" "$tmp/data" 1 40 16 3 8 >/dev/null || { echo "FAIL: making shards" >&2; exit 1; }
base=(--train-data "$tmp/data" --global-batch-size 8 --train-samples 16 --peak-gflops 10 --logs "$tmp/logs")

# expect NP CODE PATTERN PROG args... : exit code CODE, one stderr line matching PATTERN
expect() {
  local np=$1 code=$2 pat=$3 prog=$4; shift 4
  if [ "$np" = 1 ]; then # a plain process (MPI singleton), as a user runs it
    timeout 60 "$B/$prog" "$@" >"$tmp/out" 2>"$tmp/err"
  else
    timeout 60 "$MPIEXEC" -np "$np" --oversubscribe -x OMP_NUM_THREADS "$B/$prog" "$@" >"$tmp/out" 2>"$tmp/err"
  fi
  local rc=$?
  # our lines (mpirun adds its own banner when a rank exits non-zero)
  grep -E '^(flip-|\[rank|[a-z_]+\.c:)' "$tmp/err" > "$tmp/err1"
  local lines; lines=$(wc -l < "$tmp/err1")
  if [ "$rc" = "$code" ] && [ "$lines" = 1 ] && grep -q -- "$pat" "$tmp/err1" && [ ! -s "$tmp/out" ]; then
    echo "ok    np $np exit $rc: $(cat "$tmp/err1")"
  else
    echo "FAIL  np $np $prog $*: exit $rc (want $code), $lines lines (want 1 matching '$pat'):" >&2
    cat "$tmp/err" "$tmp/out" >&2
    fail=1
  fi
}
expect 1 2 "flip-train: --lr: expected a number, got 'abc'" flip-train "${base[@]}" --lr abc
expect 2 2 "flip-train: --lr: expected a number" flip-train "${base[@]}" --lr abc
expect 1 2 "flip-train: --beta2: 1.5 is out of range" flip-train "${base[@]}" --beta2 1.5
expect 1 2 "flip-train: --learning-rate: unknown flag" flip-train "${base[@]}" --learning-rate 1
expect 1 2 "flip-train: --precision: unknown 'fp16' (use fp32 or bf16)" flip-train "${base[@]}" --precision fp16
expect 1 2 "flip-train: --lr-scheduler: unknown 'linear'" flip-train "${base[@]}" --lr-scheduler linear
expect 1 2 "flip-train: --batch-size or --global-batch-size" flip-train --train-data "$tmp/data" --epochs 1
expect 2 2 "flip-train: --global-batch-size 9 is not divisible by the 2 ranks" flip-train "${base[@]}" --global-batch-size 9
expect 1 2 "flip-train: --model: unknown preset 'vit-z'" flip-train "${base[@]}" --model vit-z
expect 1 2 "flip-train: --image-size 32 does not match .*train-000000.h5 (image size 16)" flip-train "${base[@]}" --image-size 32
expect 1 2 "flip-train: --context 16 does not match .*(text length T 8)" flip-train "${base[@]}" --context 16
printf 'lr = 1e-3\nbatch_size = 8\nwarmpu = 3\n' > "$tmp/bad.cfg"
expect 1 2 "flip-train: $tmp/bad.cfg:3: unknown key 'warmpu'" flip-train "${base[@]}" --config "$tmp/bad.cfg"
expect 1 1 "flip-train: --train-data: .*nothing" flip-train "${base[@]}" --train-data "$tmp/nothing"
expect 2 1 "flip-train: --train-data: .*nothing" flip-train "${base[@]}" --train-data "$tmp/nothing"
head -c 3000 "$tmp/data/train-000000.h5" > "$tmp/trunc.h5"
expect 2 1 "flip-train: --train-data: .*trunc.h5" flip-train "${base[@]}" --train-data "$tmp/trunc.h5"
expect 1 1 "flip-train: --resume: $tmp/none.h5: cannot read checkpoint" flip-train "${base[@]}" --resume "$tmp/none.h5"
expect 2 1 "flip-train: --train-data: .*40 samples in 1 shard(s) is less than one global batch of 64" flip-train "${base[@]}" --global-batch-size 64

# a corrupt image chunk (samples 5 and 20: their stored zstd frames, located
# with h5py's chunk index, overwritten) is fatal on the rank that reads it and
# ends the whole job with a line naming the file and sample; with --skip-bad 1
# the samples are replaced, counted and warned about, and the run completes
mkdir -p "$tmp/bad"
cp "$tmp/data/"*.txt "$tmp/bad/"
cp "$tmp/data/train-000000.h5" "$tmp/bad/train-000000.h5"
/usr/bin/python3 - "$tmp/bad/train-000000.h5" <<'PY' || { echo "FAIL: corrupting the shard" >&2; fail=1; }
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    d = f["images"]
    spans = [(d.id.get_chunk_info_by_coord((i, 0, 0, 0)).byte_offset, d.id.get_chunk_info_by_coord((i, 0, 0, 0)).size) for i in (5, 20)]
with open(sys.argv[1], "r+b") as f:
    for off, size in spans:
        f.seek(off)
        f.write(bytes([0x5A]) * size)
PY
timeout 60 "$MPIEXEC" -np 2 --oversubscribe -x OMP_NUM_THREADS "$B/flip-train" "${base[@]}" --train-data "$tmp/bad" --train-samples 40 \
  --name corrupt >/dev/null 2>"$tmp/corrupt.err"
rc=$?
if [ $rc != 0 ] && [ $rc != 124 ] && grep -q "^\[rank [01]\] .*bad/train-000000.h5: sample \(5\|20\): image decompression failed" "$tmp/corrupt.err"; then
  echo "ok    corrupt sample: job ended with $rc, naming file and sample"
else
  echo "FAIL  corrupt sample: exit $rc" >&2; cat "$tmp/corrupt.err" >&2; fail=1
fi
if timeout 60 "$MPIEXEC" -np 2 --oversubscribe -x OMP_NUM_THREADS "$B/flip-train" "${base[@]}" --train-data "$tmp/bad" --train-samples 40 \
     --name skip --skip-bad 1 >/dev/null 2>"$tmp/skip.err" && grep -q "warning: skipping bad sample: .*train-000000.h5: sample \(5\|20\): image decompression failed" "$tmp/skip.err"; then
  echo "ok    --skip-bad 1: the corrupt samples are skipped with a warning, run completes"
else
  echo "FAIL  --skip-bad 1 run" >&2; cat "$tmp/skip.err" >&2; fail=1
fi

# non-finite gradients: skipped on all ranks, stop after --max-bad-steps in a row
timeout 60 "$MPIEXEC" -np 2 --oversubscribe -x OMP_NUM_THREADS "$B/flip-train" "${base[@]}" --train-samples 80 \
  --name nan --debug-nan-from-step 2 --max-bad-steps 3 --log-every 1 >/dev/null 2>"$tmp/nan.err"
rc=$?
if [ $rc = 1 ] && [ "$(grep -c "non-finite gradient .* step skipped" "$tmp/nan.err")" = 3 ] &&
   grep -q "stopping: 3 non-finite steps in a row (--max-bad-steps 3)" "$tmp/nan.err"; then
  echo "ok    non-finite steps skipped and counted, stop after 3 in a row with exit 1"
else
  echo "FAIL  non-finite handling: exit $rc" >&2; cat "$tmp/nan.err" >&2; fail=1
fi
# logged: step 1 updated, steps 2-3 skipped (grad_norm null); step 4, the third in a row, stops the run
grep -q '"step":1,.*"skipped":0' "$tmp/logs/nan/metrics.jsonl" && grep -q '"step":3,.*"loss":[0-9].*"grad_norm":null.*"skipped":2' "$tmp/logs/nan/metrics.jsonl" &&
  echo "ok    metrics.jsonl records the skipped steps (grad_norm null)" ||
  { echo "FAIL  metrics.jsonl of the non-finite run:" >&2; cat "$tmp/logs/nan/metrics.jsonl" >&2; fail=1; }

# a checkpoint of another model: one line naming the difference
timeout 60 "$MPIEXEC" -np 1 "$B/flip-train" "${base[@]}" --name small >/dev/null 2>&1 || { echo "FAIL: small run" >&2; fail=1; }
expect 1 1 "flip-train: --resume: .*step-00000002.h5: checkpoint model differs from this run's model: patch 4 != 16" \
  flip-train "${base[@]}" --name other --model vit-s16 --resume "$tmp/logs/small/checkpoints/step-00000002.h5"
expect 1 1 "flip-eval: --checkpoint: $tmp/data/vocab.txt: not an HDF5 file" flip-eval --checkpoint "$tmp/data/vocab.txt" --val-data "$tmp/data"
expect 1 2 "flip-eval: --zeroshot-data: also needs --classnames FILE and --templates FILE" flip-eval --checkpoint x.h5 --zeroshot-data "$tmp/data"
expect 2 1 "flip-eval: --classnames $tmp/missing.txt: cannot open" flip-eval --checkpoint "$tmp/logs/small/checkpoints/latest" \
  --zeroshot-data "$tmp/data" --classnames "$tmp/missing.txt" --templates "$tmp/data/templates.txt"
exit $fail
