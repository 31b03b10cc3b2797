#pragma once
// Multi-scale HOG targets exactly as LocalMIM's HOGLayer (spec vitfreeze-localmim-freezeout.md §2.4),
// with the project's decision on flat regions (spec README "HOG on flat regions"); the rule is
// documented in mim/hog.hpp, which presents it to users.
//
// All scales are pooled in one pass: the gradient and bin of each pixel are computed once and added
// to its cell at every scale. Each scale's output has `lead` zero rows per sample before its cells
// (the cls row a scale-1 prediction keeps, backend/geometry.hpp HogGeometry), so targets line up
// with predictions row for row.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <span>
#include <string>

#include "vitfreeze/backend/geometry.hpp"
#include "vitfreeze/core/error.hpp"

namespace vitfreeze::cpu {

inline constexpr int kMaxHogScales = 8;

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

// images [B, C, H, W] -> targets[s]: [B, lead + cells, C * nbins] for geometry g[s] (every g[s] must
// describe these images and one nbins).
template <class T>
void hog_targets(const T* images, std::span<const HogGeometry> g, std::span<T* const> targets) {
  const int scales = static_cast<int>(g.size());
  if (scales < 1 || scales > kMaxHogScales || targets.size() != g.size())
    throw ConfigError("hog: need 1.." + std::to_string(kMaxHogScales) + " pool sizes, one output each");
  const std::int64_t B = g[0].batch, C = g[0].channels, H = g[0].height, W = g[0].width;
  const int nbins = g[0].nbins;
  if (H < 2 || W < 2) throw ShapeError("hog: reflect padding needs H, W >= 2");
  if (nbins < 1) throw ConfigError("hog: nbins must be >= 1");

  // Per scale: output base pointer, pool side and cells per row (fixed arrays: no allocation).
  T* out[kMaxHogScales];
  std::int64_t pool[kMaxHogScales], cells_w[kMaxHogScales], cells[kMaxHogScales], rows[kMaxHogScales],
      lead[kMaxHogScales];
  for (int s = 0; s < scales; ++s) {
    if (g[s].batch != B || g[s].channels != C || g[s].height != H || g[s].width != W || g[s].nbins != nbins)
      throw ConfigError("hog: every scale must describe the same images and bins");
    if (g[s].pool < 1 || H % g[s].pool != 0 || W % g[s].pool != 0 || g[s].lead < 0)
      throw ConfigError("hog: pool " + std::to_string(g[s].pool) + " does not tile the image");
    out[s] = targets[s];
    pool[s] = g[s].pool;
    cells_w[s] = g[s].cells_w();
    cells[s] = g[s].cells();
    lead[s] = g[s].lead;
    rows[s] = g[s].rows_per_sample();
    std::fill(out[s], out[s] + B * rows[s] * C * nbins, T(0));
  }
  const std::int64_t row_width = C * nbins;  // values per cell

  // Accumulate: one (image, channel) plane per iteration; planes write disjoint output slots.
#pragma omp parallel for schedule(static)
  for (std::int64_t plane = 0; plane < B * C; ++plane) {
    const std::int64_t b = plane / C, c = plane % C;
    const T* x = images + plane * H * W;
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
          out[s][(b * rows[s] + lead[s] + cell) * row_width + slot] += mag;
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
      const std::int64_t cell_row = h / C, channel = h % C, b = cell_row / cells[s], cell = cell_row % cells[s];
      T* hist = data + (b * rows[s] + lead[s] + cell) * row_width + channel * nbins;
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

}  // namespace vitfreeze::cpu
