#!/usr/bin/env bash
# The CPU step benchmark, side by side: this machine's ceilings (FMA peak, GEMM on the step's shapes),
# then vitfreeze (bench/step_bench) and Debian's PyTorch (bench/step_bench_torch.py) on the same work,
# interleaved over ROUNDS rounds, each configuration a fresh process (one library per process, so
# their thread pools never compete). PyTorch runs in each of its configurations on this machine:
# OMP_WAIT_POLICY passive and active, OpenBLAS's own core detection (plus its AVX-512 kernels when
# the CPU has AVX-512, never otherwise), glibc malloc tuned, and bf16 autocast where the CPU has
# AVX512-BF16 or AMX. vitfreeze runs with OpenMP's default (active) waiting.
#   bash bench/run_step_bench.sh [ROUNDS=3] [BATCH=128] [STEPS=10]      (THREADS=n to override nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
batch=${2:-128}
steps=${3:-10}
threads=${THREADS:-$(nproc)}
bash scripts/deps.sh bench >/dev/null
bash scripts/build.sh --target step_bench cpu_ceiling >/dev/null

source bench/torch_env.sh
date -u +"date %Y-%m-%dT%H:%MZ"
echo "$(machine_line), threads $threads"
echo "PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__, torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "")')"
OMP_NUM_THREADS=$threads ./build/bench/cpu_ceiling

torch_run() {  # CONFIG WAIT [extra args]
  local config=$1
  torch_env "$2"
  shift 2
  env OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads" "${TORCH_ENV[@]}" \
    /usr/bin/python3 bench/step_bench_torch.py "$config" "$threads" "$batch" "$steps" 3 "$@"
}
for round in $(seq 1 "$rounds"); do
  echo "--- round $round"
  for config in mae localmim; do
    if [ $((round % 2)) -eq 1 ]; then
      OMP_NUM_THREADS=$threads ./build/bench/step_bench "$config" explicit "$batch" "$steps" 3
      torch_run "$config" PASSIVE
      torch_run "$config" ACTIVE
    else
      torch_run "$config" ACTIVE
      torch_run "$config" PASSIVE
      OMP_NUM_THREADS=$threads ./build/bench/step_bench "$config" explicit "$batch" "$steps" 3
    fi
    if [ "$HAS_BF16" = yes ]; then torch_run "$config" PASSIVE --bf16; fi
  done
done
