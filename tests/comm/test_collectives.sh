#!/usr/bin/env bash
# test_collectives.sh — comm/ under real MPI: runs prog_collectives (adjoint of
# all-gather/reduce-scatter, bucketed all-reduce == MPI_Allreduce, distributed
# model gradient == single-process gradient on the global batch) with 1, 2 and
# 4 ranks. Exit code 0 only if every run passes.
set -u
: "${FLIP_BUILD_DIR:?set by ctest}" "${MPIEXEC:=mpirun}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
# the FLIP_SANITIZE build: Open MPI's own allocations are not leaks of ours
supp=${FLIP_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/comm/lsan_mpi.supp
export OMPI_MCA_mca_base_component_disable_dlclose=1 LSAN_OPTIONS="suppressions=$supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export ASAN_OPTIONS="fast_unwind_on_malloc=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
prog=$FLIP_BUILD_DIR/tests/comm_prog_collectives
[ -x "$prog" ] || { echo "missing $prog (build the comm_prog_collectives target)" >&2; exit 1; }
fail=0
for np in 1 2 4; do
  echo "== mpirun -np $np"
  if ! timeout 120 "$MPIEXEC" -np "$np" --oversubscribe -x OMP_NUM_THREADS "$prog"; then
    echo "FAIL: prog_collectives with $np ranks" >&2
    fail=1
  fi
done
exit $fail
