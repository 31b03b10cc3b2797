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
#include <span>
#include <vector>

#include "vitfreeze/backend/cpu/hog.hpp"
#include "vitfreeze/core/error.hpp"
#include "vitfreeze/core/tensor.hpp"

namespace vitfreeze::mim {

using vitfreeze::kHogNormEps;
using cpu::kMaxHogScales;

// [B, (H/pool)*(W/pool), C*nbins].
inline Shape hog_shape(const Shape& images, int nbins, int pool) {
  if (images.rank() != 4) throw ShapeError("hog: images must be [B, C, H, W], got " + images.str());
  if (nbins < 1) throw ConfigError("hog: nbins must be >= 1");
  if (pool < 1 || images[2] % pool != 0 || images[3] % pool != 0)
    throw ConfigError("hog: pool " + std::to_string(pool) + " does not tile the image " + images.str());
  return {images[0], (images[2] / pool) * (images[3] / pool), images[1] * nbins};
}

// Writes one HOG target per pool size into outputs[k] (shape hog_shape(images, nbins, pools[k])).
template <class T>
void hog_into(const Tensor<T>& images, int nbins, std::span<const int> pools, std::span<const Tensor<T>> outputs) {
  if (pools.size() < 1 || pools.size() > std::size_t(kMaxHogScales) || outputs.size() != pools.size())
    throw ConfigError("hog: need 1.." + std::to_string(kMaxHogScales) + " pool sizes, one output each");
  HogGeometry g[kMaxHogScales];
  T* out[kMaxHogScales];
  for (std::size_t s = 0; s < pools.size(); ++s) {
    expect_shape(outputs[s].shape(), hog_shape(images.shape(), nbins, pools[s]), "hog_into");
    g[s] = HogGeometry{images.dim(0), images.dim(1), images.dim(2), images.dim(3), nbins, pools[s], 0};
    out[s] = outputs[s].data();
  }
  cpu::hog_targets<T>(images.data(), std::span<const HogGeometry>(g, pools.size()), std::span<T* const>(out, pools.size()));
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
