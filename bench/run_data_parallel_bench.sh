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
# PyTorch gets its best configuration here (bench/torch_env.sh: passive OpenMP waiting, AVX-512
# OpenBLAS kernels only on a CPU that has AVX-512, no malloc trimming). vitfreeze keeps OpenMP's
# active waiting.
source bench/torch_env.sh
torch_env PASSIVE
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(machine_line)"
OMP_NUM_THREADS=$cores mpiexec -n 1 --bind-to none ./build/bench/data_parallel_bench "$batch" "$steps" "$repeats"
OMP_NUM_THREADS=1 mpiexec -n "$cores" --oversubscribe ./build/bench/data_parallel_bench "$batch" "$steps" "$repeats"
env "${TORCH_ENV[@]}" /usr/bin/python3 bench/data_parallel_bench_torch.py 1 "$cores" "$batch" "$steps" "$repeats"
env "${TORCH_ENV[@]}" /usr/bin/python3 bench/data_parallel_bench_torch.py "$cores" 1 "$batch" "$steps" "$repeats"
