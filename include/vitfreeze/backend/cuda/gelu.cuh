#pragma once
// Exact GELU, as cpu::gelu_forward / gelu_backward: y = 0.5 x (1 + erf(x / sqrt 2)),
// dx += dy * (Phi(x) + x phi(x)). Storage T (fp32 or bf16), arithmetic in fp32.
#include <cstdint>

#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/device_math.cuh"

namespace vitfreeze::cuda {

namespace kernels {
template <DeviceScalar T>
__global__ void gelu_forward(const T* x, T* y, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x) {
    const float v = to_float(x[i]);
    y[i] = from_float<T>(0.5f * v * (1.0f + erff(v * 0.70710678118654752f)));
  }
}

template <DeviceScalar T>
__global__ void gelu_backward(const T* dy, const T* x, T* dx, std::int64_t n) {
  constexpr float kInvSqrt2Pi = 0.3989422804014327f;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x) {
    const float v = to_float(x[i]);
    const float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
    const float pdf = kInvSqrt2Pi * expf(-0.5f * v * v);
    dx[i] = from_float<T>(to_float(dx[i]) + to_float(dy[i]) * (cdf + v * pdf));
  }
}
}  // namespace kernels

template <DeviceScalar T>
void gelu_forward(CudaContext& ctx, const T* x, T* y, std::int64_t n) {
  if (n <= 0) return;
  kernels::gelu_forward<<<detail::grid_for(n), detail::kBlock, 0, ctx.stream()>>>(x, y, n);
  check_launch("gelu_forward");
}

// Accumulates into dx.
template <DeviceScalar T>
void gelu_backward(CudaContext& ctx, const T* dy, const T* x, T* dx, std::int64_t n) {
  if (n <= 0) return;
  kernels::gelu_backward<<<detail::grid_for(n), detail::kBlock, 0, ctx.stream()>>>(dy, x, dx, n);
  check_launch("gelu_backward");
}

}  // namespace vitfreeze::cuda
