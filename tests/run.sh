#!/usr/bin/env bash
# tests/run.sh - install what is missing, configure, build, and run the test suite with CTest.
#
#   tests/run.sh                 the default suite (labels unit, mpi, io, e2e, slurm; not bench/slow)
#   tests/run.sh --asan          the same in an ASan+UBSan build (build-asan/)
#   tests/run.sh --label bench   only the tests with that CTest label (e.g. bench, slow)
#   tests/run.sh -- ARGS         extra arguments for ctest (e.g. -R stack)
# CI=true turns warnings into errors and makes tests that need ../shared data or h5py fail
# instead of skip.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../jobs/lib/setup.sh"

asan=0
label=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --asan) asan=1 ;;
    --label) label="$2"; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "tests/run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

extra_packages=()
# the benchmarks compare against PyTorch and scikit-learn from Debian (the peers, /usr/bin/python3)
case "$label" in *bench*) extra_packages+=(python3-torch python3-sklearn) ;; esac
sd_setup_packages $SD_BUILD_PACKAGES python3-h5py python3-numpy chromium $SD_SLURM_PACKAGES \
  "${extra_packages[@]}"

cmake_args=()
[ "${CI:-}" = "true" ] && cmake_args+=(-DSD_WARNINGS_AS_ERRORS=ON)
if [ $asan -eq 1 ]; then
  SD_BUILD_DIR="$SD_ROOT/build-asan"
  cmake_args+=(-DSD_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
fi
sd_setup_build "${cmake_args[@]}"

cd "$SD_BUILD_DIR"
jobs=$(nproc)
if [ -n "$label" ]; then
  sd_log "running ctest -L $label"
  ctest --output-on-failure -L "$label" "${extra[@]}"
else
  sd_log "running the default test suite (excluding labels bench, slow)"
  ctest --output-on-failure -j "$jobs" -LE 'bench|slow' "${extra[@]}"
fi
