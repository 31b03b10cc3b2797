#!/usr/bin/env bash
# Reproduces docs/results.md: pretraining recipes on Fashion-MNIST with the same data, seed and
# budget, each followed by a linear probe and a short end-to-end fine-tune. Writes
# runs/results/<name>/summary.json and prints the markdown table (scripts/results_table.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh --target vitfreeze_pretrain >/dev/null
common=(--epochs 4 --warmup 1 --train-subset 20000 --probe-subset 20000 --probe-epochs 10
        --finetune-epochs 1 --finetune-subset 10000 --seed 0)
run() {
  local name=$1; shift
  echo "== $name: vitfreeze_pretrain ${common[*]} $*"
  ./build/examples/vitfreeze_pretrain "${common[@]}" "$@" --out "runs/results/$name" | tr '\r' '\n' | grep -v 'eta ' || true
}
run scratch            --epochs 0
run mae                --objective mae --schedule none
run localmim           --objective localmim --schedule none
run localmim-cubic0.8  --objective localmim --schedule cubic --t0 0.8
run localmim-linear0.5 --objective localmim --schedule linear --t0 0.5
run localmim-vittail   --objective localmim --schedule vit-tailored --t0 0.8
python3 scripts/results_table.py runs/results
