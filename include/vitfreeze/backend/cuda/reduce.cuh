#pragma once
// Column sums of a row-major matrix, as cpu::add_column_sums: out[c] += sum_r x[r, c].
// Deterministic (fixed summation order, no atomics). Each block owns 32 adjacent columns (one warp
// reads a coalesced 32-wide row segment) and its 8 warps split the rows; partial sums meet in shared
// memory. The grid has cols / 32 blocks only, fine for bias gradients next to the GEMMs around them.
#include <cstdint>

#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/device_math.cuh"

namespace vitfreeze::cuda {

namespace kernels {
inline constexpr int kColumnWidth = 32, kColumnRowGroups = 8;

template <DeviceScalar T>
__global__ void add_column_sums(const T* x, std::int64_t rows, std::int64_t cols, float* out) {
  __shared__ float partial[kColumnRowGroups][kColumnWidth];
  const std::int64_t c = blockIdx.x * std::int64_t(kColumnWidth) + threadIdx.x;
  float s = 0.0f;
  if (c < cols)
    for (std::int64_t r = threadIdx.y; r < rows; r += kColumnRowGroups) s += to_float(x[r * cols + c]);
  partial[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float total = 0.0f;
    for (int g = 0; g < kColumnRowGroups; ++g) total += partial[g][threadIdx.x];
    out[c] += total;
  }
}
}  // namespace kernels

template <DeviceScalar T>
void add_column_sums(CudaContext& ctx, const T* x, std::int64_t rows, std::int64_t cols, float* out) {
  if (rows <= 0 || cols <= 0) return;
  const dim3 block(kernels::kColumnWidth, kernels::kColumnRowGroups);
  const auto grid = static_cast<unsigned>((cols + kernels::kColumnWidth - 1) / kernels::kColumnWidth);
  kernels::add_column_sums<<<grid, block, 0, ctx.stream()>>>(x, rows, cols, out);
  check_launch("add_column_sums");
}

}  // namespace vitfreeze::cuda
