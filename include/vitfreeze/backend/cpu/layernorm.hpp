#pragma once
// LayerNorm over the last dimension: y = (x - mean) * rstd * gamma + beta, rstd = 1/sqrt(var + eps)
// with the biased variance. The forward saves mean and rstd per row for the backward.
#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <vector>

#include "vitfreeze/core/parallel.hpp"
#include "vitfreeze/core/dtype.hpp"

namespace vitfreeze::cpu {

// residual (optional): the row normalised is x + residual, written to sum_out (the residual stream
// the next block adds to), in the same pass.
template <CpuScalar T>
inline void layernorm_forward_any(const T* x, const T* residual, T* sum_out, const T* gamma, const T* beta, T* y,
                                  T* mean_out, T* rstd_out, std::int64_t rows, std::int64_t D, double eps) {
  using Row = Eigen::Array<T, 1, Eigen::Dynamic>;
  Eigen::Map<const Row> g(gamma, D), b(beta, D);
#pragma omp parallel for schedule(static) if (rows * D > 16384)
  for (std::int64_t r = 0; r < rows; ++r) {
    if (residual) Eigen::Map<Row>(sum_out + r * D, D) = Eigen::Map<const Row>(x + r * D, D) + Eigen::Map<const Row>(residual + r * D, D);
    Eigen::Map<const Row> xr(residual ? sum_out + r * D : x + r * D, D);
    const T mean = xr.mean();
    const T var = (xr - mean).square().mean();
    const T rstd = T(1) / std::sqrt(var + T(eps));
    Eigen::Map<Row>(y + r * D, D) = (xr - mean) * rstd * g + b;
    if (mean_out) mean_out[r] = mean;
    if (rstd_out) rstd_out[r] = rstd;
  }
}

template <CpuScalar T>
inline void layernorm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean_out, T* rstd_out,
                              std::int64_t rows, std::int64_t D, double eps) {
  layernorm_forward_any<T>(x, nullptr, nullptr, gamma, beta, y, mean_out, rstd_out, rows, D, eps);
}

// sum = x + residual (written), y = LayerNorm(sum): the residual add of a pre-LN block fused into
// the next norm's pass.
template <CpuScalar T>
inline void residual_layernorm_forward(const T* x, const T* residual, T* sum, const T* gamma, const T* beta, T* y,
                                       T* mean_out, T* rstd_out, std::int64_t rows, std::int64_t D, double eps) {
  layernorm_forward_any<T>(x, residual, sum, gamma, beta, y, mean_out, rstd_out, rows, D, eps);
}

// Accumulates dx, dgamma, dbeta (each may be null).
template <CpuScalar T>
inline void layernorm_backward(const T* dy, const T* x, const T* gamma, const T* mean, const T* rstd, T* dx,
                               T* dgamma, T* dbeta, std::int64_t rows, std::int64_t D) {
  using Row = Eigen::Array<T, 1, Eigen::Dynamic>;
  Eigen::Map<const Row> g(gamma, D);
  const int threads = rows * D > 16384 ? thread_count() : 1;
  const bool param_grads = dgamma || dbeta;
  std::vector<Row> partial_g(param_grads ? threads : 0, Row::Zero(D)), partial_b(param_grads ? threads : 0, Row::Zero(D));
#pragma omp parallel num_threads(threads)
  {
    const int t = thread_index();
    const std::int64_t begin = rows * t / threads, end = rows * (t + 1) / threads;
    Row xhat(D), dxhat(D);
    for (std::int64_t r = begin; r < end; ++r) {
      Eigen::Map<const Row> xr(x + r * D, D), dyr(dy + r * D, D);
      xhat = (xr - mean[r]) * rstd[r];
      if (param_grads) {
        partial_g[t] += dyr * xhat;
        partial_b[t] += dyr;
      }
      if (dx) {
        dxhat = dyr * g;
        const T m1 = dxhat.mean(), m2 = (dxhat * xhat).mean();
        Eigen::Map<Row>(dx + r * D, D) += rstd[r] * (dxhat - m1 - xhat * m2);
      }
    }
  }
  for (int t = 0; t < static_cast<int>(partial_g.size()); ++t) {
    if (dgamma) Eigen::Map<Row>(dgamma, D) += partial_g[t];
    if (dbeta) Eigen::Map<Row>(dbeta, D) += partial_b[t];
  }
}

}  // namespace vitfreeze::cpu
