#!/usr/bin/env bash
# Runs the vitfreeze and PyTorch encoder benchmarks one after the other (one library per process, so
# their thread pools never compete), with the settings that make the PyTorch number fair
# (machine-facts §4-5): passive OpenMP waiting, AVX-512 OpenBLAS kernels, no malloc trimming.
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-10}
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OPENBLAS_CORETYPE=SkylakeX
export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296
date -u +"date %Y-%m-%dT%H:%MZ"; echo "machine $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
./build/bench/encoder_bench "$iters"
/usr/bin/python3 bench/encoder_bench_torch.py "$iters" "$OMP_NUM_THREADS"
