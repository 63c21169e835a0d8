#!/usr/bin/env bash
# `stemdefect describe`: heatmaps made from a simulated stack's true masks (one-hot, written
# with h5py) -> descriptor rows whose per-image, per-class region areas add up to the mask's
# pixel counts (an independent count in numpy), images without defect pixels get one image
# row, identical files at 1, 2 and 4 ranks, and clear errors for bad inputs.
source "$(dirname "$0")/../e2e/lib.sh"
if ! /usr/bin/python3 -c "import h5py, numpy" 2>/dev/null; then
  [ "${CI:-}" = true ] && { echo "FAILED: h5py missing in CI"; exit 1; }
  echo "SKIP: needs python3-h5py"; exit 77
fi
expect_ok "$SD" simulate --material cdte --count 40 --size 48 --seed 9 --output "$WORK/s.h5" --quiet \
  --set simulate.multi_defect_prob=0.5
/usr/bin/python3 - "$WORK/s.h5" "$WORK/h.h5" <<'PY' && ok || fail "could not write the heatmaps"
import sys, h5py, numpy as np
s = h5py.File(sys.argv[1], "r")
masks = s["masks"][...]
names = [n.decode() if isinstance(n, bytes) else n for n in s["labels"].attrs["class_names"]]
C = len(names)
heat = np.zeros((masks.shape[0], C) + masks.shape[1:], np.float32)
for c in range(C):
    heat[:, c] = (masks == c) * 0.9 + 0.1 / C
with h5py.File(sys.argv[2], "w") as f:
    d = f.create_dataset("heatmaps", data=heat)
    d.attrs["class_names"] = np.array(names, dtype="S")
PY
for np in 1 2 4; do
  expect_ok $MPIRUN -n $np "$SD" describe --heatmaps "$WORK/h.h5" --data "$WORK/s.h5" \
    --output "$WORK/d$np.h5" --set describe.min_area=1 --set describe.batch=7
done
for np in 2 4; do
  h5diff "$WORK/d1.h5" "$WORK/d$np.h5" /descriptors /descriptors >/dev/null && ok || fail "descriptors differ at $np ranks"
  for ds in image_index channel box labels names; do
    h5diff "$WORK/d1.h5" "$WORK/d$np.h5" /$ds /$ds >/dev/null && ok || fail "/$ds differs at $np ranks"
  done
done
/usr/bin/python3 - "$WORK/s.h5" "$WORK/d1.h5" <<'PY' && ok || fail "descriptor rows disagree with the masks"
import sys, h5py, numpy as np
s = h5py.File(sys.argv[1], "r"); d = h5py.File(sys.argv[2], "r")
masks = s["masks"][...]; labels = s["labels"][...]
X = d["descriptors"][...]; img = d["image_index"][...]; ch = d["channel"][...]; box = d["box"][...]
names = [n.decode() if isinstance(n, bytes) else n for n in d["names"][...]]
assert X.shape[1] == len(names) and names[0] == "area", names[:3]
assert np.all(np.diff(img) >= 0), "rows not in image order"
assert set(img.tolist()) == set(range(masks.shape[0])), "an image has no row"
assert np.all(d["labels"][...] == labels[img])
C = len(s["labels"].attrs["class_names"])
for i in range(masks.shape[0]):
    rows = np.where(img == i)[0]
    for c in range(1, C):
        want = int((masks[i] == c).sum())
        got = int(X[rows[ch[rows] == c], 0].sum())
        assert want == got, (i, c, want, got)
    if not np.any(masks[i] > 0):
        assert len(rows) == 1 and ch[rows[0]] == 0 and X[rows[0], 0] == 0, (i, rows)
    for r in rows[ch[rows] > 0]:
        y0, x0, y1, x1 = box[r]
        sub = masks[i, y0:y1, x0:x1] == ch[r]
        assert sub[0].any() and sub[-1].any() and sub[:, 0].any() and sub[:, -1].any(), "box not tight"
# the image columns agree with numpy: class-mass fraction of channel 1
m1 = names.index(next(n for n in names if n.startswith("mass_")) ) + 1
heat_mass = np.array([((masks[i] == 1) * 0.9 + 0.1 / C).mean() for i in range(masks.shape[0])])
assert np.allclose(X[:, m1], heat_mass[img], atol=1e-5)
# residual and distortion come from each image's own bulk lattice: they vary over the regions
reg = ch > 0
for name in ("res_std", "distortion", "res_absmax"):
    v = X[reg, names.index(name)]
    assert np.std(v) > 0 and np.all(np.isfinite(v)), (name, v[:5])
print("rows:", X.shape, "region rows:", int(reg.sum()))
PY
# bad inputs: one message naming the file, no output
expect_fail 1 "nothere.h5" "$SD" describe --heatmaps "$WORK/nothere.h5" --data "$WORK/s.h5" --output "$WORK/x.h5"
expect_fail nz "has no dataset /heatmaps" "$SD" describe --heatmaps "$WORK/s.h5" --data "$WORK/s.h5" --output "$WORK/x.h5"
expect_ok "$SD" simulate --material cdte --count 8 --size 32 --seed 1 --output "$WORK/small.h5" --quiet
expect_fail nz "holds 8 images of 32x32" $MPIRUN -n 2 "$SD" describe --heatmaps "$WORK/h.h5" --data "$WORK/small.h5" --output "$WORK/x.h5"
expect_fail nz "/deviation" "$SD" describe --heatmaps "$WORK/h.h5" --data "$WORK/s.h5" --residual "$WORK/s.h5" --output "$WORK/x.h5"
no_file "$WORK/x.h5"
finish
