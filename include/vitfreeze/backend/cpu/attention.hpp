#pragma once
// Multi-head scaled-dot-product attention reading q, k, v in place from the fused qkv projection.
// Layout (timm): qkv[b, t, s*D + h*hd + d] for s in {q, k, v}; output out[b, t, h*hd + d].
// The forward saves the probabilities P[b, h, t, t'] for the backward (sequences here are <= 200
// tokens, so P is small next to the MLP activations); inference mode passes a scratch buffer instead.
// One (sample, head) is one task: its scores, softmax and P V run back to back on one thread.
//
// Optional relative key bias (LoMaR's iRPE, backend/relative_position.hpp): logit_ij gains
// q_i . table[:, bucket_ij] (table [hd, buckets], shared by the heads, not scaled), computed as the
// small product Q table [T, buckets] and a gather.
#include <Eigen/Core>
#include <cmath>
#include <cstdint>

#include <vector>

#include "vitfreeze/backend/attention_shape.hpp"
#include "vitfreeze/backend/cpu/gemm.hpp"
#include "vitfreeze/core/parallel.hpp"

namespace vitfreeze::cpu {

using vitfreeze::AttentionShape;
using vitfreeze::RelativeKeyBias;

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
inline void attention_forward(const T* qkv, T* out, T* probs, const AttentionShape& s,
                              const RelativeKeyBias<T>* rpe = nullptr) {
  const std::int64_t Tn = s.tokens, D = s.dim(), hd = s.head_dim, nb = rpe ? rpe->buckets : 0;
  const T scale = T(1) / std::sqrt(T(hd));
  std::vector<T> qw_all(rpe ? std::size_t(thread_count() * Tn * nb) : 0);
#pragma omp parallel for schedule(static) collapse(2)
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t h = 0; h < s.heads; ++h) {
      const T* q = qkv + b * Tn * 3 * D + h * hd;
      const T* k = q + D;
      const T* v = q + 2 * D;
      T* p = probs + (b * s.heads + h) * Tn * Tn;
      gemm<T>(false, true, Tn, Tn, hd, scale, q, 3 * D, k, 3 * D, T(0), p, Tn);
      if (rpe) {
        T* qw = qw_all.data() + thread_index() * Tn * nb;
        gemm<T>(false, false, Tn, nb, hd, T(1), q, 3 * D, rpe->table, nb, T(0), qw, nb);
        for (std::int64_t i = 0; i < Tn; ++i)
          for (std::int64_t j = 0; j < Tn; ++j) p[i * Tn + j] += qw[i * nb + rpe->bucket[i * Tn + j]];
      }
      softmax_rows_inplace(p, Tn, Tn);
      gemm<T>(false, false, Tn, hd, Tn, T(1), p, Tn, v, 3 * D, T(0), out + b * Tn * D + h * hd, D);
    }
}

// Accumulates into dqkv (and rpe->dtable). scratch: B*H*T*T elements (dS).
template <CpuScalar T>
inline void attention_backward(const T* dout, const T* qkv, const T* probs, T* dqkv, T* scratch,
                               const AttentionShape& s, const RelativeKeyBias<T>* rpe = nullptr) {
  using Row = Eigen::Array<T, 1, Eigen::Dynamic>;
  const std::int64_t Tn = s.tokens, D = s.dim(), hd = s.head_dim, nb = rpe ? rpe->buckets : 0;
  const T scale = T(1) / std::sqrt(T(hd));
  const int threads = thread_count();
  // Per thread: d(Q table) [T, nb] of the current (sample, head), and its share of d(table) [hd, nb].
  std::vector<T> dqw_all(rpe ? std::size_t(threads * Tn * nb) : 0);
  std::vector<T> dtable_partial(rpe && rpe->dtable ? std::size_t(threads * hd * nb) : 0, T(0));
#pragma omp parallel for schedule(static) collapse(2) num_threads(threads)
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
      if (rpe) {  // d(Q table)[i, c] = sum of dS_ij over the keys j in bucket c; dQ += it table^T
        const int t = thread_index();
        T* dqw = dqw_all.data() + t * Tn * nb;
        std::fill(dqw, dqw + Tn * nb, T(0));
        for (std::int64_t i = 0; i < Tn; ++i)
          for (std::int64_t j = 0; j < Tn; ++j) dqw[i * nb + rpe->bucket[i * Tn + j]] += ds[i * Tn + j];
        gemm<T>(false, true, Tn, hd, nb, T(1), dqw, nb, rpe->table, nb, T(1), dq, 3 * D);
        if (rpe->dtable)  // d(table) += Q^T d(Q table)
          gemm<T>(true, false, hd, nb, Tn, T(1), q, 3 * D, dqw, nb, T(1), dtable_partial.data() + t * hd * nb, nb);
      }
    }
  if (rpe && rpe->dtable)  // partials added in thread order: deterministic for a fixed thread count
    for (int t = 0; t < threads; ++t)
      for (std::int64_t i = 0; i < hd * nb; ++i) rpe->dtable[i] += dtable_partial[std::size_t(t * hd * nb + i)];
}

// The pre-softmax logits alone, logits[b, h, i, j] = q_i . k_j / sqrt(head_dim) (no relative bias):
// what MAE-lite's attention distillation compares (logits [B, H, T, T]).
template <CpuScalar T>
inline void attention_logits_forward(const T* qkv, T* logits, const AttentionShape& s) {
  const std::int64_t Tn = s.tokens, D = s.dim(), hd = s.head_dim;
  const T scale = T(1) / std::sqrt(T(hd));
#pragma omp parallel for schedule(static) collapse(2)
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t h = 0; h < s.heads; ++h) {
      const T* q = qkv + b * Tn * 3 * D + h * hd;
      gemm<T>(false, true, Tn, Tn, hd, scale, q, 3 * D, q + D, 3 * D, T(0), logits + (b * s.heads + h) * Tn * Tn, Tn);
    }
}
// Its backward: the q and k parts of dqkv accumulate s dL K and s dL^T Q (the v part is untouched).
template <CpuScalar T>
inline void attention_logits_backward(const T* dlogits, const T* qkv, T* dqkv, const AttentionShape& s) {
  const std::int64_t Tn = s.tokens, D = s.dim(), hd = s.head_dim;
  const T scale = T(1) / std::sqrt(T(hd));
#pragma omp parallel for schedule(static) collapse(2)
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t h = 0; h < s.heads; ++h) {
      const std::int64_t off = b * Tn * 3 * D + h * hd;
      const T* dl = dlogits + (b * s.heads + h) * Tn * Tn;
      gemm<T>(false, false, Tn, hd, Tn, scale, dl, Tn, qkv + off + D, 3 * D, T(1), dqkv + off, 3 * D);
      gemm<T>(true, false, Tn, hd, Tn, scale, dl, Tn, qkv + off, 3 * D, T(1), dqkv + off + D, 3 * D);
    }
}

}  // namespace vitfreeze::cpu
