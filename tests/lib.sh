# tests/lib.sh — the common start of flip's shell tests, sourced by each one
# (`. "$(dirname "$0")/../lib.sh"`). ctest sets FLIP_BUILD_DIR, FLIP_SOURCE_DIR,
# MPIEXEC and, in the sanitizer build, the LSan/ASan options for Open MPI
# (tests/CMakeLists.txt). Gives: B (build dir), tmp (removed on exit), fail,
# ok/bad reporters. MPI tests run one OpenMP thread per rank (2 cores).
: "${FLIP_BUILD_DIR:?set by ctest}" "${MPIEXEC:=mpirun}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
B=$FLIP_BUILD_DIR
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok    $*"; }
bad() { echo "FAIL  $*" >&2; fail=1; }
