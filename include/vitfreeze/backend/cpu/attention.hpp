#pragma once
// Multi-head scaled-dot-product attention reading q, k, v in place from the fused qkv projection.
// Layout (timm): qkv[b, t, s*D + h*hd + d] for s in {q, k, v}; output out[b, t, h*hd + d].
// The forward saves the probabilities P[b, h, t, t'] for the backward (sequences here are <= 200
// tokens, so P is small next to the MLP activations); inference mode passes a scratch buffer instead.
#include <Eigen/Core>
#include <cmath>
#include <cstdint>

#include "vitfreeze/backend/attention_shape.hpp"
#include "vitfreeze/backend/cpu/gemm.hpp"

namespace vitfreeze::cpu {

using vitfreeze::AttentionShape;

template <CpuScalar T>
inline void softmax_rows_inplace(T* s, std::int64_t rows, std::int64_t cols) {
  using Row = Eigen::Array<T, 1, Eigen::Dynamic>;
  for (std::int64_t r = 0; r < rows; ++r) {
    Eigen::Map<Row> x(s + r * cols, cols);
    x = (x - x.maxCoeff()).exp();
    x /= x.sum();
  }
}

// probs: [B, H, T, T] output (saved for backward, or scratch).
template <CpuScalar T>
inline void attention_forward(const T* qkv, T* out, T* probs, const AttentionShape& s) {
  const std::int64_t Tn = s.tokens, D = s.dim(), hd = s.head_dim;
  const T scale = T(1) / std::sqrt(T(hd));
#pragma omp parallel for schedule(static) collapse(2)
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t h = 0; h < s.heads; ++h) {
      const T* q = qkv + b * Tn * 3 * D + h * hd;
      const T* k = q + D;
      const T* v = q + 2 * D;
      T* p = probs + (b * s.heads + h) * Tn * Tn;
      gemm<T>(false, true, Tn, Tn, hd, scale, q, 3 * D, k, 3 * D, T(0), p, Tn);
      softmax_rows_inplace(p, Tn, Tn);
      gemm<T>(false, false, Tn, hd, Tn, T(1), p, Tn, v, 3 * D, T(0), out + b * Tn * D + h * hd, D);
    }
}

// Accumulates into dqkv. scratch: B*H*T*T elements (dS).
template <CpuScalar T>
inline void attention_backward(const T* dout, const T* qkv, const T* probs, T* dqkv, T* scratch,
                               const AttentionShape& s) {
  using Row = Eigen::Array<T, 1, Eigen::Dynamic>;
  const std::int64_t Tn = s.tokens, D = s.dim(), hd = s.head_dim;
  const T scale = T(1) / std::sqrt(T(hd));
#pragma omp parallel for schedule(static) collapse(2)
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t h = 0; h < s.heads; ++h) {
      const std::int64_t qoff = b * Tn * 3 * D + h * hd;
      const T* q = qkv + qoff;
      const T* k = q + D;
      const T* v = q + 2 * D;
      T* dq = dqkv + qoff;
      T* dk = dq + D;
      T* dv = dq + 2 * D;
      const T* p = probs + (b * s.heads + h) * Tn * Tn;
      const T* dO = dout + b * Tn * D + h * hd;
      T* ds = scratch + (b * s.heads + h) * Tn * Tn;
      gemm<T>(true, false, Tn, hd, Tn, T(1), p, Tn, dO, D, T(1), dv, 3 * D);   // dV += P^T dO
      gemm<T>(false, true, Tn, Tn, hd, T(1), dO, D, v, 3 * D, T(0), ds, Tn);   // dP = dO V^T
      for (std::int64_t r = 0; r < Tn; ++r) {                                  // dS = P (dP - <dP, P>)
        Eigen::Map<Row> dpr(ds + r * Tn, Tn);
        Eigen::Map<const Row> pr(p + r * Tn, Tn);
        const T dot = (dpr * pr).sum();
        dpr = pr * (dpr - dot);
      }
      gemm<T>(false, false, Tn, hd, Tn, scale, ds, Tn, k, 3 * D, T(1), dq, 3 * D);  // dQ += s dS K
      gemm<T>(true, false, Tn, hd, Tn, scale, ds, Tn, q, 3 * D, T(1), dk, 3 * D);   // dK += s dS^T Q
    }
}

}  // namespace vitfreeze::cpu
