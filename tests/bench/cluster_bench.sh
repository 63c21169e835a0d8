#!/usr/bin/env bash
# Benchmark of issue 5 (opt-in, label bench): stemdefect's k-means time per Lloyd iteration
# (N=1e6, D=16, k=8) and exact silhouette (N=2e4, D=16) against scikit-learn in the same run
# with the same thread count, and 1 -> 2 ranks (one thread each). Repeats are interleaved
# (sklearn, ours, sklearn, ours ...) so machine load hits both alike; medians are compared.
# usage: cluster_bench.sh path/to/cluster_bench   (env: SD_BENCH_REPEATS, SD_BENCH_KM_N, SD_BENCH_SIL_N,
#        SD_BENCH_MODES="kmeans silhouette")
# Exit status 1 when a target is missed (k-means <= 0.5x, silhouette <= 0.1x, 2 ranks >= 1.8x).
set -uo pipefail
DRV=${1:?usage: cluster_bench.sh CLUSTER_BENCH_BINARY}
PY=/usr/bin/python3
REPS=${SD_BENCH_REPEATS:-3}
NKM=${SD_BENCH_KM_N:-1000000}
NSIL=${SD_BENCH_SIL_N:-20000}
MODES=${SD_BENCH_MODES:-kmeans silhouette}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
WORK=$(mktemp -d /tmp/sd_clbench_XXXXXX)
trap 'rm -rf "$WORK"' EXIT
$PY -c "import sklearn" 2>/dev/null || { echo "cluster_bench: /usr/bin/python3 has no scikit-learn: skipped"; exit 77; }
cat >"$WORK/skl.py" <<'PY'
import sys, time, numpy as np
mode, n, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
from threadpoolctl import threadpool_limits
rng = np.random.default_rng(0)
k, d = 8, 16
c = 3.0 * rng.normal(size=(k, d))
lab = rng.integers(0, k, n)
X = (c[lab] + rng.normal(size=(n, d))).astype(np.float32)
with threadpool_limits(threads):
    if mode == "kmeans":
        from sklearn.cluster import KMeans
        init = X[rng.choice(n, k, replace=False)]
        def fit(it):
            t = time.perf_counter()
            km = KMeans(k, init=init, n_init=1, max_iter=it, tol=0, algorithm="lloyd").fit(X)
            return time.perf_counter() - t, time.process_time(), km.n_iter_
        c0 = time.process_time(); t1, c1, _ = fit(1); c1 -= c0
        c0 = time.process_time(); t20, c20, n20 = fit(20); c20 -= c0
        print("%.6f %.6f" % ((t20 - t1) / (n20 - 1), (c20 - c1) / (n20 - 1)))
    else:
        from sklearn.metrics import silhouette_score
        t = time.perf_counter(); c = time.process_time()
        silhouette_score(X, lab)
        print("%.6f %.6f" % (time.perf_counter() - t, time.process_time() - c))
PY
median() { # column
  awk -v c="$1" '{print $c}' | sort -g | awk '{a[NR]=$1} END{print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
}
ours() { # ranks mode n
  local np=$1 mode=$2 n=$3
  if [ "$mode" = kmeans ]; then
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 mpirun --bind-to none -n "$np" "$DRV" kmeans "$n" 16 8 21 1 | awk '{print $3, $5}'
  else
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 mpirun --bind-to none -n "$np" "$DRV" silhouette "$n" 16 8 1 | awk '{print $3, $5}'
  fi
}
skl() { # threads mode n
  OMP_NUM_THREADS=$1 OPENBLAS_NUM_THREADS=$1 MKL_NUM_THREADS=$1 $PY "$WORK/skl.py" "$2" "$3" "$1"
}
for mode in $MODES; do
  n=$NKM; [ $mode = silhouette ] && n=$NSIL
  for r in $(seq "$REPS"); do
    skl 1 $mode $n >>"$WORK/$mode.skl1"
    ours 1 $mode $n >>"$WORK/$mode.our1"
    skl 2 $mode $n >>"$WORK/$mode.skl2"
    ours 2 $mode $n >>"$WORK/$mode.our2"
    echo "cluster_bench: $mode repeat $r/$REPS done" >&2
  done
done
status=0
printf '\n%-52s %11s %11s %8s\n' "measurement (median of $REPS)" "stemdefect" "sklearn" "ratio"
row() { # label ours theirs target kind(le|ge) ; prints and updates status
  local ratio ok
  ratio=$(awk -v a="$2" -v b="$3" 'BEGIN{printf "%.3f", a/b}')
  ok=$(awk -v r="$ratio" -v t="$4" -v k="$5" 'BEGIN{print ((k=="le" && r <= t) || (k=="ge" && r >= t)) ? "ok" : "MISSED"}')
  [ "$ok" = ok ] || status=1
  printf '%-52s %11.4f %11.4f %7sx  (target %s %s: %s)\n' "$1" "$2" "$3" "$ratio" "$([ $5 = le ] && echo '<=' || echo '>=')" "$4" "$ok"
}
for mode in $MODES; do
  target=0.5; what="k-means s/iteration N=$NKM D=16 k=8"
  [ $mode = silhouette ] && { target=0.1; what="exact silhouette s N=$NSIL D=16"; }
  o1w=$(median 1 <"$WORK/$mode.our1"); o1c=$(median 2 <"$WORK/$mode.our1"); o2w=$(median 1 <"$WORK/$mode.our2")
  s1w=$(median 1 <"$WORK/$mode.skl1"); s1c=$(median 2 <"$WORK/$mode.skl1"); s2w=$(median 1 <"$WORK/$mode.skl2")
  row "$what, 1 rank vs 1 thread (wall)" "$o1w" "$s1w" $target le
  row "$what, 1 rank vs 1 thread (CPU time)" "$o1c" "$s1c" $target le
  row "$what, 2 ranks vs 2 threads (wall)" "$o2w" "$s2w" $target le
  printf '%-52s %11.4f %11.4f %7sx  (target >= 1.8: %s)\n' "$what, 1 -> 2 ranks (wall)" "$o1w" "$o2w" \
    "$(awk -v a="$o1w" -v b="$o2w" 'BEGIN{printf "%.2f", a/b}')" \
    "$(awk -v a="$o1w" -v b="$o2w" 'BEGIN{print (a/b >= 1.8) ? "ok" : "MISSED"}')"
  awk -v a="$o1w" -v b="$o2w" 'BEGIN{exit !(a/b >= 1.8)}' || status=1
done
echo "(machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); timings are noisy when it is shared)"
exit $status
