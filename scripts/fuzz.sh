#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang++-14 + ASan/UBSan into ./build-fuzz and runs each
# one for N seconds (default 60) from a temporary copy of its seed corpus, so the repository is not
# modified. Saved reproducers in fuzz/findings/<target>-* are replayed first: once fixed they are
# regression tests. Exits non-zero when any target crashes; crash inputs land in build-fuzz/artifacts/.
#   scripts/fuzz.sh [seconds-per-target [target...]]   e.g. scripts/fuzz.sh 300 idx
#   scripts/fuzz.sh --corpus     regenerate fuzz/corpus/ with the seed generator and exit
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
[ -n "${VITFREEZE_FUZZ_CXX:-}" ] || bash scripts/deps.sh fuzz
cxx="${VITFREEZE_FUZZ_CXX:-clang++-14}"
jobs="${VITFREEZE_JOBS:-$(nproc)}"

cmake -S fuzz -B build-fuzz -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
cmake --build build-fuzz -j"$jobs" >/dev/null

if [[ "${1:-}" == "--corpus" ]]; then
  rm -rf fuzz/corpus
  build-fuzz/make_corpus fuzz/corpus
  du -sh fuzz/corpus
  exit 0
fi
seconds="${1:-60}"
only=("${@:2}")  # target names (json, idx, ...); none: all

work=$(mktemp -d)
# The targets that read from a path write each input to a scratch file: keep those in RAM and gone.
scratch=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
export VITFREEZE_FUZZ_SCRATCH="$scratch"
trap 'rm -rf "$work" "$scratch"' EXIT
artifacts="$root/build-fuzz/artifacts"
mkdir -p "$artifacts"
failed=0
for bin in build-fuzz/fuzz_*; do
  [[ -x "$bin" && -f "$bin" ]] || continue
  target=$(basename "$bin")
  name=${target#fuzz_}
  if ((${#only[@]})) && [[ " ${only[*]} " != *" $name "* ]]; then continue; fi
  log="$work/$name.log"

  shopt -s nullglob
  saved=(fuzz/findings/"$name"-*)
  shopt -u nullglob
  if ((${#saved[@]})); then
    if ! "$bin" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 "${saved[@]}" >"$log" 2>&1; then
      echo "$target: FAILED replaying fuzz/findings ($(grep -m1 -E '^SUMMARY' "$log" || echo crash)); not fuzzed"
      grep -E '^(==[0-9]+== ?ERROR|SUMMARY|Running:)|fuzz: ' "$log" | head -n 8 | sed 's/^/    /'
      failed=1
      continue
    fi
  fi

  corpus="$work/$name"
  mkdir -p "$corpus"
  [[ -d fuzz/corpus/$name ]] && cp fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null || true
  seeds=$(find "$corpus" -type f | wc -l)
  status=0
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -artifact_prefix="$artifacts/$name-" -print_final_stats=1 "$corpus" >"$log" 2>&1 || status=$?
  runs=$(grep -m1 -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n1 | grep -oE '[0-9]+' || echo '?')
  grown=$(find "$corpus" -type f | wc -l)
  if ((status == 0)); then
    echo "$target: ok, $runs runs in ${seconds} s, coverage $cov, corpus $seeds -> $grown"
  else
    failed=1
    artifact=$(grep -oE 'Test unit written to .*' "$log" | tail -n1 | sed 's/Test unit written to //')
    echo "$target: CRASH after $runs runs: ${artifact:-see log}"
    grep -E '^(==[0-9]+== ?ERROR|SUMMARY)|fuzz: |^    #[0-9] .*vitfreeze' "$log" | head -n 8 | sed 's/^/    /'
  fi
done
exit $failed
