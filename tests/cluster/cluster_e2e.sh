#!/usr/bin/env bash
# stemdefect cluster end to end: synthetic blobs with /labels -> cluster at 1/2/4 ranks ->
# identical clusters.h5 (every dataset, bitwise; the result attributes), chosen_k = the blob
# count, high ARI, figures; scikit-learn cross-check when /usr/bin/python3 has it; bad input
# gives one clear error and leaves no output.
source "$(dirname "$0")/../e2e/lib.sh"
MK=${SD_MKDESC:?SD_MKDESC not set}
"$MK" "$WORK/d.h5" 2500 8 4 3 8 || { echo "mkdescriptors failed"; exit 1; }
for n in 1 2 4; do
  expect_ok $MPIRUN -n $n "$SD" cluster --descriptors "$WORK/d.h5" --output "$WORK/c$n.h5" --k 2:7 \
    --screen --figures "$WORK/fig$n-"
done
attr() { h5dump -a "/$2" "$1" 2>/dev/null | sed -n 's/^ *(0): *//p' | head -1; }
for n in 2 4; do
  if h5diff --exclude-attribute / "$WORK/c1.h5" "$WORK/c$n.h5" >"$WORK/diff.txt" 2>&1; then ok; else fail "datasets differ at $n ranks: $(head -20 "$WORK/diff.txt")"; fi
  for a in chosen_k chosen_silhouette ari nmi purity; do
    [ "$(attr "$WORK/c1.h5" $a)" = "$(attr "$WORK/c$n.h5" $a)" ] && ok || fail "attribute $a differs at $n ranks"
  done
done
# as many columns as the real descriptors (43; the PCA keeps > 41: one ScaLAPACK block per
# rank, where one rank once got wrong components): 1, 2 and 4 ranks give the same bits
"$MK" "$WORK/w.h5" 1500 45 5 7 8 || { echo "mkdescriptors failed"; exit 1; }
for n in 1 2 4; do
  expect_ok $MPIRUN -n $n "$SD" cluster --descriptors "$WORK/w.h5" --output "$WORK/w$n.h5" --k 2:6 \
    --variance 0.999
done
p=$(attr "$WORK/w1.h5" components)
[ -z "$p" ] && p=$(h5dump -d /scores -H "$WORK/w1.h5" | sed -n 's/.*( *[0-9]*, *\([0-9]*\) ).*/\1/p' | head -1)
awk -v p="$p" 'BEGIN{exit !(p > 41)}' && ok || fail "the wide case keeps only $p components (wanted > 41)"
for n in 2 4; do
  h5diff -d 0 "$WORK/w1.h5" "$WORK/w$n.h5" /scores /scores >/dev/null 2>&1 && ok ||
    fail "wide descriptors: /scores differ between 1 and $n ranks"
  h5diff -d 0 "$WORK/w1.h5" "$WORK/w$n.h5" /assignments /assignments >/dev/null 2>&1 && ok ||
    fail "wide descriptors: /assignments differ between 1 and $n ranks"
done
k=$(attr "$WORK/c1.h5" chosen_k)
[ "$k" = 4 ] && ok || fail "chosen_k = $k, wanted 4 (the blob count)"
ari=$(attr "$WORK/c1.h5" ari)
awk -v a="$ari" 'BEGIN{exit !(a >= 0.95)}' && ok || fail "ARI $ari < 0.95"
h5dump -d /pca/dropped_names "$WORK/c1.h5" | grep -q '"copy_of_f0"' && ok || fail "screen did not record copy_of_f0"
h5dump -d /pca/dropped_names "$WORK/c1.h5" | grep -q '"constant"' && ok || fail "screen did not record the constant column"
for f in silhouette pca_variance; do
  head -c 8 "$WORK/fig1-$f.png" | od -An -c | grep -q "P   N   G" && ok || fail "$f.png is not a PNG"
done
grep -q "k-means" "$WORK/last.err" && ok || fail "no progress output"
# sampled silhouette: rank-count independent, with a standard error
for n in 1 2; do
  expect_ok $MPIRUN -n $n "$SD" cluster --descriptors "$WORK/d.h5" --output "$WORK/s$n.h5" --k 3:5 \
    --silhouette sampled --set cluster.sample=600 --quiet
done
h5diff --exclude-attribute / "$WORK/s1.h5" "$WORK/s2.h5" >/dev/null && ok || fail "sampled results differ at 2 ranks"
h5dump -d /silhouette_stderr "$WORK/s1.h5" | grep -q "0, 0, 0" && fail "sampled run has no standard error" || ok
# independent check with scikit-learn (skipped when /usr/bin/python3 lacks it)
if /usr/bin/python3 -c "import sklearn, h5py" 2>/dev/null; then
  /usr/bin/python3 - "$WORK/c1.h5" <<'PY' && ok || fail "scikit-learn disagrees"
import sys, h5py, numpy as np
from sklearn import metrics
f = h5py.File(sys.argv[1], "r")
x, a, lab = f["scores"][()], f["assignments"][()], f["labels"][()]
k = int(f.attrs["chosen_k"]); ks = list(f["k_values"][()])
s = metrics.silhouette_score(x.astype(np.float64), a)
assert abs(s - f["silhouette"][ks.index(k)]) < 1e-5, (s, f["silhouette"][()])
assert abs(metrics.calinski_harabasz_score(x.astype(np.float64), a) / f["calinski_harabasz"][ks.index(k)] - 1) < 1e-6
assert abs(metrics.davies_bouldin_score(x.astype(np.float64), a) - f["davies_bouldin"][ks.index(k)]) < 1e-6
assert abs(metrics.adjusted_rand_score(lab, a) - f.attrs["ari"]) < 1e-12
assert abs(metrics.normalized_mutual_info_score(lab, a) - f.attrs["nmi"]) < 1e-12
pc = f["pca/components"][()]
assert np.allclose(pc @ pc.T, np.eye(pc.shape[0]), atol=1e-6)
print("scikit-learn agrees: silhouette %.6f ARI %.6f" % (s, f.attrs["ari"]))
PY
fi
# bad input: one clear error, non-zero exit, nothing written
expect_fail 1 "cannot read the descriptors file '$WORK/none.h5'" "$SD" cluster --descriptors "$WORK/none.h5" --output "$WORK/bad1.h5"
no_file "$WORK/bad1.h5"
"$MK" "$WORK/nod.h5" 100 4 2 1 8 nodescriptors
out=$($MPIRUN -n 2 "$SD" cluster --descriptors "$WORK/nod.h5" --output "$WORK/bad2.h5" 2>&1); rc=$?
[ $rc = 1 ] && ok || fail "no /descriptors: exit $rc (wanted 1)"
printf '%s' "$out" | grep -qF "has no dataset /descriptors" && ok || fail "message lacks 'has no dataset /descriptors': $out"
n=$(printf '%s\n' "$out" | grep -c "error:")
[ "$n" = 1 ] && ok || fail "expected one error line from 2 ranks, got $n"
no_file "$WORK/bad2.h5"
expect_fail 2 "cluster.k = '5:2'" "$SD" cluster --descriptors "$WORK/d.h5" --output "$WORK/bad3.h5" --k 5:2
no_file "$WORK/bad3.h5"
"$MK" "$WORK/nan.h5" 1200 5 2 1 8 nan
expect_fail 1 "must be finite" $MPIRUN -n 2 "$SD" cluster --descriptors "$WORK/nan.h5" --output "$WORK/bad4.h5"
no_file "$WORK/bad4.h5"
"$MK" "$WORK/small.h5" 20 4 2 1 8
expect_fail 2 "has only 20 rows" "$SD" cluster --descriptors "$WORK/small.h5" --output "$WORK/bad5.h5" --k 2:30
no_file "$WORK/bad5.h5"
finish
