#pragma once
// Patchify: images [B, C, H, W] <-> patch rows [B, L, P] with p x p patches, L = (H/p)(W/p) listed
// row-major over the grid (l = i*w + j), P = p*p*C.
//
// Two orders inside a patch row:
//  - PatchOrder::pixel_major   (u, v, c), channel fastest: row[(u*p + v)*C + c]. This is MAE's target
//    layout (spec mae-lomar-maelite-micl.md §0.1), used for pixel targets and their loss.
//  - PatchOrder::channel_major (c, u, v): row[(c*p + u)*p + v]. This is the conv weight layout
//    [D][C][p][p] of the patch embedding, so the embedding is one GEMM rows x weight^T.
//
// Both maps are permutations, so unpatchify is the inverse *and* the adjoint of patchify: the
// backward of patchify is unpatchify of the incoming gradient (and vice versa).
#include <cstdint>

#include "vitfreeze/backend/cpu/patchify.hpp"
#include "vitfreeze/core/error.hpp"
#include "vitfreeze/core/tensor.hpp"

namespace vitfreeze::mim {

enum class PatchOrder { pixel_major, channel_major };

// Geometry of one patchify call, validated once.
struct PatchGeometry {
  std::int64_t batch, channels, height, width, patch, grid_h, grid_w;
  std::int64_t tokens() const { return grid_h * grid_w; }
  std::int64_t patch_dim() const { return patch * patch * channels; }
  Shape image_shape() const { return {batch, channels, height, width}; }
  Shape patches_shape() const { return {batch, tokens(), patch_dim()}; }
};

inline PatchGeometry patch_geometry(const Shape& images, int patch) {
  if (images.rank() != 4) throw ShapeError("patchify: images must be [B, C, H, W], got " + images.str());
  if (patch < 1) throw ConfigError("patchify: patch size must be >= 1, got " + std::to_string(patch));
  if (images[2] % patch != 0 || images[3] % patch != 0)
    throw ShapeError("patchify: image " + images.str() + " is not a multiple of patch " + std::to_string(patch));
  return {images[0], images[1], images[2], images[3], patch, images[2] / patch, images[3] / patch};
}

namespace detail {

// Both directions run the backend's one patchify kernel (also used by the patch embedding), so
// patchify and unpatchify stay exact inverses by construction.
template <PatchOrder Order, bool ToPatches, class T>
void transfer(const PatchGeometry& g, T* images, T* patches) {
  const cpu::PatchGeometry kernel{g.batch, g.channels, g.height, g.width, g.patch};
  constexpr cpu::PatchLayout layout =
      Order == PatchOrder::pixel_major ? cpu::PatchLayout::pixel_major : cpu::PatchLayout::channel_major;
  if constexpr (ToPatches)
    cpu::patchify(images, patches, kernel, layout);
  else
    cpu::unpatchify(patches, images, kernel, layout);
}

}  // namespace detail

// images [B, C, H, W] -> out [B, L, P] (out preallocated, e.g. from an arena).
template <PatchOrder Order = PatchOrder::pixel_major, class T>
void patchify_into(const Tensor<T>& images, int patch, const Tensor<T>& out) {
  const PatchGeometry g = patch_geometry(images.shape(), patch);
  expect_shape(out.shape(), g.patches_shape(), "patchify_into");
  detail::transfer<Order, true>(g, images.data(), out.data());
}

// patches [B, L, P] -> out [B, C, H, W]; the geometry is read from out's shape.
template <PatchOrder Order = PatchOrder::pixel_major, class T>
void unpatchify_into(const Tensor<T>& patches, int patch, const Tensor<T>& out) {
  const PatchGeometry g = patch_geometry(out.shape(), patch);
  expect_shape(patches.shape(), g.patches_shape(), "unpatchify_into");
  detail::transfer<Order, false>(g, out.data(), patches.data());
}

// MAE target layout: [B, L, p*p*C] with row[(u*p + v)*C + c] = img[c][i*p+u][j*p+v].
template <class T>
Tensor<T> patchify(const Tensor<T>& images, int patch) {
  Tensor<T> out(patch_geometry(images.shape(), patch).patches_shape());
  patchify_into<PatchOrder::pixel_major>(images, patch, out);
  return out;
}

// Patch-embedding input layout: [B, L, C*p*p] in (c, u, v) order.
template <class T>
Tensor<T> patchify_channel_major(const Tensor<T>& images, int patch) {
  Tensor<T> out(patch_geometry(images.shape(), patch).patches_shape());
  patchify_into<PatchOrder::channel_major>(images, patch, out);
  return out;
}

namespace detail {
template <PatchOrder Order, class T>
Tensor<T> unpatchify_grid(const Tensor<T>& patches, int patch, std::int64_t grid_h, std::int64_t grid_w) {
  if (patches.rank() != 3) throw ShapeError("unpatchify: patches must be [B, L, P], got " + patches.shape().str());
  if (patch < 1) throw ConfigError("unpatchify: patch size must be >= 1");
  const std::int64_t area = std::int64_t(patch) * patch;
  if (patches.dim(2) % area != 0 || grid_h * grid_w != patches.dim(1))
    throw ShapeError("unpatchify: " + patches.shape().str() + " does not fit patch " + std::to_string(patch) +
                     " on a " + std::to_string(grid_h) + "x" + std::to_string(grid_w) + " grid");
  Tensor<T> out(Shape{patches.dim(0), patches.dim(2) / area, grid_h * patch, grid_w * patch});
  unpatchify_into<Order>(patches, patch, out);
  return out;
}

inline std::int64_t square_grid(const Shape& patches) {
  if (patches.rank() != 3) throw ShapeError("unpatchify: patches must be [B, L, P], got " + patches.str());
  const std::int64_t tokens = patches[1];
  std::int64_t side = 0;
  while ((side + 1) * (side + 1) <= tokens) ++side;
  if (side * side != tokens)
    throw ShapeError("unpatchify: " + std::to_string(tokens) + " patches is not a square grid; pass grid_h, grid_w");
  return side;
}
}  // namespace detail

// Inverse (and adjoint) of patchify for a grid_h x grid_w grid.
template <class T>
Tensor<T> unpatchify(const Tensor<T>& patches, int patch, std::int64_t grid_h, std::int64_t grid_w) {
  return detail::unpatchify_grid<PatchOrder::pixel_major>(patches, patch, grid_h, grid_w);
}
// Square grids (as MAE's unpatchify assumes).
template <class T>
Tensor<T> unpatchify(const Tensor<T>& patches, int patch) {
  const std::int64_t side = detail::square_grid(patches.shape());
  return unpatchify(patches, patch, side, side);
}

// Inverse (and adjoint) of patchify_channel_major.
template <class T>
Tensor<T> unpatchify_channel_major(const Tensor<T>& patches, int patch, std::int64_t grid_h, std::int64_t grid_w) {
  return detail::unpatchify_grid<PatchOrder::channel_major>(patches, patch, grid_h, grid_w);
}
template <class T>
Tensor<T> unpatchify_channel_major(const Tensor<T>& patches, int patch) {
  const std::int64_t side = detail::square_grid(patches.shape());
  return unpatchify_channel_major(patches, patch, side, side);
}

}  // namespace vitfreeze::mim
