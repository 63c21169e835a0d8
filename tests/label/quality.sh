#!/usr/bin/env bash
# Pseudo-label quality on simulated data with true masks (CdTe and SrTiO3 at the default dose):
# the per-class IoU of `pseudolabel --evaluate` must beat the notebook baseline
# (|blur(sigma 1 px) - 7x7 box mean| > 98th percentile) by a clear margin: mean IoU over the
# defect classes >= baseline + 0.1 and >= 3x the baseline, and on the point defects
# (vacancy, interstitial) by >= 0.15 each; the extended defects labelled from the lattice
# fringe phase (stacking fault, twin, dislocation) by >= 0.2 each. Runs on 2 ranks.
source "$SD_SOURCE_DIR/tests/e2e/lib.sh"
PY=/usr/bin/python3
for mat in cdte sto; do
  expect_ok "$SD" simulate --material $mat --count 56 --size 64 --seed 101 --output "$WORK/$mat.h5" --quiet
  expect_ok $MPIRUN -n 2 "$SD" pseudolabel --data "$WORK/$mat.h5" --output "$WORK/p_$mat.h5" \
    --evaluate "$WORK/$mat.json" --quiet
  $PY - "$WORK/$mat.json" $mat <<'EOF_PY' && ok || fail "$mat: pseudo-labels not clearly better than the baseline"
import json, sys
d = json.load(open(sys.argv[1]))
print("%s: mean IoU %.3f, baseline %.3f, bulk false alarm %.4f" % (sys.argv[2], d["mean_iou"], d["baseline_mean_iou"], d["bulk_false_alarm_fraction"]))
for c in d["classes"]:
    print("  %-16s IoU %.3f  baseline %.3f" % (c["name"], c["iou"], c["baseline_iou"]))
assert d["mean_iou"] >= d["baseline_mean_iou"] + 0.1, "mean IoU margin"
assert d["mean_iou"] >= 3 * d["baseline_mean_iou"], "mean IoU ratio"
for c in d["classes"]:
    if c["name"] in ("vacancy", "interstitial"):
        assert c["iou"] >= c["baseline_iou"] + 0.15, c["name"]
    if c["name"] in ("stacking_fault", "twin", "dislocation"):
        assert c["iou"] >= c["baseline_iou"] + 0.2, c["name"]
        assert c["shape_found_images"] == c["images"], c
assert d["bulk_false_alarm_fraction"] < 0.01, "false alarm on bulk"
EOF_PY
done
finish
