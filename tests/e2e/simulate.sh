#!/usr/bin/env bash
# simulate: identical datasets at 1, 2 and 4 ranks; schema and masks; preview PNG; both
# materials; configurable class names; bad parameters.
source "$(dirname "$0")/lib.sh"
for np in 1 2 4; do
  expect_ok $MPIRUN -n $np "$SD" simulate --material cdte --count 37 --size 48 --seed 5 --output "$WORK/s$np.h5" --quiet
done
for np in 2 4; do
  for d in /images /labels /masks /source /class_names; do
    h5diff "$WORK/s1.h5" "$WORK/s$np.h5" $d $d >/dev/null && ok || fail "$d differs between 1 and $np ranks"
  done
done
expect_ok "$SD" info "$WORK/s1.h5"
grep -q "37 image(s) of 48x48, masks: yes" "$WORK/last.out" && ok || fail "info: $(cat "$WORK/last.out")"
[ "$(grep -c '  class ' "$WORK/last.out")" = 7 ] && ok || fail "cdte default classes: $(cat "$WORK/last.out")"
# a different seed gives different images
expect_ok "$SD" simulate --count 37 --size 48 --seed 6 --output "$WORK/s6.h5" --quiet
h5diff -q "$WORK/s1.h5" "$WORK/s6.h5" /images /images >/dev/null && fail "seed has no effect" || ok
# STO, custom class names matching the real STO set, preview montage
expect_ok $MPIRUN -n 2 "$SD" simulate --material sto --count 40 --output "$WORK/sto.h5" \
  --classes Bulk=bulk --classes Extra=interstitial --classes IExtra=substitution --classes Mis=vacancy \
  --preview "$WORK/sto.png" --quiet
expect_ok "$SD" info "$WORK/sto.h5"
grep -q "IExtra *10" "$WORK/last.out" && grep -q "Bulk *10" "$WORK/last.out" && ok || fail "sto classes: $(cat "$WORK/last.out")"
head -c 8 "$WORK/sto.png" | od -An -tx1 | grep -q "89 50 4e 47" && ok || fail "preview is not a PNG"
# masks: bulk images have empty masks, defect images carry their class
if /usr/bin/python3 -c "import h5py, numpy" 2>/dev/null; then
  /usr/bin/python3 - "$WORK/s1.h5" <<'PY' && ok || fail "mask/label consistency"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
m, y = f["masks"][:], f["labels"][:]
assert m.shape == f["images"].shape and m.dtype == np.uint8
for i in range(len(y)):
    if y[i] == 0:
        assert m[i].max() == 0, i
    else:
        assert (m[i] == y[i]).any(), i
assert f.attrs["format"] in ("stemdefect-stack", b"stemdefect-stack")
PY
else
  [ "${CI:-}" = true ] && fail "h5py missing in CI" || echo "SKIP mask check: h5py missing"
fi
# bad parameters name the key
expect_fail 2 "simulate.classes" "$SD" simulate --classes Foo=gold --output "$WORK/bad.h5"
no_file "$WORK/bad.h5"
expect_fail 2 "simulate.size" "$SD" simulate --size 8 --output "$WORK/bad.h5"
expect_fail nz "$WORK/nodir/x.h5" $MPIRUN -n 2 "$SD" simulate --count 4 --output "$WORK/nodir/x.h5"
finish
