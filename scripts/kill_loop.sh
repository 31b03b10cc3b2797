#!/usr/bin/env bash
# The kill -9 loop of docs/reliability.md: a tiny vitfreeze_pretrain run (checkpoint every step) is
# killed with SIGKILL at random moments and restarted with --resume auto until it finishes; then its
# exported encoder must equal an uninterrupted run's byte for byte, and its summary.json must report
# the same epochs with the same losses. Rounds repeat until the time is up (each round finishes: after
# 8 kills it is left to run). Prints the counts; exits non-zero on any difference or failed start.
#   scripts/kill_loop.sh [seconds (default 180)] [build dir (default build)]
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-180}
bin=${2:-build}/examples/vitfreeze_pretrain
[[ -x $bin ]] || { echo "kill_loop: build $bin first (scripts/build.sh)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1  # deterministic, and two cores stay usable
bash tests/cli/make_small_fashion_mnist.sh /usr/share/datasets/fashion-mnist "$work/data" 512 256
args=(--model mini --data "$work/data" --train-subset 256 --epochs 3 --warmup 1 --steps-per-epoch 4 --batch 32
      --probe-subset 64 --probe-epochs 1 --checkpoint-every-steps 1 --keep-checkpoints 2)
losses() { grep -E '^ +"loss": ' "$1"; }

start=$(date +%s%N)
"$bin" "${args[@]}" --out "$work/ref" --export-encoder "$work/ref.safetensors" > "$work/ref.log" 2>&1
reference_ms=$((($(date +%s%N) - start) / 1000000))

rounds=0 kills=0 during_write=0 restarts=0 failures=0 mismatches=0
deadline=$((SECONDS + budget))
while ((SECONDS < deadline)); do
  rm -rf "$work/run" "$work/run.safetensors"
  round_kills=0
  while :; do
    "$bin" "${args[@]}" --out "$work/run" --resume auto --export-encoder "$work/run.safetensors" > "$work/run.log" 2>&1 &
    pid=$!
    if ((round_kills < 8)); then
      delay_ms=$(((RANDOM * 32768 + RANDOM) % reference_ms))  # anywhere in a run: start, steps, writes, probe
      sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
    fi
    if ((round_kills < 8)) && kill -0 "$pid" 2>/dev/null; then
      if compgen -G "$work/run/checkpoints/*.tmp.*" > /dev/null; then during_write=$((during_write + 1)); fi
      kill -9 "$pid"
      wait "$pid" 2>/dev/null || true
      kills=$((kills + 1)) round_kills=$((round_kills + 1)) restarts=$((restarts + 1))
      continue
    fi
    status=0
    wait "$pid" || status=$?
    if ((status != 0)); then
      failures=$((failures + 1))
      echo "kill_loop: a restarted run failed (status $status):" >&2
      tail -n 5 "$work/run.log" >&2
    elif ! cmp -s "$work/run.safetensors" "$work/ref.safetensors" ||
         [[ "$(losses "$work/run/summary.json")" != "$(losses "$work/ref/summary.json")" ]]; then
      mismatches=$((mismatches + 1))
      echo "kill_loop: round $((rounds + 1)) ended with another encoder or other losses than the uninterrupted run" >&2
    fi
    break
  done
  rounds=$((rounds + 1))
done
echo "kill_loop: $rounds rounds in ${budget} s (an uninterrupted run takes ${reference_ms} ms): $kills kill -9s," \
     "$during_write while a checkpoint was being written, $restarts restarts with --resume auto;" \
     "$failures failed restarts, $mismatches rounds differing from the uninterrupted run"
((failures == 0 && mismatches == 0))
