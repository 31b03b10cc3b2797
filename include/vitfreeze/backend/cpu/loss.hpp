#pragma once
// Losses computed in double accumulators (a masked sum over a batch of small errors loses digits
// in float).
#include <Eigen/Core>
#include <cmath>
#include <cstdint>

#include "vitfreeze/core/dtype.hpp"

namespace vitfreeze::cpu {

// sum_{b,l} w[b,l] * mean_p (pred - target)^2 / sum w   (pred, target: [rows = B*L, P]; pred's rows
// pred_ld apart (0: P), so a prediction padded for aligned GEMM rows is read in place; weight: one
// per row, or null for all ones).
template <CpuScalar T, class W = T>
inline double masked_mse_forward(const T* pred, const T* target, const W* weight, std::int64_t rows, std::int64_t P,
                                 double* weight_sum_out, std::int64_t pred_ld = 0) {
  const std::int64_t ld = pred_ld > 0 ? pred_ld : P;
  double total = 0, wsum = 0;
#pragma omp parallel for reduction(+ : total, wsum) schedule(static) if (rows * P > 65536)
  for (std::int64_t r = 0; r < rows; ++r) {
    const double w = weight ? double(weight[r]) : 1.0;
    wsum += w;
    if (w == 0) continue;
    double e = 0;
    for (std::int64_t p = 0; p < P; ++p) {
      const double d = double(pred[r * ld + p]) - double(target[r * P + p]);
      e += d * d;
    }
    total += w * e / double(P);
  }
  *weight_sum_out = wsum;
  return total / wsum;
}
// dpred += g * 2 w (pred - target) / (P * sum w)
template <CpuScalar T, class W = T>
inline void masked_mse_backward(double g, const T* pred, const T* target, const W* weight, double weight_sum, T* dpred,
                                std::int64_t rows, std::int64_t P, std::int64_t pred_ld = 0) {
  const std::int64_t ld = pred_ld > 0 ? pred_ld : P;
#pragma omp parallel for schedule(static) if (rows * P > 65536)
  for (std::int64_t r = 0; r < rows; ++r) {
    const double w = weight ? double(weight[r]) : 1.0;
    if (w == 0) continue;
    const T c = T(g * 2.0 * w / (double(P) * weight_sum));
    for (std::int64_t p = 0; p < P; ++p) dpred[r * ld + p] += c * (pred[r * ld + p] - target[r * P + p]);
  }
}
// Mean cross-entropy of logits [N, C] against labels with label smoothing eps:
// target distribution (1 - eps) one-hot + eps / C. Saves softmax probabilities for the backward.
template <CpuScalar T>
inline double cross_entropy_forward(const T* logits, const std::int32_t* labels, T* probs, std::int64_t N,
                                    std::int64_t C, double smoothing) {
  using Row = Eigen::Array<T, 1, Eigen::Dynamic>;
  double total = 0;
  for (std::int64_t n = 0; n < N; ++n) {
    Eigen::Map<const Row> z(logits + n * C, C);
    const T m = z.maxCoeff();
    const double lse = double(m) + std::log(double((z - m).exp().sum()));
    Eigen::Map<Row>(probs + n * C, C) = (z - T(lse)).exp();
    const double nll = lse - double(z[labels[n]]);
    const double smooth = lse - double(z.sum()) / double(C);
    total += (1.0 - smoothing) * nll + smoothing * smooth;
  }
  return total / double(N);
}
template <CpuScalar T>
inline void cross_entropy_backward(double g, const T* probs, const std::int32_t* labels, T* dlogits, std::int64_t N,
                                   std::int64_t C, double smoothing) {
  const double scale = g / double(N);
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t c = 0; c < C; ++c) {
      const double target = (c == labels[n] ? 1.0 - smoothing : 0.0) + smoothing / double(C);
      dlogits[n * C + c] += T(scale * (double(probs[n * C + c]) - target));
    }
}

}  // namespace vitfreeze::cpu
