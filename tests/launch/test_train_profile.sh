#!/usr/bin/env bash
# test_train_profile.sh — flip-train --profile 1 (the per-op-class step
# breakdown of issue 5, including comm wait and data wait):
#   - a 2-rank run prints exactly one "step breakdown on rank 0 over N steps"
#     line with N = steps - 1 (the first step is excluded), naming matmul,
#     attention, layernorm, comm wait and data wait;
#   - the shares add up to 100 % and "other" (the step minus the classes) is not
#     negative, i.e. no time is counted in two classes;
#   - comm wait is non-zero with 2 ranks (the all-gather, reduce-scatter and
#     bucket all-reduce are timed);
#   - without --profile nothing is printed; --profile 2 is a one-line error, exit 2.
set -u
: "${FLIP_BUILD_DIR:?set by ctest}" "${FLIP_SOURCE_DIR:?set by ctest}"
. "$(dirname "$0")/../lib.sh"
mkdir -p "$tmp/d"
"$B/tests/launch_prog_make_shards" "$tmp/d" 1 64 8 3 8 >/dev/null || { echo "FAIL: making shards" >&2; exit 1; }
base=(--train-data "$tmp/d" --global-batch-size 16 --train-samples 80 --model tiny --image-size 8 --patch-size 2
      --peak-gflops 10 --log-every 1 --logs "$tmp/logs")
if timeout 120 "$MPIEXEC" -np 2 --oversubscribe -x OMP_NUM_THREADS "$B/flip-train" "${base[@]}" --profile 1 \
    --name prof 2>"$tmp/err"; then
  ok "2-rank run with --profile 1"
else
  bad "2-rank run with --profile 1"; cat "$tmp/err" >&2; exit 1
fi
lines=$(grep -c "step breakdown on rank 0" "$tmp/err")
[ "$lines" = 1 ] && ok "one breakdown line" || { bad "breakdown lines: $lines"; cat "$tmp/err" >&2; }
line=$(grep "step breakdown on rank 0" "$tmp/err")
echo "$line"
echo "$line" | grep -q "over 4 steps" && ok "4 of 5 steps profiled (the first is excluded)" || bad "step count in: $line"
for c in matmul attention layernorm "comm wait" "data wait" other; do
  echo "$line" | grep -q "$c [0-9.]* ([0-9.]*%)" && ok "class '$c' reported" || bad "class '$c' missing in: $line"
done
sum=$(echo "$line" | sed 's/.*% of step)://' | grep -o "([0-9.-]*%)" | tr -d '(%)' | awk '{ s += $1 } END { printf "%.1f", s }')
awk -v s="$sum" 'BEGIN { exit !(s > 99.0 && s < 101.0) }' && ok "shares add up to $sum %" || bad "shares add up to $sum %"
# "other" is the step minus the classes: negative would mean a class counted time twice (nested sections)
other=$(echo "$line" | grep -o "other [0-9.-]* (" | grep -o "[0-9.-]*")
awk -v o="$other" 'BEGIN { exit !(o >= 0) }' && ok "exclusive classes: other $other ms/step >= 0" || bad "other $other ms/step < 0: a class double-counts"
cw=$(echo "$line" | grep -o "comm wait [0-9.]*" | grep -o "[0-9.]*$")
awk -v c="$cw" 'BEGIN { exit !(c > 0) }' && ok "comm wait $cw ms/step > 0 with 2 ranks" || bad "comm wait $cw with 2 ranks"
if timeout 60 "$B/flip-train" "${base[@]}" --train-samples 32 --name plain 2>"$tmp/err2"; then
  grep -q "step breakdown" "$tmp/err2" && bad "breakdown printed without --profile" || ok "no breakdown without --profile"
else
  bad "run without --profile"; cat "$tmp/err2" >&2
fi
timeout 60 "$B/flip-train" "${base[@]}" --profile 2 --name bad 2>"$tmp/err3"; rc=$?
[ "$rc" = 2 ] && [ "$(wc -l < "$tmp/err3")" -le 2 ] && grep -q -- "--profile" "$tmp/err3" &&
  ok "--profile 2: exit 2, one line: $(head -1 "$tmp/err3")" || { bad "--profile 2: exit $rc"; cat "$tmp/err3" >&2; }
exit $fail
