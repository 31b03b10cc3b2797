#!/usr/bin/env bash
# The rows of issue 15 for docs/results.md, on the budget of scripts/results.sh (results_common.sh),
# every row over three seeds:
#   - MAE and LoMaR at two image sizes, 28x28 and 56x56 upsampled Fashion-MNIST, at patch 4 (7x7 and
#     14x14 token grids; LoMaR with 4 windows of 4x4 at both sizes, so its tokens per image stay 68
#     while MAE's grow 4x): the default rows;
#   - the same at patch 2 with LoMaR's published windows (4 of 7x7; the 14x14 and 28x28 grids of
#     ViT-B/16 at 224 and 448): rows *-p2, about 4x the compute (ROWS=... to run them);
#   - a LoMaR encoder pretrained at 28 and fine-tuned at 56 with the same weights;
#   - MAE-lite with and without attention distillation from a teacher pretrained here (MAE on ViT-S,
#     384 wide, 12 blocks, 6 heads, the same budget, seed 0; its time is in teacher-vit-s/summary.json).
# Summaries in runs/results_methods/<row>-s<seed>/summary.json; scripts/results_methods_table.py prints
# mean and standard deviation over the seeds and the LoMaR/MAE pretraining-time ratio at each size.
#   bash scripts/results_methods.sh                                       the default rows, seeds 0 1 2
#   SEEDS="0" ROWS="mae-28p2 lomar-28p2 mae-56p2 lomar-56p2" bash scripts/results_methods.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/results_common.sh
bash scripts/build.sh --target vitfreeze_pretrain >/dev/null
root=runs/results_methods
seeds=(${SEEDS:-0 1 2})
declare -A flags=(
  [mae-28p4]="--objective mae --schedule none"
  [lomar-28p4]="--objective lomar --window 4 --schedule none"
  [mae-56p4]="--objective mae --image 56 --schedule none"
  [lomar-56p4]="--objective lomar --window 4 --image 56 --schedule none"
  [lomar-28p4-ft56]="--objective lomar --window 4 --finetune-image 56 --schedule none"
  [mae-lite]="--objective mae-lite --schedule none"
  [mae-lite-distill]="--objective mae-lite --teacher $root/teacher-vit-s.safetensors --schedule none"
  [mae-28p2]="--objective mae --patch 2 --schedule none"
  [lomar-28p2]="--objective lomar --patch 2 --schedule none"
  [mae-56p2]="--objective mae --patch 2 --image 56 --schedule none"
  [lomar-56p2]="--objective lomar --patch 2 --image 56 --schedule none"
)
order=(mae-28p4 lomar-28p4 mae-56p4 lomar-56p4 lomar-28p4-ft56 mae-lite mae-lite-distill)
rows=(${ROWS:-${order[*]}})
for row in "${rows[@]}"; do
  [[ -v "flags[$row]" ]] || { echo "results_methods: unknown row $row" >&2; exit 2; }
done
# The teacher: MAE on ViT-S (384 wide, 12 blocks, 6 heads, patch 4), the common budget, seed 0; its
# pretraining time is in $root/teacher-vit-s/summary.json (the cost the distilled rows add).
if [[ " ${rows[*]} " == *" mae-lite-distill "* && ! -f $root/teacher-vit-s.safetensors ]]; then
  run_recipe "$root/teacher-vit-s" --seed 0 --objective mae --model small --schedule none \
    --export-encoder "$root/teacher-vit-s.safetensors"
fi
names=()
for row in "${rows[@]}"; do
  for seed in "${seeds[@]}"; do
    # shellcheck disable=SC2086
    run_recipe "$root/$row-s$seed" --seed "$seed" ${flags[$row]}
    names+=("$row-s$seed")
  done
done
python3 scripts/results_methods_table.py "$root" "${names[@]}"
