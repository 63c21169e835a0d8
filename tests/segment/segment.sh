#!/usr/bin/env bash
# U-Net end to end on a small simulated CdTe stack (32x32, bulk / vacancy / stacking fault).
# Default (argument "fast"): a short training lowers the loss (with a finite validation loss
# every epoch) and beats a class-prior guess; early stopping restores the best epoch's weights;
# evaluate's JSON matches an independent numpy computation from segment's heatmaps; heatmaps
# (and the MC-dropout mean and variance, whole frames and tiled) are the same at 1, 2 and 4
# ranks; resume is bitwise; SIGTERM checkpoints and exits 75; bad
# inputs fail with one clear message and leave nothing behind.
# "slow" (label slow): a longer training reaches mean IoU > 0.3 (> 4x chance); --labels FILE
# reads the same masks as the stack's own; tiled segmentation against whole frames; overlays.
source "$(dirname "$0")/../e2e/lib.sh"
MODE=${1:-fast}
# one BLAS thread per rank: on a shared, oversubscribed machine OpenBLAS threads spin-wait
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
PY=/usr/bin/python3
have_py=0
$PY -c "import h5py, numpy" 2>/dev/null && have_py=1
[ $have_py = 1 ] || { [ "${CI:-}" = true ] && fail "h5py missing in CI"; echo "SKIP numpy checks: h5py missing"; }

expect_ok "$SD" simulate --material cdte --count 160 --size 32 --seed 3 --output "$WORK/d.h5" \
  --classes Bulk=bulk --classes Vac=vacancy --classes SF=stacking_fault --quiet
COMMON=(train --task segment --data "$WORK/d.h5" --batch 16 --set segmenter.depth=2 --set segmenter.width=4
  --set segmenter.lr=0.01 --set segmenter.data_shards=2)

echo "[$SECONDS s] training"
# 1. training: the loss falls, evaluate's mean IoU is far above chance
E=4; MIN_IOU=0; [ "$MODE" = slow ] && { E=14; MIN_IOU=0.3; }
$MPIRUN -n 2 "$SD" "${COMMON[@]}" --epochs $E --output "$WORK/u.h5" >"$WORK/train.log" 2>&1 && ok || fail "training failed: $(tail -3 "$WORK/train.log")"
first=$(grep -o "epoch 1/$E  loss [0-9.]*" "$WORK/train.log" | awk '{print $4}')
last=$(grep -o "epoch $E/$E  loss [0-9.]*" "$WORK/train.log" | awk '{print $4}')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < 0.9 * a) }' && ok || fail "loss did not fall enough: $first -> $last"
# every epoch logs a finite validation loss (the training objective on the validation part)
nv=$(grep -cE "epoch [0-9]+/$E  loss [0-9.]+  val_loss [0-9]+\.[0-9]+  val_acc [0-9]+\.[0-9]+" "$WORK/train.log")
[ "$nv" = "$E" ] && ok || fail "$nv of $E epochs log a finite val_loss: $(grep -m2 -o 'val_loss [^ ]*' "$WORK/train.log" | tr '\n' ' ')"
expect_ok "$SD" evaluate --model "$WORK/u.h5" --data "$WORK/d.h5" --output "$WORK/m.json" --quiet
expect_ok "$SD" segment --model "$WORK/u.h5" --data "$WORK/d.h5" --output "$WORK/h1.h5" --quiet
for np in 2 4; do
  expect_ok $MPIRUN -n $np "$SD" segment --model "$WORK/u.h5" --data "$WORK/d.h5" --output "$WORK/h$np.h5" --batch 8 --quiet
  h5diff -d 1e-5 "$WORK/h1.h5" "$WORK/h$np.h5" /heatmaps /heatmaps >/dev/null && ok || fail "heatmaps at $np ranks differ from 1 rank"
done
# MC dropout (the model has the default dropout 0.1): mean heatmaps and variance are the same at
# 1, 2 and 4 ranks (masks keyed by image, tile and pass, not by rank)
expect_ok "$SD" segment --model "$WORK/u.h5" --data "$WORK/d.h5" --output "$WORK/mc1.h5" --mc-samples 6 --quiet
for np in 2 4; do
  expect_ok $MPIRUN -n $np "$SD" segment --model "$WORK/u.h5" --data "$WORK/d.h5" --output "$WORK/mc$np.h5" --batch 8 --mc-samples 6 --quiet
  h5diff -d 1e-5 "$WORK/mc1.h5" "$WORK/mc$np.h5" /heatmaps /heatmaps >/dev/null && ok || fail "MC heatmaps at $np ranks differ from 1 rank"
  h5diff -d 1e-6 "$WORK/mc1.h5" "$WORK/mc$np.h5" /variance /variance >/dev/null && ok || fail "MC variance at $np ranks differs from 1 rank"
done
expect_ok "$SD" segment --model "$WORK/u.h5" --data "$WORK/d.h5" --output "$WORK/mcs.h5" --mc-samples 6 --mc-seed 2 --quiet
if [ $have_py = 1 ]; then
  $PY - "$WORK/mc1.h5" "$WORK/h1.h5" "$WORK/mcs.h5" <<'PY' && ok || fail "MC dropout heatmaps / variance"
import sys, h5py, numpy as np
f, d, o = (h5py.File(p, "r") for p in sys.argv[1:])
M, V, D = f["heatmaps"][...], f["variance"][...], d["heatmaps"][...]
assert M.shape == V.shape == D.shape, (M.shape, V.shape)
assert f["heatmaps"].attrs["mc_samples"] == 6 and f["variance"].attrs["mc_samples"] == 6
assert d["heatmaps"].attrs["mc_samples"] == 0 and "variance" not in d
assert list(f["variance"].attrs["class_names"].astype(str)) == list(d["heatmaps"].attrs["class_names"].astype(str))
assert np.allclose(M.sum(axis=1), 1, atol=1e-5)
# a variance of values in [0, 1] with mean m is at most m (1 - m); dropout makes it > 0
assert V.min() >= 0 and np.all(V <= M * (1 - M) + 1e-6), (V.min(), (V - M * (1 - M)).max())
assert V.max() > 1e-5, V.max()
# the mean of stochastic passes stays close to the deterministic pass, but is not it
agree = np.mean(M.argmax(1) == D.argmax(1))
assert agree > 0.9 and np.abs(M - D).max() > 1e-6, (agree, np.abs(M - D).max())
# another seed, other masks
assert np.abs(o["variance"][...] - V).max() > 1e-6
print(f"MC dropout: max variance {V.max():.4f}, mean total variance {V.sum(1).mean():.2e}, arg-max agreement with the deterministic pass {agree:.3f}")
PY
fi
if [ $have_py = 1 ]; then
  $PY - "$WORK/u.h5" "$WORK/d.h5" "$WORK/h1.h5" "$WORK/m.json" $MIN_IOU <<'PY' && ok || fail "evaluate JSON does not match the independent computation"
import sys, json, h5py, numpy as np
model, stack, heat, js, min_iou = sys.argv[1:]
m = json.load(open(js))
for k in ("mean_iou", "per_class", "pixel_accuracy", "defect_pixel_precision", "defect_pixel_recall",
          "labelled_class_top_mass_fraction", "bulk_false_alarm_area", "class_names", "pixel_confusion"):
    assert k in m, k
split = h5py.File(model, "r")["training/split"][...]
idx = np.nonzero(split == 2)[0]
assert m["part"] == "test" and m["n"] == len(idx), (m["part"], m["n"], len(idx))
h = h5py.File(heat, "r")
P = h["heatmaps"][...][idx]
assert list(h["heatmaps"].attrs["class_names"].astype(str)) == m["class_names"]
assert np.allclose(P.sum(axis=1), 1, atol=1e-5)
for k in ("program", "git_commit", "config", "command_line", "ranks", "created"):
    assert k in h.attrs, k
s = h5py.File(stack, "r")
assert list(h["labels"][...]) == list(s["labels"][...])
T = s["masks"][...][idx].astype(int)
lab = s["labels"][...][idx]
pred = P.argmax(axis=1)
C = P.shape[1]
ious = []
for c in range(C):
    tp = np.sum((pred == c) & (T == c)); fp = np.sum((pred == c) & (T != c)); fn = np.sum((pred != c) & (T == c))
    iou = tp / (tp + fp + fn)
    e = m["per_class"][c]
    assert abs(e["iou"] - iou) < 2e-3, (c, e["iou"], iou)
    assert abs(e["precision"] - tp / (tp + fp)) < 2e-3 and abs(e["recall"] - tp / (tp + fn)) < 2e-3
    if c > 0: ious.append(iou)
assert abs(m["mean_iou"] - np.mean(ious)) < 2e-3, (m["mean_iou"], np.mean(ious))
dt, dp = T > 0, pred > 0
assert abs(m["defect_pixel_precision"] - np.sum(dt & dp) / np.sum(dp)) < 2e-3
assert abs(m["defect_pixel_recall"] - np.sum(dt & dp) / np.sum(dt)) < 2e-3
mass = P[:, 1:].sum(axis=(2, 3))
nb = lab > 0
top = np.mean(mass[nb].argmax(axis=1) + 1 == lab[nb])
assert abs(m["labelled_class_top_mass_fraction"] - top) < 1e-6, (m["labelled_class_top_mass_fraction"], top)
fa = np.mean((pred[lab == 0] != 0).mean(axis=(1, 2)))
assert abs(m["bulk_false_alarm_area"] - fa) < 1e-6
# chance: guessing each pixel's class from the class frequencies
rng = np.random.default_rng(0)
freq = np.bincount(T.ravel(), minlength=C) / T.size
G = rng.choice(C, size=T.shape, p=freq)
chance = np.mean([np.sum((G == c) & (T == c)) / np.sum((G == c) | (T == c)) for c in range(1, C)])
print(f"U-Net mean IoU {m['mean_iou']:.3f} (independent {np.mean(ious):.3f}), chance {chance:.3f}, top-mass {top:.3f}, bulk FA {fa:.4f}")
want = 4 * chance if float(min_iou) > 0 else 2 * chance
assert m["mean_iou"] > float(min_iou) and m["mean_iou"] > want, (m["mean_iou"], chance)
PY
fi

echo "[$SECONDS s] 1b. early stopping"
# 1b. early stopping on the validation loss restores the best epoch's weights: the stop
# follows the logged losses, and the saved model's validation loss recomputed from its
# heatmaps (class-weighted CE + Dice, numpy) is the best logged one
expect_ok $MPIRUN -n 2 "$SD" "${COMMON[@]}" --epochs 4 --set segmenter.patience=1 --output "$WORK/es.h5"
cp "$WORK/last.err" "$WORK/es.log"
expect_ok "$SD" segment --model "$WORK/es.h5" --data "$WORK/d.h5" --output "$WORK/hes.h5" --quiet
if [ $have_py = 1 ]; then
  $PY - "$WORK/es.h5" "$WORK/d.h5" "$WORK/hes.h5" "$WORK/es.log" 1 <<'PY' && ok || fail "early stopping / restored weights"
import sys, re, h5py, numpy as np
model, stack, heat, log, patience = sys.argv[1:]
patience = int(patience)
text = open(log).read()
vl = [float(v) for v in re.findall(r"epoch \d+/\d+  loss \S+  val_loss (\S+)", text)]
assert vl and all(np.isfinite(vl)), vl
# the trainer's rule: stop once `patience` epochs passed without an improvement > 1e-4 (the
# log rounds to 1e-4, so a near-tie leaves the stop epoch open)
best, be, stop, tie = np.inf, 0, len(vl), False
for e, v in enumerate(vl, 1):
    tie |= abs(v - (best - 1e-4)) < 1.5e-4
    if v < best - 1e-4:
        best, be = v, e
    elif e - be >= patience:
        stop = e
        break
assert tie or len(vl) == stop, (vl, stop)
tr = h5py.File(model, "r")["training"]
be = int(tr.attrs["best_epoch"])
assert 1 <= be <= len(vl) and abs(tr.attrs["best_val_loss"] - min(vl)) < 6e-5, (be, tr.attrs["best_val_loss"], vl)
if be < len(vl):
    assert f"restored the weights of epoch {be}" in text
# the saved model's validation loss from its heatmaps
split = tr["split"][...]
T = h5py.File(stack, "r")["masks"][...].astype(int)
P = h5py.File(heat, "r")["heatmaps"][...][split == 1].astype(np.float64)
C = P.shape[1]
cnt = np.bincount(T[split == 0].ravel(), minlength=C).astype(float)
w = np.where(cnt > 0, np.sqrt(cnt.sum() / (C * np.maximum(cnt, 1))), 1.0)
Y = T[split == 1]
py = np.take_along_axis(P, Y[:, None], axis=1)[:, 0]
ce = np.sum(w[Y] * -np.log(py)) / np.sum(w[Y])
G = np.stack([Y == c for c in range(C)], axis=1)
I, Ps, Gs = (P * G).sum(axis=(0, 2, 3)), P.sum(axis=(0, 2, 3)), G.sum(axis=(0, 2, 3))
dice = 1 - np.sum(w[1:] * (2 * I[1:] + 1) / (Ps[1:] + Gs[1:] + 1)) / np.sum(w[1:])
v = ce + dice
print(f"val_loss per epoch {vl}: stopped after {len(vl)}, restored epoch {be}; "
      f"the saved model's val loss from its heatmaps {v:.5f} (CE {ce:.4f} + Dice {dice:.4f})")
assert abs(v - tr.attrs["best_val_loss"]) < 1e-3 * max(1.0, v), (v, tr.attrs["best_val_loss"])
PY
fi

echo "[$SECONDS s] 2. --labels"
# 2. --labels FILE: the stack's own file as labels gives the same model as the default
if [ "$MODE" = slow ]; then
expect_ok "$SD" "${COMMON[@]}" --epochs 1 --set segmenter.max_steps=3 --output "$WORK/a.h5" --checkpoint "$WORK/a.h5" --quiet
expect_ok "$SD" "${COMMON[@]}" --epochs 1 --set segmenter.max_steps=3 --output "$WORK/b.h5" --checkpoint "$WORK/b.h5" --labels "$WORK/d.h5" --quiet
h5diff "$WORK/a.h5" "$WORK/b.h5" /params /params >/dev/null && ok || fail "--labels with the stack's own masks trains differently"
fi

echo "[$SECONDS s] 3. resume"
# 3. resume after max_steps is bitwise the uninterrupted run (2 ranks)
expect_ok $MPIRUN -n 2 "$SD" "${COMMON[@]}" --epochs 1 --output "$WORK/r0.h5" --quiet
expect_ok $MPIRUN -n 2 "$SD" "${COMMON[@]}" --epochs 1 --output "$WORK/r.h5" --set segmenter.max_steps=3 --checkpoint "$WORK/r.ckpt" --quiet
[ -f "$WORK/r.ckpt" ] && ok || fail "no checkpoint after max_steps"
expect_ok $MPIRUN -n 2 "$SD" "${COMMON[@]}" --epochs 1 --output "$WORK/r.h5" --resume --checkpoint "$WORK/r.ckpt" --quiet
h5diff "$WORK/r0.h5" "$WORK/r.h5" /params /params >/dev/null && ok || fail "resumed U-Net differs from the uninterrupted one"
h5diff "$WORK/r0.h5" "$WORK/r.h5" /buffers /buffers >/dev/null && ok || fail "resumed U-Net differs (batch-norm buffers)"

echo "[$SECONDS s] 4. SIGTERM"
# 4. SIGTERM: checkpoint + exit 75, no model
$MPIRUN -n 2 "$SD" "${COMMON[@]}" --epochs 100000 --output "$WORK/s.h5" --checkpoint "$WORK/s.ckpt" >"$WORK/sig.log" 2>&1 &
pid=$!
# wait for the first checkpoint (training runs, the signal handlers are in place), not a time
for _ in $(seq 1 240); do [ -f "$WORK/s.ckpt" ] && break; sleep 0.5; done
pkill -TERM -P $pid
wait $pid; rc=$?
[ $rc = 75 ] && ok || fail "exit code after SIGTERM: $rc ($(tail -3 "$WORK/sig.log"))"
[ -f "$WORK/s.ckpt" ] && ok || fail "no checkpoint after SIGTERM"
[ -f "$WORK/s.h5" ] && fail "a model was written although training was interrupted" || ok

echo "[$SECONDS s] 5. tiles"
# 5. tiles smaller than the frame, overlays
expect_ok "$SD" simulate --material cdte --count 3 --size 64 --seed 9 --output "$WORK/big.h5" \
  --classes Bulk=bulk --classes Vac=vacancy --classes SF=stacking_fault --quiet
# tiled MC dropout: identical at 1 and 2 ranks; the overlay gains the variance panel
expect_ok "$SD" segment --model "$WORK/u.h5" --data "$WORK/big.h5" --output "$WORK/mt1.h5" --tile 32 --overlap 8 \
  --mc-samples 3 --overlay "$WORK/ovm" --overlay-images 1 --quiet
expect_ok "$SD" segment --model "$WORK/u.h5" --data "$WORK/big.h5" --output "$WORK/mtd.h5" --tile 32 --overlap 8 \
  --overlay "$WORK/ovd" --overlay-images 1 --quiet
expect_ok $MPIRUN -n 2 "$SD" segment --model "$WORK/u.h5" --data "$WORK/big.h5" --output "$WORK/mt2.h5" --tile 32 --overlap 8 \
  --mc-samples 3 --batch 4 --quiet
h5diff -d 1e-6 "$WORK/mt1.h5" "$WORK/mt2.h5" /variance /variance >/dev/null && ok || fail "tiled MC variance at 2 ranks differs"
h5diff -d 1e-5 "$WORK/mt1.h5" "$WORK/mt2.h5" /heatmaps /heatmaps >/dev/null && ok || fail "tiled MC heatmaps at 2 ranks differ"
if [ $have_py = 1 ]; then
  $PY - "$WORK/ovm/overlay_00001.png" "$WORK/ovd/overlay_00001.png" <<'PY' && ok || fail "the MC overlay has no variance panel"
import sys, struct
w = [struct.unpack(">I", open(p, "rb").read()[16:20])[0] for p in sys.argv[1:]]
assert w[0] > w[1] + 300, w  # image panel (384 px) + variance panel + legend vs image + legend
PY
fi
if [ "$MODE" = slow ]; then
expect_ok $MPIRUN -n 2 "$SD" segment --model "$WORK/u.h5" --data "$WORK/big.h5" --output "$WORK/ht.h5" --tile 32 --overlap 8 \
  --overlay "$WORK/ov" --overlay-images 0,2 --quiet
expect_ok "$SD" segment --model "$WORK/u.h5" --data "$WORK/big.h5" --output "$WORK/hw.h5" --quiet
[ -s "$WORK/ov/overlay_00000.png" ] && [ -s "$WORK/ov/overlay_00002.png" ] && ok || fail "overlays missing"
if [ $have_py = 1 ]; then
  $PY - "$WORK/ht.h5" "$WORK/hw.h5" <<'PY' && ok || fail "tiled heatmaps"
import sys, h5py, numpy as np
a = h5py.File(sys.argv[1], "r"); b = h5py.File(sys.argv[2], "r")
A, B = a["heatmaps"][...], b["heatmaps"][...]
assert A.shape == B.shape == (3, 3, 64, 64)
assert np.allclose(A.sum(axis=1), 1, atol=1e-5)
assert a["heatmaps"].attrs["tiles_per_frame"] == 9 and b["heatmaps"].attrs["tiles_per_frame"] == 1
# tiles of 32 px see little context: agreement is loose, but the maps must be alike
assert np.mean(A.argmax(1) == B.argmax(1)) > 0.8, np.mean(A.argmax(1) == B.argmax(1))
for k in ("program", "git_commit", "config", "command_line", "ranks"):
    assert k in a.attrs, k
assert list(a["labels"][...]) == list(h5py.File(sys.argv[2].replace("hw.h5", "big.h5"), "r")["labels"][...])
PY
fi
fi

echo "[$SECONDS s] 5b. image + deviation input"
# 5b. a U-Net whose second input channel is the pseudolabel deviation: chosen by default when
# --labels has /deviation (segmenter.input = auto), segment/evaluate read the same rows of
# --deviation, heatmaps are the same at 1, 2 and 4 ranks and tiled at 1 and 2, resume is
# bitwise, the channel is used, and missing or mismatched deviation files fail clearly
expect_ok $MPIRUN -n 2 "$SD" pseudolabel --data "$WORK/d.h5" --output "$WORK/p.h5" --quiet
expect_ok $MPIRUN -n 2 "$SD" pseudolabel --data "$WORK/big.h5" --output "$WORK/pb.h5" --quiet
$MPIRUN -n 2 "$SD" "${COMMON[@]}" --epochs 2 --labels "$WORK/p.h5" --output "$WORK/u2.h5" >"$WORK/train2.log" 2>&1 && ok || fail "image+deviation training failed: $(tail -3 "$WORK/train2.log")"
grep -q "input image + lattice deviation, masks from $WORK/p.h5" "$WORK/train2.log" && ok || fail "auto did not pick image+deviation: $(grep -m1 'U-Net (depth' "$WORK/train2.log")"
h5dump -a /model/input_channels "$WORK/u2.h5" 2>/dev/null | grep -q "(0): 2" && ok || fail "model u2.h5 does not take 2 input channels"
expect_ok "$SD" "${COMMON[@]}" --epochs 1 --set segmenter.max_steps=1 --labels "$WORK/p.h5" --set segmenter.input=image --output "$WORK/u1.h5" --quiet
h5dump -a /model/input_channels "$WORK/u1.h5" 2>/dev/null | grep -q "(0): 1" && ok || fail "segmenter.input=image did not give 1 input channel"
expect_ok "$SD" segment --model "$WORK/u2.h5" --data "$WORK/d.h5" --deviation "$WORK/p.h5" --output "$WORK/hd1.h5" --quiet
for np in 2 4; do
  expect_ok $MPIRUN -n $np "$SD" segment --model "$WORK/u2.h5" --data "$WORK/d.h5" --deviation "$WORK/p.h5" --output "$WORK/hd$np.h5" --batch 8 --quiet
  h5diff -d 1e-5 "$WORK/hd1.h5" "$WORK/hd$np.h5" /heatmaps /heatmaps >/dev/null && ok || fail "image+deviation heatmaps at $np ranks differ from 1 rank"
done
expect_ok "$SD" segment --model "$WORK/u2.h5" --data "$WORK/big.h5" --deviation "$WORK/pb.h5" --output "$WORK/hdt1.h5" --tile 32 --overlap 8 --quiet
expect_ok $MPIRUN -n 2 "$SD" segment --model "$WORK/u2.h5" --data "$WORK/big.h5" --deviation "$WORK/pb.h5" --output "$WORK/hdt2.h5" --tile 32 --overlap 8 --batch 4 --quiet
h5diff -d 1e-5 "$WORK/hdt1.h5" "$WORK/hdt2.h5" /heatmaps /heatmaps >/dev/null && ok || fail "tiled image+deviation heatmaps at 2 ranks differ"
expect_ok "$SD" evaluate --model "$WORK/u2.h5" --data "$WORK/d.h5" --deviation "$WORK/p.h5" --part all --output "$WORK/m2.json" --quiet
if [ $have_py = 1 ]; then
  # the deviation channel is used: another deviation gives other heatmaps; evaluate's IoU
  # comes from the same heatmaps as segment's
  $PY - "$WORK/p.h5" "$WORK/pz.h5" <<'PY' && ok || fail "zero-deviation copy"
import sys, shutil, h5py
shutil.copy(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], "r+") as f:
    f["deviation"][...] = 0
PY
  expect_ok "$SD" segment --model "$WORK/u2.h5" --data "$WORK/d.h5" --deviation "$WORK/pz.h5" --output "$WORK/hdz.h5" --quiet
  $PY - "$WORK/hd1.h5" "$WORK/hdz.h5" "$WORK/d.h5" "$WORK/m2.json" <<'PY' && ok || fail "image+deviation heatmaps"
import sys, json, h5py, numpy as np
a = h5py.File(sys.argv[1], "r")["heatmaps"][...]; z = h5py.File(sys.argv[2], "r")["heatmaps"][...]
assert np.allclose(a.sum(axis=1), 1, atol=1e-5)
assert np.abs(a - z).max() > 1e-3, np.abs(a - z).max()
t = h5py.File(sys.argv[3], "r")["masks"][...]; p = a.argmax(1)
m = json.load(open(sys.argv[4]))
iou = [np.sum((p == c) & (t == c)) / max(np.sum((p == c) | (t == c)), 1) for c in range(1, 3)]
assert abs(np.mean(iou) - m["mean_iou"]) < 2e-3, (iou, m["mean_iou"])
PY
fi
# resume of an image+deviation checkpoint is bitwise the uninterrupted run
expect_ok $MPIRUN -n 2 "$SD" "${COMMON[@]}" --epochs 1 --labels "$WORK/p.h5" --output "$WORK/rd0.h5" --quiet
expect_ok $MPIRUN -n 2 "$SD" "${COMMON[@]}" --epochs 1 --labels "$WORK/p.h5" --output "$WORK/rd.h5" --set segmenter.max_steps=3 --checkpoint "$WORK/rd.ckpt" --quiet
expect_ok $MPIRUN -n 2 "$SD" "${COMMON[@]}" --epochs 1 --labels "$WORK/p.h5" --output "$WORK/rd.h5" --resume --checkpoint "$WORK/rd.ckpt" --quiet
h5diff "$WORK/rd0.h5" "$WORK/rd.h5" /params /params >/dev/null && ok || fail "resumed image+deviation U-Net differs"
expect_fail 2 "takes the image and its lattice deviation" "$SD" "${COMMON[@]}" --epochs 1 --output "$WORK/x.h5" --resume --checkpoint "$WORK/rd.ckpt"
expect_fail 2 "takes the image and its deviation from the bulk lattice: give --deviation" $MPIRUN -n 2 "$SD" segment --model "$WORK/u2.h5" --data "$WORK/d.h5" --output "$WORK/x.h5"
expect_fail 2 "takes the image and its deviation from the bulk lattice: give --deviation" "$SD" evaluate --model "$WORK/u2.h5" --data "$WORK/d.h5"
expect_fail 2 "/deviation has shape" $MPIRUN -n 2 "$SD" segment --model "$WORK/u2.h5" --data "$WORK/d.h5" --deviation "$WORK/pb.h5" --output "$WORK/x.h5"
expect_fail 2 "/deviation has shape" "$SD" evaluate --model "$WORK/u2.h5" --data "$WORK/d.h5" --deviation "$WORK/pb.h5"
expect_fail 2 "has no /deviation dataset" "$SD" segment --model "$WORK/u2.h5" --data "$WORK/d.h5" --deviation "$WORK/d.h5" --output "$WORK/x.h5"
expect_fail 2 "has no /deviation" "$SD" "${COMMON[@]}" --epochs 1 --output "$WORK/x.h5" --set segmenter.input=image+deviation --deviation "$WORK/d.h5"
expect_fail 2 "segmenter.input = image+deviation needs the deviation" "$SD" "${COMMON[@]}" --epochs 1 --output "$WORK/x.h5" --set segmenter.input=image+deviation
[ -e "$WORK/x.h5" ] && fail "a failed run left $WORK/x.h5" || ok

echo "[$SECONDS s] 6. bad input"
# 6. bad input: one clear message, exit 2, nothing left behind
expect_fail 2 "has no /masks" "$SD" "${COMMON[@]}" --epochs 1 --output "$WORK/x.h5" --labels "$WORK/h1.h5"
expect_fail 2 "/masks has shape" "$SD" "${COMMON[@]}" --epochs 1 --output "$WORK/x.h5" --labels "$WORK/big.h5"
expect_ok "$SD" train --task classify --data "$WORK/d.h5" --epochs 1 --batch 16 --set classifier.width=4 \
  --set classifier.stages=1 --output "$WORK/cls.h5" --quiet
expect_fail 2 "classifier model, not a U-Net" $MPIRUN -n 2 "$SD" segment --model "$WORK/cls.h5" --data "$WORK/d.h5" --output "$WORK/x.h5"
expect_fail 2 "multiple of 2^depth" "$SD" segment --model "$WORK/u.h5" --data "$WORK/d.h5" --output "$WORK/x.h5" --tile 30
expect_fail 2 "overlap must be at most the tile minus 2^depth" "$SD" segment --model "$WORK/u.h5" --data "$WORK/d.h5" --output "$WORK/x.h5" --tile 16 --overlap 16
expect_fail 1 "nothere" "$SD" segment --model "$WORK/nothere.h5" --data "$WORK/d.h5" --output "$WORK/x.h5"
# a rank failing mid-loop (injected write error on rank 1): every rank leaves the job loop
# (the others after their current job), the first failing rank's message is reported, exit
# non-zero, nothing left behind
out=$(SD_FAULT_SEGMENT_RANK=1 $MPIRUN -x SD_FAULT_SEGMENT_RANK -n 2 "$SD" segment --model "$WORK/u.h5" \
  --data "$WORK/big.h5" --output "$WORK/fault.h5" --tile 32 --overlap 8 2>&1); rc=$?
[ $rc -ne 0 ] && ok || fail "injected failure on rank 1: exit 0"
printf '%s' "$out" | grep -qF "[rank 1] cannot write rows" && ok || fail "injected failure: message: $out"
no_file "$WORK/fault.h5"
expect_fail 2 "not an image index" "$SD" segment --model "$WORK/u.h5" --data "$WORK/big.h5" --output "$WORK/x.h5" --overlay "$WORK/ov2" --overlay-images 7
expect_ok "$SD" "${COMMON[@]}" --epochs 1 --set segmenter.max_steps=1 --set segmenter.dropout=0 --output "$WORK/nod.h5" --quiet
expect_fail 2 "has no dropout layer" $MPIRUN -n 2 "$SD" segment --model "$WORK/nod.h5" --data "$WORK/d.h5" --output "$WORK/x.h5" --mc-samples 4
no_file "$WORK/x.h5"
finish
