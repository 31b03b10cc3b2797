#pragma once
// Exact GELU: y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)). Eigen's vectorised erf keeps this from
// dominating the step (a scalar erf costs more than the GEMM around it).
#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>
#include <cstdint>

#include "vitfreeze/core/dtype.hpp"

namespace vitfreeze::cpu {

namespace detail {
inline constexpr std::int64_t kElementwiseChunk = 16384;
}

template <CpuScalar T>
inline void gelu_forward(const T* x, T* y, std::int64_t n) {
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  const std::int64_t chunks = (n + detail::kElementwiseChunk - 1) / detail::kElementwiseChunk;
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::int64_t b = c * detail::kElementwiseChunk, len = std::min(detail::kElementwiseChunk, n - b);
    Eigen::Map<const Arr> xs(x + b, len);
    Eigen::Map<Arr>(y + b, len) = T(0.5) * xs * (T(1) + (xs * T(M_SQRT1_2)).erf());
  }
}

// dx += dy * (Phi(x) + x * phi(x)).
template <CpuScalar T>
inline void gelu_backward(const T* dy, const T* x, T* dx, std::int64_t n) {
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  const T inv_sqrt_2pi = T(0.3989422804014327);
  const std::int64_t chunks = (n + detail::kElementwiseChunk - 1) / detail::kElementwiseChunk;
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::int64_t b = c * detail::kElementwiseChunk, len = std::min(detail::kElementwiseChunk, n - b);
    Eigen::Map<const Arr> xs(x + b, len), g(dy + b, len);
    Eigen::Map<Arr>(dx + b, len) +=
        g * (T(0.5) * (T(1) + (xs * T(M_SQRT1_2)).erf()) + xs * inv_sqrt_2pi * (T(-0.5) * xs.square()).exp());
  }
}

// y *= GELU'(x) in place: the dgelu GEMM epilogue (y holds dL/d(GELU output) on entry).
template <CpuScalar T>
inline void gelu_derivative_multiply(const T* x, T* y, std::int64_t n) {
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  const T inv_sqrt_2pi = T(0.3989422804014327);
  const std::int64_t chunks = (n + detail::kElementwiseChunk - 1) / detail::kElementwiseChunk;
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::int64_t b = c * detail::kElementwiseChunk, len = std::min(detail::kElementwiseChunk, n - b);
    Eigen::Map<const Arr> xs(x + b, len);
    Eigen::Map<Arr> g(y + b, len);
    g *= T(0.5) * (T(1) + (xs * T(M_SQRT1_2)).erf()) + xs * inv_sqrt_2pi * (T(-0.5) * xs.square()).exp();
  }
}

}  // namespace vitfreeze::cpu
