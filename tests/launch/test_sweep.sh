#!/usr/bin/env bash
# test_sweep.sh — launch/flip-sweep (issue 6), locally:
#  1. the fit code on exact and noisy synthetic laws (known a, b, c recovered;
#     the binned frontier on a hand-made example; bootstrap spread);
#  2. a 4-point micro sweep of the tiny model (mask 0.5, 64..512 samples, one
#     rank each) plus one point that fails (unknown preset): exit code 3, one
#     CSV row per point with the issue's columns, values cross-checked against
#     the run folders (params from flip-train's log, FLOPs against the MFU that
#     flip-train logs with core's flip_config_train_flops, final loss, evals),
#     the failure recorded with flip-train's message; the fit on the frontier is
#     finite with sane signs; PNG (signature + IHDR) and SVG plots written;
#  3. re-running skips the finished points and retries only the failed one;
#  4. a point stopped by --timeout (SIGUSR1 -> checkpoint) is recorded as
#     incomplete and the next run resumes it from its checkpoint;
#  5. `fit` on a hand-written results.csv with two mask ratios: one fit per
#     ratio + "all", and the FLIP-vs-CLIP plot.
set -u
: "${FLIP_BUILD_DIR:?set by ctest}" "${FLIP_SOURCE_DIR:?set by ctest}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
B=$FLIP_BUILD_DIR
S=$FLIP_SOURCE_DIR
PY=/usr/bin/python3
SWEEP="$S/launch/flip-sweep"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok    $*"; }
bad() { echo "FAIL  $*" >&2; fail=1; }
t_start=$(date +%s)
$PY -c "import numpy, matplotlib" 2>/dev/null || { echo "FAIL: /usr/bin/python3 needs numpy and matplotlib (apt-get install python3-numpy python3-matplotlib)" >&2; exit 1; }

# ---- 1. fit code
if $PY - "$S/launch/sweep" <<'EOF'; then ok "fit code: frontier, exact and noisy power/saturating laws, bootstrap"; else bad "fit code checks"; fi
import math, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import scaling as sc
bad = []
def check(cond, what):
    if not cond:
        bad.append(what)
        print("  miss:", what, file=sys.stderr)
# frontier: bins of 0.1 decade; best per bin; only improvements survive
C = [1e10, 1.1e10, 2e10, 4e10, 8e10, 1.6e11, 3.2e11]
E = [5.0, 4.0, 4.5, 3.0, 3.5, 2.0, 2.5]
f = sc.binned_frontier(C, E, 0.1)
check(f == [1, 3, 5], "frontier %s != [1, 3, 5]" % f)
check(sc.binned_frontier([1e10, 2e10], [1.0, 2.0], 0.1) == [0], "rising error keeps only the first point")
check(sc.binned_frontier([1e10, 1e10], [float("nan"), 2.0], 0.1) == [1], "non-finite skipped")
# exact power law
C = np.logspace(10, 14, 9)
p = sc.fit_power(C, 7.0 * C ** -0.11)
check(p is not None and abs(p["a"] / 7.0 - 1) < 1e-9 and abs(p["b"] + 0.11) < 1e-12, "exact power law: %s" % p)
check(sc.fit_power([1e10, 1e10], [1.0, 2.0]) is None, "power law needs 2 distinct C")
# exact saturating law
s = sc.fit_saturating(C, 40.0 * C ** -0.15 + 0.25)
check(s is not None and abs(s["c"] - 0.25) < 1e-4 and abs(s["b"] + 0.15) < 1e-3 and abs(s["a"] / 40 - 1) < 2e-2,
      "exact saturating law: %s" % s)
check(sc.fit_saturating(C[:2], (C ** -0.1)[:2]) is None, "saturating law needs 3 distinct C")
# noisy runs above a saturating frontier: fit + bootstrap
rng = np.random.default_rng(1)
C = np.logspace(10, 14, 40)
E = (3.0 * C ** -0.08 + 0.2) * np.exp(rng.normal(0, 0.01, C.size)) * (1 + 0.5 * (rng.random(C.size) < 0.3))
r = sc.fit_group(C, E, n_boot=100, bin_decades=0.1, seed=0)
pw, st = r["power"], r["saturating"]
check(len(r["frontier"]) >= 10, "frontier of 40 noisy runs has %d points" % len(r["frontier"]))
check(pw["a"] > 0 and pw["b"] < 0 and all(math.isfinite(v) for v in (pw["a"], pw["b"])), "noisy power %s" % pw)
check(st["a"] > 0 and -0.2 < st["b"] < -0.03 and 0 <= st["c"] < 0.35, "noisy saturating %s" % st)
bs = pw["bootstrap"]
check(bs["n_ok"] >= 90 and 0 < bs["b"]["std"] < 0.05 and bs["b"]["p05"] <= pw["b"] + 0.02 <= bs["b"]["p95"] + 0.04,
      "power bootstrap %s" % bs)
check(st["bootstrap"]["n_ok"] >= 50 and math.isfinite(st["bootstrap"]["c"]["std"]), "saturating bootstrap")
sys.exit(1 if bad else 0)
EOF

# ---- 2. micro sweep
mkdir -p "$tmp/data"
"$B/tests/launch_prog_make_shards" "$tmp/data" 2 64 16 3 8 >/dev/null || { echo "FAIL: making shards" >&2; exit 1; }
cat > "$tmp/micro.toml" <<EOF
[sweep]
name = "micro"
ranks = 1
metric = "train_loss"

[base]
train-data = "$tmp/data"
model = "tiny"
global-batch-size = 32
lr = 5e-4
peak-gflops = 10
log-every = 1
zeroshot-data = "$tmp/data"
classnames = "$tmp/data/classnames.txt"
templates = "$tmp/data/templates.txt"
val-data = "$tmp/data"

[grid]
mask-ratio = [0.5]
train-samples = [64, 128, 256, 512]

[[points]]
model = "nosuchmodel"
train-samples = 64
EOF
out="$tmp/out"
timeout 240 $PY "$SWEEP" run "$tmp/micro.toml" --out "$out" --flip-train "$B/flip-train" --bootstrap 100 \
  >"$tmp/run1.out" 2>"$tmp/run1.err"
rc=$?
[ $rc = 3 ] && ok "sweep with one failing point: exit 3" || { bad "sweep exit $rc (expected 3)"; tail -5 "$tmp/run1.err" >&2; }
grep -q "1 of 5 points not done" "$tmp/run1.err" && ok "failed point reported, sweep went on" || bad "failure summary missing"
if $PY - "$out" <<'EOF'; then ok "results.csv: 5 rows, columns and values match the run folders"; else bad "results.csv checks"; tail -3 "$tmp/run1.err" >&2; fi
import csv, json, math, os, re, sys
out = sys.argv[1]
bad = []
def check(cond, what):
    if not cond:
        bad.append(what)
        print("  miss:", what, file=sys.stderr)
want = ["run_id", "model", "params", "mask_ratio", "global_batch", "samples_seen", "lr", "seed", "gflops_per_sample",
        "total_flops", "final_train_loss", "val_loss", "zeroshot_top1", "retrieval_i2t_r1", "retrieval_t2i_r1",
        "images_per_s", "wall_seconds", "status", "attempts", "git_commit", "note"]
with open(os.path.join(out, "results.csv"), newline="") as f:
    rd = csv.DictReader(f)
    check(rd.fieldnames == want, "columns %s" % rd.fieldnames)
    rows = list(rd)
check(len(rows) == 5, "%d rows" % len(rows))
done = sorted((r for r in rows if r["status"] == "done"), key=lambda r: int(r["samples_seen"]))
failed = [r for r in rows if r["status"] == "failed"]
check(len(done) == 4 and len(failed) == 1, "statuses %s" % [r["status"] for r in rows])
check([int(r["samples_seen"]) for r in done] == [64, 128, 256, 512], "samples seen")
for r in done:
    d = os.path.join(out, "runs", r["run_id"])
    log = open(os.path.join(d, "train.log")).read()
    m = re.findall(r"model tiny (\d+) params", log)
    check(m and int(r["params"]) == int(m[-1]) > 0, "params %s vs log %s" % (r["params"], m))
    steps = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl")) if '"loss"' in l]
    ev = {j["eval"]: j for j in (json.loads(l) for l in open(os.path.join(d, "metrics.jsonl")) if '"eval"' in l)}
    check(abs(float(r["final_train_loss"]) - steps[-1]["loss"]) <= 1e-7 * abs(steps[-1]["loss"]), "final loss")
    # FLOPs/sample from flip-train's own MFU (core's flip_config_train_flops): mfu * peak / (images/s), 1 step windows
    g = float(r["gflops_per_sample"])
    for s in steps:
        c_g = s["mfu"] * 10.0 / s["images_per_s"]
        check(abs(g / c_g - 1) < 2e-5, "GFLOPs/sample %.7g vs flip-train's %.7g" % (g, c_g))
    check(abs(float(r["total_flops"]) / (g * 1e9 * int(r["samples_seen"])) - 1) < 1e-6, "total FLOPs")
    check(r["model"] == "tiny" and float(r["mask_ratio"]) == 0.5 and int(r["global_batch"]) == 32 and
          float(r["lr"]) == 5e-4 and r["seed"] == "0", "point fields")
    check(float(r["zeroshot_top1"]) == ev["zeroshot"]["top1"] and 0 <= float(r["zeroshot_top1"]) <= 1, "zero-shot")
    check(float(r["retrieval_i2t_r1"]) == ev["retrieval"]["i2t_r1"] and
          float(r["retrieval_t2i_r1"]) == ev["retrieval"]["t2i_r1"], "retrieval R@1")
    check(float(r["images_per_s"]) > 0 and 0 < float(r["wall_seconds"]) < 120, "images/s, wall")
    check(re.fullmatch(r"[0-9a-f]{12}(-dirty)?", r["git_commit"]) is not None, "git commit '%s'" % r["git_commit"])
    check(float(r["val_loss"]) == ev["val"]["val_loss"] and 0 < float(r["val_loss"]) < 2 * math.log(32) and
          ev["val"]["global_batch"] == 32, "val_loss %s from the eval line" % r["val_loss"])
    check(r["attempts"] == "1" and r["note"] == "", "1 attempt, no note")
f = failed[0] if failed else {"note": "", "model": ""}
check(f["model"] == "nosuchmodel" and "unknown preset 'nosuchmodel'" in f["note"], "failed note '%s'" % f["note"])
# the fit: frontier of train loss vs compute, both forms, sane signs
fit = json.load(open(os.path.join(out, "fit.json")))
check(fit["metric"] == "train_loss" and list(fit["groups"]) == ["mask 0.50"], "fit groups %s" % list(fit["groups"]))
gr = fit["groups"]["mask 0.50"]
E = {r["run_id"]: float(r["final_train_loss"]) for r in done}
fe = [E[i] for i in gr["frontier_runs"]]
check(len(fe) >= 3 and all(a > b for a, b in zip(fe, fe[1:])), "frontier %s falls with compute" % fe)
p, s = gr["power"], gr["saturating"]
fin = lambda *v: all(isinstance(x, float) and math.isfinite(x) for x in v)
check(p is not None and fin(p["a"], p["b"]) and p["a"] > 0 and p["b"] < 0, "power fit %s" % p)
check(s is not None and fin(s["a"], s["b"], s["c"]) and s["a"] > 0 and s["b"] < 0 and 0 <= s["c"] < min(fe),
      "saturating fit %s" % s)
check(p["bootstrap"]["n_ok"] > 0 and fin(p["bootstrap"]["b"]["std"]), "power bootstrap")
sys.exit(1 if bad else 0)
EOF
png="$out/plots/train_loss-mask0.50.png"
if [ -s "$png" ] && $PY - "$png" <<'EOF'; then ok "plot is a valid PNG"; else bad "plot $png missing or not a PNG"; fi
import struct, sys, zlib
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n"
n, typ = struct.unpack(">I4s", b[8:16])
assert typ == b"IHDR" and n == 13
w, h = struct.unpack(">II", b[16:24])
assert 200 <= w <= 4000 and 200 <= h <= 4000
assert zlib.crc32(b[12:29]) == struct.unpack(">I", b[29:33])[0]
assert b.endswith(b"IEND\xaeB`\x82")
EOF
grep -q "<svg" "$out/plots/train_loss-mask0.50.svg" 2>/dev/null && ok "SVG plot written" || bad "SVG plot missing"

# ---- 3. re-run: finished points skipped, the failed one retried
timeout 120 $PY "$SWEEP" run "$tmp/micro.toml" --out "$out" --flip-train "$B/flip-train" --bootstrap 20 \
  >"$tmp/run2.out" 2>"$tmp/run2.err"
rc=$?
[ $rc = 3 ] && [ "$(grep -c 'done, skipped' "$tmp/run2.err")" = 4 ] && [ "$(grep -c ': running' "$tmp/run2.err")" = 1 ] &&
  ok "re-run: 4 finished points skipped, the failed point retried" || { bad "re-run (exit $rc)"; cat "$tmp/run2.err" >&2; }
n1=$(cat "$out"/runs/tiny*/attempts.tsv | wc -l)
n2=$(cat "$out"/runs/nosuchmodel*/attempts.tsv | wc -l)
[ "$n1" = 4 ] && [ "$n2" = 2 ] && ok "attempts: 1 per finished point, 2 for the failed one" || bad "attempts $n1/$n2"

# ---- 4. a run stopped by --timeout continues on the next run
cat > "$tmp/long.toml" <<EOF
[sweep]
ranks = 1
metric = "train_loss"
[base]
train-data = "$tmp/data"
model = "tiny"
global-batch-size = 32
peak-gflops = 10
log-every = 1
[[points]]
train-samples = 1920
EOF
timeout 120 $PY "$SWEEP" run "$tmp/long.toml" --out "$tmp/long" --flip-train "$B/flip-train" --timeout 4 --no-fit \
  >/dev/null 2>"$tmp/long1.err"
rc=$?
log=$(echo "$tmp"/long/runs/*/train.log)
k=$(grep -o "received SIGUSR1: checkpoint saved at step [0-9]*" "$log" | grep -o "[0-9]*$")
[ $rc = 3 ] && [ -n "$k" ] && grep -q ",incomplete," "$tmp/long/results.csv" &&
  ok "--timeout: run checkpointed at step $k of 60, recorded incomplete" || { bad "--timeout run (exit $rc, step '$k')"; tail -3 "$log" >&2; }
timeout 120 $PY "$SWEEP" run "$tmp/long.toml" --out "$tmp/long" --flip-train "$B/flip-train" --no-fit \
  >/dev/null 2>"$tmp/long2.err"
rc=$?
row=$($PY -c 'import csv,sys; r=list(csv.DictReader(open(sys.argv[1])))[0]; print(r["status"], r["attempts"], r["samples_seen"])' \
  "$tmp/long/results.csv" 2>/dev/null)
[ $rc = 0 ] && grep -q "resumed from .*step-0*${k:-x}.h5 at step ${k:-x}" "$log" && [ "$row" = "done 2 1920" ] &&
  ok "next run resumed it from step $k and finished (status, attempts, samples: $row)" ||
  { bad "resume of the stopped run (exit $rc, row '$row')"; tail -3 "$tmp/long2.err" "$log" >&2; }

# ---- 5. fit on a hand-written CSV with two mask ratios (FLIP vs CLIP)
mkdir -p "$tmp/hand"
$PY - "$tmp/hand/results.csv" <<'EOF'
import csv, sys
cols = ["run_id", "mask_ratio", "total_flops", "zeroshot_top1", "status", "final_train_loss", "val_loss",
        "retrieval_i2t_r1", "retrieval_t2i_r1"]
w = csv.DictWriter(open(sys.argv[1], "w", newline=""), fieldnames=cols)
w.writeheader()
for m, k in ((0.0, 1.0), (0.5, 0.8), (0.75, 0.7)):
    for i in range(8):
        C = 1e12 * 2 ** i
        err = 0.9 * (C / 1e12) ** -0.1 * (1 + 0.1 * k) - 0.01 * (i % 3)
        w.writerow({"run_id": "m%g-%d" % (m, i), "mask_ratio": m, "total_flops": C * k, "zeroshot_top1": 1 - err,
                    "status": "done"})
w.writerow({"run_id": "failed", "mask_ratio": 0.5, "total_flops": "", "zeroshot_top1": "", "status": "failed"})
EOF
if timeout 60 $PY "$SWEEP" fit "$tmp/hand" --bootstrap 50 >/dev/null 2>"$tmp/hand.err" &&
   $PY - "$tmp/hand" <<'EOF'; then ok "fit per mask ratio + all, FLIP-vs-CLIP plot"; else bad "hand CSV fit"; cat "$tmp/hand.err" >&2; fi
import json, os, sys
d = sys.argv[1]
fit = json.load(open(os.path.join(d, "fit.json")))
assert fit["metric"] == "zeroshot_error", fit["metric"]
assert sorted(fit["groups"]) == ["all", "mask 0.00", "mask 0.50", "mask 0.75"], list(fit["groups"])
for g in fit["groups"].values():
    assert g["power"]["a"] > 0 and g["power"]["b"] < 0, g["power"]
    assert g["saturating"] is not None and g["saturating"]["c"] >= 0
for f in ("zeroshot_error-mask0.00.png", "zeroshot_error-mask0.75.svg", "zeroshot_error-by-mask.png",
          "zeroshot_error-by-mask.svg"):
    assert os.path.getsize(os.path.join(d, "plots", f)) > 1000, f
EOF
$PY "$SWEEP" fit "$tmp/hand" --metric val_loss --no-plots >/dev/null 2>"$tmp/val.err"
[ $? != 0 ] && grep -q "no finished run has val_loss.*give the runs --val-data" "$tmp/val.err" && ok "--metric val_loss: clear error (no run has it)" ||
  bad "--metric val_loss should fail clearly"

# ---- the shipped example parses: 3 mask ratios x 4 lengths
n=$($PY "$SWEEP" run "$S/launch/sweep/example.toml" --out "$tmp/example" --dry-run 2>"$tmp/ex.err" | grep -c -- "--mask-ratio")
[ "$n" = 12 ] && [ ! -e "$tmp/example" ] && ok "launch/sweep/example.toml: 12 points (--dry-run writes nothing)" ||
  { bad "example.toml dry run: $n points"; cat "$tmp/ex.err" >&2; }

# ---- bad sweep files fail with a one-line reason
printf '[base]\ntrain-data = "x"\nname = "y"\n[grid]\nlr = [1e-3]\n' > "$tmp/bad1.toml"
printf '[base]\ntrain-data = "x"\n[grid]\nwidth = 64\n' > "$tmp/bad2.toml"
printf '[base\n' > "$tmp/bad3.toml"
for i in 1 2 3; do
  $PY "$SWEEP" run "$tmp/bad$i.toml" --out "$tmp/bad$i" >/dev/null 2>"$tmp/bad$i.err"
  [ $? = 2 ] && [ "$(wc -l < "$tmp/bad$i.err")" = 1 ] && grep -q "bad$i.toml" "$tmp/bad$i.err" &&
    ok "bad sweep file $i: $(cat "$tmp/bad$i.err")" || { bad "bad sweep file $i"; cat "$tmp/bad$i.err" >&2; }
done

echo "test_sweep: $(( $(date +%s) - t_start )) s"
exit $fail
