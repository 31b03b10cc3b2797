#!/usr/bin/env bash
# Compile time and peak memory of the main example and of a minimal user TU (bench/compile_time/
# user_step.cpp: encoder + MAE + one trainer step), one at a time, with the flags of a Release build
# (-O3 -march=native, oneDNN on). Prints the load average too: on a shared machine the numbers move.
#   bench/compile_time.sh [build-dir]     (default build-nocuda, configured already)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build-nocuda}"
flags_file="$build/examples/CMakeFiles/vitfreeze_pretrain.dir/flags.make"
[ -f "$flags_file" ] || { echo "configure $build first (cmake -S . -B $build)" >&2; exit 2; }
flags="$(sed -n 's/^CXX_DEFINES = //p;s/^CXX_INCLUDES = //p;s/^CXX_FLAGS = //p' "$flags_file" | tr '\n' ' ')"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for src in examples/vitfreeze_pretrain.cpp bench/compile_time/user_step.cpp; do
  load="$(cut -d' ' -f1-3 /proc/loadavg)"
  # shellcheck disable=SC2086
  /usr/bin/time -f "%e s wall, %U s user, %M KB peak" -o "$out/time" c++ $flags -c "$src" -o "$out/tu.o"
  printf '%-40s %s (load %s)\n' "$src" "$(cat "$out/time")" "$load"
done
