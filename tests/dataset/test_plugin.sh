#!/usr/bin/env bash
# test_plugin.sh — shards are readable outside flip through the registered
# Zstandard filter 32015:
#   - h5dump reads /lengths and /images with HDF5_PLUGIN_PATH=<build>/plugins
#     (our libh5zstd.so) and fails without it (so the plugin is what works);
#   - h5py (Debian's /usr/bin/python3) reads every dataset through our plugin,
#     bit-identical to flip's own reader (prog_shard_tool dump);
#   - a shard written by h5py through the plugin (other chunking, int32 tokens)
#     passes flip's validator with exact contents;
#   - the chunk format is plain zstd: a stored /images chunk decodes with the
#     zstd command-line tool, and a chunk made by `zstd -3` and stored raw with
#     h5py's write_direct_chunk reads back exactly through flip's reader. That
#     is the format of every 32015 implementation (hdf5plugin, HDF's
#     hdf5_plugins). Debian's python3-hdf5plugin ships no filter binaries, so
#     it is not used here.
# Env (from ctest): FLIP_BUILD_DIR.
set -u
build=${FLIP_BUILD_DIR:?FLIP_BUILD_DIR must point at the build folder}
tool=$build/tests/dataset_prog_shard_tool
plugins=$build/plugins
py=/usr/bin/python3
tmp=$(mktemp -d /tmp/flip_test_plugin_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/noplugins"
pass=0
fail=0
ok() { echo "  ok    $*"; pass=$((pass + 1)); }
bad() { echo "  FAIL  $*" >&2; fail=$((fail + 1)); }

[ -x "$tool" ] || { echo "missing $tool (build the tests first)" >&2; exit 1; }
[ -f "$plugins/libh5zstd.so" ] || { echo "missing $plugins/libh5zstd.so" >&2; exit 1; }
command -v h5dump >/dev/null || { echo "h5dump not found: apt-get install hdf5-tools" >&2; exit 1; }

shard=$tmp/s.h5
"$tool" write "$shard" 300 6 5 3 4 700 0 captions labels || { echo "cannot write the test shard" >&2; exit 1; }

# h5dump with and without the plugin
out=$(HDF5_PLUGIN_PATH=$plugins h5dump -d /lengths "$shard" 2>&1)
rc=$?
got=$(sed -n '/DATA {/,/}/p' <<<"$out" | sed 's/([0-9]*)://' | tr -c '0-9\n' ' ' | tr -s ' ' '\n' | grep -v '^$' | tr '\n' ' ')
want=$(for ((i = 0; i < 300; i++)); do printf '%d ' $((1 + i % 4)); done)
if [ $rc = 0 ] && [ "$got" = "$want" ]; then
  ok "h5dump -d /lengths with HDF5_PLUGIN_PATH=build/plugins prints the lengths"
else
  bad "h5dump -d /lengths with the plugin (rc=$rc): $(head -c 400 <<<"$out")"
fi
HDF5_PLUGIN_PATH=$plugins h5dump -d /images -s "7,0,0,0" -c "1,6,5,3" "$shard" >/dev/null 2>&1 \
  && ok "h5dump reads an /images chunk with the plugin" || bad "h5dump -d /images with the plugin failed"
if HDF5_PLUGIN_PATH=$tmp/noplugins h5dump -d /lengths "$shard" >/dev/null 2>&1; then
  bad "h5dump -d /lengths succeeded without the plugin (the test would prove nothing)"
else
  ok "h5dump -d /lengths fails without the plugin"
fi

# h5py through our plugin
"$tool" dump "$shard" "$tmp/ref.bin" || bad "prog_shard_tool dump failed"
if ! $py -c "import h5py, numpy" 2>/dev/null; then
  bad "/usr/bin/python3 lacks h5py/numpy (launch/install-deps --with-peer installs python3-h5py python3-numpy)"
else
  export HDF5_PLUGIN_PATH=$plugins
  read_py='
import sys, h5py, numpy as np
path, ref = sys.argv[1], sys.argv[2]
with h5py.File(path, "r") as f:
    a = f.attrs
    fmt = a["format"].decode() if isinstance(a["format"], bytes) else str(a["format"])
    assert fmt == "flip-shard" and int(a["version"]) == 1 and int(a["n"]) == 300, dict(a)
    assert list(a["mean"].shape) == [3] and len(a["vocab_sha256"]) == 64
    img = f["images"][...]; tok = f["tokens"][...].astype(np.int32); ln = f["lengths"][...].astype(np.int32)
    cap = f["captions"][5]
    cap = cap.decode() if isinstance(cap, bytes) else cap
    assert cap == "sample 5 \u00fcn\u00efcode", repr(cap)
n, H, W, C = img.shape
T = tok.shape[1]
raw = np.fromfile(ref, dtype=np.uint8)
ri = raw[: n * H * W * C].reshape(img.shape)
rt = raw[n * H * W * C : n * H * W * C + 4 * n * T].view(np.int32).reshape(tok.shape)
rl = raw[n * H * W * C + 4 * n * T :].view(np.int32)
assert np.array_equal(img, ri) and np.array_equal(tok, rt) and np.array_equal(ln, rl), "mismatch"
'
  if $py -c "$read_py" "$shard" "$tmp/ref.bin" >"$tmp/py.log" 2>&1; then
    ok "h5py via our plugin: images, tokens, lengths == flip reader; UTF-8 caption; attributes"
  else
    bad "h5py via our plugin: $(tail -3 "$tmp/py.log")"
  fi

  write_py='
import sys, h5py, numpy as np
src, dst = sys.argv[1], sys.argv[2]
z = dict(compression=32015, compression_opts=(5,))
with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
    for k, v in f.attrs.items():
        g.attrs[k] = v
    n, H, W, C = f["images"].shape
    g.create_dataset("images", data=f["images"][...], chunks=(1, H, W, C), **z)
    g.create_dataset("tokens", data=f["tokens"][...].astype(np.int32), chunks=(64, f["tokens"].shape[1]), **z)
    g.create_dataset("lengths", data=f["lengths"][...], chunks=(100,), **z)
    g.create_dataset("labels", data=f["labels"][...], chunks=(100,), **z)
'
  if $py -c "$write_py" "$shard" "$tmp/h5py.h5" >"$tmp/py3.log" 2>&1 && "$tool" check "$tmp/h5py.h5" 0 >"$tmp/chk.log" 2>&1; then
    ok "shard written by h5py through the plugin (int32 tokens, 64-row chunks, fixed-size extents) validates, exact"
  else
    bad "h5py-written shard: $(tail -2 "$tmp/py3.log") $(cat "$tmp/chk.log" 2>/dev/null)"
  fi

  # the chunk format is plain zstd, both ways
  chunk_py='
import sys, h5py, numpy as np
src, out_chunk, out_img = sys.argv[1], sys.argv[2], sys.argv[3]
with h5py.File(src, "r") as f:
    mask, data = f["images"].id.read_direct_chunk((7, 0, 0, 0))
    assert mask == 0
    open(out_chunk, "wb").write(data)
    f["images"][7].tofile(out_img)
'
  if command -v zstd >/dev/null && $py -c "$chunk_py" "$shard" "$tmp/c7.zst" "$tmp/c7.raw" >"$tmp/py4.log" 2>&1 &&
     zstd -q -d -c "$tmp/c7.zst" >"$tmp/c7.dec" && cmp -s "$tmp/c7.dec" "$tmp/c7.raw"; then
    ok "a stored /images chunk is a standard zstd frame (zstd -d gives the image)"
  else
    bad "zstd -d of a stored chunk: $(tail -2 "$tmp/py4.log" 2>/dev/null)"
  fi
  put_py='
import sys, h5py, numpy as np
src, dst, tmpd = sys.argv[1], sys.argv[2], sys.argv[3]
import subprocess
with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
    for k, v in f.attrs.items():
        g.attrs[k] = v
    imgs = f["images"][...]
    n, H, W, C = imgs.shape
    d = g.create_dataset("images", shape=imgs.shape, dtype="u1", chunks=(1, H, W, C), compression=32015, compression_opts=(3,))
    for i in range(n):
        raw = tmpd + "/img.raw"
        imgs[i].tofile(raw)
        frame = subprocess.run(["zstd", "-q", "-3", "-c", raw], check=True, capture_output=True).stdout
        d.id.write_direct_chunk((i, 0, 0, 0), frame)
    for k in ("tokens", "lengths", "labels"):
        g.create_dataset(k, data=f[k][...], chunks=(128,) + f[k].shape[1:], compression=32015)
'
  if $py -c "$put_py" "$shard" "$tmp/cli.h5" "$tmp" >"$tmp/py5.log" 2>&1 && "$tool" check "$tmp/cli.h5" 0 >"$tmp/chk2.log" 2>&1; then
    ok "image chunks made by the zstd CLI and stored raw read back exactly through flip's reader"
  else
    bad "zstd-CLI chunks: $(tail -2 "$tmp/py5.log") $(cat "$tmp/chk2.log" 2>/dev/null)"
  fi
fi

echo "$pass passed, $fail failed"
[ $fail = 0 ]
