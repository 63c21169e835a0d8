#!/usr/bin/env bash
# The study report in a real browser: a small `stemdefect run` -> report.html, rendered by
# headless Chromium; the page must load, every embedded figure must decode (the page counts
# them into <body data-figures="ok/total"> on load), and the sections must be there. The
# screenshot is kept in the build tree (report_screenshot.png) for a person to look at.
source "$(dirname "$0")/../e2e/lib.sh"
CHROME=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROME" ]; then
  [ "${CI:-}" = true ] && { echo "FAILED: chromium missing in CI (tests/run.sh installs it)"; exit 1; }
  echo "SKIP: needs Debian's chromium"; exit 77
fi
cp "$SRC/tests/e2e/tiny-study.yaml" "$WORK/tiny.yaml"
expect_ok $MPIRUN -n 2 "$SD" run --config "$WORK/tiny.yaml" --dir "$WORK/r"
[ -s "$WORK/r/report.html" ] && ok || fail "no report.html"
CH=(timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run
    --user-data-dir="$WORK/chrome")
"${CH[@]}" --dump-dom "file://$WORK/r/report.html" >"$WORK/dom.html" 2>"$WORK/chrome.log" && ok ||
  fail "chromium could not load the page: $(tail -3 "$WORK/chrome.log")"
figs=$(grep -o 'data-figures="[0-9]*/[0-9]*"' "$WORK/dom.html" | head -1 | tr -dc '0-9/')
ok_n=${figs%/*}; tot=${figs#*/}
[ -n "$figs" ] && [ "$ok_n" = "$tot" ] && [ "${tot:-0}" -ge 10 ] && ok ||
  fail "figures decoded in the browser: '${figs:-none}' (want all, at least 10)"
for id in data classifier localisation clusters embedding timings provenance; do
  grep -q "id=\"$id\"" "$WORK/dom.html" && ok || fail "section $id missing"
done
grep -q "macro_f1" "$WORK/dom.html" && ok || fail "classifier metrics missing from the page"
grep -q "mean_iou" "$WORK/dom.html" && ok || fail "pseudo-label / U-Net IoU missing from the page"
grep -q "k chosen by the largest mean silhouette" "$WORK/dom.html" && ok || fail "cluster section empty"
grep -q "final KL divergence" "$WORK/dom.html" && ok || fail "t-SNE section empty"
grep -q "not in this run" "$WORK/dom.html" && fail "a section says its stage has not run" || ok
"${CH[@]}" --window-size=1200,2400 --screenshot="$WORK/shot.png" "file://$WORK/r/report.html" >/dev/null 2>&1
[ -s "$WORK/shot.png" ] && ok || fail "no screenshot"
cp "$WORK/shot.png" "${SD_BUILD_DIR:-.}/report_screenshot.png" 2>/dev/null || true
# bad input: a missing run directory is one clear error and no page
expect_fail 1 "does not exist" "$SD" report --run "$WORK/nothere" --output "$WORK/x.html"
no_file "$WORK/x.html"
finish
