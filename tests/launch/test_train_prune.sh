#!/usr/bin/env bash
# test_train_prune.sh — checkpoint retention and metrics after a resume from an
# OLDER checkpoint (2 ranks, tiny model, G 16, 10 steps):
#  1. --save-frequency 1 --save-keep 3 keeps steps 8, 9, 10; `latest` -> 10.
#  2. --resume <a saved copy of step 3> --stop-at-step 4 --lr changed: the new
#     step-4 checkpoint survives, 8-10 (the abandoned future) are deleted,
#     `latest` -> step-00000004.h5 and resolves; a one-line warning names --lr.
#  3. metrics.jsonl then holds steps 1..4 exactly once each (the lines of steps
#     5..10 from the first run were dropped on resume).
set -u
. "$(dirname "$0")/../lib.sh"
mkdir -p "$tmp/data"
"$B/tests/launch_prog_make_shards" "$tmp/data" 2 48 16 3 8 >/dev/null || { echo "FAIL: making shards" >&2; exit 1; }
train() {
  timeout 120 "$MPIEXEC" -np 2 --oversubscribe -x OMP_NUM_THREADS "$B/flip-train" \
    --train-data "$tmp/data" --global-batch-size 16 --model tiny --mask-ratio 0.5 --warmup 2 \
    --log-every 1 --peak-gflops 10 --seed 3 --logs "$tmp/logs" --name p --train-samples 160 --save-frequency 1 "$@"
}
ck=$tmp/logs/p/checkpoints
ckpts() { (cd "$ck" && ls step-*.h5 2>/dev/null | tr '\n' ' '); }
steps() { grep -o '^{"step":[0-9]*' "$tmp/logs/p/metrics.jsonl" | cut -d: -f2 | tr '\n' ' '; }

# 1. first 3 steps kept in full, copy step 3 aside, run on to step 10 keeping 3
train --lr 1e-3 --save-keep 100 --stop-at-step 3 2>"$tmp/a.err" || { bad "run to step 3"; tail -3 "$tmp/a.err" >&2; }
cp "$ck/step-00000003.h5" "$tmp/old3.h5" 2>/dev/null || bad "no step-00000003.h5 after --stop-at-step 3"
train --lr 1e-3 --save-keep 3 --resume latest 2>"$tmp/b.err" || { bad "run to step 10"; tail -3 "$tmp/b.err" >&2; }
[ "$(ckpts)" = "step-00000008.h5 step-00000009.h5 step-00000010.h5 " ] && ok "keep 3: steps 8-10 kept" ||
  bad "keep 3 after 10 steps: got '$(ckpts)'"
[ "$(readlink "$ck/latest")" = step-00000010.h5 ] && ok "latest -> step 10" || bad "latest -> '$(readlink "$ck/latest")'"
[ "$(steps)" = "1 2 3 4 5 6 7 8 9 10 " ] && ok "metrics: steps 1-10 once each" || bad "metrics steps: '$(steps)'"

# 2. resume from the older step-3 copy, save at step 4
train --lr 2e-3 --save-keep 3 --resume "$tmp/old3.h5" --stop-at-step 4 2>"$tmp/c.err" ||
  { bad "resume from step 3"; tail -3 "$tmp/c.err" >&2; }
grep -q "resumed from .*old3.h5 at step 3" "$tmp/c.err" && ok "resumed at step 3" || bad "resume message missing"
[ -e "$ck/step-00000004.h5" ] && ok "the new step-4 checkpoint survives the pruning" || bad "step-4 checkpoint deleted: '$(ckpts)'"
[ "$(ckpts)" = "step-00000004.h5 " ] && ok "steps 8-10 (abandoned future) deleted" || bad "after the resume: '$(ckpts)'"
[ "$(readlink "$ck/latest")" = step-00000004.h5 ] && [ -e "$ck/latest" ] && ok "latest -> step 4 and resolves" ||
  bad "latest -> '$(readlink "$ck/latest")' (dangling?)"
n=$(grep -c "warning: --lr is 0.002, .*old3.h5 was written with 0.001" "$tmp/c.err")
[ "$n" = 1 ] && ok "one warning line for the changed --lr" || { bad "--lr warning printed $n times"; cat "$tmp/c.err" >&2; }
grep -q "warning: --\(mask-ratio\|model\|train-samples\)" "$tmp/c.err" && bad "warning for an unchanged flag" || ok "no warning for unchanged flags"

# 3. metrics of the abandoned steps are gone, the re-run step 4 is there once
[ "$(steps)" = "1 2 3 4 " ] && ok "metrics: steps 1-4 once each after the resume" || bad "metrics steps: '$(steps)'"

# 4. a --save-keep 1 run keeps only `latest`'s file
train --lr 2e-3 --save-keep 1 --resume latest --stop-at-step 6 2>"$tmp/d.err" || { bad "resume latest to step 6"; tail -3 "$tmp/d.err" >&2; }
[ "$(ckpts)" = "step-00000006.h5 " ] && [ "$(readlink "$ck/latest")" = step-00000006.h5 ] && ok "keep 1: only step 6" ||
  bad "keep 1: '$(ckpts)' latest -> '$(readlink "$ck/latest")'"
exit $fail
