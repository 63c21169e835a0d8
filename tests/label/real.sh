#!/usr/bin/env bash
# Opt-in (label slow): pseudo-labels of the real CdTe and SrTiO3 patches with the bulk reference
# images. No pixel truth exists, so this checks what can be checked: the lattice of every
# patch is found, bulk patches stay (nearly) empty (false-alarm area < 1%), and every defect
# class but at most two shows more detected area than bulk. Skips (77) without the data.
source "$SD_SOURCE_DIR/tests/e2e/lib.sh"
[ -n "$REAL" ] || { echo "real data not found (../shared/data/stem-real): skipped"; exit 77; }
PY=/usr/bin/python3
for set in CdTe:CdTe_Training_Image.tif STO:STO_Training_Image.jpg; do
  name=${set%%:*}; ref=${set#*:}
  expect_ok "$SD" import --input "$REAL/$name" --output "$WORK/$name.h5" --quiet
  expect_ok $MPIRUN -n 2 "$SD" pseudolabel --data "$WORK/$name.h5" --output "$WORK/p_$name.h5" \
    --reference "$REAL/$ref" --evaluate "$WORK/$name.json" --quiet
  $PY - "$WORK/$name.json" "$WORK/p_$name.h5" <<'EOF_PY' && ok || fail "$name: real-data pseudo-labels"
import json, sys, h5py, numpy as np
d = json.load(open(sys.argv[1]))
lat = h5py.File(sys.argv[2], "r")["lattice"][:]
print("bulk false alarm %.4f" % d["bulk_false_alarm_fraction"])
for c in d["classes"]:
    print("  %-14s %4d images  detected area %.4f" % (c["name"], c["images"], c["detected_fraction"]))
assert np.isfinite(lat).all(), "lattice missing for some patches"
assert d["bulk_false_alarm_fraction"] < 0.01
bulk = d["bulk_false_alarm_fraction"]
weak = [c["name"] for c in d["classes"] if c["name"] != d["bulk_class"] and c["detected_fraction"] <= bulk]
assert len(weak) <= 2, weak
EOF_PY
done
finish
