#pragma once
// Normalised-pixel targets (MAE `norm_pix_loss`, LoMaR, MAE-lite; spec mae-lomar-maelite-micl.md §1.4):
// every patch row t of [.., P] becomes (t - mean(t)) / sqrt(var_unbiased(t) + eps), eps = 1e-6, with
// the *unbiased* variance (divide by P - 1), as torch.var does by default. Each normalised row then
// has mean 0 and mean square (P-1)/P * var/(var + eps).
#include <cmath>
#include <cstdint>

#include "vitfreeze/core/error.hpp"
#include "vitfreeze/core/tensor.hpp"

namespace vitfreeze::mim {

inline constexpr double kNormPixEps = 1e-6;

// In place over the last axis of `patches` (any rank >= 1, typically [B, L, P]).
template <class T>
void normalize_patches_in_place(const Tensor<T>& patches, double eps = kNormPixEps) {
  if (patches.rank() < 1) throw ShapeError("normalize_patches: need at least one axis");
  const std::int64_t P = patches.shape().cols(), rows = patches.shape().rows();
  if (P < 2) throw ShapeError("normalize_patches: the unbiased variance needs >= 2 values per patch");
  T* data = patches.data();
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    T* row = data + r * P;
    // Two passes in double: the mean first, then centred squares (no cancellation for float input).
    double sum = 0;
    for (std::int64_t k = 0; k < P; ++k) sum += row[k];
    const double mean = sum / double(P);
    double squares = 0;
    for (std::int64_t k = 0; k < P; ++k) squares += (row[k] - mean) * (row[k] - mean);
    const double inv_std = 1.0 / std::sqrt(squares / double(P - 1) + eps);
    for (std::int64_t k = 0; k < P; ++k) row[k] = static_cast<T>((row[k] - mean) * inv_std);
  }
}

// Normalised copy.
template <class T>
Tensor<T> normalize_patches(const Tensor<T>& patches, double eps = kNormPixEps) {
  Tensor<T> out = patches.clone();
  normalize_patches_in_place(out, eps);
  return out;
}

}  // namespace vitfreeze::mim
