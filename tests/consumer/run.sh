#!/usr/bin/env bash
# Builds tests/consumer twice: against an installed vitfreeze (find_package) and via add_subdirectory.
set -euo pipefail
src=$1 work=$2
rm -rf "$work" && mkdir -p "$work"
here=$(cd "$(dirname "$0")" && pwd)
cmake -S "$src" -B "$work/lib" -DVITFREEZE_BUILD_TESTS=OFF -DVITFREEZE_BUILD_EXAMPLES=OFF \
      -DVITFREEZE_BUILD_BENCH=OFF -DVITFREEZE_CUDA=OFF >/dev/null
cmake --install "$work/lib" --prefix "$work/prefix" >/dev/null
cmake -S "$here" -B "$work/installed" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/installed" >/dev/null
"$work/installed/consumer"
cmake -S "$here" -B "$work/subdir" -DVITFREEZE_SOURCE="$src" -DVITFREEZE_CUDA=OFF >/dev/null
cmake --build "$work/subdir" --target consumer >/dev/null
"$work/subdir/consumer"
