#!/usr/bin/env bash
# Encoder forward + backward, vitfreeze (explicit encoder, and the tape for reference) and Debian's
# PyTorch side by side: this machine's FMA peak first (bench/cpu_ceiling), then both libraries on the
# same shapes, interleaved over ROUNDS rounds (alternating which goes first), each a fresh process
# (one library per process, so their thread pools never compete). PyTorch gets its best
# configuration here (bench/torch_env.sh), passive and active OpenMP waiting both; vitfreeze keeps
# OpenMP's default (active) waiting.
#   bash bench/run_encoder_bench.sh [ITERS=10] [ROUNDS=3]      (OMP_NUM_THREADS to override nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-10}
rounds=${2:-3}
threads=${OMP_NUM_THREADS:-$(nproc)}
bash scripts/deps.sh bench >/dev/null
bash scripts/build.sh --target encoder_bench cpu_ceiling >/dev/null
source bench/torch_env.sh
date -u +"date %Y-%m-%dT%H:%MZ"
echo "$(machine_line), threads $threads"
ceiling=$(OMP_NUM_THREADS=$threads ./build/bench/cpu_ceiling 10)
echo "$ceiling"
peak=$(echo "$ceiling" | awk '/^fma peak/ {print $3}')
torch_run() {
  torch_env "$1"
  env OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads" "${TORCH_ENV[@]}" \
    /usr/bin/python3 bench/encoder_bench_torch.py "$iters" "$threads" "$peak"
}
for round in $(seq 1 "$rounds"); do
  echo "--- round $round"
  if [ $((round % 2)) -eq 1 ]; then
    OMP_NUM_THREADS=$threads ./build/bench/encoder_bench "$iters" "$peak" both
    torch_run PASSIVE
    torch_run ACTIVE
  else
    torch_run ACTIVE
    torch_run PASSIVE
    OMP_NUM_THREADS=$threads ./build/bench/encoder_bench "$iters" "$peak" both
  fi
done
