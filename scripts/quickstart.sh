#!/usr/bin/env bash
# The main job: installs what is missing, builds, and pretrains on Fashion-MNIST with the default
# recipe, then linear-probes and prints test top-1. Outputs go to ./runs/quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh --target vitfreeze_pretrain
./build/examples/vitfreeze_pretrain --out runs/quickstart "$@"
