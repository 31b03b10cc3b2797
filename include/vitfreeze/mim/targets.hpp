#pragma once
// Reconstruction targets: what an objective's predictions are scored against, as a type the objective
// takes as a template argument, so the target is chosen at compile time and independently of the
// objective (HOG on the MAE decoder, pixels on LocalMIM's taps, or a target of the user's own).
//
// A target turns the batch's (normalised) images into one row of values per cell of a grid: the
// cells are `cell` x `cell` pixel squares in raster order, the rows per sample start with `lead` zero
// rows (the cls row a prediction keeps), as TargetGeometry says. Output [B, lead + cells, values].
//
// What a type must provide (the ReconstructionTarget concept):
//   static constexpr const char* name;
//   static constexpr int values(int channels, int cell);          values per cell
//   static void compute(const T* images, std::span<const TargetGeometry> g, std::span<T* const> out)
//                                                                  on the host, for T in {float, double};
//                                                                  several geometries of the same images
//                                                                  at once (HOG shares one pass)
// Optionally `static constexpr device_kernel`: the backend kernel that computes it where the images
// are not on the host (backend/target_kernels.hpp; backend/cuda has both: pixels and HOG).
#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vitfreeze/backend/cpu/hog.hpp"
#include "vitfreeze/backend/cpu/patch_targets.hpp"
#include "vitfreeze/backend/geometry.hpp"
#include "vitfreeze/backend/target_kernels.hpp"
#include "vitfreeze/mim/norm_pix.hpp"

namespace vitfreeze::mim {

using vitfreeze::TargetGeometry;  // backend/geometry.hpp: the device kernels read it too

template <class R>
concept ReconstructionTarget = requires(const float* fi, const double* di, std::span<const TargetGeometry> g,
                                        std::span<float* const> fo, std::span<double* const> dout) {
  { R::name } -> std::convertible_to<const char*>;
  { R::values(1, 1) } -> std::convertible_to<int>;
  R::compute(fi, g, fo);
  R::compute(di, g, dout);
};

namespace detail {
inline void check_target_geometry(std::span<const TargetGeometry> g, const char* who) {
  for (const TargetGeometry& x : g)
    if (x.cell < 1 || x.height % x.cell != 0 || x.width % x.cell != 0 || x.lead < 0)
      throw ConfigError(std::string(who) + ": cell " + std::to_string(x.cell) + " does not tile the image");
}
}  // namespace detail

// The pixels of each cell, pixel-major (u, v, c) as MAE's patchify; with Normalize each cell is
// normalised to mean 0 and unit (unbiased) variance + 1e-6 (MAE's norm_pix_loss, spec §1.4).
template <bool Normalize>
struct CellPixels {
  static constexpr const char* name = Normalize ? "normalised-pixels" : "pixels";
  static constexpr bool normalized = Normalize;
  static constexpr CellPixelsKernel device_kernel{Normalize, kNormPixEps};
  static constexpr int values(int channels, int cell) { return channels * cell * cell; }

  template <CpuScalar T>
  static void compute(const T* images, std::span<const TargetGeometry> g, std::span<T* const> out) {
    detail::check_target_geometry(g, name);
    for (std::size_t s = 0; s < g.size(); ++s)
      cpu::patch_targets(images, out[s], cpu::PatchGeometry{g[s].batch, g[s].channels, g[s].height, g[s].width, g[s].cell},
                         Normalize, kNormPixEps, g[s].lead);
  }
};
using NormalizedPixels = CellPixels<true>;
using Pixels = CellPixels<false>;

// HOG histograms of NBins orientations per channel and cell (LocalMIM's HOGLayer, hog.hpp).
template <int NBins = 9>
struct Hog {
  static_assert(NBins >= 1 && NBins <= 32, "Hog: 1 to 32 orientation bins");
  static constexpr const char* name = "hog";
  static constexpr int bins = NBins;
  static constexpr HogKernel device_kernel{NBins};
  static constexpr int values(int channels, int /*cell*/) { return channels * NBins; }

  template <CpuScalar T>
  static void compute(const T* images, std::span<const TargetGeometry> g, std::span<T* const> out) {
    detail::check_target_geometry(g, name);
    std::vector<HogGeometry> hog;
    for (const TargetGeometry& x : g) hog.push_back({x.batch, x.channels, x.height, x.width, NBins, x.cell, x.lead});
    cpu::hog_targets(images, std::span<const HogGeometry>(hog), out);
  }
};

// A target's values as one tensor [B, cells, values] (no lead rows), for the tape objectives.
template <ReconstructionTarget R, CpuScalar T>
Tensor<T> target_values(const Tensor<T>& images, int cell) {
  if (images.rank() != 4) throw ShapeError(std::string(R::name) + " target: images must be [B, C, H, W]");
  const TargetGeometry g{images.dim(0), images.dim(1), images.dim(2), images.dim(3), cell, 0};
  Tensor<T> out(Shape{g.batch, g.cells(), R::values(int(g.channels), cell)});
  T* p = out.data();
  R::compute(images.data(), std::span<const TargetGeometry>(&g, 1), std::span<T* const>(&p, 1));
  return out;
}

}  // namespace vitfreeze::mim
