#pragma once
// Row-major GEMM over our own buffers:
//   C[M,N] = alpha * op(A) * op(B) + beta * C,   op(X) = X or X^T,
// with leading dimensions (row strides) so that strided sub-matrices (one head inside a fused qkv
// buffer) are multiplied in place without copies.
//
// float goes to oneDNN's sgemm when the build has it (VITFREEZE_WITH_DNNL, set by CMake when Debian's
// libdnnl-dev is found): measured 1.3-1.4x Eigen's GEMM per core on the ViT shapes of this project,
// and up to 3.5x on the tall-skinny weight-gradient products (bench/gemm_bench.cpp, bench/RESULTS.md).
// oneDNN runs on the same OpenMP runtime (libgomp) as the rest of the backend, and inside an
// OpenMP parallel region (attention's per-head loop) it runs single-threaded, so there is still one
// thread pool. double (the gradient checks) and builds without oneDNN use Eigen.
#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <string>

#include "vitfreeze/backend/cpu/gelu.hpp"
#include "vitfreeze/backend/cpu/reduce.hpp"
#include "vitfreeze/backend/gemm_epilogue.hpp"
#include "vitfreeze/core/dtype.hpp"
#include "vitfreeze/core/error.hpp"

#ifdef VITFREEZE_WITH_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

namespace vitfreeze::cpu {

template <class T>
using MatrixMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, Eigen::Unaligned,
                             Eigen::OuterStride<>>;
template <class T>
using ConstMatrixMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>,
                                  Eigen::Unaligned, Eigen::OuterStride<>>;

// Which library multiplies float matrices in this build (benchmarks and logs print it).
inline constexpr const char* gemm_library() {
#ifdef VITFREEZE_WITH_DNNL
  return "oneDNN";
#else
  return "Eigen";
#endif
}

// C = beta * C; beta == 0 writes zeros (C may hold anything, NaN included, from a recycled buffer).
template <CpuScalar T>
inline void scale_gemm_output(T beta, T* C, std::int64_t M, std::int64_t N, std::int64_t ldc) {
  MatrixMap<T> c(C, M, N, Eigen::OuterStride<>(ldc));
  if (beta == T(0))
    c.setZero();
  else if (beta != T(1))
    c *= beta;
}

template <CpuScalar T>
inline void eigen_gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, T alpha, const T* A,
                       std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc) {
  MatrixMap<T> c(C, M, N, Eigen::OuterStride<>(ldc));
  // Stored shapes: A is [M,K] or [K,M] (transposed), B is [K,N] or [N,K].
  ConstMatrixMap<T> a(A, trans_a ? K : M, trans_a ? M : K, Eigen::OuterStride<>(lda));
  ConstMatrixMap<T> b(B, trans_b ? N : K, trans_b ? K : N, Eigen::OuterStride<>(ldb));
  scale_gemm_output(beta, C, M, N, ldc);
  if (!trans_a && !trans_b)
    c.noalias() += alpha * a * b;
  else if (!trans_a && trans_b)
    c.noalias() += alpha * a * b.transpose();
  else if (trans_a && !trans_b)
    c.noalias() += alpha * a.transpose() * b;
  else
    c.noalias() += alpha * a.transpose() * b.transpose();
}

template <CpuScalar T>
inline void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, T alpha, const T* A,
                 std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc) {
#ifdef VITFREEZE_WITH_DNNL
  if constexpr (std::is_same_v<T, float>) {
    if (M == 0 || N == 0) return;
    // An empty product (K == 0) leaves C = beta * C; done here rather than through eigen_gemm, which
    // would compile Eigen's whole float GEMM into every translation unit for this one case.
    if (K == 0) return scale_gemm_output(beta, C, M, N, ldc);
    const dnnl_status_t status = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb,
                                            beta, C, ldc);
    if (status != dnnl_success)
      throw ShapeError("oneDNN sgemm refused " + std::to_string(M) + "x" + std::to_string(N) + "x" +
                       std::to_string(K) + " (status " + std::to_string(int(status)) + ")");
    return;
  }
#endif
  eigen_gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// gemm with an epilogue (backend/gemm_epilogue.hpp). The bias is laid into C (or aux) before the
// product so the GEMM adds onto it (no extra pass); GELU and its derivative are one pass over the
// result, exact erf. The bias gradient sums op(A)'s rows in a pass over A.
template <CpuScalar T>
inline void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, T alpha, const T* A,
                 std::int64_t lda, const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc,
                 const GemmEpilogue<T>& e) {
  auto lay_bias = [&](T* out, std::int64_t ld) {
#pragma omp parallel for schedule(static) if (M * N > 65536)
    for (std::int64_t m = 0; m < M; ++m) {
      T* row = out + m * ld;
      if (beta == T(0))
        std::copy(e.bias, e.bias + N, row);
      else
        for (std::int64_t n = 0; n < N; ++n) row[n] = beta * row[n] + e.bias[n];
    }
  };
  switch (e.kind) {
    case Epilogue::none:
      return gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    case Epilogue::bias:
      if (!e.bias) throw ConfigError("cpu::gemm: bias epilogue without a bias");
      lay_bias(C, ldc);
      return gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, T(1), C, ldc);
    case Epilogue::gelu_aux_bias: {
      if (!e.bias || !e.aux || e.ld_aux != N || ldc != N)
        throw ConfigError("cpu::gemm: the GELU epilogue needs a bias and dense aux and output rows");
      if (beta != T(0)) throw ConfigError("cpu::gemm: the GELU epilogue needs beta = 0");
      lay_bias(e.aux, N);
      gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, T(1), e.aux, N);
      return gelu_forward(e.aux, C, M * N);
    }
    case Epilogue::dgelu:
      if (!e.aux || e.ld_aux != N || ldc != N || beta != T(0))
        throw ConfigError("cpu::gemm: the dgelu epilogue needs dense aux and output rows and beta = 0");
      gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, T(0), C, ldc);
      return gelu_derivative_multiply(e.aux, C, M * N);
    case Epilogue::bgradb: {
      if (!e.bias_grad) throw ConfigError("cpu::gemm: bgradb without bias_grad");
      gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      std::fill(e.bias_grad, e.bias_grad + M, T(0));
      if (trans_a)  // op(A)[m, k] = A[k, m]: column sums of the stored [K, M]
        return add_column_sums_strided(A, K, M, lda, e.bias_grad);
#pragma omp parallel for schedule(static) if (M * K > 65536)
      for (std::int64_t m = 0; m < M; ++m) {
        T s = 0;
        for (std::int64_t k = 0; k < K; ++k) s += A[m * lda + k];
        e.bias_grad[m] = s;
      }
      return;
    }
  }
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
