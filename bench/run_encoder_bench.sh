#!/usr/bin/env bash
# Runs the vitfreeze and PyTorch encoder benchmarks one after the other (one library per process, so
# their thread pools never compete). PyTorch gets the settings that make its number fair
# (machine-facts §4-5): passive OpenMP waiting, AVX-512 OpenBLAS kernels, no malloc trimming.
# vitfreeze runs with OpenMP's default (active) waiting: Eigen's parallel GEMM synchronises its two
# threads many times per product, and passive waiting makes small products up to 50x slower.
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-10}
bash scripts/deps.sh bench
bash scripts/build.sh --target encoder_bench >/dev/null
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
torch_env=(OMP_WAIT_POLICY=PASSIVE OPENBLAS_CORETYPE=SkylakeX
           GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296)
date -u +"date %Y-%m-%dT%H:%MZ"; echo "machine $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
./build/bench/encoder_bench "$iters"
env "${torch_env[@]}" /usr/bin/python3 bench/encoder_bench_torch.py "$iters" "$OMP_NUM_THREADS"
