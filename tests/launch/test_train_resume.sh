#!/usr/bin/env bash
# test_train_resume.sh — DESIGN §5 resume contract and preemption, 2 ranks:
#  1. 6 steps straight == 3 steps (--stop-at-step) + --resume latest + 3 steps,
#     bit for bit (final params and every logged loss).
#  2. SIGTERM to one rank mid-run: all ranks save a checkpoint, print
#     "received SIGTERM: checkpoint saved at step k, exiting" and exit 0; the run
#     resumed from `latest` ends bit-identical to an uninterrupted run.
#  3. a rank killed with SIGKILL ends the whole job, non-zero, within seconds.
#  4. flip-eval reads the final checkpoint (zero-shot + retrieval JSON lines);
#     h5py reads the checkpoint.
set -u
. "$(dirname "$0")/../lib.sh"
mkdir -p "$tmp/data"
"$B/tests/launch_prog_make_shards" "$tmp/data" 2 48 16 3 8 >/dev/null || { echo "FAIL: making shards" >&2; exit 1; }
train() { # name extra-args...
  local name=$1; shift
  timeout 120 "$MPIEXEC" -np 2 --oversubscribe -x OMP_NUM_THREADS "$B/flip-train" \
    --train-data "$tmp/data" --global-batch-size 16 --model tiny --mask-ratio 0.5 --lr 1e-3 --warmup 2 \
    --log-every 1 --peak-gflops 10 --seed 3 --logs "$tmp/logs" --name "$name" "$@"
}
# pids of this test's flip-train ranks (not mpirun/timeout; other tests may run flip-train too)
ranks_of() {
  for p in $(pgrep -x flip-train); do
    tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null | grep -q -- "--name $1 " && echo "$p"
  done
}
losses() { grep -o '"loss":[^,]*' "$tmp/logs/$1/metrics.jsonl" | cut -d: -f2; }

# 1. straight vs stop + resume
train straight --train-samples 96 --dump-params "$tmp/straight.bin" 2>"$tmp/straight.err" || { bad "straight run"; tail -3 "$tmp/straight.err" >&2; }
train split --train-samples 96 --stop-at-step 3 2>"$tmp/split1.err" || bad "first half (--stop-at-step 3)"
[ -e "$tmp/logs/split/checkpoints/step-00000003.h5" ] && [ -L "$tmp/logs/split/checkpoints/latest" ] &&
  ok "checkpoint step-00000003.h5 and latest symlink written" || bad "no checkpoint after --stop-at-step 3"
train split --train-samples 96 --resume latest --dump-params "$tmp/split.bin" 2>"$tmp/split2.err" || { bad "resumed half"; tail -3 "$tmp/split2.err" >&2; }
grep -q "resumed from .*step-00000003.h5 at step 3" "$tmp/split2.err" && ok "resumed at step 3" || bad "resume message missing"
# the checkpoint is plain HDF5 that h5py reads (python3-h5py: launch/install-deps --with-peer)
if /usr/bin/python3 - "$tmp/logs/split/checkpoints/latest" <<'PY'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
assert f.attrs["format"] in (b"flip-checkpoint", "flip-checkpoint"), f.attrs["format"]
assert int(f.attrs["step"]) == 6 and int(f.attrs["world_size"]) == 2 and int(f.attrs["global_batch"]) == 16
p = f["params/visual.patch_embed.weight"]
assert p.dtype == "float32" and p.shape == (192, 48), (p.dtype, p.shape)
assert set(f["params"]) == set(f["adam_m"]) == set(f["adam_v"]) and "logit_scale" in f["params"]
PY
then ok "h5py reads the checkpoint (attributes, shapes, three groups)"; else bad "h5py could not read the checkpoint"; fi
if cmp -s "$tmp/straight.bin" "$tmp/split.bin"; then ok "6 straight == 3 + resume + 3: params bit for bit"; else bad "params differ after resume"; fi
if [ "$(losses straight)" = "$(losses split)" ] && [ "$(losses straight | wc -l)" = 6 ]; then
  ok "losses of all 6 steps identical"; else bad "losses differ: $(losses straight | tr '\n' ' ') vs $(losses split | tr '\n' ' ')"; fi

# 2. SIGTERM mid-run, resume, compare with an uninterrupted run
train long --train-samples 384 --dump-params "$tmp/long.bin" 2>"$tmp/long.err" || bad "uninterrupted 24-step run"
train sig --train-samples 384 --dump-params "$tmp/sig.bin" 2>"$tmp/sig1.err" &
job=$!
for _ in $(seq 200); do
  [ -s "$tmp/logs/sig/metrics.jsonl" ] && [ "$(wc -l < "$tmp/logs/sig/metrics.jsonl")" -ge 3 ] && break
  sleep 0.1
done
rank=$(ranks_of sig | tail -1)
[ -n "$rank" ] && kill -TERM "$rank"
wait $job; rc=$?
[ $rc = 0 ] && ok "SIGTERM: job exit 0" || bad "SIGTERM: job exit $rc"
grep -q "received SIGTERM: checkpoint saved at step [0-9]*, exiting" "$tmp/sig1.err" && ok "SIGTERM message" ||
  { bad "SIGTERM message missing"; tail -3 "$tmp/sig1.err" >&2; }
k=$(grep -o "checkpoint saved at step [0-9]*" "$tmp/sig1.err" | grep -o "[0-9]*$")
if [ -n "$k" ] && [ "$k" -lt 24 ]; then
  train sig --train-samples 384 --resume latest --dump-params "$tmp/sig.bin" 2>"$tmp/sig2.err" || bad "resume after SIGTERM"
  cmp -s "$tmp/long.bin" "$tmp/sig.bin" && ok "SIGTERM at step $k + resume == uninterrupted, bit for bit" ||
    bad "SIGTERM + resume differs from the uninterrupted run"
else
  bad "SIGTERM checkpoint step '$k' not inside the run"
fi

# 3. SIGKILL of one rank: the job must end, non-zero, within seconds
train kill --train-samples 38400 2>"$tmp/kill.err" &
job=$!
for _ in $(seq 200); do
  [ -s "$tmp/logs/kill/metrics.jsonl" ] && break
  sleep 0.1
done
victim=$(ranks_of kill | tail -1)
[ "$(ranks_of kill | wc -l)" = 2 ] || bad "expected 2 ranks of the SIGKILL job"
t0=$(date +%s)
[ -n "$victim" ] && kill -KILL "$victim"
wait $job; rc=$?
t1=$(date +%s)
if [ $rc != 0 ] && [ $((t1 - t0)) -le 30 ]; then ok "SIGKILL of one rank: job ended with $rc after $((t1 - t0)) s";
else bad "SIGKILL of one rank: exit $rc after $((t1 - t0)) s"; fi

# 4. flip-eval on the final checkpoint
if timeout 60 "$MPIEXEC" -np 2 --oversubscribe -x OMP_NUM_THREADS "$B/flip-eval" \
    --checkpoint "$tmp/logs/straight/checkpoints/latest" --zeroshot-data "$tmp/data" \
    --classnames "$tmp/data/classnames.txt" --templates "$tmp/data/templates.txt" --val-data "$tmp/data" \
    --eval-batch-size 20 >"$tmp/eval.out" 2>"$tmp/eval.err"; then
  grep -q '"eval":"zeroshot".*"n":96,"classes":10' "$tmp/eval.out" && grep -q '"eval":"retrieval".*"n":96' "$tmp/eval.out" &&
    ok "flip-eval: zero-shot and retrieval over all 96 samples" || { bad "flip-eval output"; cat "$tmp/eval.out" >&2; }
else
  bad "flip-eval failed"; tail -3 "$tmp/eval.err" >&2
fi
exit $fail
