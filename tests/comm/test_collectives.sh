#!/usr/bin/env bash
# test_collectives.sh — comm/ under real MPI: runs prog_collectives (adjoint of
# all-gather/reduce-scatter, bucketed all-reduce == MPI_Allreduce, distributed
# model gradient == single-process gradient on the global batch) with 1, 2 and
# 4 ranks. Exit code 0 only if every run passes.
set -u
. "$(dirname "$0")/../lib.sh"
prog=$FLIP_BUILD_DIR/tests/comm_prog_collectives
[ -x "$prog" ] || { echo "missing $prog (build the comm_prog_collectives target)" >&2; exit 1; }
for np in 1 2 4; do
  echo "== mpirun -np $np"
  if ! timeout 120 "$MPIEXEC" -np "$np" --oversubscribe -x OMP_NUM_THREADS "$prog"; then
    echo "FAIL: prog_collectives with $np ranks" >&2
    fail=1
  fi
done
exit $fail
