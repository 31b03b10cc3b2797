#!/usr/bin/env bash
# Installs, as root on Debian 12, whatever vitfreeze needs that is missing. Prints what it does.
#   scripts/deps.sh           build (Open MPI included: data-parallel example and tests), tests, main job
#   scripts/deps.sh fuzz      + clang 14 and its sanitizer/libFuzzer runtime (scripts/fuzz.sh)
#   scripts/deps.sh bench     + Debian's PyTorch for the side-by-side benchmarks
set -euo pipefail
# Open MPI is in the base set: CMake remembers a failed search, so a build configured before it was
# installed would silently leave out the data-parallel targets and tests.
# oneDNN: the CPU backend's float GEMM (without it the build falls back to Eigen's, ~1.4x slower).
# CLI11 parses the example executables' flags (tested and fuzzed too).
packages=(g++ cmake make pkg-config libeigen3-dev doctest-dev libstb-dev zlib1g-dev dataset-fashion-mnist
          libopenmpi-dev openmpi-bin libdnnl-dev libcli11-dev)
for group in "$@"; do
  case "$group" in
    fuzz) packages+=(clang-14 libclang-rt-14-dev libomp-14-dev) ;;  # libomp: a fuzz target runs a real trainer
    bench) packages+=(python3-torch python3-numpy libopenblas0-pthread) ;;  # OpenBLAS, not netlib, for torch
    *) echo "deps: unknown group $group" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing ${missing[*]}; run as root or install them with apt-get" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
