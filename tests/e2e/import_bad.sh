#!/usr/bin/env bash
# Bad input to import: each case exits non-zero with a message naming the file, and leaves
# no output (nor a temporary file) behind; at 1 and 2 ranks (no hang when one rank fails).
source "$(dirname "$0")/lib.sh"
FIX=${SD_FIXTURE:?}
mkdir -p "$WORK/good" "$WORK/mixed" "$WORK/corrupt" "$WORK/empty" "$WORK/trunc"
for i in 1 2 3 4 5; do "$FIX" "$WORK/good/A_$i.tif" 16 16 $i; "$FIX" "$WORK/good/B_$i.tif" 16 16 $((i+9)); done
expect_ok "$SD" import "$WORK/good" --output "$WORK/good.h5" --quiet
expect_ok "$SD" info "$WORK/good.h5"
grep -q "10 image(s) of 16x16" "$WORK/last.out" && grep -q "A *5" "$WORK/last.out" && ok || fail "good import: $(cat "$WORK/last.out")"
for np in 1 2; do
  cp "$WORK"/good/*.tif "$WORK/corrupt/"; echo "this is not an image" > "$WORK/corrupt/C_9.tif"
  expect_fail 1 "C_9.tif" $MPIRUN -n $np "$SD" import "$WORK/corrupt" --output "$WORK/out.h5"
  no_file "$WORK/out.h5"
  cp "$WORK"/good/*.tif "$WORK/trunc/"; head -c 100 "$WORK/good/A_1.tif" > "$WORK/trunc/T_1.tif"
  expect_fail 1 "T_1.tif" $MPIRUN -n $np "$SD" import "$WORK/trunc" --output "$WORK/out.h5"
  no_file "$WORK/out.h5"
  cp "$WORK"/good/*.tif "$WORK/mixed/"; "$FIX" "$WORK/mixed/Z_1.tif" 20 16
  expect_fail 2 "Z_1.tif is 20x16" $MPIRUN -n $np "$SD" import "$WORK/mixed" --output "$WORK/out.h5"
  no_file "$WORK/out.h5"
  expect_fail 2 "holds no TIFF, JPEG or PNG" $MPIRUN -n $np "$SD" import "$WORK/empty" --output "$WORK/out.h5"
  no_file "$WORK/out.h5"
  expect_fail nz "$WORK/ro/out.h5" $MPIRUN -n $np "$SD" import "$WORK/good" --output "$WORK/ro/out.h5"
  expect_fail 1 "does not exist" $MPIRUN -n $np "$SD" import "$WORK/nothere" --output "$WORK/out.h5"
  no_file "$WORK/out.h5"
done
# mixed sizes import with --resize / --crop
expect_ok "$SD" import "$WORK/mixed" --output "$WORK/resized.h5" --resize 12 --quiet
expect_ok "$SD" info "$WORK/resized.h5"
grep -q "11 image(s) of 12x12" "$WORK/last.out" && ok || fail "resize: $(cat "$WORK/last.out")"
expect_ok "$SD" import "$WORK/mixed" --output "$WORK/cropped.h5" --crop 16 --quiet
# an existing output is replaced only when the new one is complete
cp "$WORK/good.h5" "$WORK/keep.h5"
expect_fail 1 "C_9.tif" "$SD" import "$WORK/corrupt" --output "$WORK/keep.h5"
h5diff "$WORK/good.h5" "$WORK/keep.h5" >/dev/null && ok || fail "failed import damaged the existing output"
finish
