#!/usr/bin/env bash
# embed_e2e.sh - `stemdefect embed` end to end: a synthetic blobs file (written by mkblobs
# with the serial HDF5 API) embedded at 1, 2 and 4 ranks gives bitwise identical
# /embedding; the output layout and attributes; the random-projection forest (the same bits at
# any rank count, clean clusters); /scores preferred over /descriptors; the figure; bad inputs
# fail with one clear message and leave no output behind.
source "$SD_SOURCE_DIR/tests/e2e/lib.sh"
MK=${SD_MKBLOBS:?SD_MKBLOBS not set}
export OPENBLAS_NUM_THREADS=1

"$MK" "$WORK/blobs.h5" 300 12 5 descriptors 1 && ok || fail "mkblobs"
for np in 1 2 4; do
  expect_ok $MPIRUN -n $np "$SD" embed --input "$WORK/blobs.h5" --output "$WORK/e$np.h5" \
    --perplexity 20 --iterations 200 --exaggeration-iters 100 --seed 3 --quiet
done
for np in 2 4; do
  h5diff -d 0 "$WORK/e1.h5" "$WORK/e$np.h5" /embedding /embedding >/dev/null 2>&1 && ok ||
    fail "/embedding at $np ranks differs from 1 rank"
done
# bitwise, not only within h5diff's zero tolerance: the raw dumps are equal
h5dump -d /embedding -p -w 0 "$WORK/e1.h5" | grep -v "e1.h5" > "$WORK/d1.txt"
h5dump -d /embedding -p -w 0 "$WORK/e4.h5" | grep -v "e4.h5" > "$WORK/d4.txt"
cmp -s "$WORK/d1.txt" "$WORK/d4.txt" && ok || fail "h5dump of /embedding differs (1 vs 4 ranks)"
# layout: /embedding float32 [500,2], copies of /assignments and /labels, attributes
h5dump -H -d /embedding "$WORK/e1.h5" | grep -q "H5T_IEEE_F32LE" && ok || fail "/embedding is not float32"
h5dump -H -d /embedding "$WORK/e1.h5" | grep -q "( 300, 2 )" && ok || fail "/embedding shape"
for a in kl_divergence perplexity theta iterations seed learning_rate neighbors git_commit config ranks; do
  h5dump -a "/$a" "$WORK/e2.h5" >/dev/null 2>&1 && ok || fail "attribute $a missing"
done
h5dump -a /ranks "$WORK/e2.h5" | grep -q "(0): 2" && ok || fail "ranks attribute"
h5dump -a /iterations "$WORK/e1.h5" | grep -q "(0): 200" && ok || fail "iterations attribute"
# the values only (our copies carry a description attribute)
data_of() { h5dump -d "$2" -y -w 0 "$1" | sed -n '/^   DATA {/,/^   }/p'; }
[ "$(data_of "$WORK/blobs.h5" /assignments)" = "$(data_of "$WORK/e1.h5" /assignments)" ] && ok || fail "/assignments not copied"
[ "$(data_of "$WORK/blobs.h5" /labels)" = "$(data_of "$WORK/e1.h5" /labels)" ] && ok || fail "/labels not copied"
[ -n "$(data_of "$WORK/e1.h5" /labels)" ] && ok || fail "no /labels data"
h5dump -a /labels/class_names "$WORK/e1.h5" | grep -q '"blob4"' && ok || fail "class_names not copied"
h5dump -a /input_dataset "$WORK/e1.h5" | grep -q '"/descriptors"' && ok || fail "input_dataset"
kl=$(h5dump -a /kl_divergence "$WORK/e1.h5" | sed -n 's/.*(0): \([0-9.e+-]*\).*/\1/p')
awk -v k="$kl" 'BEGIN { exit !(k > 0 && k < 3) }' && ok || fail "KL divergence $kl out of (0, 3)"
# /scores is used when present (a different matrix: a different embedding)
"$MK" "$WORK/both.h5" 300 12 5 both 1 && ok || fail "mkblobs both"
expect_ok "$SD" embed --input "$WORK/both.h5" --output "$WORK/es.h5" --perplexity 20 \
  --iterations 100 --exaggeration-iters 50 --figure "$WORK/fig.png" --quiet
h5dump -a /input_dataset "$WORK/es.h5" | grep -q '"/scores"' && ok || fail "/scores not preferred"
head -c 8 "$WORK/fig.png" | od -An -c | grep -q "P   N   G" && ok || fail "figure is not a PNG"
no_file "$WORK/fig.png.tmp"
# the random-projection forest: the same bits at 1, 2 and 4 ranks, recorded in the file,
# and (on these separated blobs) an embedding whose clusters are as clean as the exact one's
for np in 1 2 4; do
  expect_ok $MPIRUN -n $np "$SD" embed --input "$WORK/blobs.h5" --output "$WORK/f$np.h5" \
    --perplexity 20 --iterations 200 --exaggeration-iters 100 --seed 3 --knn forest \
    --forest-trees 4 --quiet
done
for np in 2 4; do
  h5diff -d 0 "$WORK/f1.h5" "$WORK/f$np.h5" /embedding /embedding >/dev/null 2>&1 && ok ||
    fail "forest /embedding at $np ranks differs from 1 rank"
done
h5dump -a /knn "$WORK/f2.h5" | grep -q '"forest"' && ok || fail "knn attribute (forest)"
h5dump -a /forest_trees "$WORK/f2.h5" | grep -q "(0): 4" && ok || fail "forest_trees attribute"
h5dump -a /knn "$WORK/e2.h5" | grep -q '"exact"' && ok || fail "knn attribute (exact: auto below 50000 rows)"
h5diff -d 0 "$WORK/e1.h5" "$WORK/f1.h5" /embedding /embedding >/dev/null 2>&1 &&
  fail "the forest run gives the exact run's embedding (was the forest used?)" || ok
/usr/bin/python3 - "$WORK/e1.h5" "$WORK/f1.h5" <<'PY' && ok || fail "forest embedding: kNN purity"
import sys, h5py, numpy as np
for f in sys.argv[1:]:
    with h5py.File(f) as h:
        y, lab = h["/embedding"][...], h["/labels"][...]
    d = ((y[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, 1)[:, :10]
    purity = (lab[nn] == lab[:, None]).mean()
    print(f, "10-NN label purity", round(purity, 3), file=sys.stderr)
    if purity < 0.95:
        sys.exit(1)
PY
expect_fail 2 "embed.knn" "$SD" embed --input "$WORK/blobs.h5" --output "$WORK/bad6.h5" --knn tree
no_file "$WORK/bad6.h5"
expect_fail 2 "embed.forest_trees" "$SD" embed --input "$WORK/blobs.h5" --output "$WORK/bad7.h5" --forest-trees 0
no_file "$WORK/bad7.h5"
# a config file section works like the options
printf 'embed:\n  perplexity: 20\n  iterations: 200\n  exaggeration_iters: 100\n  seed: 3\n' > "$WORK/c.yaml"
expect_ok "$SD" embed --config "$WORK/c.yaml" --input "$WORK/blobs.h5" --output "$WORK/ec.h5" --quiet
h5diff -d 0 "$WORK/e1.h5" "$WORK/ec.h5" /embedding /embedding >/dev/null 2>&1 && ok || fail "config file run differs"

# bad inputs: one clear message, non-zero exit, nothing written
"$MK" "$WORK/none.h5" 100 4 2 none 1
out=$($MPIRUN -n 2 "$SD" embed --input "$WORK/none.h5" --output "$WORK/bad1.h5" 2>&1); rc=$?
[ $rc -ne 0 ] && ok || fail "missing datasets: exit 0"
printf '%s' "$out" | grep -qF "has neither /scores nor /descriptors" && ok || fail "missing datasets message: $out"
n=$(printf '%s\n' "$out" | grep -c "error:")
[ "$n" = 1 ] && ok || fail "expected one error line from 2 ranks, got $n"
no_file "$WORK/bad1.h5"
"$MK" "$WORK/small.h5" 50 4 2 descriptors 1
expect_fail 2 "perplexity 60 is too large for 50 points" "$SD" embed --input "$WORK/small.h5" --output "$WORK/bad2.h5" --perplexity 60
no_file "$WORK/bad2.h5"
expect_fail 2 "embed.theta" "$SD" embed --input "$WORK/blobs.h5" --output "$WORK/bad3.h5" --theta -0.5
no_file "$WORK/bad3.h5"
expect_fail nz "cannot read input '$WORK/missing.h5'" "$SD" embed --input "$WORK/missing.h5" --output "$WORK/bad4.h5"
no_file "$WORK/bad4.h5"
expect_fail nz "cannot write output '$WORK/nodir/out.h5'" $MPIRUN -n 2 "$SD" embed --input "$WORK/small.h5" --output "$WORK/nodir/out.h5" --perplexity 5 --iterations 10
printf 'not hdf5\n' > "$WORK/text.h5"
expect_fail nz "cannot open '$WORK/text.h5' as an HDF5 file" "$SD" embed --input "$WORK/text.h5" --output "$WORK/bad5.h5"
no_file "$WORK/bad5.h5"
ls "$WORK"/*.tmp-* >/dev/null 2>&1 && fail "temporary files left: $(ls "$WORK"/*.tmp-*)" || ok
finish
