#!/usr/bin/env bash
# Runs the vitfreeze and PyTorch encoder benchmarks one after the other (one library per process, so
# their thread pools never compete). PyTorch gets its best configuration here (bench/torch_env.sh:
# passive OpenMP waiting, AVX-512 OpenBLAS kernels only where the CPU has AVX-512, no malloc trimming).
# vitfreeze runs with OpenMP's default (active) waiting: Eigen's parallel GEMM synchronises its two
# threads many times per product, and passive waiting makes small products up to 50x slower.
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-10}
bash scripts/deps.sh bench
bash scripts/build.sh --target encoder_bench >/dev/null
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
source bench/torch_env.sh
torch_env PASSIVE
date -u +"date %Y-%m-%dT%H:%MZ"
machine_line
./build/bench/encoder_bench "$iters"
env "${TORCH_ENV[@]}" /usr/bin/python3 bench/encoder_bench_torch.py "$iters" "$OMP_NUM_THREADS"
