#!/bin/bash
# interop.sh - a stack written by test_stack read without our code (h5dump, h5py), and a
# stack written by h5py read with our code.
#   interop.sh TEST_STACK MPIEXEC CHECK_H5PY_PY
# Exits 77 (skipped) when h5dump or h5py for /usr/bin/python3 is missing, unless CI=true.
set -euo pipefail
test_stack=$1
mpiexec=$2
check_py=$3
python=/usr/bin/python3
ranks=2

skip() {
  if [ "${CI:-}" = "true" ]; then
    echo "FAIL: $1 (CI=true: interoperability checks are required)" >&2
    exit 1
  fi
  echo "SKIP: $1" >&2
  exit 77
}
fail() {
  echo "FAIL: $1 (files kept in $work)" >&2
  exit 1
}

command -v h5dump >/dev/null || skip "h5dump not found (apt-get install hdf5-tools)"
"$python" -c "import h5py" 2>/dev/null ||
  skip "h5py not importable by $python (apt-get install python3-h5py)"

work=$(mktemp -d "$PWD/interop.XXXXXX")

echo "== test_stack at $ranks ranks writes the stack"
"$mpiexec" -n "$ranks" --oversubscribe "$test_stack" --dir "$work" ||
  fail "test_stack failed"
stack=$work/stack_np$ranks/stack.h5
[ -f "$stack" ] || fail "$stack was not written"

echo "== h5dump: attributes and dataset types"
h5dump -H "$stack" >"$work/header.txt" 2>&1 || fail "h5dump -H $stack failed"
for attr in format format_version program version git_commit command command_line config \
    ranks created units normalization description class_names; do
  grep -q "ATTRIBUTE \"$attr\"" "$work/header.txt" || fail "h5dump: no attribute $attr"
done
for ds in images labels class_names source masks; do
  grep -q "DATASET \"$ds\"" "$work/header.txt" || fail "h5dump: no dataset /$ds"
done
grep -A3 'DATASET "images"' "$work/header.txt" | grep -q "H5T_IEEE_F32LE" ||
  fail "h5dump: /images is not H5T_IEEE_F32LE"
grep -A3 'DATASET "images"' "$work/header.txt" | grep -q "( 7, 5, 6 )" ||
  fail "h5dump: /images is not ( 7, 5, 6 )"
h5dump -a /format "$stack" | grep -q '"stemdefect-stack"' || fail "h5dump: format value"
h5dump -d /source "$stack" | grep -q '"sample_0.tif"' || fail "h5dump: /source value"
echo "ok"

echo "== h5py: shapes, dtypes, values, strings, provenance"
"$python" "$check_py" check "$stack" "$ranks" || fail "h5py checks of $stack"

echo "== h5py writes a foreign stack, test_stack reads it at $ranks ranks"
"$python" "$check_py" make-foreign "$work/foreign.h5" || fail "h5py could not write foreign.h5"
"$mpiexec" -n "$ranks" --oversubscribe "$test_stack" --read-foreign "$work/foreign.h5" ||
  fail "test_stack --read-foreign"

rm -rf "$work"
echo "interop: all checks passed"
