#!/usr/bin/env bash
# tsne_bench.sh - the t-SNE speed benchmark of issue 5, one table from one run:
# N = 1e4 points in D = 50 (10 Gaussian blobs), perplexity 30, 1000 iterations, theta 0.5,
# PCA init, learning rate max(N/12/4, 50), early exaggeration 12 for 250 iterations:
#   scikit-learn TSNE(method='barnes_hut', n_jobs=1) with one OpenMP/BLAS thread, against
#   `stemdefect embed` at 1 and 2 MPI ranks (one OpenBLAS thread each).
# Rounds alternate sklearn / ours-1 / ours-2 so machine noise hits all alike; the table shows
# medians over the rounds of the wall time (whole program: reading, kNN, optimisation,
# writing; ours includes mpirun start-up) and of the CPU time (user + system, summed over
# ranks), the ratios, the KL divergence each reports (its own Barnes-Hut estimate), and the
# exact KL of each final embedding against one P (scikit-learn's, exact Z; tsne_bench.py kl).
#
#   tests/bench/tsne_bench.sh [path/to/stemdefect]           (ctest -L bench -R tsne runs it)
# Environment: SD_BENCH_N (10000), SD_BENCH_D (50), SD_BENCH_ITERS (1000),
#   SD_BENCH_ROUNDS (3), SD_BENCH_KEEP (0; 1 = keep the work directory),
#   SD_BENCH_STRICT (0; 1 = exit 1 when a target is missed).
# Targets: ours(1 rank) <= 0.2x sklearn's time; KL <= 1.02x sklearn's; 1 -> 2 ranks >= 1.8x.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
sd=${1:-${SD_BINARY:-$root/build/stemdefect}}
n=${SD_BENCH_N:-10000}
d=${SD_BENCH_D:-50}
iters=${SD_BENCH_ITERS:-1000}
rounds=${SD_BENCH_ROUNDS:-3}
helper="$here/tsne_bench.py"
BENCH_NAME=tsne_bench
source "$here/sklearn_lib.sh"
[ -x "$sd" ] || die "no stemdefect binary at $sd"
bench_setup

$py "$helper" data "$work/data.h5" "$n" "$d" 1 || die "cannot write the data"
echo "tsne_bench: N=$n D=$d perplexity 30, $iters iterations, theta 0.5, $rounds round(s); load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# ours P: wall and cpu seconds (children of mpirun) into $work/ours$P.r$r
run_ours() {
  local p=$1 r=$2
  /usr/bin/time -f "%e %U %S" -o "$work/time$p.r$r" mpirun --oversubscribe -n "$p" "$sd" embed \
    --input "$work/data.h5" --output "$work/ours$p.h5" --perplexity 30 --theta 0.5 \
    --iterations "$iters" --seed 1 --quiet 2>"$work/ours$p.r$r.log" || die "stemdefect embed at $p rank(s) failed: $(tail -3 "$work/ours$p.r$r.log")"
  awk '{ printf "%s %.3f\n", $1, $2 + $3 }' "$work/time$p.r$r" > "$work/ours$p.r$r"
}
for r in $(seq 1 "$rounds"); do
  echo "tsne_bench: round $r/$rounds: scikit-learn" >&2
  $py "$helper" sklearn "$work/data.h5" "$work/sk.r$r.json" "$work/sk.npy" 30 "$iters" 0.5 ||
    die "scikit-learn failed"
  echo "tsne_bench: round $r/$rounds: stemdefect embed, 1 rank" >&2
  run_ours 1 "$r"
  echo "tsne_bench: round $r/$rounds: stemdefect embed, 2 ranks" >&2
  run_ours 2 "$r"
done
cmp -s <(h5dump -d /embedding "$work/ours1.h5" | tail -n +2) <(h5dump -d /embedding "$work/ours2.h5" | tail -n +2) &&
  same="identical" || same="DIFFERENT"
$py "$helper" kl "$work/data.h5" 30 "$work/sk.npy" "$work/ours1.h5" > "$work/kl.txt" || die "exact KL failed"

$py - "$work" "$rounds" "$same" "${SD_BENCH_STRICT:-0}" "N=$n D=$d, perplexity 30, $iters iterations, theta 0.5" <<'PY'
import json, statistics as st, sys, subprocess
work, rounds, same, strict = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
setting = sys.argv[5]
sk = [json.load(open(f"{work}/sk.r{r}.json")) for r in range(1, rounds + 1)]
def ours(p):
    v = [open(f"{work}/ours{p}.r{r}").read().split() for r in range(1, rounds + 1)]
    return [float(a) for a, b in v], [float(b) for a, b in v]
w1, c1 = ours(1)
w2, c2 = ours(2)
skw, skc = st.median(x["wall"] for x in sk), st.median(x["cpu"] for x in sk)
def attr(name):
    out = subprocess.run(["h5dump", "-a", "/" + name, f"{work}/ours1.h5"], capture_output=True, text=True).stdout
    return float(out.split("(0):")[1].split()[0])
kl_ours = attr("kl_divergence")
exact = dict(line.split() for line in open(f"{work}/kl.txt"))
ke_sk = float(exact[f"{work}/sk.npy"])
ke_ours = float(exact[f"{work}/ours1.h5"])
mw1, mw2, mc1, mc2 = st.median(w1), st.median(w2), st.median(c1), st.median(c2)
print(f"\nt-SNE benchmark ({setting}): scikit-learn {sk[0]['version']} vs stemdefect embed, "
      f"medians of {rounds} round(s)")
print("| program | ranks x threads | wall s | CPU s | wall ratio | CPU ratio | KL (own estimate) | KL (exact, same P) |")
print("|---|---|---|---|---|---|---|---|")
print(f"| scikit-learn TSNE barnes_hut | 1 x 1 | {skw:.1f} | {skc:.1f} | 1 | 1 | {st.median(x['kl'] for x in sk):.4f} | {ke_sk:.4f} |")
print(f"| stemdefect embed | 1 x 1 | {mw1:.1f} | {mc1:.1f} | {mw1/skw:.3f} | {mc1/skc:.3f} | {kl_ours:.4f} | {ke_ours:.4f} |")
print(f"| stemdefect embed | 2 x 1 | {mw2:.1f} | {mc2:.1f} | {mw2/skw:.3f} | {mc2/skc:.3f} | (same embedding: {same}) | |")
sp = mw1 / mw2
print(f"\nspeed-up 1 -> 2 ranks (wall): {sp:.2f}x; KL exact ours / sklearn: {ke_ours/ke_sk:.4f}")
ok_t = mw1 / skw <= 0.2
ok_kl = ke_ours <= 1.02 * ke_sk
ok_s = sp >= 1.8
print(f"targets: time <= 0.2x sklearn: {'met' if ok_t else 'MISSED'} ({mw1/skw:.3f}x wall, {mc1/skc:.3f}x CPU); "
      f"KL <= 1.02x sklearn: {'met' if ok_kl else 'MISSED'}; 1->2 ranks >= 1.8x: {'met' if ok_s else 'MISSED'}")
print("raw wall s: sklearn", [round(x["wall"], 1) for x in sk], "ours1", w1, "ours2", w2)
sys.exit(1 if strict and not (ok_t and ok_kl and ok_s) else 0)
PY
