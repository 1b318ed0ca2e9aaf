#!/usr/bin/env bash
# bench_train.sh — flip-train throughput: images/s and MFU for 1 rank x 2
# threads vs 2 ranks x 1 thread, presets tiny and vit-s16, mask 0 / 0.5 / 0.75,
# on synthetic shards (tests/launch/prog_make_shards), plus the fraction of the
# gradient all-reduce hidden behind backward (2-rank runs).
#
# usage: benchmarks/bench_train.sh [BUILD_DIR]      (default: ./build)
# env:   PRESETS="tiny vit-s16"  MASKS="0 0.5 0.75"  STEPS_TINY=8  STEPS_S16=4
#        G_TINY=256  G_S16=64 (the batches of bench_step / benchmarks/run)
#        THREADS=2 (cores of the machine)
#        ROUNDS=1: the layouts of a configuration run alternately ROUNDS times
#        (even rounds in the other order) and each layout's best run is reported (other load on a shared machine
#        only slows a run down); every run is printed, the JSON lines are the best.
# Prints a table, rank 0's step breakdown by op class (flip-train --profile:
# matmul ... comm wait, data wait) and one JSON line per configuration. Step 1 (primitive
# creation, first touch) is excluded; images/s = images / time over steps 2..n.
# MFU is against the sgemm peak (oneDNN 2048^3 matmul, flip-train's own
# measurement) taken here as the best of 3 measurements with THREADS threads in
# one process; a 2-rank run uses half of it per rank. On a machine shared with
# other jobs the peak is measured under their load and MFU can exceed 100 %:
# compare the images/s columns then, or pass PEAK=<GFLOP/s>.
# The text vocabulary is the shards' (24 tokens), so the token embedding is
# smaller than the preset's; everything else is the preset.
set -eu
build=$(cd "${1:-build}" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
PRESETS=${PRESETS:-"tiny vit-s16"}
ROUNDS=${ROUNDS:-1}
case $ROUNDS in ''|*[!0-9]*) echo "bench_train: ROUNDS='$ROUNDS' must be a whole number >= 1" >&2; exit 2 ;; esac
ROUNDS=$((10#$ROUNDS))
[ "$ROUNDS" -ge 1 ] || { echo "bench_train: ROUNDS must be a whole number >= 1" >&2; exit 2; }
MASKS=${MASKS:-"0 0.5 0.75"}
THREADS=${THREADS:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIEXEC=${MPIEXEC:-mpirun}
for exe in flip-train tests/launch_prog_make_shards; do
  [ -x "$build/$exe" ] || { echo "bench_train: missing $build/$exe (cmake --build $build)" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# one peak for all runs: 1 process x THREADS threads, 1 s matmul (printed by flip-train)
mkdir -p "$tmp/d32"
"$build/tests/launch_prog_make_shards" "$tmp/d32" 1 512 32 3 32 >/dev/null
peak=${PEAK:-0}
if [ "$peak" = 0 ]; then
  for i in 1 2 3; do
    p=$(OMP_NUM_THREADS=$THREADS "$build/flip-train" --train-data "$tmp/d32" --global-batch-size 8 --train-samples 8 \
        --logs "$tmp/logs" --name peak$i 2>&1 | grep -o "peak [0-9.]* GFLOP/s" | grep -o "[0-9.]*" | head -1)
    peak=$(awk -v a="$peak" -v b="$p" 'BEGIN { print (b > a ? b : a) }')
  done
fi
echo "sgemm peak (oneDNN, 1 process x $THREADS threads, best of 3): $peak GFLOP/s"

printf "%-8s %-5s %-12s %10s %8s %12s %10s\n" preset mask layout "images/s" "MFU" "comm-wait ms" "hidden"
for preset in $PRESETS; do
  case $preset in
    tiny) S=32; G=${G_TINY:-256}; steps=${STEPS_TINY:-8}; data=$tmp/d32 ;;
    vit-s16) S=224; G=${G_S16:-64}; steps=${STEPS_S16:-4}; data=$tmp/d224
             [ -d "$data" ] || { mkdir -p "$data"; "$build/tests/launch_prog_make_shards" "$data" 1 $((G * (steps + 1))) 224 3 32 >/dev/null; } ;;
    *) echo "bench_train: unknown preset $preset" >&2; exit 2 ;;
  esac
  for mask in $MASKS; do
    for round in $(seq 1 "$ROUNDS"); do
    layouts="1x$THREADS ${THREADS}x1" # even rounds in the other order
    [ $((round % 2)) = 1 ] || layouts="${THREADS}x1 1x$THREADS"
    for layout in $layouts; do
      np=${layout%x*}; th=${layout#*x}
      name="$preset-$mask-$layout-r$round"
      per_rank_peak=$(awk -v p="$peak" -v n="$np" 'BEGIN { printf "%.3f", p / n }')
      if ! OMP_NUM_THREADS=$th "$MPIEXEC" -np "$np" --bind-to none -x OMP_NUM_THREADS "$build/flip-train" \
          --train-data "$data" --global-batch-size "$G" --train-samples $((G * steps)) --model "$preset" \
          --mask-ratio "$mask" --lr 1e-4 --log-every 1 --peak-gflops "$per_rank_peak" --profile 1 \
          --logs "$tmp/logs" --name "$name" 2>"$tmp/$name.err"; then
        echo "bench_train: $name failed:" >&2; tail -5 "$tmp/$name.err" >&2; exit 1
      fi
      hidden=$(grep -o "[0-9]*% hidden" "$tmp/$name.err" | grep -o "[0-9]*" || true)
      # rank 0's per-op-class breakdown (--profile): includes comm wait and data wait
      bd=$(grep -o "step breakdown on rank 0.*" "$tmp/$name.err" | sed 's/.*% of step): //' || true)
      # time-weighted over steps 2..n: dt = G / (images/s)
      read -r ips mfu wait < <(awk -v G="$G" -F'[:,]' 'NR > 1 {
          for (i = 1; i < NF; i++) { if ($i == "\"images_per_s\"") v = $(i+1); if ($i == "\"mfu\"") m = $(i+1); if ($i == "\"comm_wait_s\"") w = $(i+1) }
          dt = G / v; T += dt; M += m * dt; W += w; n++ }
        END { printf "%.2f %.4f %.2f\n", G * n / T, M / T, 1e3 * W / n }' "$tmp/logs/$name/metrics.jsonl")
      printf "%-8s %-5s %-12s %10s %7.1f%% %12s %10s\n" "$preset" "$mask" "${np}r x ${th}t" "$ips" \
        "$(awk -v m="$mfu" 'BEGIN { print 100 * m }')" "$wait" "${hidden:+$hidden%}"
      echo "#   breakdown (rank 0, ms/step, % of step): $bd"
      echo "$preset $mask $np $ips {\"bench\":\"train\",\"preset\":\"$preset\",\"mask\":$mask,\"ranks\":$np,\"threads\":$th,\"global_batch\":$G,\"steps\":$steps,\"rounds\":$ROUNDS,\"images_per_s\":$ips,\"mfu\":$mfu,\"comm_wait_ms\":$wait,\"hidden_pct\":${hidden:-null},\"peak_gflops\":$peak,\"breakdown\":\"$bd\"}" >> "$tmp/runs.txt"
    done
    done
  done
done
# per preset, mask and layout the run with the most images/s, in first-seen order
awk '{ k = $1 " " $2 " " $3; if (!(k in best)) order[n++] = k
       if (!(k in best) || $4 + 0 > best[k] + 0) { best[k] = $4; line[k] = substr($0, index($0, "{")) } }
     END { for (i = 0; i < n; i++) print line[order[i]] }' "$tmp/runs.txt"
