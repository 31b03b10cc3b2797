#pragma once
// Fully connected layer, timm layout: y[M,N] = x[M,K] * W[N,K]^T + b[N].
#include <cstdint>

#include "vitfreeze/backend/cpu/gemm.hpp"
#include "vitfreeze/backend/cpu/reduce.hpp"

namespace vitfreeze::cpu {

template <CpuScalar T>
inline void linear_forward(const T* x, const T* weight, const T* bias, T* y, std::int64_t M, std::int64_t K,
                           std::int64_t N) {
  if (bias) {
    MatrixMap<T> out(y, M, N, Eigen::OuterStride<>(N));
    out.rowwise() = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias, N);
    gemm<T>(false, true, M, N, K, T(1), x, K, weight, K, T(1), y, N);
  } else {
    gemm<T>(false, true, M, N, K, T(1), x, K, weight, K, T(0), y, N);
  }
}

// Accumulates: dx += dy W, dW += dy^T x, db += sum_rows dy. Null outputs are skipped (no work is done
// for inputs that need no gradient: this is where freezing saves compute).
template <CpuScalar T>
inline void linear_backward(const T* dy, const T* x, const T* weight, T* dx, T* dweight, T* dbias, std::int64_t M,
                            std::int64_t K, std::int64_t N) {
  if (dx) gemm<T>(false, false, M, K, N, T(1), dy, N, weight, K, T(1), dx, K);
  if (dweight) gemm<T>(true, false, N, K, M, T(1), dy, N, x, K, T(1), dweight, K);
  if (dbias) add_column_sums(dy, M, N, dbias);
}

}  // namespace vitfreeze::cpu
