#!/usr/bin/env bash
# jobs/scaling-study.sh at 1, 2 and 4 ranks (4 oversubscribed on a 2-core machine), strong and
# weak: one CSV with a row per stage step and rank count, the oversubscribed runs marked, and
# the two PNG plots; a bad rank count is refused.
source "$(dirname "$0")/../e2e/lib.sh"
cat >"$WORK/tiny.yaml" <<'YAML'
simulate:
  count: 32
  size: 32
  seed: 5
  classes: [Bulk=bulk, Vac=vacancy]
classifier:
  epochs: 1
  batch: 8
  width: 4
  stages: 2
  data_shards: 4
segmenter:
  epochs: 1
  batch: 8
  width: 4
  depth: 2
cluster:
  k: "2:4"
embed:
  perplexity: 5
  iterations: 250
YAML
export SD_BINARY="$SD"
expect_ok bash "$SRC/jobs/scaling-study.sh" --config "$WORK/tiny.yaml" --out "$WORK/s" --per-rank 16 \
  --oversubscribe 1 2 4
CSV="$WORK/s/scaling.csv"
[ -s "$CSV" ] && ok || fail "no scaling.csv"
head -1 "$CSV" | grep -q "^mode,stage,step,ranks,oversubscribed,images,seconds,compute,communication,io,bytes_io,bytes_communication$" &&
  ok || fail "CSV header: $(head -1 "$CSV")"
for m in strong weak; do
  for p in 1 2 4; do
    grep -q "^$m,classify,train,$p," "$CSV" && ok || fail "no $m classify/train row at $p ranks"
    grep -q "^$m,data,total,$p," "$CSV" && ok || fail "no $m data total at $p ranks"
  done
done
over=$(awk -F, -v c="$(nproc)" 'NR > 1 && $4 > c && $5 != 1' "$CSV" | wc -l)
[ "$over" = 0 ] && ok || fail "$over oversubscribed rows not marked"
# weak scaling: images grow with the ranks (16 per rank)
grep -q "^weak,data,total,4,[01],64," "$CSV" && ok || fail "weak scaling at 4 ranks does not hold 64 images"
grep -q "^strong,data,total,4,[01],32," "$CSV" && ok || fail "strong scaling at 4 ranks does not hold 32 images"
for f in speedup.png efficiency.png; do
  [ "$(head -c 4 "$WORK/s/$f" | od -An -c | tr -d ' ')" = "211PNG" ] && ok || fail "$f is not a PNG"
done
expect_fail 2 "rank counts must be positive" bash "$SRC/jobs/scaling-study.sh" --out "$WORK/x" 0
finish
