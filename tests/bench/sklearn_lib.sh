# sklearn_lib.sh - sourced by the benchmarks that compare with scikit-learn (tsne_bench.sh,
# knn_bench.sh): one thread everywhere, mpirun as root, die(), the Python check and the work
# directory. Set BENCH_NAME before sourcing; sets py and work.
py=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }
bench_setup() {
  $py -c "import sklearn, h5py" 2>/dev/null ||
    die "needs Debian's python3-sklearn and python3-h5py for $py (tests/run.sh --label bench installs them)"
  work=$(mktemp -d "${TMPDIR:-/tmp}/sd_$BENCH_NAME.XXXXXX") || die "mktemp failed"
  if [ "${SD_BENCH_KEEP:-0}" = 1 ]; then echo "$BENCH_NAME: work directory $work" >&2
  else trap 'rm -rf "$work"' EXIT; fi
}
