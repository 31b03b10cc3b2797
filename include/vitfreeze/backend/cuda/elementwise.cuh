#pragma once
// Element-wise helpers of the device modules: in-place sums (residual joins, fixed position tables
// broadcast over the batch) and the fp32 -> storage-type conversion of input data.
#include <cstdint>

#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/device_math.cuh"

namespace vitfreeze::cuda {

namespace kernels {
// y[i] += table[i % period]; period == n is a plain element-wise sum.
template <DeviceScalar T>
__global__ void add_periodic_in_place(T* y, const T* table, std::int64_t period, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    y[i] = from_float<T>(to_float(y[i]) + to_float(table[i % period]));
}

template <DeviceScalar T>
__global__ void convert_from_f32(const float* x, T* y, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    y[i] = from_float<T>(x[i]);
}
}  // namespace kernels

// y += x (n elements).
template <DeviceScalar T>
void add_in_place(CudaContext& ctx, T* y, const T* x, std::int64_t n) {
  if (n <= 0) return;
  kernels::add_periodic_in_place<T><<<detail::grid_for(n), detail::kBlock, 0, ctx.stream()>>>(y, x, n, n);
  check_launch("add_in_place");
}

// y[b, :] += table for every b: y is [n / period, period] (positions added to every sample).
template <DeviceScalar T>
void add_broadcast_in_place(CudaContext& ctx, T* y, const T* table, std::int64_t period, std::int64_t n) {
  if (n <= 0) return;
  if (period <= 0 || n % period != 0) throw ShapeError("cuda::add_broadcast_in_place: n is not a multiple of the table");
  kernels::add_periodic_in_place<T><<<detail::grid_for(n), detail::kBlock, 0, ctx.stream()>>>(y, table, period, n);
  check_launch("add_broadcast_in_place");
}

template <DeviceScalar T>
void convert(CudaContext& ctx, const float* x, T* y, std::int64_t n) {
  if (n <= 0) return;
  kernels::convert_from_f32<T><<<detail::grid_for(n), detail::kBlock, 0, ctx.stream()>>>(x, y, n);
  check_launch("convert_from_f32");
}

}  // namespace vitfreeze::cuda
