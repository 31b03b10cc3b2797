#pragma once
// Element-wise helpers of the device modules: in-place sums (residual joins, fixed position tables
// broadcast over the batch) and the fp32 -> storage-type conversion of input data.
#include <cstdint>

#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/device_math.cuh"

namespace vitfreeze::cuda {

namespace kernels {
// y[i] += table[i % period]; period == n is a plain element-wise sum. W == kVec<T>: 16-byte vectors
// (n and period multiples of W, pointers aligned, so a vector never straddles the period).
template <DeviceScalar T, int W>
__global__ void add_periodic_in_place(T* y, const T* table, std::int64_t period, std::int64_t n) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x * W;
  for (std::int64_t i = (blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x) * W; i < n; i += stride) {
    float a[W], b[W];
    load_vec<T, W>(y + i, a);
    load_vec<T, W>(table + (period == n ? i : i % period), b);
#pragma unroll
    for (int w = 0; w < W; ++w) a[w] += b[w];
    store_vec<T, W>(y + i, a);
  }
}

template <DeviceScalar T>
__global__ void convert_from_f32(const float* x, T* y, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    y[i] = from_float<T>(x[i]);
}
}  // namespace kernels

namespace detail {
template <DeviceScalar T>
void add_periodic(CudaContext& ctx, T* y, const T* table, std::int64_t period, std::int64_t n, const char* name) {
  if (n % kVec<T> == 0 && period % kVec<T> == 0 && all_aligned16(y, table))
    kernels::add_periodic_in_place<T, kVec<T>><<<grid_for(n / kVec<T>), kBlock, 0, ctx.stream()>>>(y, table, period, n);
  else
    kernels::add_periodic_in_place<T, 1><<<grid_for(n), kBlock, 0, ctx.stream()>>>(y, table, period, n);
  check_launch(name);
}
}  // namespace detail

// y += x (n elements).
template <DeviceScalar T>
void add_in_place(CudaContext& ctx, T* y, const T* x, std::int64_t n) {
  if (n <= 0) return;
  detail::add_periodic<T>(ctx, y, x, n, n, "add_in_place");
}

// y[b, :] += table for every b: y is [n / period, period] (positions added to every sample).
template <DeviceScalar T>
void add_broadcast_in_place(CudaContext& ctx, T* y, const T* table, std::int64_t period, std::int64_t n) {
  if (n <= 0) return;
  if (period <= 0 || n % period != 0) throw ShapeError("cuda::add_broadcast_in_place: n is not a multiple of the table");
  detail::add_periodic<T>(ctx, y, table, period, n, "add_broadcast_in_place");
}

template <DeviceScalar T>
void convert(CudaContext& ctx, const float* x, T* y, std::int64_t n) {
  if (n <= 0) return;
  kernels::convert_from_f32<T><<<detail::grid_for(n), detail::kBlock, 0, ctx.stream()>>>(x, y, n);
  check_launch("convert_from_f32");
}

}  // namespace vitfreeze::cuda
