#!/usr/bin/env bash
# Data-parallel MAE ViT-Ti pretraining step on this machine's cores, vitfreeze (MPI) and PyTorch (DDP,
# gloo) side by side in one run: one process with all cores' threads, then one rank per core with one
# thread each, the same global batch.
#   bash bench/run_data_parallel_bench.sh [global_batch=128] [steps=10] [repeats=3]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh bench
bash scripts/build.sh --target data_parallel_bench >/dev/null
cores=$(nproc)
batch=${1:-128} steps=${2:-10} repeats=${3:-3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# PyTorch gets the settings that make its number fair (as bench/run_encoder_bench.sh): passive OpenMP
# waiting, AVX-512 OpenBLAS kernels (the machine presets Haswell), no malloc trimming. vitfreeze keeps
# OpenMP's active waiting (passive makes Eigen's parallel GEMM many times slower).
torch_env=(OMP_WAIT_POLICY=PASSIVE OPENBLAS_CORETYPE=SkylakeX
           GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296)
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $cores cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
OMP_NUM_THREADS=$cores mpiexec -n 1 --bind-to none ./build/bench/data_parallel_bench "$batch" "$steps" "$repeats"
OMP_NUM_THREADS=1 mpiexec -n "$cores" --oversubscribe ./build/bench/data_parallel_bench "$batch" "$steps" "$repeats"
env "${torch_env[@]}" /usr/bin/python3 bench/data_parallel_bench_torch.py 1 "$cores" "$batch" "$steps" "$repeats"
env "${torch_env[@]}" /usr/bin/python3 bench/data_parallel_bench_torch.py "$cores" 1 "$batch" "$steps" "$repeats"
