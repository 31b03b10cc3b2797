#!/usr/bin/env bash
# Fails when a test group that this machine can build is missing from BUILD_DIR's CTest list: the MPI
# tests once Open MPI is installed (scripts/deps.sh installs it), the CUDA tests when nvcc is on PATH
# and the build has CUDA on. CMake drops a group silently when its search failed at configure time
# (it caches the failure), so CI checks the list instead of trusting the configuration.
#   scripts/require_tests.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: scripts/require_tests.sh BUILD_DIR}
listed=$(ctest --test-dir "$build" -N)
status=0
require() {  # require PATTERN WHY
  if ! grep -q "Test *#[0-9]*: $1" <<<"$listed"; then
    echo "require_tests: $2, but $build registers no '$1' tests (reconfigure from a fresh build directory)" >&2
    status=1
  fi
}
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
if installed libopenmpi-dev || command -v mpicxx >/dev/null; then
  require "mpi:data_parallel" "Open MPI is installed"
fi
if command -v nvcc >/dev/null && ! grep -q '^VITFREEZE_CUDA:BOOL=OFF' "$build/CMakeCache.txt"; then
  require "cuda:test_cuda" "nvcc is on PATH and VITFREEZE_CUDA is on"
fi
[ $status -eq 0 ] && echo "require_tests: $build has every test group this machine can build"
exit $status
