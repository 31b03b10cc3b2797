#!/usr/bin/env bash
# vitfreeze_pretrain across resumes, on small data sets made from Fashion-MNIST:
#   resume_history_and_data.sh BIN FASHION_MNIST_DIR WORK
# 1. A 3-epoch run on data A, a checkpoint per epoch.
# 2. --resume auto at the end of the run (nothing left to train): summary.json still reports all 3
#    epochs, with the first run's losses, pretrain_seconds is their seconds' sum, and loss.png is
#    drawn (the history travels in the checkpoints; test_checkpoint resumes within the run).
# 3. --resume auto on data B, of the same size and other images: refused, naming the data
#    fingerprint, before any step.
set -euo pipefail
bin=$1 src=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "resume_history_and_data: $*" >&2; exit 1; }
[[ -f $src/train-images-idx3-ubyte.gz ]] || { echo "no Fashion-MNIST in $src: skipped"; exit 77; }
rm -rf "$work"
mkdir -p "$work"
bash "$here/make_small_fashion_mnist.sh" "$src" "$work/a" 512 256 0
bash "$here/make_small_fashion_mnist.sh" "$src" "$work/b" 512 256 512
tiny=(--model mini --train-subset 256 --epochs 3 --warmup 1 --steps-per-epoch 4 --batch 32 --probe-subset 64
      --probe-epochs 1 --out "$work/run")

losses() { grep -E '^ +"loss": ' "$1"; }  # the epochs_report entries, one per line (summary.json is indented)
check_summary() {
  local what=$1
  [[ $(losses "$work/run/summary.json" | wc -l) == 3 ]] || fail "$what: summary.json does not report 3 epochs"
  [[ "$(losses "$work/run/summary.json")" == "$(losses "$work/first.json")" ]] || fail "$what: the losses differ from the first run's"
  awk -F': ' '/^  "pretrain_seconds": / { total = $2 + 0 } /^ +"seconds": / { sum += $2 + 0 }
              END { exit !(sum > 0 && total - sum < 1e-6 && sum - total < 1e-6) }' "$work/run/summary.json" ||
    fail "$what: pretrain_seconds is not the sum of the epochs' seconds"
  [[ -s $work/run/loss.png ]] || fail "$what: no loss.png"
  echo "$what: 3 epochs reported, losses as in the first run"
}

"$bin" "${tiny[@]}" --data "$work/a" > "$work/first.log" 2>&1 || fail "first run: $(tail -n 3 "$work/first.log")"
cp "$work/run/summary.json" "$work/first.json"

"$bin" "${tiny[@]}" --data "$work/a" --resume auto > "$work/end.log" 2>&1 || fail "resume at the end: $(tail -n 3 "$work/end.log")"
grep -q "resuming from .*ckpt-000012" "$work/end.log" || fail "resume at the end did not load ckpt-000012"
check_summary "resumed at the end"


status=0
"$bin" "${tiny[@]}" --data "$work/b" --resume auto > "$work/other.log" 2>&1 || status=$?
((status == 2)) || fail "other data: exit status $status, expected 2"
grep -q "recipe.data_fingerprint: checkpoint" "$work/other.log" || fail "other data: no data_fingerprint difference named"
if grep -q "^epoch " "$work/other.log"; then fail "other data: training started"; fi
echo "other data of the same size: refused, naming the data fingerprint"
