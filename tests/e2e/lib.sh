# tests/e2e/lib.sh - helpers for the end-to-end shell tests (sourced).
set -uo pipefail
SD=${SD_BINARY:?SD_BINARY not set (run through ctest)}
SRC=${SD_SOURCE_DIR:?}
MPIRUN="mpirun --oversubscribe"
WORK=$(mktemp -d /tmp/sd_e2e_XXXXXX)
trap 'rm -rf "$WORK"' EXIT
FAILS=0
CHECKS=0
ok() { CHECKS=$((CHECKS + 1)); }
fail() { CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)); echo "FAILED: $*" >&2; }
# expect_fail CODE PATTERN CMD...: the command exits with CODE (or any non-zero if CODE is
# "nz") and its stderr contains PATTERN.
expect_fail() {
  local code=$1 pat=$2; shift 2
  local out rc
  out=$("$@" 2>&1 >/dev/null); rc=$?
  if [ "$code" = nz ] && [ $rc -ne 0 ] || [ "$rc" = "$code" ]; then ok; else fail "exit $rc (wanted $code): $*"; fi
  if printf '%s' "$out" | grep -qF -- "$pat"; then ok; else fail "message lacks '$pat': $out"; fi
}
expect_ok() { if "$@" >"$WORK/last.out" 2>"$WORK/last.err"; then ok; else fail "failed: $* : $(tail -5 "$WORK/last.err")"; fi; }
no_file() { if ls "$1"* >/dev/null 2>&1; then fail "left behind: $(ls "$1"*)"; else ok; fi; }
finish() {
  echo "$(basename "$0"): $CHECKS checks, $FAILS failed"
  [ $CHECKS -gt 0 ] && [ $FAILS -eq 0 ]
}
REAL=""
for d in "$SRC/../shared/data/stem-real" "/work/shared/data/stem-real"; do
  [ -d "$d/CdTe" ] && { REAL=$(cd "$d" && pwd); break; }
done
