#!/usr/bin/env bash
# fuzz_shard.sh — builds tests/dataset/fuzz_shard.c with clang
# (-fsanitize=fuzzer,address,undefined; flip's shard/filter code instrumented,
# the system HDF5 and zstd not) and fuzzes the shard validator for a bounded
# time, starting from valid shards (uint16 and int32 tokens, captions, labels,
# gray and RGB) written by the real writer.
# usage: tests/dataset/fuzz_shard.sh [SECONDS (default 25, max 600)] [WORKDIR]
# Exit 0: no crash attributable to flip's code in the time given. Crashes
# whose faulting frame is inside the system libhdf5 (Debian 1.10.8 has memory
# errors on malformed object headers) are listed and counted, not failed.
# Exit 1: a reproducible crash/sanitizer report in flip's code (the reproducer
# is kept in WORKDIR). Exit 2: build/usage problem.
set -u
src=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-25}
case $secs in ''|*[!0-9]*) echo "fuzz_shard.sh: SECONDS must be a number, got '$secs'" >&2; exit 2 ;; esac
[ "$secs" -le 600 ] || { echo "fuzz_shard.sh: SECONDS at most 600" >&2; exit 2; }
work=${2:-$(mktemp -d /tmp/flip_fuzz_shard_XXXXXX)}
mkdir -p "$work/corpus" "$work/seeds"
command -v clang >/dev/null || { echo "fuzz_shard.sh: clang not found (apt-get install clang)" >&2; exit 2; }
h5inc=$(pkg-config --cflags hdf5 2>/dev/null || echo -I/usr/include/hdf5/serial)
h5lib=$(pkg-config --libs hdf5 2>/dev/null || echo "-L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5")
common="-std=c11 -g -O1 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I$src/core -I$src/dataset -I$src/tests $h5inc"
lib_src="$src/core/common.c $src/dataset/shard.c $src/dataset/zstd_filter.c"
libs="$h5lib -lzstd -lpthread -lm"

# seeds: valid shards from the real writer (uninstrumented helper)
clang $common $lib_src "$src/tests/dataset/prog_shard_tool.c" -o "$work/seedgen" $libs || exit 2
"$work/seedgen" write "$work/seeds/rgb.h5" 5 4 3 3 4 300 0 captions labels || exit 2
"$work/seedgen" write "$work/seeds/gray.h5" 3 2 5 1 3 70000 10 || exit 2
"$work/seedgen" write "$work/seeds/empty.h5" 0 2 2 3 2 10 0 labels || exit 2

clang $common -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
  "$src/tests/dataset/fuzz_shard.c" $lib_src -o "$work/fuzz_shard" $libs || exit 2

echo "fuzz_shard.sh: fuzzing for ${secs}s in $work"
# -fork=1 -ignore_crashes=1: keep fuzzing after a crash so one known bug in the
# system libhdf5 does not end the run; every crash input is classified below.
# Leaks inside libhdf5's error paths are not ours; ASan still catches our
# memory errors.
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:symbolize=1
export UBSAN_OPTIONS=print_stacktrace=1
timeout $((secs + 60)) "$work/fuzz_shard" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
  -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
  -artifact_prefix="$work/" "$work/corpus" "$work/seeds" >"$work/log" 2>&1
rc=$?
runs=$(grep -Eo "^#[0-9]+" "$work/log" | tail -n 1 | tr -d '#')

# Classify each crash by the first stack frame that is not sanitizer/libFuzzer/
# libc plumbing: inside the system libhdf5 -> an HDF5 bug on malformed metadata
# (reported, not ours to fix); anywhere else (flip's code, zstd) -> a failure.
ours=0
hdf5=0
alone=0
for art in "$work"/crash-* "$work"/timeout-* "$work"/oom-* "$work"/leak-*; do
  [ -e "$art" ] || continue
  "$work/fuzz_shard" -timeout=10 -rss_limit_mb=2048 "$art" >"$art.report" 2>&1
  top=$(awk '/ERROR: |runtime error:|deadly signal|timeout after/ {on=1} on && /^ *#[0-9]+ /' "$art.report" |
        grep -vE '__interceptor_|__asan|__sanitizer|__ubsan|libclang_rt|fuzzer::|/libc\.so|/libc-|sysdeps/|in __(mem|str)|in (memcpy|memmove|memset|strlen|strdup|strndup|strcpy|strncpy|free|malloc|calloc|realloc)\b|__libc_|_start' |
        head -n 1)
  if ! grep -qE "ERROR: |runtime error:|deadly signal|timeout after" "$art.report"; then
    # crashed only after earlier inputs in the same process: the state left
    # behind by a libhdf5 memory error; counted and shown, not attributed
    where="not reproducible alone"
    alone=$((alone + 1))
  elif grep -q "runtime error:" "$art.report" && grep -q "runtime error:" <(grep -E "/work|$src" "$art.report"); then
    where="flip (UBSan)"
    ours=$((ours + 1))
  elif grep -q "libhdf5" <<<"$top"; then
    where="libhdf5"
    hdf5=$((hdf5 + 1))
  else
    where="flip"
    ours=$((ours + 1))
  fi
  kind=$(grep -Eo "ERROR: [A-Za-z]+: [A-Za-z-]+|runtime error: [^\n]{0,80}|timeout after [0-9]+ seconds" "$art.report" | head -n 1)
  echo "  $(basename "$art"): $where: ${kind:-unknown}; top frame: ${top# *}"
done
echo "fuzz_shard.sh: ${runs:-?} inputs in ${secs}s; crashes inside flip's code: $ours; inside the system libhdf5 (malformed metadata, not fixable here): $hdf5; not reproducible alone: $alone"
if [ "$ours" -gt 0 ]; then
  echo "fuzz_shard.sh: FAILED; reproduce with: $work/fuzz_shard <artifact>" >&2
  exit 1
fi
if [ $rc != 0 ] && [ $((ours + hdf5 + alone)) = 0 ]; then
  echo "fuzz_shard.sh: the fuzzer exited with $rc without an artifact; see $work/log" >&2
  exit 1
fi
exit 0
