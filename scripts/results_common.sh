# Sourced by scripts/results.sh and scripts/freeze_tradeoff.sh: the shared budget of the Fashion-MNIST
# result tables (docs/results.md) and a runner that keeps the log free of progress-bar lines.
results_common=(--epochs 4 --warmup 1 --train-subset 20000 --probe-subset 20000 --probe-epochs 10
                --finetune-epochs 1 --finetune-subset 10000)
# run_recipe OUT_DIR FLAGS...: one pretraining + probe + fine-tune into OUT_DIR (summary.json there).
run_recipe() {
  local out=$1; shift
  echo "== $out: vitfreeze_pretrain ${results_common[*]} $*"
  ./build/examples/vitfreeze_pretrain "${results_common[@]}" "$@" --out "$out" | tr '\r' '\n' | grep -v 'eta ' || true
}
