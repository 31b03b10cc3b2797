#pragma once
// Argument shapes of the kernels every backend implements (no Eigen, no CUDA: .cu and .cpp files
// both include this).
#include <cstdint>
#include <string>

#include "vitfreeze/core/error.hpp"
#include "vitfreeze/core/host_device.hpp"

namespace vitfreeze {

// Patchify's two layouts within a patch: pixel-major (u, v, c), channel fastest (MAE's
// reconstruction target); channel-major (c, u, v), a Conv2d kernel's (the patch embedding GEMM).
enum class PatchLayout { pixel_major, channel_major };

// Images [batch, channels, height, width] cut into patch x patch squares, patch l = i * grid_w + j.
struct PatchGeometry {
  std::int64_t batch, channels, height, width, patch;
  std::int64_t grid_h() const { return height / patch; }
  std::int64_t grid_w() const { return width / patch; }
  std::int64_t patches() const { return grid_h() * grid_w(); }
  std::int64_t patch_dim() const { return channels * patch * patch; }
  void validate() const {
    if (patch <= 0 || height % patch || width % patch)
      throw ShapeError("patchify: image " + std::to_string(height) + "x" + std::to_string(width) +
                       " is not a multiple of patch " + std::to_string(patch));
  }
};

// A channels-last map op's input (LocalMIM's scale heads): `batch` maps of height x width pixels,
// each after `skip` rows (a decoder's cls row: sample b's pixel p is row b * (skip + pixels) + skip + p),
// so a decoder's output is read in place.
struct MapGeometry {
  std::int64_t batch = 0, height = 0, width = 0, skip = 0;
  VITFREEZE_HOST_DEVICE std::int64_t pixels() const { return height * width; }
  VITFREEZE_HOST_DEVICE std::int64_t rows_per_sample() const { return skip + pixels(); }
  VITFREEZE_HOST_DEVICE std::int64_t rows() const { return batch * rows_per_sample(); }
};

// HOG targets of one pool size, written as prediction rows: per sample `lead` zero rows (the cls
// row of a scale-1 prediction), then one row of channels x nbins values per pool x pool cell.
struct HogGeometry {
  std::int64_t batch = 0, channels = 0, height = 0, width = 0;
  int nbins = 9, pool = 1;
  std::int64_t lead = 0;
  VITFREEZE_HOST_DEVICE std::int64_t cells_w() const { return width / pool; }
  VITFREEZE_HOST_DEVICE std::int64_t cells() const { return (height / pool) * cells_w(); }
  VITFREEZE_HOST_DEVICE std::int64_t rows_per_sample() const { return lead + cells(); }
  VITFREEZE_HOST_DEVICE std::int64_t row_width() const { return channels * nbins; }
};

// A reconstruction target's grid (mim/targets.hpp): the images [batch, channels, height, width] cut
// into cell x cell squares in raster order, `lead` zero rows before each sample's cells (the cls row
// a prediction keeps): rows [batch, lead + cells].
struct TargetGeometry {
  std::int64_t batch = 0, channels = 0, height = 0, width = 0;
  int cell = 1;
  std::int64_t lead = 0;
  std::int64_t cells_w() const { return width / cell; }
  std::int64_t cells() const { return (height / cell) * cells_w(); }
  std::int64_t rows_per_sample() const { return lead + cells(); }
  bool operator==(const TargetGeometry&) const = default;
};

// A histogram is divided by max(||h||, this) (F.normalize's eps), so an empty cell stays zero.
inline constexpr double kHogNormEps = 1e-12;

// Every LayerNorm of the models here (timm ViTs, LocalMIM's LayerNorm2d) uses this epsilon.
inline constexpr double kLayerNormEps = 1e-6;

}  // namespace vitfreeze
