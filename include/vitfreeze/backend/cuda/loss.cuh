#pragma once
// Masked MSE, as cpu::masked_mse_forward / masked_mse_backward:
//   loss = sum_r w[r] * mean_p (pred - target)^2 / sum_r w[r]    (pred, target: [rows, P])
// accumulated in double like the CPU kernel (a masked sum of many small errors loses digits in
// float). Deterministic: a fixed grid of warps over the rows, then one block sums the blocks' partials.
#include <algorithm>
#include <cstdint>

#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/device_math.cuh"

namespace vitfreeze::cuda {

namespace kernels {
// Stage 1: one warp per row (grid-stride over rows: LocalMIM's rows hold 27 values, where a block
// per row would leave most threads idle), each warp summing its rows, each block its warps, into
// partial[block] (loss, weight). Stage 2 (masked_mse_total) adds the blocks' partials in order.
// The grid depends on the row count only, so the sums are deterministic.
inline constexpr int kLossBlocks = 1024;
template <DeviceScalar T>
__global__ void masked_mse_partials(const T* pred, std::int64_t pred_ld, const T* target, const float* weight,
                                    std::int64_t rows, std::int64_t P, double* partial_loss, double* partial_weight) {
  __shared__ double warp_loss[32], warp_weight[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const std::int64_t warps_per_block = blockDim.x / 32, warps = std::int64_t(gridDim.x) * warps_per_block;
  double loss = 0.0, wsum = 0.0;
  for (std::int64_t r = blockIdx.x * warps_per_block + warp; r < rows; r += warps) {  // uniform per warp
    const double w = weight ? static_cast<double>(weight[r]) : 1.0;
    if (w == 0.0) continue;
    double e = 0.0;
    for (std::int64_t p = lane; p < P; p += 32) {
      const double d = static_cast<double>(to_float(pred[r * pred_ld + p])) - static_cast<double>(to_float(target[r * P + p]));
      e += d * d;
    }
    for (int offset = 16; offset > 0; offset /= 2) e += __shfl_xor_sync(0xffffffffu, e, offset);
    loss += w * e / static_cast<double>(P);
    wsum += w;
  }
  if (lane == 0) {
    warp_loss[warp] = loss;
    warp_weight[warp] = wsum;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double l = 0.0, w = 0.0;
    for (int k = 0; k < int(warps_per_block); ++k) {
      l += warp_loss[k];
      w += warp_weight[k];
    }
    partial_loss[blockIdx.x] = l;
    partial_weight[blockIdx.x] = w;
  }
}

// result[0] = sum loss / sum w, result[1] = sum w (added to result when accumulate). One block.
template <class F>
__global__ void masked_mse_total(const F* partial_loss, const F* partial_weight, std::int64_t n, F* result,
                                 bool accumulate) {
  F total = 0.0, wsum = 0.0;
  for (std::int64_t r = threadIdx.x; r < n; r += blockDim.x) {
    total += partial_loss[r];
    wsum += partial_weight[r];
  }
  total = detail::block_sum(total);
  wsum = detail::block_sum(wsum);
  if (threadIdx.x == 0) {
    result[0] = (accumulate ? result[0] : 0.0) + total / wsum;
    result[1] = (accumulate ? result[1] : 0.0) + wsum;
  }
}

template <DeviceScalar T>
__global__ void masked_mse_backward(double g, const float* g_scale, const T* pred, std::int64_t pred_ld, const T* target,
                                    const float* weight, double weight_sum, T* dpred, std::int64_t P, std::int64_t n) {
  if (g_scale) g *= static_cast<double>(*g_scale);
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / P, p = i % P;
    const double w = weight ? static_cast<double>(weight[r]) : 1.0;
    if (w == 0.0) continue;
    const float c = static_cast<float>(g * 2.0 * w / (static_cast<double>(P) * weight_sum));
    const std::int64_t at = r * pred_ld + p;
    dpred[at] = from_float<T>(to_float(dpred[at]) + c * (to_float(pred[at]) - to_float(target[i])));
  }
}
}  // namespace kernels

// Writes result_device[0] = loss and result_device[1] = sum of weights, without waiting for the GPU;
// accumulate adds them instead (a sum of several losses, e.g. LocalMIM's taps, stays on the device).
// weight: [rows] fp32 or null (all rows count). pred_ld: pred's row stride (0: P), so a prediction
// whose rows are padded for aligned GEMM output (LocalMIM's 27 values in rows of 32) is read in place.
template <DeviceScalar T>
void masked_mse_forward_async(CudaContext& ctx, const T* pred, const T* target, const float* weight, std::int64_t rows,
                              std::int64_t P, double* result_device, bool accumulate = false, std::int64_t pred_ld = 0) {
  if (rows <= 0) throw ConfigError("cuda::masked_mse_forward: no rows");
  const std::int64_t warps_per_block = detail::kBlock / 32;
  const std::int64_t blocks = std::min<std::int64_t>((rows + warps_per_block - 1) / warps_per_block, kernels::kLossBlocks);
  DeviceBuffer scratch = ctx.allocator().allocate(sizeof(double) * 2 * static_cast<std::size_t>(blocks));
  double* partial = scratch.as<double>();
  kernels::masked_mse_partials<T><<<static_cast<unsigned>(blocks), detail::kBlock, 0, ctx.stream()>>>(
      pred, pred_ld > 0 ? pred_ld : P, target, weight, rows, P, partial, partial + blocks);
  check_launch("masked_mse_partials");
  kernels::masked_mse_total<double><<<1, detail::kBlock, 0, ctx.stream()>>>(partial, partial + blocks, blocks,
                                                                             result_device, accumulate);
  check_launch("masked_mse_total");
}  // scratch returns to the cache here; the stream runs the kernels before any later user of the block

// The CPU kernel's signature: returns the loss and stores the weight sum; waits for the GPU.
template <DeviceScalar T>
double masked_mse_forward(CudaContext& ctx, const T* pred, const T* target, const float* weight, std::int64_t rows,
                          std::int64_t P, double* weight_sum_out) {
  DeviceBuffer result = ctx.allocator().allocate(2 * sizeof(double));
  masked_mse_forward_async(ctx, pred, target, weight, rows, P, result.as<double>());
  double host[2] = {0.0, 0.0};
  check(cudaMemcpyAsync(host, result.data(), sizeof(host), cudaMemcpyDeviceToHost, ctx.stream()),
        "cudaMemcpyAsync(masked_mse result)");
  ctx.synchronize();
  *weight_sum_out = host[1];
  return host[0];
}

// dpred += g * 2 w (pred - target) / (P * sum w); pred and dpred have row stride pred_ld (0: P).
// g_scale: null, or a device float g is multiplied by (the fp16 loss scale, which lives on the GPU).
template <DeviceScalar T>
void masked_mse_backward(CudaContext& ctx, double g, const T* pred, const T* target, const float* weight,
                         double weight_sum, T* dpred, std::int64_t rows, std::int64_t P, std::int64_t pred_ld = 0,
                         const float* g_scale = nullptr) {
  const std::int64_t n = rows * P;
  if (n <= 0) return;
  kernels::masked_mse_backward<T><<<detail::grid_for(n), detail::kBlock, 0, ctx.stream()>>>(
      g, g_scale, pred, pred_ld > 0 ? pred_ld : P, target, weight, weight_sum, dpred, P, n);
  check_launch("masked_mse_backward");
}

}  // namespace vitfreeze::cuda
