#!/usr/bin/env bash
# test_train_model_flags.sh — the model size flags of flip-train (--width,
# --depth, --heads, --text-width, --text-depth, --text-heads, --embed-dim,
# --patch-size) override the --model preset:
#   - a 2-step run with every flag set builds that model: the checkpoint's
#     tensor shapes (read with h5py) and block counts match the flags, the
#     parameter count in the log equals the count from the shapes;
#   - config.txt records the flags and the "# model:" line that flip-sweep
#     parses (its own read_config + train_flops agree with the FLOPs behind
#     flip-train's MFU, as test_sweep checks for presets);
#   - invalid combinations fail with one line naming the flags and the reason
#     (flip_config_check), exit 2.
set -u
: "${FLIP_BUILD_DIR:?set by ctest}" "${FLIP_SOURCE_DIR:?set by ctest}"
. "$(dirname "$0")/../lib.sh"
mkdir -p "$tmp/d"
"$B/tests/launch_prog_make_shards" "$tmp/d" 1 32 8 3 8 >/dev/null || { echo "FAIL: making shards" >&2; exit 1; }
base=(--train-data "$tmp/d" --global-batch-size 16 --train-samples 32 --peak-gflops 10 --log-every 1 --logs "$tmp/logs")
sizes=(--width 40 --depth 2 --heads 5 --text-width 24 --text-depth 3 --text-heads 3 --embed-dim 12 --patch-size 2)
if timeout 60 "$B/flip-train" "${base[@]}" "${sizes[@]}" --name custom 2>"$tmp/err"; then
  ok "flip-train with every size flag ran"
else
  bad "flip-train with size flags"; cat "$tmp/err" >&2; exit 1
fi
run=$tmp/logs/custom
grep -q "^# model: custom image 8 channels 3 patch 2 width 40 depth 2 heads 5 text 24x3 heads 3 vocab 24 T 8 D 12 (Np 16, kept 8)$" "$run/config.txt" &&
  grep -q "^width = 40$" "$run/config.txt" && grep -q "^patch-size = 2$" "$run/config.txt" && grep -q "^text-heads = 3$" "$run/config.txt" &&
  ok "config.txt: the flags and the '# model:' line" || { bad "config.txt"; cat "$run/config.txt" >&2; }
params=$(grep -o "model custom [0-9]* params" "$tmp/err" | grep -o "[0-9]*")
if /usr/bin/python3 - "$run/checkpoints/step-00000002.h5" "$params" <<'EOF'; then ok "checkpoint shapes match the flags ($params params)"; else bad "checkpoint shapes"; fi
import sys, h5py
import numpy as np
f = h5py.File(sys.argv[1], "r")
shapes = {}
f["params"].visititems(lambda n, o: shapes.__setitem__(n, o.shape) if isinstance(o, h5py.Dataset) else None)
want = {"visual.patch_embed.weight": (40, 2 * 2 * 3), "visual.blocks.1.attn.qkv.weight": (120, 40),
        "visual.blocks.1.mlp.fc1.weight": (160, 40), "visual.proj.weight": (12, 40),
        "text.token_embed.weight": (24, 24), "text.pos_embed": (8, 24), "text.blocks.2.attn.qkv.weight": (72, 24),
        "text.proj.weight": (12, 24)}
bad = [(k, shapes.get(k), v) for k, v in want.items() if shapes.get(k) != v]
vis = {k.split(".")[2] for k in shapes if k.startswith("visual.blocks.")}
txt = {k.split(".")[2] for k in shapes if k.startswith("text.blocks.")}
total = sum(int(np.prod(s)) for s in shapes.values())
if bad or vis != {"0", "1"} or txt != {"0", "1", "2"} or total != int(sys.argv[2] or -1):
    print("shapes", bad, "blocks", vis, txt, "total", total, "log", sys.argv[2], sorted(shapes)[:5], file=sys.stderr)
    sys.exit(1)
EOF
if /usr/bin/python3 - "$FLIP_SOURCE_DIR/launch/flip-sweep" "$run" <<'EOF'; then ok "flip-sweep parses the '# model:' line; its FLOPs match flip-train's MFU"; else bad "flip-sweep read_config"; fi
import importlib.machinery, importlib.util, json, sys
loader = importlib.machinery.SourceFileLoader("flipsweep", sys.argv[1])
spec = importlib.util.spec_from_loader("flipsweep", loader)
sw = importlib.util.module_from_spec(spec)
loader.exec_module(sw)
cfg, model, G = sw.read_config(sys.argv[2])
want = {"name": "custom", "image": 8, "channels": 3, "patch": 2, "width": 40, "depth": 2, "text_width": 24,
        "text_depth": 3, "T": 8, "D": 12}
assert model == want, model
assert G == 16 and cfg["width"] == "40", (G, cfg.get("width"))
steps = [json.loads(l) for l in open(sys.argv[2] + "/metrics.jsonl") if '"loss"' in l]
assert len(steps) == 2, steps
g = sw.train_flops(model, 0.5) / 1e9
for s in steps:
    c = s["mfu"] * 10.0 / s["images_per_s"]
    assert abs(g / c - 1) < 2e-5, (g, c)
EOF

# one-line errors naming the flags, exit 2
expect() {
  local pat=$1; shift
  timeout 60 "$B/flip-train" "${base[@]}" --name e "$@" >"$tmp/out" 2>"$tmp/e.err"
  local rc=$?
  if [ $rc = 2 ] && [ "$(wc -l < "$tmp/e.err")" = 1 ] && grep -q -- "$pat" "$tmp/e.err"; then
    ok "exit 2: $(cat "$tmp/e.err")"
  else
    bad "$* -> exit $rc (want 2), want one line matching '$pat':"; cat "$tmp/e.err" >&2
  fi
}
expect "^flip-train: --model tiny --width 42 with the shards' 8x8x3 images (.*train-000000.h5): width 42 must be a multiple of 4" --width 42
expect "^flip-train: --model tiny --heads 5 with .*: width 192 is not divisible by heads 5" --heads 5
expect "^flip-train: --model tiny --text-width 100 --text-heads 3 with .*: text_width 100 is not divisible by text_heads 3" --text-width 100 --text-heads 3
expect "^flip-train: --model tiny --patch-size 3 with .*: image_size 8 is not divisible by patch 3" --patch-size 3
expect "^flip-train: --depth: 300 is out of range \[0, 256\]" --depth 300
expect "^flip-train: --embed-dim: expected an integer, got 'big'" --embed-dim big
exit $fail
