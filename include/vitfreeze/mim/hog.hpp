#pragma once
// Multi-scale HOG targets exactly as LocalMIM's HOGLayer (spec vitfreeze-localmim-freezeout.md §2.4),
// with the project's decision on flat regions (spec README "HOG on flat regions").
//
// Per channel c of the normalised image [B, C, H, W], at every pixel (reflect padding: index -1 -> 1,
// index H -> H-2, as PyTorch's 'reflect'):
//   g0 = cross-correlation with [[1,0,-1],[2,0,-2],[1,0,-1]]   (left minus right)
//      = d(r-1) + 2 d(r) + d(r+1),  d(row) = x[row][col-1] - x[row][col+1]
//   g1 = cross-correlation with the transpose [[1,2,1],[0,0,0],[-1,-2,-1]]   (top minus bottom)
//      = e(c-1) + 2 e(c) + e(c+1),  e(col) = x[r-1][col] - x[r+1][col]
// Taking the differences first makes a constant region (and any border, under reflect padding, in
// the across-border direction) give exactly 0, so an empty cell stays the zero vector.
//   mag = sqrt(g0^2 + g1^2), phase = atan2(g0, g1), bin = floor(phase / pi * nbins) mod nbins (>= 0)
// Each pixel adds mag to exactly one bin (hard binning); each pool x pool cell is averaged
// (AvgPool2d, kernel = stride = pool), then L2-normalised over its nbins (x / max(||x||, 1e-12)).
// Channels are concatenated in order: output [B, cells, C*nbins], cells row-major, value
// out[b][cy*cw + cx][c*nbins + k].
//
// All scales are pooled in one pass: the gradient and bin of each pixel are computed once and added
// to its cell at every scale.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <span>
#include <string>
#include <vector>

#include "vitfreeze/core/error.hpp"
#include "vitfreeze/core/tensor.hpp"

namespace vitfreeze::mim {

inline constexpr double kHogNormEps = 1e-12;
inline constexpr int kMaxHogScales = 8;

// [B, (H/pool)*(W/pool), C*nbins].
inline Shape hog_shape(const Shape& images, int nbins, int pool) {
  if (images.rank() != 4) throw ShapeError("hog: images must be [B, C, H, W], got " + images.str());
  if (nbins < 1) throw ConfigError("hog: nbins must be >= 1");
  if (pool < 1 || images[2] % pool != 0 || images[3] % pool != 0)
    throw ConfigError("hog: pool " + std::to_string(pool) + " does not tile the image " + images.str());
  return {images[0], (images[2] / pool) * (images[3] / pool), images[1] * nbins};
}

namespace detail {

// PyTorch 'reflect' padding by one pixel: -1 -> 1, n -> n-2.
constexpr std::int64_t reflect_index(std::int64_t i, std::int64_t n) {
  return i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i);
}

// Orientation bin of the gradient (g0, g1): floor(atan2(g0, g1) / pi * nbins), taken modulo nbins into
// [0, nbins) like Python's %. Bins are orientations modulo pi.
template <class T>
int hog_bin(T g0, T g1, int nbins) {
  const T phase = std::atan2(g0, g1);
  const int bin = static_cast<int>(std::floor(phase / std::numbers::pi_v<T> * static_cast<T>(nbins))) % nbins;
  return bin < 0 ? bin + nbins : bin;
}

}  // namespace detail

// Writes one HOG target per pool size into outputs[k] (shape hog_shape(images, nbins, pools[k])).
template <class T>
void hog_into(const Tensor<T>& images, int nbins, std::span<const int> pools, std::span<const Tensor<T>> outputs) {
  const int scales = static_cast<int>(pools.size());
  if (scales < 1 || scales > kMaxHogScales || outputs.size() != pools.size())
    throw ConfigError("hog: need 1.." + std::to_string(kMaxHogScales) + " pool sizes, one output each");
  for (int s = 0; s < scales; ++s)
    expect_shape(outputs[s].shape(), hog_shape(images.shape(), nbins, pools[s]), "hog_into");
  const std::int64_t B = images.dim(0), C = images.dim(1), H = images.dim(2), W = images.dim(3);
  if (H < 2 || W < 2) throw ShapeError("hog: reflect padding needs H, W >= 2, got " + images.shape().str());

  // Per scale: output base pointer, pool side and cells per row (fixed arrays: no allocation).
  T* out[kMaxHogScales];
  std::int64_t pool[kMaxHogScales], cells_w[kMaxHogScales], cells[kMaxHogScales];
  for (int s = 0; s < scales; ++s) {
    outputs[s].zero();
    out[s] = outputs[s].data();
    pool[s] = pools[s];
    cells_w[s] = W / pools[s];
    cells[s] = (H / pools[s]) * cells_w[s];
  }
  const std::int64_t row_width = C * nbins;  // values per cell

  // Accumulate: one (image, channel) plane per iteration; planes write disjoint output slots.
#pragma omp parallel for schedule(static)
  for (std::int64_t plane = 0; plane < B * C; ++plane) {
    const std::int64_t b = plane / C, c = plane % C;
    const T* x = images.data() + plane * H * W;
    for (std::int64_t r = 0; r < H; ++r) {
      const T* up = x + detail::reflect_index(r - 1, H) * W;
      const T* mid = x + r * W;
      const T* down = x + detail::reflect_index(r + 1, H) * W;
      for (std::int64_t col = 0; col < W; ++col) {
        const std::int64_t cl = detail::reflect_index(col - 1, W), cr = detail::reflect_index(col + 1, W);
        const T g0 = (up[cl] - up[cr]) + T(2) * (mid[cl] - mid[cr]) + (down[cl] - down[cr]);
        const T g1 = (up[cl] - down[cl]) + T(2) * (up[col] - down[col]) + (up[cr] - down[cr]);
        if (g0 == T(0) && g1 == T(0)) continue;  // adds nothing to any bin
        const T mag = std::sqrt(g0 * g0 + g1 * g1);
        const std::int64_t slot = c * nbins + detail::hog_bin(g0, g1, nbins);
        for (int s = 0; s < scales; ++s) {
          const std::int64_t cell = (r / pool[s]) * cells_w[s] + col / pool[s];
          out[s][(b * cells[s] + cell) * row_width + slot] += mag;
        }
      }
    }
  }

  // Average, then L2-normalise each (cell, channel) histogram.
  for (int s = 0; s < scales; ++s) {
    const T inv_area = T(1) / static_cast<T>(pool[s] * pool[s]);
    const std::int64_t histograms = B * cells[s] * C;
    T* data = out[s];
#pragma omp parallel for schedule(static)
    for (std::int64_t h = 0; h < histograms; ++h) {
      T* hist = data + h * nbins;
      T squares = 0;
      for (int k = 0; k < nbins; ++k) {
        hist[k] *= inv_area;
        squares += hist[k] * hist[k];
      }
      // Divide (as F.normalize does) rather than multiply by a reciprocal: a one-bin cell is exactly 1.
      const T norm = std::max(std::sqrt(squares), static_cast<T>(kHogNormEps));
      for (int k = 0; k < nbins; ++k) hist[k] /= norm;
    }
  }
}

// All scales at once; result k has shape hog_shape(images, nbins, pools[k]).
template <class T>
std::vector<Tensor<T>> hog_multiscale(const Tensor<T>& images, int nbins, std::span<const int> pools) {
  std::vector<Tensor<T>> outputs;
  outputs.reserve(pools.size());
  for (int pool : pools) outputs.emplace_back(hog_shape(images.shape(), nbins, pool));
  hog_into<T>(images, nbins, pools, std::span<const Tensor<T>>(outputs));
  return outputs;
}

// One scale.
template <class T>
Tensor<T> hog(const Tensor<T>& images, int nbins, int pool) {
  Tensor<T> out(hog_shape(images.shape(), nbins, pool));
  hog_into<T>(images, nbins, std::span<const int>(&pool, 1), std::span<const Tensor<T>>(&out, 1));
  return out;
}

}  // namespace vitfreeze::mim
