#pragma once
// Row-major GEMM through Eigen maps over our own buffers:
//   C[M,N] = alpha * op(A) * op(B) + beta * C,   op(X) = X or X^T,
// with leading dimensions (row strides) so that strided sub-matrices (one head inside a fused qkv
// buffer) are multiplied in place without copies.
#include <Eigen/Core>
#include <cstdint>

#include "vitfreeze/core/dtype.hpp"

namespace vitfreeze::cpu {

template <class T>
using MatrixMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, Eigen::Unaligned,
                             Eigen::OuterStride<>>;
template <class T>
using ConstMatrixMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>,
                                  Eigen::Unaligned, Eigen::OuterStride<>>;

template <CpuScalar T>
inline void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, T alpha, const T* A,
                 std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc) {
  MatrixMap<T> c(C, M, N, Eigen::OuterStride<>(ldc));
  // Stored shapes: A is [M,K] or [K,M] (transposed), B is [K,N] or [N,K].
  ConstMatrixMap<T> a(A, trans_a ? K : M, trans_a ? M : K, Eigen::OuterStride<>(lda));
  ConstMatrixMap<T> b(B, trans_b ? N : K, trans_b ? K : N, Eigen::OuterStride<>(ldb));
  if (beta == T(0))
    c.setZero();
  else if (beta != T(1))
    c *= beta;
  if (!trans_a && !trans_b)
    c.noalias() += alpha * a * b;
  else if (!trans_a && trans_b)
    c.noalias() += alpha * a * b.transpose();
  else if (trans_a && !trans_b)
    c.noalias() += alpha * a.transpose() * b;
  else
    c.noalias() += alpha * a.transpose() * b.transpose();
}

// Independent GEMMs of the same shape; `stride_*` is the element distance between problems. The
// batch is split across threads and each product runs single-threaded (small attention matrices do
// not scale inside one product).
template <CpuScalar T>
inline void gemm_batched(std::int64_t batch, bool trans_a, bool trans_b, std::int64_t M, std::int64_t N,
                         std::int64_t K, T alpha, const T* A, std::int64_t lda, std::int64_t stride_a, const T* B,
                         std::int64_t ldb, std::int64_t stride_b, T beta, T* C, std::int64_t ldc,
                         std::int64_t stride_c) {
#pragma omp parallel for schedule(static) if (batch > 1)
  for (std::int64_t i = 0; i < batch; ++i)
    gemm(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta, C + i * stride_c, ldc);
}

}  // namespace vitfreeze::cpu
