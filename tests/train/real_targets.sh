#!/usr/bin/env bash
# Opt-in (label slow): the issue's accuracy targets on the real data with the shipped recipes:
# test macro-F1 >= 0.99 on CdTe and SrTiO3 (stratified split). Takes ~15 min on 2 cores.
#   tests/run.sh --label slow
source "$(dirname "$0")/../e2e/lib.sh"
[ -n "$REAL" ] || { echo "SKIP: ../shared/data/stem-real not found"; exit 77; }
for m in cdte sto; do
  dir=CdTe; [ $m = sto ] && dir=STO
  expect_ok "$SD" import --input "$REAL/$dir" --output "$WORK/$m.h5" --quiet
  expect_ok $MPIRUN -n 2 "$SD" train --task classify --config "$SRC/config/$m.yaml" --data "$WORK/$m.h5" --output "$WORK/${m}_model.h5" --quiet
  expect_ok $MPIRUN -n 2 "$SD" evaluate --model "$WORK/${m}_model.h5" --data "$WORK/$m.h5" --output "$WORK/$m.json" --quiet
  f1=$(sed -n 's/.*"macro_f1": \([0-9.]*\).*/\1/p' "$WORK/$m.json")
  echo "$m: test macro-F1 $f1"
  awk -v f="$f1" 'BEGIN{exit !(f >= 0.99)}' && ok || fail "$m test macro-F1 $f1 < 0.99"
done
finish
