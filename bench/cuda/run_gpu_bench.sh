#!/usr/bin/env bash
# Every GPU check and benchmark of the CUDA issue in one go, on a machine with an NVIDIA GPU:
#   1. the CUDA tests (CPU-vs-GPU comparisons, freezing, graph replay, the GPU training loop against
#      the CPU trainer), compute-sanitizer on the two whole-step tests; the script stops at the first
#      failure, and a machine without a usable GPU fails (VITFREEZE_REQUIRE_GPU=1) instead of skipping;
#   2. the bf16 GEMM ceiling of the device (PyTorch, 8192^3, random data);
#   3. ROUNDS rounds (default 2) of vitfreeze's MAE ViT-B/16, MAE ViT-Ti/16 and LocalMIM ViT-B/16 steps
#      (224 px, mask 0.75, batch 256, bf16, frozen-prefix variants) and PyTorch on the same models
#      (MODES, default eager, compile, compile-max-autotune, compile-reduce-overhead, eager+cudnn),
#      the two libraries in alternating order (odd rounds vitfreeze first, even rounds PyTorch first),
#      both with the same statistic (median of 5 blocks of 20 steps after 10 warm-up steps);
#   4. the comparison table of each round from that round's files only (compare_same_job.py), with
#      MFU against the published dense bf16 peak (PEAK_TFLOPS; H100 SXM and H200 known) and the
#      share of the measured ceiling.
# Usage: bash bench/cuda/run_gpu_bench.sh [out_dir]
# Binaries come from BIN (default build-gpu/, built here with CMake if missing there). cuDNN is taken
# from the PyTorch wheel when the system has none. compile-max-autotune compiles for minutes per model.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR=${1:-gpu-bench-out}
ROUNDS=${ROUNDS:-2}
MODES=${MODES:-eager,compile,compile-max-autotune,compile-reduce-overhead,eager+cudnn}
TESTS=(test_cuda_ops test_cuda_attention test_cuda_sdpa test_cuda_mae_step test_cuda_localmim_step
       test_cuda_micl_mae_lite_step test_cuda_pretrainer_localmim)
export VITFREEZE_REQUIRE_GPU=1
mkdir -p "$OUT_DIR"
CUDNN_WHEEL=$(python3 -c "import nvidia.cudnn as m; print(list(m.__path__)[0])" 2>/dev/null || true)
if [ -n "$CUDNN_WHEEL" ]; then export LD_LIBRARY_PATH="$CUDNN_WHEEL/lib:${LD_LIBRARY_PATH:-}"; fi
BIN=${BIN:-build-gpu}
if [ ! -x "$BIN/mae_step_bench" ] || [ ! -x "$BIN/test_cuda_pretrainer_localmim" ]; then
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DVITFREEZE_NATIVE=OFF \
    ${CUDNN_WHEEL:+-DCUDNN_PATH=$CUDNN_WHEEL} >/dev/null
  cmake --build build-gpu -j"$(nproc)" --target "${TESTS[@]}" mae_step_bench localmim_step_bench >/dev/null
  for f in build-gpu/tests/test_cuda_* build-gpu/bench/*_step_bench; do cp "$f" build-gpu/; done
  BIN=build-gpu
fi
gpu=$(nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | head -1)
echo "$gpu" | tee "$OUT_DIR/gpu.txt"
if [ -z "${PEAK_TFLOPS:-}" ]; then  # published dense bf16 peaks (no sparsity)
  case "$gpu" in
    *"H100 80GB HBM3"* | *"H100 SXM"* | *H200*) PEAK_TFLOPS=989.4 ;;
    *A100*) PEAK_TFLOPS=312 ;;
    *) echo "run_gpu_bench: unknown GPU '$gpu': set PEAK_TFLOPS to its published dense bf16 peak" >&2; exit 2 ;;
  esac
fi
echo "MFU against the published dense bf16 peak: $PEAK_TFLOPS TFLOP/s" | tee "$OUT_DIR/peak.txt"

echo "== tests (stop at the first failure)"
for t in "${TESTS[@]}"; do
  rc=0; "$BIN/$t" >"$OUT_DIR/$t.log" 2>&1 || rc=$?
  echo "$t exit $rc: $(tail -1 "$OUT_DIR/$t.log")"
  [ $rc -eq 0 ] || { echo "run_gpu_bench: $t failed, see $OUT_DIR/$t.log" >&2; exit 1; }
done
for t in test_cuda_mae_step test_cuda_localmim_step; do
  rc=0; compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/$t" >"$OUT_DIR/sanitizer_$t.log" 2>&1 || rc=$?
  echo "compute-sanitizer memcheck $t exit $rc: $(grep 'ERROR SUMMARY' "$OUT_DIR/sanitizer_$t.log")"
  [ $rc -eq 0 ] || { echo "run_gpu_bench: compute-sanitizer on $t failed" >&2; exit 1; }
done

echo "== bf16 GEMM ceiling (PyTorch, 8192^3, random data, median of 20)"
python3 - <<'PY' | tee "$OUT_DIR/ceiling.txt"
import torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
for _ in range(5): a @ b
ts = []
for _ in range(20):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record(); a @ b; e.record(); torch.cuda.synchronize(); ts.append(s.elapsed_time(e))
ts.sort(); ms = ts[len(ts) // 2]
print(f"bf16 matmul 8192^3: {ms:.3f} ms, {2 * 8192**3 / ms / 1e9:.1f} TFLOP/s")
PY

run_vitfreeze() {  # run_vitfreeze DIR
  echo "== vitfreeze"
  "$BIN/mae_step_bench" b 256 20 0,4,8,12 | tee "$1/vitfreeze_mae_b.txt"
  "$BIN/mae_step_bench" ti 256 20 0 | tee "$1/vitfreeze_mae_ti.txt"
  "$BIN/mae_step_bench" b 256 20 0 fp16 | tee "$1/vitfreeze_mae_b_fp16.txt"
  "$BIN/localmim_step_bench" 256 20 0,4,8,12 | tee "$1/vitfreeze_localmim_b.txt"
}
run_torch() {  # run_torch DIR
  echo "== PyTorch ($MODES)"
  PYTHONUNBUFFERED=1 python3 bench/cuda/torch_mim_bench.py --models mae-b,mae-ti,localmim-b --modes "$MODES" \
    --peak-tflops "$PEAK_TFLOPS" --json "$1/torch_mim_bench.json" 2>&1 | grep -v Warning | tee "$1/torch_mim_bench.txt"
}
for round in $(seq 1 "$ROUNDS"); do
  dir="$OUT_DIR/round$round"
  mkdir -p "$dir"
  echo "== round $round"
  if [ $((round % 2)) -eq 1 ]; then run_vitfreeze "$dir"; run_torch "$dir"; else run_torch "$dir"; run_vitfreeze "$dir"; fi
done

echo "== same-job comparison"
python3 bench/cuda/compare_same_job.py "$OUT_DIR" --peak-tflops "$PEAK_TFLOPS" | tee "$OUT_DIR/comparison.md"
