#pragma once
// Masked MSE, as cpu::masked_mse_forward / masked_mse_backward:
//   loss = sum_r w[r] * mean_p (pred - target)^2 / sum_r w[r]    (pred, target: [rows, P])
// accumulated in double like the CPU kernel (a masked sum of many small errors loses digits in
// float). Deterministic: one warp per row, then one block sums the rows in a fixed order.
#include <algorithm>
#include <cstdint>

#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/device_math.cuh"

namespace vitfreeze::cuda {

namespace kernels {
// One warp per row (grid-stride over rows): LocalMIM's rows hold 27 values, where a block per row
// would leave most threads idle and launch a block per cell.
template <DeviceScalar T>
__global__ void masked_mse_rows(const T* pred, const T* target, const float* weight, std::int64_t rows, std::int64_t P,
                                double* row_loss, double* row_weight) {
  const int lane = threadIdx.x % 32;
  const std::int64_t warps_per_block = blockDim.x / 32, warps = std::int64_t(gridDim.x) * warps_per_block;
  for (std::int64_t r = blockIdx.x * warps_per_block + threadIdx.x / 32; r < rows; r += warps) {  // uniform per warp
    const double w = weight ? static_cast<double>(weight[r]) : 1.0;
    double e = 0.0;
    if (w != 0.0)
      for (std::int64_t p = lane; p < P; p += 32) {
        const double d = static_cast<double>(to_float(pred[r * P + p])) - static_cast<double>(to_float(target[r * P + p]));
        e += d * d;
      }
    for (int offset = 16; offset > 0; offset /= 2) e += __shfl_xor_sync(0xffffffffu, e, offset);
    if (lane == 0) {
      row_loss[r] = w == 0.0 ? 0.0 : w * e / static_cast<double>(P);
      row_weight[r] = w;
    }
  }
}

// result[0] = sum loss / sum w, result[1] = sum w (added to result when accumulate). One block.
template <class F>
__global__ void masked_mse_total(const double* row_loss, const double* row_weight, std::int64_t rows, double* result,
                                 bool accumulate) {
  double total = 0.0, wsum = 0.0;
  for (std::int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    total += row_loss[r];
    wsum += row_weight[r];
  }
  total = detail::block_sum(total);
  wsum = detail::block_sum(wsum);
  if (threadIdx.x == 0) {
    result[0] = (accumulate ? result[0] : 0.0) + total / wsum;
    result[1] = (accumulate ? result[1] : 0.0) + wsum;
  }
}

template <DeviceScalar T>
__global__ void masked_mse_backward(double g, const T* pred, const T* target, const float* weight, double weight_sum,
                                    T* dpred, std::int64_t P, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / P;
    const double w = weight ? static_cast<double>(weight[r]) : 1.0;
    if (w == 0.0) continue;
    const float c = static_cast<float>(g * 2.0 * w / (static_cast<double>(P) * weight_sum));
    dpred[i] = from_float<T>(to_float(dpred[i]) + c * (to_float(pred[i]) - to_float(target[i])));
  }
}
}  // namespace kernels

// Writes result_device[0] = loss and result_device[1] = sum of weights, without waiting for the GPU;
// accumulate adds them instead (a sum of several losses, e.g. LocalMIM's taps, stays on the device).
// weight: [rows] fp32 or null (all rows count).
template <DeviceScalar T>
void masked_mse_forward_async(CudaContext& ctx, const T* pred, const T* target, const float* weight, std::int64_t rows,
                              std::int64_t P, double* result_device, bool accumulate = false) {
  if (rows <= 0) throw ConfigError("cuda::masked_mse_forward: no rows");
  DeviceBuffer scratch = ctx.allocator().allocate(sizeof(double) * 2 * static_cast<std::size_t>(rows));
  double* row_loss = scratch.as<double>();
  const std::int64_t warps_per_block = detail::kBlock / 32;
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((rows + warps_per_block - 1) / warps_per_block, 65535));
  kernels::masked_mse_rows<T><<<blocks, detail::kBlock, 0, ctx.stream()>>>(pred, target, weight, rows, P, row_loss,
                                                                          row_loss + rows);
  check_launch("masked_mse_rows");
  kernels::masked_mse_total<double><<<1, detail::kBlock, 0, ctx.stream()>>>(row_loss, row_loss + rows, rows,
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

// dpred += g * 2 w (pred - target) / (P * sum w)
template <DeviceScalar T>
void masked_mse_backward(CudaContext& ctx, double g, const T* pred, const T* target, const float* weight,
                         double weight_sum, T* dpred, std::int64_t rows, std::int64_t P) {
  const std::int64_t n = rows * P;
  if (n <= 0) return;
  kernels::masked_mse_backward<T><<<detail::grid_for(n), detail::kBlock, 0, ctx.stream()>>>(g, pred, target, weight,
                                                                                            weight_sum, dpred, P, n);
  check_launch("masked_mse_backward");
}

}  // namespace vitfreeze::cuda
