#!/usr/bin/env bash
# test_prep.sh — flip-prep end to end: csv, tar and idx sources -> shards read
# back through the validating shard reader (sample counts, sizes, known pixel
# values, labels, captions), h5dump through the zstd plugin, skip accounting
# and warnings, --workers invariance, re-runs that keep complete shards, bad
# flags (exit 2, one line), --strict and other fatal errors (exit 1), and the
# vocab command. Fixtures (images, tables, tars) are generated here.
set -u
B=${FLIP_BUILD_DIR:?FLIP_BUILD_DIR not set}
SRC=${FLIP_SOURCE_DIR:?FLIP_SOURCE_DIR not set}
PREP=$B/flip-prep
MK=$B/tests/launch_prog_mkimage
CHECK=$B/tests/launch_prog_shardcheck
FM=/usr/share/datasets/fashion-mnist
T=$(mktemp -d "${TMPDIR:-/tmp}/flip_test_prep.XXXXXX")
pass=0
fail=0
ok() { echo "  ok    $*"; pass=$((pass + 1)); }
bad() { echo "  FAIL  $*" >&2; fail=$((fail + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
finish() {
    echo "$pass passed, $fail failed"
    if [ "$fail" = 0 ]; then rm -rf "$T"; exit 0; fi
    echo "fixtures kept in $T" >&2
    exit 1
}
for f in "$PREP" "$MK" "$CHECK"; do
    [ -x "$f" ] || { bad "missing executable $f (build the flip-prep and launch_prog_* targets)"; finish; }
done
# field value from a shardcheck line: get "key" "line"
get() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
near() { local a=$1 b=$2 tol=$3; [ $((a > b ? a - b : b - a)) -le "$tol" ]; }

# ---------------------------------------------------------------- fixtures
mkdir -p "$T/raw/imgs"
"$MK" "$T/raw/imgs/red.png" 40 30 200 10 10
"$MK" "$T/raw/imgs/green.jpg" 64 64 10 200 10
"$MK" "$T/raw/imgs/blue.png" 20 50 10 10 200
"$MK" "$T/raw/imgs/white.jpg" 33 17 250 250 250
"$MK" "$T/raw/imgs/full.jpg" 64 64 90 90 90
head -c 300 "$T/raw/imgs/full.jpg" > "$T/raw/imgs/corrupt.jpg"
printf 'filepath,caption\n' > "$T/raw/t.csv"
printf 'imgs/red.png,"a red square, large"\n' >> "$T/raw/t.csv"
printf 'imgs/corrupt.jpg,a broken file\n' >> "$T/raw/t.csv"
printf 'imgs/green.jpg,a green field\n' >> "$T/raw/t.csv"
printf 'imgs/nothere.png,a missing image\n' >> "$T/raw/t.csv"
printf 'imgs/blue.png,"   "\n' >> "$T/raw/t.csv"
printf 'imgs/blue.png,bad \xff\xfe bytes\n' >> "$T/raw/t.csv"
printf 'imgs/blue.png,the blue sky\n' >> "$T/raw/t.csv"
printf 'imgs/white.jpg,"white ""snow"""\n' >> "$T/raw/t.csv"

# ---------------------------------------------------------------- csv source
out=$T/csv
"$PREP" shards --source csv --input "$T/raw/t.csv" --output "$out" --learn-vocab 120 --image-size 16 \
    --shard-size 3 --workers 2 --keep-captions >"$T/csv.out" 2>"$T/csv.err"
rc=$?
check "csv: exit 0 (rc=$rc)" [ $rc = 0 ]
check "csv: summary counts 4 written, 1 corrupt, 1 missing, 1 empty, 1 non-UTF-8" \
    grep -q "wrote 4 samples in 2 shards.*skipped 4 (unreadable image 0, corrupt image 1, empty caption 1, non-UTF-8 caption 1, missing file 1)" "$T/csv.out"
check "csv: warnings name the skipped items" \
    bash -c "grep -q 'corrupt.jpg.*corrupt image' '$T/csv.err' && grep -q 'nothere.png.*missing file' '$T/csv.err' && grep -q 't.csv:6.*empty caption' '$T/csv.err'"
check "csv: shards, vocab.txt and manifest.json present" \
    test -f "$out/train-000000.h5" -a -f "$out/train-000001.h5" -a -f "$out/vocab.txt" -a -f "$out/manifest.json" -a ! -e "$out/train-000002.h5"
info=$("$CHECK" "$out/train-000000.h5")
check "csv shard 0: n=3, 16x16x3, T=32, captions, CLIP mean ($info)" \
    [ "$(get n "$info") $(get H "$info") $(get W "$info") $(get C "$info") $(get T "$info") $(get captions "$info") $(get mean "$info")" = "3 16 16 3 32 1 0.4815" ]
info=$("$CHECK" "$out/train-000001.h5")
check "csv shard 1: n=1 ($info)" [ "$(get n "$info")" = 1 ]
s0=$("$CHECK" "$out/train-000000.h5" 0)
check "csv sample 0: red png is exactly (200,10,10), sum 16*16*220 ($s0)" \
    [ "$(get px "$s0") $(get sum "$s0")" = "200,10,10 56320" ]
check "csv sample 0: caption kept ($s0)" bash -c "echo '$s0' | grep -q 'caption=a red square, large'"
s1=$("$CHECK" "$out/train-000000.h5" 1)
IFS=, read -r r g b <<<"$(get px "$s1")"
check "csv sample 1: green jpeg within 3 levels of (10,200,10) ($s1)" bash -c "$(declare -f near); near $r 10 3 && near $g 200 3 && near $b 10 3"
s2=$("$CHECK" "$out/train-000000.h5" 2)
check "csv sample 2: blue png (10,10,200), caption 'the blue sky' ($s2)" \
    bash -c "[ '$(get px "$s2")' = '10,10,200' ] && echo '$s2' | grep -q 'caption=the blue sky'"
s3=$("$CHECK" "$out/train-000001.h5" 0)
check "csv sample 3: \"\" escapes in the caption ($s3)" bash -c "echo '$s3' | grep -q 'caption=white \"snow\"'"
check "manifest: complete, 4 samples, shard list" \
    bash -c "grep -q '\"complete\": true' '$out/manifest.json' && grep -q '\"samples\": 4' '$out/manifest.json' && grep -q '\"file\": \"train-000001.h5\", \"n\": 1' '$out/manifest.json'"
if [ -n "${HDF5_PLUGIN_PATH:-}" ] && command -v h5dump >/dev/null; then
    check "h5dump reads /images and /lengths through the zstd plugin" \
        bash -c "h5dump -d /lengths '$out/train-000000.h5' >/dev/null && h5dump -d /images '$out/train-000000.h5' | grep -q '200, 10, 10'"
else
    bad "h5dump or HDF5_PLUGIN_PATH missing (install hdf5-tools; ctest sets HDF5_PLUGIN_PATH)"
fi

# ---------------------------------------------------------------- --workers invariance
"$PREP" shards --source csv --input "$T/raw/t.csv" --output "$T/csv1" --vocab "$out/vocab.txt" --image-size 16 \
    --shard-size 3 --workers 1 --keep-captions >/dev/null 2>&1
"$PREP" shards --source csv --input "$T/raw/t.csv" --output "$T/csv3" --vocab "$out/vocab.txt" --image-size 16 \
    --shard-size 3 --workers 3 --keep-captions >/dev/null 2>&1
same=1
for k in 0 1 2 3; do
    [ "$("$CHECK" "$T/csv1/train-00000$((k / 3)).h5" $((k % 3)))" = "$("$CHECK" "$T/csv3/train-00000$((k / 3)).h5" $((k % 3)))" ] || same=0
    [ "$("$CHECK" "$T/csv1/train-00000$((k / 3)).h5" $((k % 3)))" = "$("$CHECK" "$out/train-00000$((k / 3)).h5" $((k % 3)))" ] || same=0
done
check "--workers 1, 2 and 3 write the same samples in the same order" [ $same = 1 ]
if [ -n "${HDF5_PLUGIN_PATH:-}" ] && command -v h5dump >/dev/null; then
    check "--workers 1 and 3: /images, /tokens, /lengths, /captions dump identically" \
        bash -c "[ \"\$(h5dump -d /images -d /tokens -d /lengths -d /captions '$T/csv1/train-000000.h5' | tail -n +2)\" = \"\$(h5dump -d /images -d /tokens -d /lengths -d /captions '$T/csv3/train-000000.h5' | tail -n +2)\" ]"
fi

# ---------------------------------------------------------------- re-runs
m0=$(stat -c %Y.%s "$out/train-000000.h5")
"$PREP" shards --source csv --input "$T/raw/t.csv" --output "$out" --learn-vocab 120 --image-size 16 \
    --shard-size 3 --workers 2 --keep-captions >"$T/rerun.out" 2>&1
rc=$?
check "re-run of a complete output: exit 0, 'up to date', shard untouched" \
    bash -c "[ $rc = 0 ] && grep -q 'up to date' '$T/rerun.out' && [ '$(stat -c %Y.%s "$out/train-000000.h5")' = '$m0' ]"
rm "$out/train-000001.h5"
echo junk > "$out/train-000001.h5.tmp"
sleep 1
"$PREP" shards --source csv --input "$T/raw/t.csv" --output "$out" --learn-vocab 120 --image-size 16 \
    --shard-size 3 --workers 2 --keep-captions >"$T/rerun2.out" 2>&1
rc=$?
s3b=$("$CHECK" "$out/train-000001.h5" 0)
check "re-run after losing shard 1: keeps shard 0, redoes shard 1 identically, .tmp gone" \
    bash -c "[ $rc = 0 ] && grep -q 'keeping 1 complete shard' '$T/rerun2.out' && [ '$(stat -c %Y.%s "$out/train-000000.h5")' = '$m0' ] && [ '$s3b' = '$s3' ] && [ ! -e '$out/train-000001.h5.tmp' ]"
check "re-run summary still counts every skip" grep -q "wrote 4 samples in 2 shards.*skipped 4 " "$T/rerun2.out"
head -c 1000 "$out/train-000000.h5" > "$T/trunc.h5" && cp "$T/trunc.h5" "$out/train-000000.h5"
"$PREP" shards --source csv --input "$T/raw/t.csv" --output "$out" --learn-vocab 120 --image-size 16 \
    --shard-size 3 --workers 2 --keep-captions >"$T/rerun3.out" 2>&1
rc=$?
check "re-run after truncating shard 0: everything redone, shard 0 valid again" \
    bash -c "[ $rc = 0 ] && ! grep -q 'keeping' '$T/rerun3.out' && [ '$("$CHECK" "$out/train-000000.h5" 0)' = '$s0' ]"

# ---------------------------------------------------------------- tar source
mkdir -p "$T/w"
cp "$T/raw/imgs/green.jpg" "$T/w/000.jpg"; printf 'a green field' > "$T/w/000.txt"; echo '{}' > "$T/w/000.json"
cp "$T/raw/imgs/red.png" "$T/w/001.png"; printf 'a red square' > "$T/w/001.txt"
cp "$T/raw/imgs/blue.png" "$T/w/002.png"
(cd "$T/w" && tar -cf ../00000.tar 000.jpg 000.txt 000.json 001.png 001.txt 002.png) || bad "tar failed"
cp "$T/raw/imgs/white.jpg" "$T/w/003.jpg"; printf 'white snow' > "$T/w/003.txt"
(cd "$T/w" && tar -cf ../00001.tar 003.jpg 003.txt) || bad "tar failed"
"$PREP" shards --source tar --input "$T/{00000..00001}.tar" --output "$T/tar" --vocab "$out/vocab.txt" \
    --image-size 8 --shard-size 10 --prefix wds --workers 2 >"$T/tar.out" 2>"$T/tar.err"
rc=$?
info=$("$CHECK" "$T/tar/wds-000000.h5")
check "tar: exit 0, 3 samples in wds-000000.h5, 8x8x3 ($info)" \
    bash -c "[ $rc = 0 ] && [ '$(get n "$info") $(get H "$info") $(get C "$info")' = '3 8 3' ]"
check "tar: 002 without .txt counted as missing and warned" \
    bash -c "grep -q 'missing file 1)' '$T/tar.out' && grep -q '00000.tar:002.*missing file' '$T/tar.err'"
s=$("$CHECK" "$T/tar/wds-000000.h5" 1)
check "tar: sample 1 is the red png ($s)" [ "$(get px "$s")" = "200,10,10" ]
s=$("$CHECK" "$T/tar/wds-000000.h5" 2)
IFS=, read -r r g b <<<"$(get px "$s")"
check "tar: sample 2 is the white jpeg from the second tar ($s)" bash -c "$(declare -f near); near $r 250 3 && near $b 250 3"

# ---------------------------------------------------------------- idx source (the Fashion-MNIST package)
if [ -f "$FM/t10k-images-idx3-ubyte.gz" ]; then
    "$PREP" shards --source idx --input "$FM/t10k-images-idx3-ubyte.gz" --labels "$FM/t10k-labels-idx1-ubyte.gz" \
        --classes "$SRC/launch/templates/fashion_mnist_classes.txt" \
        --templates "$SRC/launch/templates/fashion_mnist_train_templates.txt" \
        --image-size 28 --channels 1 --learn-vocab 300 --label-shards --keep-captions --limit 50 --shard-size 20 \
        --prefix test --output "$T/idx" >"$T/idx.out" 2>"$T/idx.err"
    rc=$?
    n0=$(get n "$("$CHECK" "$T/idx/test-000000.h5")"); n2=$(get n "$("$CHECK" "$T/idx/test-000002.h5")")
    info=$("$CHECK" "$T/idx/test-000000.h5")
    check "idx: --limit 50 --shard-size 20 -> 20/20/10, 28x28x1, labels, FMNIST mean ($info)" \
        bash -c "[ $rc = 0 ] && [ '$n0 $n2' = '20 10' ] && [ '$(get H "$info") $(get C "$info") $(get labels "$info") $(get mean "$info") $(get std "$info")' = '28 1 1 0.2860 0.3530' ]"
    want=$(zcat "$FM/t10k-images-idx3-ubyte.gz" | head -c $((16 + 784)) | tail -c 784 | od -An -v -tu1 | awk '{for (i = 1; i <= NF; i++) s += $i} END {print s}')
    s=$("$CHECK" "$T/idx/test-000000.h5" 0)
    check "idx: sample 0 pixels equal the raw IDX bytes (sum $want), label 9, caption names 'ankle boot' ($s)" \
        bash -c "[ '$(get sum "$s") $(get label "$s")' = '$want 9' ] && echo '$s' | grep -qi 'ankle boot'"
else
    bad "Fashion-MNIST package missing ($FM): apt-get install dataset-fashion-mnist (launch/install-deps)"
fi

# ---------------------------------------------------------------- bad flags: exit 2, one line, nothing on stdout
badflag() {
    local what=$1; shift
    "$PREP" "$@" >"$T/bf.out" 2>"$T/bf.err"
    local rc=$? lines
    lines=$(wc -l <"$T/bf.err")
    if [ $rc = 2 ] && [ "$lines" = 1 ] && [ ! -s "$T/bf.out" ] && grep -q -- "$what" "$T/bf.err"; then
        ok "bad flags: $* -> exit 2: $(cat "$T/bf.err")"
    else
        bad "bad flags: $* -> rc=$rc, $lines stderr lines: $(cat "$T/bf.err")"
    fi
}
C0=(shards --source csv --input "$T/raw/t.csv" --output "$T/bf")
badflag "--image-size" "${C0[@]}" --vocab "$out/vocab.txt" --image-size abc
badflag "--image-size" "${C0[@]}" --vocab "$out/vocab.txt" --image-size 0
badflag "--channels" "${C0[@]}" --vocab "$out/vocab.txt" --channels 2
badflag "--context" "${C0[@]}" --vocab "$out/vocab.txt" --context 1000
badflag "--zstd-level" "${C0[@]}" --vocab "$out/vocab.txt" --zstd-level 30
badflag "--workers" "${C0[@]}" --vocab "$out/vocab.txt" --workers -1
badflag "--source" shards --source xml --input a --output b --vocab v
badflag "unknown flag" "${C0[@]}" --vocab "$out/vocab.txt" --colour red
badflag "exactly one of --vocab" "${C0[@]}"
badflag "exactly one of --vocab" "${C0[@]}" --vocab "$out/vocab.txt" --learn-vocab 100
badflag "--output" shards --source csv --input "$T/raw/t.csv" --vocab "$out/vocab.txt"
badflag "--labels" "${C0[@]}" --vocab "$out/vocab.txt" --labels x
badflag "--classes" shards --source idx --input x --labels y --output o --vocab v
badflag "--mean" "${C0[@]}" --vocab "$out/vocab.txt" --mean 0.5
badflag "needs a value" "${C0[@]}" --vocab
badflag "command" frobnicate
"$PREP" --help >"$T/help.out" 2>&1
rc=$?
check "--help: exit 0, lists every flag and the folder source" bash -c "[ $rc = 0 ] && grep -q 'folder: image folders' '$T/help.out' && for f in source input output vocab learn-vocab image-size channels context shard-size prefix workers zstd-level strict keep-captions limit labels classes templates label-shards template-seed; do grep -q -- \"--\$f\" '$T/help.out' || exit 1; done"

# ---------------------------------------------------------------- fatal errors: exit 1
"$PREP" shards --source csv --input "$T/raw/t.csv" --output "$T/strict" --vocab "$out/vocab.txt" --image-size 16 \
    --strict >"$T/strict.out" 2>"$T/strict.err"
rc=$?
check "--strict: the corrupt image is fatal (exit 1) naming it: $(tail -1 "$T/strict.err")" \
    bash -c "[ $rc = 1 ] && tail -1 '$T/strict.err' | grep -q 'strict.*corrupt.jpg.*corrupt image' && [ ! -e '$T/strict/train-000000.h5' ]"
"$PREP" shards --source csv --input "$T/raw/nope.csv" --output "$T/nope" --vocab "$out/vocab.txt" >"$T/f.out" 2>"$T/f.err"
rc=$?
check "missing --input file: exit 1, one line naming it: $(cat "$T/f.err")" \
    bash -c "[ $rc = 1 ] && [ \$(wc -l <'$T/f.err') = 1 ] && grep -q 'nope.csv' '$T/f.err'"
printf 'filepath,caption\nimgs/corrupt.jpg,x\nimgs/nothere.png,y\n' > "$T/raw/allbad.csv"
"$PREP" shards --source csv --input "$T/raw/allbad.csv" --output "$T/allbad" --vocab "$out/vocab.txt" >"$T/ab.out" 2>"$T/ab.err"
rc=$?
check "every item skipped: exit 1 with a message" bash -c "[ $rc = 1 ] && grep -q 'no sample was written' '$T/ab.err'"
"$PREP" shards --source csv --input "$T/raw/t.csv" --output "$T/bv" --vocab "$T/raw/t.csv" >"$T/bv.out" 2>"$T/bv.err"
rc=$?
check "a bad --vocab file: exit 1 naming it: $(head -1 "$T/bv.err")" bash -c "[ $rc = 1 ] && grep -q 't.csv:2' '$T/bv.err'"

# ---------------------------------------------------------------- folder source
# images with captions beside them, in nested folders, written out of sorted
# order: the shards hold them in sorted path order; an image without its .txt
# is skipped as a missing file; non-image files are ignored
mkdir -p "$T/fold/b/deeper" "$T/fold/a"
"$MK" "$T/fold/b/deeper/blue.png" 20 50 10 10 200; printf 'the blue sky\n' > "$T/fold/b/deeper/blue.txt"
"$MK" "$T/fold/b/green.jpg" 64 64 10 200 10;     printf 'a green field' > "$T/fold/b/green.txt"
"$MK" "$T/fold/a/red.png" 40 30 200 10 10;       printf '  a red square  \n' > "$T/fold/a/red.txt"
"$MK" "$T/fold/a/white.jpg" 33 17 250 250 250    # no caption
printf 'not a sample' > "$T/fold/readme.txt"
out=$T/folder
"$PREP" shards --source folder --input "$T/fold" --output "$out" --learn-vocab 100 --image-size 16 --shard-size 10 \
    --workers 2 --keep-captions >"$T/fold.out" 2>"$T/fold.err"
rc=$?
check "folder: exit 0, 3 written, 1 missing file ($(grep wrote "$T/fold.out"))" \
    bash -c "[ $rc = 0 ] && grep -q 'wrote 3 samples in 1 shards.*skipped 1 (.*missing file 1)' '$T/fold.out' && grep -q 'white.jpg.*no caption file .*white.txt' '$T/fold.err'"
f0=$("$CHECK" "$out/train-000000.h5" 0); f1=$("$CHECK" "$out/train-000000.h5" 1); f2=$("$CHECK" "$out/train-000000.h5" 2)
check "folder: sorted order a/red, b/deeper/blue, b/green with their captions" \
    bash -c "[ '$(get px "$f0")' = '200,10,10' ] && echo '$f0' | grep -q 'caption=a red square$' && [ '$(get px "$f1")' = '10,10,200' ] && echo '$f1' | grep -q 'caption=the blue sky$' && echo '$f2' | grep -q 'caption=a green field$'"
check "folder: manifest names the source" grep -q '"source": "folder"' "$out/manifest.json"
"$PREP" shards --source folder --input "$T/fold/a/red.png" --output "$T/fbad" --learn-vocab 100 >"$T/fb.out" 2>"$T/fb.err"
rc=$?
check "folder: a file as --input is fatal, one line: $(cat "$T/fb.err")" \
    bash -c "[ $rc = 1 ] && [ \$(wc -l <'$T/fb.err') = 1 ] && grep -q 'red.png: not a folder' '$T/fb.err'"

# ---------------------------------------------------------------- vocab command
"$PREP" vocab --source csv --input "$T/raw/t.csv" --size 100 --output "$T/v.txt" >"$T/v.out" 2>"$T/v.err"
rc=$?
check "vocab: writes a vocabulary starting with the specials ($(cat "$T/v.out"))" \
    bash -c "[ $rc = 0 ] && [ \"\$(head -4 '$T/v.txt' | tr '\n' ' ')\" = '[PAD] [UNK] [CLS] [SEP] ' ] && grep -q \"wrote \$(wc -l <'$T/v.txt') tokens\" '$T/v.out' && grep -qx 'r' '$T/v.txt'"

finish
