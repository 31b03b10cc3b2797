#!/usr/bin/env bash
# Every GPU check and benchmark of the CUDA issue in one go, on a machine with an NVIDIA GPU:
#   1. the CUDA tests (CPU-vs-GPU comparisons, freezing, graph replay), compute-sanitizer on two;
#   2. the bf16 GEMM ceiling of the device (PyTorch, 8192^3, random data);
#   3. vitfreeze's MAE ViT-B/16, MAE ViT-Ti/16 and LocalMIM ViT-B/16 steps at 224 px, mask 0.75,
#      batch 256, bf16, with frozen-prefix variants (the freezing saving on the GPU);
#   4. PyTorch on the same models and shapes (eager bf16 autocast, torch.compile), same run.
# Usage: bash bench/cuda/run_gpu_bench.sh [out_dir]
# Binaries come from BIN (default build-gpu/, built here with CMake if missing there). cuDNN is taken
# from the PyTorch wheel when the system has none.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR=${1:-gpu-bench-out}
mkdir -p "$OUT_DIR"
CUDNN_WHEEL=$(python3 -c "import nvidia.cudnn as m; print(list(m.__path__)[0])" 2>/dev/null || true)
if [ -n "$CUDNN_WHEEL" ]; then export LD_LIBRARY_PATH="$CUDNN_WHEEL/lib:${LD_LIBRARY_PATH:-}"; fi
BIN=${BIN:-build-gpu}
if [ ! -x "$BIN/mae_step_bench" ]; then
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DVITFREEZE_NATIVE=OFF \
    ${CUDNN_WHEEL:+-DCUDNN_PATH=$CUDNN_WHEEL} >/dev/null
  cmake --build build-gpu -j"$(nproc)" --target test_cuda_ops test_cuda_attention test_cuda_sdpa test_cuda_mae_step \
    test_cuda_localmim_step mae_step_bench localmim_step_bench >/dev/null
  for f in build-gpu/tests/test_cuda_* build-gpu/bench/*_step_bench; do cp "$f" build-gpu/; done
  BIN=build-gpu
fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$OUT_DIR/gpu.txt"

echo "== tests"
for t in test_cuda_ops test_cuda_attention test_cuda_sdpa test_cuda_mae_step test_cuda_localmim_step; do
  rc=0; "$BIN/$t" >"$OUT_DIR/$t.log" 2>&1 || rc=$?
  echo "$t exit $rc: $(tail -1 "$OUT_DIR/$t.log")"
done
for t in test_cuda_mae_step test_cuda_localmim_step; do
  rc=0; compute-sanitizer --tool memcheck "$BIN/$t" >"$OUT_DIR/sanitizer_$t.log" 2>&1 || rc=$?
  echo "compute-sanitizer memcheck $t exit $rc: $(grep 'ERROR SUMMARY' "$OUT_DIR/sanitizer_$t.log")"
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

echo "== vitfreeze"
"$BIN/mae_step_bench" b 256 20 0,4,8,12 | tee "$OUT_DIR/vitfreeze_mae_b.txt"
"$BIN/mae_step_bench" ti 256 20 0 | tee "$OUT_DIR/vitfreeze_mae_ti.txt"
"$BIN/mae_step_bench" b 256 20 0 fp16 | tee "$OUT_DIR/vitfreeze_mae_b_fp16.txt"
"$BIN/localmim_step_bench" 256 20 0,4,8,12 | tee "$OUT_DIR/vitfreeze_localmim_b.txt"

echo "== PyTorch"
PYTHONUNBUFFERED=1 python3 bench/cuda/torch_mim_bench.py --models mae-b,mae-ti,localmim-b --modes eager,compile \
  --json "$OUT_DIR/torch_mim_bench.json" 2>&1 | grep -v Warning | tee "$OUT_DIR/torch_mim_bench.txt" | tail -9
