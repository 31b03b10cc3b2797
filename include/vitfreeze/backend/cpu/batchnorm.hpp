#pragma once
// BatchNorm over the rows of x [N, D] without affine parameters, with the batch's statistics:
// y = (x - mean_n x) * rstd, rstd = 1 / sqrt(var_n x + eps) (biased variance), per column. The
// forward writes mean and rstd per column (the backward reads them; the caller may keep running
// estimates from them).
#include <cmath>
#include <cstdint>

#include "vitfreeze/core/dtype.hpp"

namespace vitfreeze::cpu {

template <CpuScalar T>
inline void batch_norm_forward(const T* x, T* y, T* mean, T* rstd, std::int64_t N, std::int64_t D, double eps) {
  for (std::int64_t d = 0; d < D; ++d) {
    double m = 0, v = 0;
    for (std::int64_t n = 0; n < N; ++n) m += double(x[n * D + d]);
    m /= double(N);
    for (std::int64_t n = 0; n < N; ++n) v += (double(x[n * D + d]) - m) * (double(x[n * D + d]) - m);
    v /= double(N);
    mean[d] = T(m);
    rstd[d] = T(1.0 / std::sqrt(v + eps));
    for (std::int64_t n = 0; n < N; ++n) y[n * D + d] = (x[n * D + d] - mean[d]) * rstd[d];
  }
}

// dx += rstd / N (N dy - sum dy - xhat sum(dy xhat)), per column (xhat = (x - mean) rstd).
template <CpuScalar T>
inline void batch_norm_backward(const T* dy, const T* x, const T* mean, const T* rstd, T* dx, std::int64_t N,
                                std::int64_t D) {
  for (std::int64_t d = 0; d < D; ++d) {
    double sum_dy = 0, sum_dy_xhat = 0;
    for (std::int64_t n = 0; n < N; ++n) {
      const double xhat = (double(x[n * D + d]) - double(mean[d])) * double(rstd[d]);
      sum_dy += double(dy[n * D + d]);
      sum_dy_xhat += double(dy[n * D + d]) * xhat;
    }
    for (std::int64_t n = 0; n < N; ++n) {
      const double xhat = (double(x[n * D + d]) - double(mean[d])) * double(rstd[d]);
      dx[n * D + d] += T(double(rstd[d]) / double(N) * (double(N) * double(dy[n * D + d]) - sum_dy - xhat * sum_dy_xhat));
    }
  }
}

}  // namespace vitfreeze::cpu
