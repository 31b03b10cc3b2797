#!/usr/bin/env bash
# Reproduces docs/results.md: pretraining recipes on Fashion-MNIST with the same data, seed and
# budget, each followed by a linear probe and a short end-to-end fine-tune. Writes
# runs/results/<name>/summary.json and prints the markdown table (scripts/results_table.py).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/results_common.sh
bash scripts/build.sh --target vitfreeze_pretrain >/dev/null
rows=()
run() { local name=$1; shift; rows+=("$name"); run_recipe "runs/results/$name" --seed 0 "$@"; }
run scratch            --epochs 0
run mae                --objective mae --schedule none
run localmim           --objective localmim --schedule none
run localmim-cubic0.8  --objective localmim --schedule cubic --t0 0.8
run localmim-linear0.5 --objective localmim --schedule linear --t0 0.5
run localmim-vittail   --objective localmim --schedule vit-tailored --t0 0.8
run mae-lite           --objective mae-lite --schedule none
run micl               --objective micl --schedule none
python3 scripts/results_table.py runs/results "${rows[@]}"
