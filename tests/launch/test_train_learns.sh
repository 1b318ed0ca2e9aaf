#!/usr/bin/env bash
# test_train_learns.sh — flip-train end to end on 2 ranks actually learns:
# synthetic captioned shards (tests/launch/prog_make_shards: 10 classes, 8x8
# images whose brightness encodes the class, captions from 4 templates around
# the class word), tiny model, mask 0.5 with augmentation, 40 steps at G = 32.
# Checks (measured on the reference machine: loss 3.47 -> 2.00, zero-shot
# top-1 92 % with the prompts "a photo of the {}" and "the {}", chance 10 %):
#   - final loss < 0.75 x ln 32 (the initial loss of a G = 32 batch);
#   - unmasked zero-shot top-1 >= 50 % over all 160 images;
#   - run outputs: config.txt (re-readable by --config), metrics.jsonl with
#     one line per logged step and the eval line, a checkpoint + latest;
#   - --precision bf16 (bf16 matmuls and bf16 activations, model.c): the same
#     run learns as well (same thresholds), and 6 steps straight == 3 steps +
#     --resume latest + 3 steps, bit for bit; on a CPU without AVX512-BF16
#     flip-train refuses bf16 with one line instead.
set -u
. "$(dirname "$0")/../lib.sh"
mkdir -p "$tmp/d"
"$B/tests/launch_prog_make_shards" "$tmp/d" 1 160 8 3 8 >/dev/null || { echo "FAIL: making shards" >&2; exit 1; }
run=$tmp/logs/learn
if ! timeout 300 "$MPIEXEC" -np 2 --oversubscribe -x OMP_NUM_THREADS "$B/flip-train" --train-data "$tmp/d" \
    --global-batch-size 32 --train-samples 1280 --lr 1e-3 --wd 0.05 --warmup 5 --mask-ratio 0.5 \
    --log-every 5 --peak-gflops 10 --seed 0 --logs "$tmp/logs" --name learn --zeroshot-data "$tmp/d" \
    --classnames "$tmp/d/classnames.txt" --templates "$tmp/d/templates.txt" 2>"$tmp/err"; then
  echo "FAIL: flip-train" >&2; tail -5 "$tmp/err" >&2; exit 1
fi
grep -E "^step|^eval" "$tmp/err"
last=$(grep -o '"loss":[^,]*' "$run/metrics.jsonl" | tail -1 | cut -d: -f2)
awk -v l="$last" 'BEGIN { exit !(l < 0.75 * log(32)) }' && ok "loss fell from ln 32 = 3.466 to $last (< 0.75 x)" ||
  bad "final loss $last not below 0.75 x ln 32"
top1=$(grep -o '"eval":"zeroshot".*"top1":[0-9.]*' "$run/metrics.jsonl" | grep -o '[0-9.]*$')
n=$(grep -o '"eval":"zeroshot","n":[0-9]*' "$run/metrics.jsonl" | grep -o '[0-9]*$')
[ "$n" = 160 ] && awk -v a="$top1" 'BEGIN { exit !(a >= 0.5) }' && ok "zero-shot top-1 $top1 on $n images (>= 0.5, chance 0.1)" ||
  bad "zero-shot top-1 '$top1' on '$n' images"
[ "$(grep -c '"step":[0-9]*,"total_steps"' "$run/metrics.jsonl")" = 8 ] && ok "8 logged steps in metrics.jsonl" ||
  bad "metrics.jsonl step lines"
[ -e "$run/checkpoints/step-00000040.h5" ] && [ "$(readlink "$run/checkpoints/latest")" = step-00000040.h5 ] &&
  ok "final checkpoint and latest" || bad "final checkpoint / latest missing"
# config.txt is the resolved configuration and re-readable: a 1-step run from it works
grep -q "^mask-ratio = 0.5$" "$run/config.txt" && grep -q "^global-batch-size = 32$" "$run/config.txt" &&
  ok "config.txt holds the resolved flags" || bad "config.txt content"
if timeout 60 "$B/flip-train" --config "$run/config.txt" --train-samples 32 --name again --peak-gflops 10 \
     --zeroshot-frequency 0 >/dev/null 2>"$tmp/again.err"; then
  ok "config.txt re-read with --config (flags override it)"
else
  bad "--config config.txt failed"; tail -3 "$tmp/again.err" >&2
fi
# --precision bf16
if grep -q " avx512_bf16" /proc/cpuinfo; then
  if timeout 300 "$MPIEXEC" -np 2 --oversubscribe -x OMP_NUM_THREADS "$B/flip-train" --train-data "$tmp/d" \
      --global-batch-size 32 --train-samples 1280 --lr 1e-3 --wd 0.05 --warmup 5 --mask-ratio 0.5 \
      --log-every 5 --peak-gflops 10 --seed 0 --logs "$tmp/logs" --name bf16 --zeroshot-data "$tmp/d" \
      --classnames "$tmp/d/classnames.txt" --templates "$tmp/d/templates.txt" --precision bf16 2>"$tmp/bf16.err"; then
    l16=$(grep -o '"loss":[^,]*' "$tmp/logs/bf16/metrics.jsonl" | tail -1 | cut -d: -f2)
    t16=$(grep -o '"eval":"zeroshot".*"top1":[0-9.]*' "$tmp/logs/bf16/metrics.jsonl" | grep -o '[0-9.]*$')
    awk -v l="$l16" -v a="$t16" 'BEGIN { exit !(l < 0.75 * log(32) && a >= 0.5) }' &&
      ok "bf16: loss $l16 (fp32 $last), zero-shot top-1 $t16 (fp32 $top1)" || bad "bf16: loss '$l16', top-1 '$t16'"
  else
    bad "flip-train --precision bf16"; tail -3 "$tmp/bf16.err" >&2
  fi
  r16=(--train-data "$tmp/d" --global-batch-size 16 --train-samples 96 --lr 1e-3 --warmup 2 --mask-ratio 0.5
       --peak-gflops 10 --seed 5 --precision bf16 --logs "$tmp/logs")
  timeout 120 "$MPIEXEC" -np 2 --oversubscribe -x OMP_NUM_THREADS "$B/flip-train" "${r16[@]}" --name s16 \
    --dump-params "$tmp/s16.bin" 2>"$tmp/s16.err" &&
  timeout 120 "$MPIEXEC" -np 2 --oversubscribe -x OMP_NUM_THREADS "$B/flip-train" "${r16[@]}" --name p16 \
    --stop-at-step 3 2>"$tmp/p16a.err" &&
  timeout 120 "$MPIEXEC" -np 2 --oversubscribe -x OMP_NUM_THREADS "$B/flip-train" "${r16[@]}" --name p16 \
    --resume latest --dump-params "$tmp/p16.bin" 2>"$tmp/p16b.err" && cmp -s "$tmp/s16.bin" "$tmp/p16.bin" &&
    ok "bf16: 6 steps straight == 3 + resume + 3, params bit for bit" ||
    { bad "bf16 resume not bit-exact (or a run failed)"; tail -2 "$tmp/s16.err" "$tmp/p16a.err" "$tmp/p16b.err" >&2; }
else
  timeout 60 "$B/flip-train" --train-data "$tmp/d" --global-batch-size 16 --train-samples 16 --precision bf16 \
    --logs "$tmp/logs" --name nobf16 2>"$tmp/nobf16.err"; rc=$?
  [ "$rc" != 0 ] && grep -q "AVX512-BF16" "$tmp/nobf16.err" && ok "no AVX512-BF16: bf16 refused with one line" ||
    bad "bf16 on a CPU without AVX512-BF16: exit $rc"
fi
exit $fail
