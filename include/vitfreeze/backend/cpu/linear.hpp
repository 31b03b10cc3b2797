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

// A 1x1 convolution over the channel axis: y[b] [Cout, N] = W [Cout, Cin] x[b] [Cin, N] for each of
// B samples (MAE-lite's map over attention heads: x [B, H, T, T], N = T T).
template <CpuScalar T>
inline void channel_mix_forward(const T* x, const T* weight, T* y, std::int64_t B, std::int64_t Cin, std::int64_t Cout,
                                std::int64_t N) {
  for (std::int64_t b = 0; b < B; ++b)
    gemm<T>(false, false, Cout, N, Cin, T(1), weight, Cin, x + b * Cin * N, N, T(0), y + b * Cout * N, N);
}
// Accumulates: dx[b] += W^T dy[b], dW += sum_b dy[b] x[b]^T (null outputs skipped).
template <CpuScalar T>
inline void channel_mix_backward(const T* dy, const T* x, const T* weight, T* dx, T* dweight, std::int64_t B,
                                 std::int64_t Cin, std::int64_t Cout, std::int64_t N) {
  for (std::int64_t b = 0; b < B; ++b) {
    if (dx) gemm<T>(true, false, Cin, N, Cout, T(1), weight, Cin, dy + b * Cout * N, N, T(1), dx + b * Cin * N, N);
    if (dweight) gemm<T>(false, true, Cout, Cin, N, T(1), dy + b * Cout * N, N, x + b * Cin * N, N, T(1), dweight, Cin);
  }
}

}  // namespace vitfreeze::cpu
