#!/usr/bin/env bash
# train_throughput.sh - the speed benchmark of issue 3, one table from one run:
#   (a) classifier (width 16, 3 stages, 1 block, dropout 0.1, 7 classes; 1x64x64, batch 64) and
#   (b) the reference U-Net (batch 16): training and inference images/s of our engine
#       (bench_train, one process, OpenBLAS threads T) and of PyTorch (torch_train.py,
#       torch.set_num_threads(T)), median over all repeats of all rounds, and the ratio;
#   (c) our conv GFLOP/s inside the U-Net and classifier training steps next to cblas_sgemm
#       2048^3 GFLOP/s measured in the same bench_train process (the practical ceiling);
#   (d) strong scaling of a `stemdefect train --task classify` epoch from 1 to 2 MPI ranks
#       (one OpenBLAS thread each), from the per-epoch "N img/s" log line of the last epoch.
# Rounds alternate ours and PyTorch so machine noise hits both alike.
#
#   tests/bench/train_throughput.sh [path/to/bench_train]      (ctest -L bench runs it)
# Environment: SD_BENCH_THREADS ("2 1"), SD_BENCH_ROUNDS (2), SD_BENCH_REPS (3),
#   SD_BENCH_MIN_TIME (0.5 s per repeat), SD_BENCH_SCALING (1; 0 skips (d)),
#   SD_BENCH_STRICT (0; 1 = exit 1 when a target is missed), SD_BENCH_KEEP (0; 1 = keep logs),
#   SD_BINARY (stemdefect).
# Exit status: 1 when a program fails (or, with SD_BENCH_STRICT=1, a target is missed).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bench=${1:-$root/build-bench/tests/bench/bench_train}
sd=${SD_BINARY:-$(dirname "$bench")/../../stemdefect}
threads_list=${SD_BENCH_THREADS:-"2 1"}
rounds=${SD_BENCH_ROUNDS:-2}
reps=${SD_BENCH_REPS:-3}
min_time=${SD_BENCH_MIN_TIME:-0.5}
scaling=${SD_BENCH_SCALING:-1}
py=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

die() { echo "train_throughput: $*" >&2; exit 1; }
[ -x "$bench" ] || die "no bench_train binary at $bench (build: cmake --build build-bench)"
work=$(mktemp -d "${TMPDIR:-/tmp}/sd_bench.XXXXXX") || die "mktemp failed"
# SD_BENCH_KEEP=1 keeps the raw records and logs (the path is printed)
if [ "${SD_BENCH_KEEP:-0}" = 1 ]; then echo "train_throughput: raw output in $work" >&2
else trap 'rm -rf "$work"' EXIT; fi

# PyTorch: Debian's python3-torch; installed when we are root, otherwise its columns are skipped.
have_torch=0
if "$py" -c "import torch" 2>/dev/null; then
  have_torch=1
elif [ "$(id -u)" -eq 0 ]; then
  echo "train_throughput: installing python3-torch" >&2
  export DEBIAN_FRONTEND=noninteractive
  if apt-get install -y -qq python3-torch >/dev/null 2>&1 ||
     { apt-get update -qq && apt-get install -y -qq python3-torch >/dev/null; }; then
    "$py" -c "import torch" 2>/dev/null && have_torch=1
  fi
fi
if [ $have_torch -eq 0 ]; then
  echo "train_throughput: PyTorch missing, its columns are skipped; install it with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y python3-torch" >&2
fi

echo "load $(cut -d' ' -f1-3 /proc/loadavg) cores $(nproc)" | sed 's/^/host START /' >>"$work/records"
# (a)-(c): rounds of ours then PyTorch at each thread count; all records appended to one file.
for t in $threads_list; do
  for r in $(seq 1 "$rounds"); do
    layers=""
    [ "$r" = 1 ] && layers="--layers --kernels"
    echo "train_throughput: threads $t round $r/$rounds: ours" >&2
    OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t "$bench" --threads "$t" --reps "$reps" \
      --min-time "$min_time" $layers >"$work/ours.out" 2>"$work/ours.err" ||
      die "bench_train --threads $t failed: $(tail -3 "$work/ours.err")"
    sed 's/^/ours /' "$work/ours.out" >>"$work/records"
    if [ $have_torch -eq 1 ]; then
      echo "train_throughput: threads $t round $r/$rounds: PyTorch" >&2
      OMP_NUM_THREADS=$t "$py" "$here/torch_train.py" --threads "$t" --reps "$reps" \
        --min-time "$min_time" >"$work/torch.out" 2>"$work/torch.err" ||
        die "torch_train.py --threads $t failed: $(tail -3 "$work/torch.err")"
      sed 's/^/torch /' "$work/torch.out" >>"$work/records"
    fi
  done
done

# (d): strong scaling of a training epoch, 1 -> 2 ranks, one thread each, S = 2 data shards.
if [ "$scaling" = 1 ]; then
  [ -x "$sd" ] || die "no stemdefect binary at $sd (set SD_BINARY)"
  echo "train_throughput: strong scaling (simulate 1024 images, train 2 epochs at 1 and 2 ranks)" >&2
  "$sd" simulate --count 1024 --size 64 --output "$work/x.h5" --quiet >"$work/sim.log" 2>&1 ||
    die "simulate failed: $(tail -3 "$work/sim.log")"
  for np in 1 2; do
    t0=$(date +%s.%N)
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 mpirun -n $np --oversubscribe "$sd" train \
      --task classify --data "$work/x.h5" --epochs 2 --set classifier.data_shards=2 \
      --output "$work/m$np.h5" --profile "$work/p$np.json" >"$work/train$np.log" 2>&1 ||
      die "train at $np ranks failed: $(tail -3 "$work/train$np.log")"
    t1=$(date +%s.%N)
    ips=$(grep 'epoch 2/2' "$work/train$np.log" | tail -1 | sed -n 's/.* \([0-9.]*\) img\/s.*/\1/p')
    [ -n "$ips" ] || die "no 'epoch 2/2 ... img/s' line at $np ranks: $(tail -3 "$work/train$np.log")"
    # per-rank compute / communication seconds of the train stage (max over ranks)
    split=$("$py" -c 'import json, sys
s = [x for x in json.load(open(sys.argv[1]))["stages"] if x["name"] == "train"][0]
print("%.1f %.1f" % (s["compute"]["max"], s["communication"]["max"]))' "$work/p$np.json" 2>/dev/null ||
      echo "nan nan")
    echo "ours SCALE $np $ips $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') $split" >>"$work/records"
  done
fi
echo "load $(cut -d' ' -f1-3 /proc/loadavg) cores $(nproc)" | sed 's/^/host END /' >>"$work/records"

# The table. Medians over every repeat of every round (fields after the median).
awk -v have_torch=$have_torch -v strict="${SD_BENCH_STRICT:-0}" '
function med(s,   a, n, i, j, x) {
  n = split(s, a, " ")
  for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
  if (n == 0) return -1
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function verdict(ok) { if (ok) { npass++; return "PASS" } nmiss++; return "MISS" }
$2 == "RESULT" { k = $3 SUBSEP $4 SUBSEP $6; b[k] = $5; for (i = 8; i <= NF; i++) v[$1, k] = v[$1, k] " " $i
                 if (!(k in seen)) { seen[k] = 1; order[++nk] = k } }
$2 == "PARAMS" { params[$1, $3] = $4 }
$2 == "SGEMM" { for (i = 5; i <= NF; i++) sg[$3] = sg[$3] " " $i }
$2 == "CONV" { cv[$3, $4] = cv[$3, $4] " " $5; cs[$3, $4] = cs[$3, $4] " " ($6 / $7 * 100) }
$2 == "LAYER" && !(($3, $4) in lay) { lay[$3, $4] = 1; lrow[++nl] = sprintf("  %-10s %-15s %9.1f %9.1f %7.1f%%", $3, $4, $5, $6, $7) }
$2 == "SCALE" { sc[$3] = $4; wall[$3] = $5; comp[$3] = $6; comm[$3] = $7 }
$2 == "KERNEL" && !($3 in kern) { kern[$3] = 1; krow[++nkr] = sprintf("  %-20s %9d floats: engine %7.2f ms, prototype %7.2f ms (%.1fx), max |diff| %s", $3, $4, $5, $6, $7, $8) }
$2 == "CONVL" && !(($3, $4) in cl) { cl[$3, $4] = 1; line = $0; sub(/^ours CONVL /, "", line); crow[++ncr] = "  " line }
$1 == "host" { load[$2] = $4 " " $5 " " $6; cores = $8 }
END {
  printf "stemdefect train_throughput (issue 3); medians over all repeats; img/s = images per second\n"
  printf "host: %d cores, load average (1/5/15 min) %s at start, %s at end (others share this machine)\n", cores, load["START"], load["END"]
  printf "params: classifier ours %s torch %s; unet ours %s torch %s\n",
    params["ours", "classifier"], have_torch ? params["torch", "classifier"] : "n/a",
    params["ours", "unet"], have_torch ? params["torch", "unet"] : "n/a"
  printf "%-10s %-5s %5s %7s %12s %12s %8s  %s\n", "model", "pass", "batch", "threads", "ours img/s", "torch img/s", "ratio", "target (train >= 1.5x at 2 threads)"
  for (i = 1; i <= nk; i++) {
    k = order[i]; split(k, f, SUBSEP)
    o = med(v["ours", k]); t = have_torch ? med(v["torch", k]) : -1
    if (t > 0) { ratio = sprintf("%.2fx", o / t); tgt = f[2] != "train" ? "" : (f[3] == 2 ? verdict((o / t >= 1.5)) : "(target is at 2 threads)") }
    else { ratio = "n/a"; tgt = "" ; if (f[2] == "train") tgt = "n/a (no PyTorch)" }
    printf "%-10s %-5s %5d %7d %12.1f %12s %8s  %s\n", f[1], f[2], b[k], f[3], o, (t > 0 ? sprintf("%.1f", t) : "n/a"), ratio, tgt
  }
  for (th in sg) {
    s = med(sg[th])
    split("unet classifier", models, " ")
    for (j = 1; j <= 2; j++) {
      m = models[j]; if (!((m, th) in cv)) continue
      c = med(cv[m, th])
      printf "conv in %s train step, %d threads: %.1f effective GFLOP/s (direct-convolution flops / conv time) vs sgemm 2048^2 %.1f GFLOP/s = %.0f%% (conv = %.0f%% of step; target >= 60%%: %s)\n",
        m, th, c, s, 100 * c / s, med(cs[m, th]), verdict((c / s >= 0.6))
    }
  }
  if (1 in sc && 2 in sc) {
    printf "strong scaling, train --task classify, 1024 images 64x64, epoch 2, 1 thread/rank: 1 rank %.0f img/s, 2 ranks %.0f img/s: speedup %.2fx (wall %.1f s -> %.1f s) (target >= 1.8x: %s)\n",
      sc[1], sc[2], sc[2] / sc[1], wall[1], wall[2], verdict((sc[2] / sc[1] >= 1.8))
    printf "  train stage per rank (max over ranks): compute %s s -> %s s, communication %s s -> %s s\n", comp[1], comp[2], comm[1], comm[2]
  }
  if (nl) {
    printf "where the time goes (ours, first round at the first thread count; ms per training step, forward / backward, share of step):\n"
    for (i = 1; i <= nl; i++) print lrow[i]
    printf "conv layers (ours, same run; algorithm; effective GFLOP/s = direct-convolution flops / time; backward = weight + input gradients):\n"
    for (i = 1; i <= ncr; i++) print crow[i]
  }
  if (nkr) {
    printf "prototype kernels in tests/bench/bench_train.c (--kernels) against the engine, same data:\n"
    for (i = 1; i <= nkr; i++) print krow[i]
  }
  printf "targets: %d PASS, %d MISS\n", npass, nmiss
  exit (strict && nmiss > 0) ? 1 : 0
}' "$work/records"
