#!/usr/bin/env bash
# Data-parallel MAE ViT-Ti pretraining step on this machine's cores, vitfreeze (MPI) and PyTorch (DDP,
# gloo) side by side in one run: one process with all cores' threads, then one rank per core with one
# thread each, the same global batch.
#   bash bench/run_data_parallel_bench.sh [global_batch=128] [steps=10] [repeats=3] [rounds=3]
# Both sides run unpinned (mpiexec --bind-to none; PyTorch's processes are never pinned), and the
# rounds interleave the four configurations, alternating which library goes first; the summary gives
# each configuration's median over the rounds and its range (each round's figure is itself the median
# of `repeats` x `steps` steps).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh bench
bash scripts/build.sh --target data_parallel_bench >/dev/null
cores=$(nproc)
batch=${1:-128} steps=${2:-10} repeats=${3:-3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# PyTorch gets its best configuration here (bench/torch_env.sh: passive OpenMP waiting, AVX-512
# OpenBLAS kernels only on a CPU that has AVX-512, no malloc trimming). vitfreeze keeps OpenMP's
# active waiting.
source bench/torch_env.sh
torch_env PASSIVE
rounds=${4:-3}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(machine_line), $rounds rounds"
vitfreeze_side() {
  OMP_NUM_THREADS=$cores mpiexec -n 1 --bind-to none ./build/bench/data_parallel_bench "$batch" "$steps" "$repeats"
  OMP_NUM_THREADS=1 mpiexec -n "$cores" --bind-to none --oversubscribe ./build/bench/data_parallel_bench "$batch" "$steps" "$repeats"
}
torch_side() {
  env "${TORCH_ENV[@]}" /usr/bin/python3 bench/data_parallel_bench_torch.py 1 "$cores" "$batch" "$steps" "$repeats"
  env "${TORCH_ENV[@]}" /usr/bin/python3 bench/data_parallel_bench_torch.py "$cores" 1 "$batch" "$steps" "$repeats"
}
for ((r = 1; r <= rounds; ++r)); do
  if ((r % 2)); then vitfreeze_side; torch_side; else torch_side; vitfreeze_side; fi
done | tee "$log"
# Summary: median and range of img/s per (library, ranks x threads) over the rounds.
python3 - "$log" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"(vitfreeze|PyTorch)\s+ranks (\d+) x threads (\d+).*?([\d.]+) img/s", line)
    if m:
        runs.setdefault((m[2], m[3]), {}).setdefault(m[1], []).append(float(m[4]))
print("| configuration | vitfreeze img/s median (range) | PyTorch img/s median (range) | ratio of medians |")
print("|---|---:|---:|---:|")
for (ranks, threads), sides in sorted(runs.items()):
    cell = lambda v: f"{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})"
    ratio = statistics.median(sides["vitfreeze"]) / statistics.median(sides["PyTorch"])
    print(f"| {ranks} rank(s) x {threads} thread(s) | {cell(sides['vitfreeze'])} | {cell(sides['PyTorch'])} | {ratio:.2f}x |")
PY
