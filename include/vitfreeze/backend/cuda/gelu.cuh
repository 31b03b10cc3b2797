#pragma once
// Exact GELU, as cpu::gelu_forward / gelu_backward: y = 0.5 x (1 + erf(x / sqrt 2)),
// dx += dy * (Phi(x) + x phi(x)). Storage T (fp32 or bf16), arithmetic in fp32.
#include <cstdint>

#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/device_math.cuh"

namespace vitfreeze::cuda {

namespace kernels {
// W == kVec<T>: 16-byte vectors (n % W == 0, pointers aligned); W == 1 otherwise.
template <DeviceScalar T, int W>
__global__ void gelu_forward(const T* x, T* y, std::int64_t n) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x * W;
  for (std::int64_t i = (blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x) * W; i < n; i += stride) {
    float v[W];
    load_vec<T, W>(x + i, v);
#pragma unroll
    for (int w = 0; w < W; ++w) v[w] = 0.5f * v[w] * (1.0f + erff(v[w] * 0.70710678118654752f));
    store_vec<T, W>(y + i, v);
  }
}

template <DeviceScalar T, int W>
__global__ void gelu_backward(const T* dy, const T* x, T* dx, std::int64_t n) {
  constexpr float kInvSqrt2Pi = 0.3989422804014327f;
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x * W;
  for (std::int64_t i = (blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x) * W; i < n; i += stride) {
    float v[W], g[W], d[W];
    load_vec<T, W>(x + i, v);
    load_vec<T, W>(dy + i, g);
    load_vec<T, W>(dx + i, d);
#pragma unroll
    for (int w = 0; w < W; ++w) {
      const float cdf = 0.5f * (1.0f + erff(v[w] * 0.70710678118654752f));
      const float pdf = kInvSqrt2Pi * expf(-0.5f * v[w] * v[w]);
      d[w] += g[w] * (cdf + v[w] * pdf);
    }
    store_vec<T, W>(dx + i, d);
  }
}
}  // namespace kernels

template <DeviceScalar T>
void gelu_forward(CudaContext& ctx, const T* x, T* y, std::int64_t n) {
  if (n <= 0) return;
  if (n % kVec<T> == 0 && all_aligned16(x, y))
    kernels::gelu_forward<T, kVec<T>><<<detail::grid_for(n / kVec<T>), detail::kBlock, 0, ctx.stream()>>>(x, y, n);
  else
    kernels::gelu_forward<T, 1><<<detail::grid_for(n), detail::kBlock, 0, ctx.stream()>>>(x, y, n);
  check_launch("gelu_forward");
}

// Accumulates into dx.
template <DeviceScalar T>
void gelu_backward(CudaContext& ctx, const T* dy, const T* x, T* dx, std::int64_t n) {
  if (n <= 0) return;
  if (n % kVec<T> == 0 && all_aligned16(dy, x, dx))
    kernels::gelu_backward<T, kVec<T>><<<detail::grid_for(n / kVec<T>), detail::kBlock, 0, ctx.stream()>>>(dy, x, dx, n);
  else
    kernels::gelu_backward<T, 1><<<detail::grid_for(n), detail::kBlock, 0, ctx.stream()>>>(dy, x, dx, n);
  check_launch("gelu_backward");
}

}  // namespace vitfreeze::cuda
