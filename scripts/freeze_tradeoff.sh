#!/usr/bin/env bash
# The freezing trade-off over several seeds (docs/results.md, "Freezing over seeds"): LocalMIM with no
# freezing, cubic 0.8, linear 0.5 and ViT-tailored on the budget of scripts/results.sh, once per seed.
# A seed fixes initialisation, masks, crops and data order, so each schedule is compared with the
# no-freezing run of its own seed (paired differences). Usage: bash scripts/freeze_tradeoff.sh [SEED...]
# (default 0 1 2); ROWS="none linear0.5" runs only those rows. Writes
# runs/freeze_tradeoff/seed<N>/<row>/summary.json and prints the tables.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/results_common.sh
bash scripts/build.sh --target vitfreeze_pretrain >/dev/null
seeds=("$@"); [ ${#seeds[@]} -gt 0 ] || seeds=(0 1 2)
rows=${ROWS:-none cubic0.8 linear0.5 vittail}
declare -A flags=(
  [none]="--schedule none"
  [cubic0.8]="--schedule cubic --t0 0.8"
  [linear0.5]="--schedule linear --t0 0.5"
  [vittail]="--schedule vit-tailored --t0 0.8"
)
for seed in "${seeds[@]}"; do
  for row in $rows; do
    [ -n "${flags[$row]:-}" ] || { echo "freeze_tradeoff: unknown row $row" >&2; exit 2; }
    # shellcheck disable=SC2086  # the row's flags are separate words
    run_recipe "runs/freeze_tradeoff/seed$seed/$row" --seed "$seed" --objective localmim ${flags[$row]}
  done
done
# shellcheck disable=SC2086  # one row name per word
python3 scripts/freeze_tradeoff_table.py runs/freeze_tradeoff --require "${seeds[@]}" --rows $rows
