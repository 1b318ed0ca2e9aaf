#!/usr/bin/env bash
# test_config_agree.sh — a --config file readable on one rank only (MPMD:
# rank 0 and rank 1 get different --config paths): every rank exits 2 at once
# (none waits in a collective), rank 0 prints exactly one line; for flip-train
# and flip-eval, with the bad file on rank 1 and on rank 0.
set -u
. "$(dirname "$0")/../lib.sh"
echo "skip-bad = 1" > "$tmp/good.cfg" # a key both programs take
run() { # prog cfg-rank0 cfg-rank1 extra...
  local prog=$1 c0=$2 c1=$3; shift 3
  timeout 60 "$MPIEXEC" --oversubscribe -x OMP_NUM_THREADS -np 1 "$B/$prog" --config "$c0" "$@" : \
    -np 1 "$B/$prog" --config "$c1" "$@"
}
train_args=(--train-data "$tmp/none" --batch-size 4 --epochs 1 --logs "$tmp/logs")
eval_args=(--checkpoint "$tmp/none.h5" --val-data "$tmp/none")
for prog in flip-train flip-eval; do
  if [ $prog = flip-train ]; then args=("${train_args[@]}"); else args=("${eval_args[@]}"); fi
  for badrank in 1 0; do
    if [ $badrank = 1 ]; then c0=$tmp/good.cfg c1=$tmp/missing.cfg; else c0=$tmp/missing.cfg c1=$tmp/good.cfg; fi
    t0=$(date +%s)
    run $prog "$c0" "$c1" "${args[@]}" >"$tmp/out" 2>"$tmp/err"; rc=$?
    t1=$(date +%s)
    n=$(grep -c "^$prog: " "$tmp/err")
    if [ $rc = 2 ] && [ $((t1 - t0)) -le 30 ] && [ "$n" = 1 ]; then
      ok "$prog, --config missing on rank $badrank: exit 2 after $((t1 - t0)) s, one line: $(grep "^$prog: " "$tmp/err")"
    else
      bad "$prog, --config missing on rank $badrank: exit $rc after $((t1 - t0)) s, $n lines"; cat "$tmp/err" >&2
    fi
    if [ $badrank = 0 ]; then
      grep -q "missing.cfg" "$tmp/err" && ok "  rank 0 names the file" || bad "  rank 0's line does not name missing.cfg"
    else
      grep -q "another rank" "$tmp/err" && ok "  rank 0 says another rank failed" || bad "  no 'another rank' line"
    fi
  done
done
# --help on every rank: exit 0, help printed once
timeout 60 "$MPIEXEC" --oversubscribe -x OMP_NUM_THREADS -np 2 "$B/flip-train" --help >"$tmp/out" 2>"$tmp/err"; rc=$?
n=$(cat "$tmp/out" "$tmp/err" | grep -c -- "--train-data")
[ $rc = 0 ] && [ "$n" = 1 ] && ok "--help: exit 0, printed by rank 0" || bad "--help: exit $rc, --train-data in $n lines"
exit $fail
