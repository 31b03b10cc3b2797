#!/usr/bin/env bash
# The CPU freezing bench (bench/freeze_bench.cpp): per-step time of fixed frozen prefixes against no
# freezing, configurations interleaved, mean and 95 % confidence interval over the repeats of
# measured / predicted saving. Needs a quiet machine: run nothing else meanwhile. Arguments go to
# freeze_bench: [repeats=10] [steps=20] [frozen=0,4,8,12] [batch=64] [truncate|vitfreeze] [data_dir].
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh --target freeze_bench >/dev/null
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
date -u +"date %Y-%m-%dT%H:%MZ"; echo "machine $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
./build/bench/freeze_bench "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
