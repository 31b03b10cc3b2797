#!/usr/bin/env bash
# The test command: installs what is missing, builds everything, runs the whole suite with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
bash scripts/require_tests.sh build
cd build
# Tests run two at a time, one thread each, so they do not fight over the two cores.
OMP_NUM_THREADS=1 ctest --output-on-failure -j"$(nproc)" --timeout 900
