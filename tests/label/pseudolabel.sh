#!/usr/bin/env bash
# pseudolabel end to end: identical pseudo.h5 at 1, 2 and 4 ranks; schema read by h5py; weak
# supervision (bulk and unknown images empty); --preview; bad input (missing stack, unreadable
# reference, stack without labels, unknown bulk class) gives one clear error and no output.
source "$SD_SOURCE_DIR/tests/e2e/lib.sh"
expect_ok "$SD" pseudolabel --help
grep -q "pseudolabel.threshold" "$WORK/last.out" && ok || fail "--help lacks the configuration keys"
expect_ok "$SD" simulate --material cdte --count 18 --size 48 --seed 3 --output "$WORK/sim.h5" --quiet
for np in 1 2 4; do
  expect_ok $MPIRUN -n $np "$SD" pseudolabel --data "$WORK/sim.h5" --output "$WORK/p$np.h5" --quiet
done
for np in 2 4; do
  for d in /masks /deviation /detected /labels /lattice /detected_fraction /class_names; do
    h5diff "$WORK/p1.h5" "$WORK/p$np.h5" $d $d >/dev/null && ok || fail "$d differs between 1 and $np ranks"
  done
done
h5dump -A "$WORK/p1.h5" >"$WORK/h5dump.txt" 2>&1 && ok || fail "h5dump cannot read pseudo.h5"
grep -q '"stemdefect-pseudolabels"' "$WORK/h5dump.txt" && ok || fail "format attribute missing"
if /usr/bin/python3 -c "import h5py, numpy" 2>/dev/null; then
  /usr/bin/python3 - "$WORK/sim.h5" "$WORK/p1.h5" <<'PY' && ok || fail "pseudo.h5 schema / weak supervision"
import sys, h5py, numpy as np
s, p = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
m, d, det, y = p["masks"][:], p["deviation"][:], p["detected"][:], p["labels"][:]
assert m.shape == s["images"].shape and m.dtype == np.uint8, m.shape
assert d.dtype == np.float32 and d.shape == m.shape
assert (y == s["labels"][:]).all()
names = [n.decode() if isinstance(n, bytes) else n for n in p["labels"].attrs["class_names"]]
assert names[0] == "bulk" and len(names) == 7, names
extended = {"stacking_fault", "twin", "dislocation"}  # shapes from the lattice phase
for i in range(len(y)):
    if y[i] == 0:
        assert m[i].max() == 0, i
    else:
        assert set(np.unique(m[i])) <= {0, y[i]}, i
        if names[y[i]] in extended:
            # a band along a lattice plane or a core disc: one solid region, never empty
            f = (m[i] > 0).mean()
            assert 0.03 < f < 0.6, (i, names[y[i]], f)
        elif det[i].any():
            # point classes: one disc of the column's size per detected component
            f = (m[i] > 0).mean()
            assert 0 < f < 0.3, (i, names[y[i]], f)
assert np.isfinite(d).all()
assert abs(float(np.median(np.abs(d))) - 0.6745) < 0.25, np.median(np.abs(d))  # noise units
for k in ("program", "git_commit", "command_line", "config", "ranks", "created"):
    assert k in p.attrs, k
assert int(p.attrs["bulk_class"]) == 0
lat = p["lattice"][:]
assert np.isfinite(lat).all() and lat.shape == (len(y), 4)
PY
fi
# preview montage
expect_ok "$SD" pseudolabel --data "$WORK/sim.h5" --output "$WORK/pv.h5" --preview "$WORK/pv.png" --quiet
head -c 8 "$WORK/pv.png" | od -An -tx1 | grep -q "89 50 4e 47" && ok || fail "preview is not a PNG"

# bad input
expect_fail nz "$WORK/missing.h5" "$SD" pseudolabel --data "$WORK/missing.h5" --output "$WORK/bad1.h5"
no_file "$WORK/bad1.h5"
printf 'not an image\n' >"$WORK/bulk.tif"
expect_fail nz "$WORK/bulk.tif" $MPIRUN -n 2 "$SD" pseudolabel --data "$WORK/sim.h5" --output "$WORK/bad2.h5" --reference "$WORK/bulk.tif"
no_file "$WORK/bad2.h5"
expect_fail nz "pseudolabel.reference" "$SD" pseudolabel --data "$WORK/sim.h5" --output "$WORK/bad3.h5" --reference "$WORK/nothere.png"
no_file "$WORK/bad3.h5"
expect_fail 2 "pseudolabel.bulk_class = 'Perfect'" "$SD" pseudolabel --data "$WORK/sim.h5" --output "$WORK/bad4.h5" --bulk-class Perfect
no_file "$WORK/bad4.h5"
expect_fail 2 "pseudolabel.threshold" "$SD" pseudolabel --data "$WORK/sim.h5" --output "$WORK/bad5.h5" --threshold median
no_file "$WORK/bad5.h5"
# a stack without labels: import a PNG with --labels none
expect_ok "$SD" simulate --count 4 --size 64 --output "$WORK/pre.h5" --preview "$WORK/pre.png" --set simulate.preview_count=1 --quiet
expect_ok "$SD" import --input "$WORK/pre.png" --output "$WORK/nolab.h5" --labels none --quiet
expect_fail nz "pseudolabel needs image-level labels" $MPIRUN -n 2 "$SD" pseudolabel --data "$WORK/nolab.h5" --output "$WORK/bad6.h5"
no_file "$WORK/bad6.h5"
# a class given two extended-defect shapes
expect_fail 2 "matches both pseudolabel.fault_classes" "$SD" pseudolabel --data "$WORK/sim.h5" --output "$WORK/bad7.h5" --set pseudolabel.boundary_classes=twin,stacking*
no_file "$WORK/bad7.h5"
# an output directory that does not exist
expect_fail nz "$WORK/nodir/p.h5" "$SD" pseudolabel --data "$WORK/sim.h5" --output "$WORK/nodir/p.h5"
finish
