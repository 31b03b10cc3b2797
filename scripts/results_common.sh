# Sourced by scripts/results.sh and scripts/freeze_tradeoff.sh: the shared budget of the Fashion-MNIST
# result tables (docs/results.md) and a runner that keeps the log free of progress-bar lines.
results_common=(--epochs 4 --warmup 1 --train-subset 20000 --probe-subset 20000 --probe-epochs 10
                --finetune-epochs 1 --finetune-subset 10000)
# run_recipe OUT_DIR FLAGS...: one pretraining + probe + fine-tune into OUT_DIR (summary.json there).
# OUT_DIR is cleared first, so a failed run cannot leave an older summary.json for the tables to read;
# a failing run (or a missing summary) fails the caller.
run_recipe() {
  local out=$1; shift
  rm -rf "$out"
  echo "== $out: vitfreeze_pretrain ${results_common[*]} $*"
  # grep -v exits 1 when every line is filtered; only the pretraining's own status counts.
  ./build/examples/vitfreeze_pretrain "${results_common[@]}" "$@" --out "$out" | tr '\r' '\n' | { grep -v 'eta ' || true; }
  if [ ! -f "$out/summary.json" ]; then
    echo "run_recipe: $out/summary.json was not written" >&2
    return 1
  fi
}
