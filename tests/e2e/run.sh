#!/usr/bin/env bash
# `stemdefect run`: the stages run into one directory at 2 ranks; a second run skips every
# stage; a changed classifier setting re-runs only the classify stage; a run stopped by SIGTERM
# mid-training exits 75 and the same command resumes from the checkpoint; bad stage lists and
# missing upstream outputs give one clear error.
source "$(dirname "$0")/lib.sh"
cp "$SRC/tests/e2e/tiny-study.yaml" "$WORK/tiny.yaml"
R="$WORK/r"
expect_ok $MPIRUN -n 2 "$SD" run --config "$WORK/tiny.yaml" --dir "$R"
for f in stack.h5 classifier.h5 classifier_metrics.json classifier_predictions.h5 pseudo.h5 \
         pseudo_metrics.json unet.h5 unet_metrics.json heatmaps.h5 descriptors.h5 clusters.h5 \
         embedding.h5 report.html figures/tsne.png figures/cluster-silhouette.png profile/data.json \
         profile/classify.json profile/embed.json .state/data .state/classify .state/report; do
  [ -s "$R/$f" ] && ok || fail "run did not write $f"
done
grep -q '"macro_f1"' "$R/classifier_metrics.json" && ok || fail "metrics JSON lacks macro_f1"
expect_ok $MPIRUN -n 2 "$SD" run --config "$WORK/tiny.yaml" --dir "$R"
c=$(grep -c "up to date, skipped" "$WORK/last.err")
[ "$c" = 9 ] && ok || fail "second run skipped $c stage(s), wanted 9: $(cat "$WORK/last.err")"
cp "$R/classifier.h5" "$WORK/first.h5"
expect_ok "$SD" run --config "$WORK/tiny.yaml" --dir "$R" --set classifier.epochs=3
grep -q "stage data       up to date" "$WORK/last.err" && ok || fail "data stage re-ran after a classifier change"
grep -q "stage cluster    up to date" "$WORK/last.err" && ok || fail "cluster re-ran after a classifier change"
grep -q "stage report     running" "$WORK/last.err" && ok || fail "the report was not refreshed after a classifier change"
grep -q "stage classify   running" "$WORK/last.err" && ok || fail "classify did not re-run after its config changed"
grep -q "resuming" "$WORK/last.err" && fail "a finished checkpoint of another configuration was resumed" || ok
# a cluster setting re-runs cluster, embed and report only
expect_ok "$SD" run --config "$WORK/tiny.yaml" --dir "$R" --set classifier.epochs=3 --set cluster.k=2:3
for st in data classify pseudolabel segmenter segment describe; do
  grep -q "stage $st *up to date" "$WORK/last.err" && ok || fail "stage $st re-ran after a cluster change"
done
for st in cluster embed report; do
  grep -q "stage $st *running" "$WORK/last.err" && ok || fail "stage $st did not re-run after a cluster change"
done
# selection errors
expect_fail 2 "unknown stage 'bogus'" "$SD" run --config "$WORK/tiny.yaml" --dir "$R" --stages bogus
expect_fail 2 "needs the outputs of stage 'data'" "$SD" run --config "$WORK/tiny.yaml" --dir "$WORK/empty" --stages classify
# preemption: SIGTERM during training -> exit 75; the same command resumes from the checkpoint
# (and is stopped the same way again, so the test does not depend on the machine's speed)
S="$WORK/s"
preempt() {
  $MPIRUN -n 2 "$SD" run --config "$WORK/tiny.yaml" --dir "$S" --set classifier.epochs=100000 >"$WORK/sig.log" 2>&1 &
  local pid=$!
  for _ in $(seq 200); do
    [ "$(grep -c "epoch [0-9]*/" "$WORK/sig.log")" -gt 1 ] && break
    sleep 0.5
  done
  pkill -TERM -P $pid
  wait $pid
}
preempt; rc=$?
[ $rc = 75 ] && ok || fail "run exit code after SIGTERM: $rc ($(tail -3 "$WORK/sig.log"))"
[ -f "$S/classifier.h5.ckpt" ] && ok || fail "no checkpoint after SIGTERM"
[ -f "$S/.state/classify" ] && fail "interrupted stage marked done" || ok
grep -q "up to date" "$WORK/sig.log" && fail "first run skipped a stage" || ok
preempt; rc=$?
[ $rc = 75 ] && ok || fail "resumed run exit code after SIGTERM: $rc ($(tail -3 "$WORK/sig.log"))"
grep -q "stage data       up to date" "$WORK/sig.log" && ok || fail "data stage re-ran on resume"
grep -q "stage classify   resuming from its checkpoint" "$WORK/sig.log" && ok || fail "no resume: $(tail -3 "$WORK/sig.log")"
grep -Eq "train: resuming from .*classifier.h5.ckpt at epoch [1-9]" "$WORK/sig.log" && ok ||
  fail "trainer did not resume past epoch 0: $(grep resuming "$WORK/sig.log")"
finish
