#!/usr/bin/env bash
# Opt-in (label slow): the localisation and sorting targets on the real data with the shipped
# recipes, through `stemdefect run` (pseudo-labels against the bulk reference -> 12-epoch U-Net
# -> heatmaps -> descriptors -> clusters; the classifier is left to train_real_targets):
#   - the labelled class carries the most heatmap mass in >= 90% of the non-bulk test patches,
#     and bulk test patches stay near-empty (false-alarm area < 1%);
#   - the silhouette-chosen k is within +-1 of the true class count, ARI >= 0.6.
# About 2 minutes per material on 2 cores.   tests/run.sh --label slow -- -R real_study
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
[ -n "$REAL" ] || { echo "SKIP: ../shared/data/stem-real not found"; exit 77; }
cd "$SRC" # the recipes name the data relative to the project root
for m in cdte sto; do
  expect_ok $MPIRUN -n 2 "$SD" run --config "config/$m.yaml" --dir "$WORK/$m" \
    --stages data,pseudolabel,segmenter,segment,describe,cluster --quiet
  $PY - "$WORK/$m" "$m" <<'EOF_PY' && ok || fail "$m: real-data localisation / clustering targets"
import sys, json, h5py
d, m = sys.argv[1], sys.argv[2]
u = json.load(open(d + "/unet_metrics.json"))
with h5py.File(d + "/clusters.h5", "r") as f:
    k, ari = int(f.attrs["chosen_k"]), float(f.attrs["ari"])
    ntrue = len(set(f["labels"][:].tolist()) - {-1})
top, fa = u["labelled_class_top_mass_fraction"], u["bulk_false_alarm_area"]
print("%s: top-mass %.3f, bulk false alarm %.4f, chosen k %d for %d classes, ARI %.3f"
      % (m, top, fa, k, ntrue, ari))
assert top >= 0.9, top
assert 0 <= fa < 0.01, fa
assert abs(k - ntrue) <= 1, (k, ntrue)
assert ari >= 0.6, ari
EOF_PY
done
finish
