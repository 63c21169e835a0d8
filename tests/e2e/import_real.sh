#!/usr/bin/env bash
# Import of the real data: CdTe 783 images in 7 classes, STO 535 in 4, at 2 ranks; the bulk
# references (LZW TIFF with predictor, JPEG). Skips (exit 77) without the data unless CI=true.
source "$(dirname "$0")/lib.sh"
if [ -z "$REAL" ]; then
  if [ "${CI:-}" = true ]; then echo "real data missing under ../shared/data/stem-real (required in CI)"; exit 1; fi
  echo "SKIP: ../shared/data/stem-real not found"; exit 77
fi
expect_ok $MPIRUN -n 2 "$SD" import --input "$REAL/CdTe" --output "$WORK/cdte.h5" --quiet
expect_ok "$SD" info "$WORK/cdte.h5"
head -1 "$WORK/last.out" | grep -q "783 image(s) of 64x64" && ok || fail "CdTe count: $(head -1 "$WORK/last.out")"
[ "$(grep -c '  class ' "$WORK/last.out")" = 7 ] && ok || fail "CdTe classes: $(cat "$WORK/last.out")"
grep -q "Vacancy_CdTe *122" "$WORK/last.out" && grep -q "Twin_Bound *76" "$WORK/last.out" && grep -q "Bulk *129" "$WORK/last.out" && ok || fail "CdTe class counts: $(cat "$WORK/last.out")"
expect_ok $MPIRUN -n 2 "$SD" import "$REAL/STO" --output "$WORK/sto.h5" --quiet
expect_ok "$SD" info "$WORK/sto.h5"
head -1 "$WORK/last.out" | grep -q "535 image(s) of 64x64" && ok || fail "STO count: $(head -1 "$WORK/last.out")"
[ "$(grep -c '  class ' "$WORK/last.out")" = 4 ] && ok || fail "STO classes"
grep -q "IExtra *100" "$WORK/last.out" && grep -q "Mis *141" "$WORK/last.out" && ok || fail "STO class counts: $(cat "$WORK/last.out")"
# 1 rank gives the same datasets as 2 and 4
expect_ok "$SD" import --input "$REAL/STO" --output "$WORK/sto1.h5" --quiet
expect_ok $MPIRUN -n 4 "$SD" import --input "$REAL/STO" --output "$WORK/sto4.h5" --quiet
for f in sto1 sto4; do
  for d in /images /labels /source; do
    h5diff "$WORK/sto.h5" "$WORK/$f.h5" $d $d >/dev/null && ok || fail "$f.h5 $d differs from the 2-rank import"
  done
done
# the bulk references: different sizes need --crop or --resize
expect_fail 2 "images differ in size" "$SD" import "$REAL/CdTe_Training_Image.tif" "$REAL/STO_Training_Image.jpg" --output "$WORK/bulk.h5" --labels none
no_file "$WORK/bulk.h5"
expect_ok "$SD" import "$REAL/CdTe_Training_Image.tif" "$REAL/STO_Training_Image.jpg" --output "$WORK/bulk.h5" --labels none --crop 512
expect_ok "$SD" info "$WORK/bulk.h5"
head -1 "$WORK/last.out" | grep -q "2 image(s) of 512x512" && ok || fail "bulk import: $(cat "$WORK/last.out")"
finish
