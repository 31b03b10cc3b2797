#pragma once
// Patchify / unpatchify, as cpu::patchify / cpu::unpatchify, with the same PatchGeometry and
// PatchLayout (backend/geometry.hpp). Both are permutations; one thread per patch element computes
// its image index, so the two directions share the index map.
#include <cstdint>

#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/device_math.cuh"
#include "vitfreeze/backend/geometry.hpp"

namespace vitfreeze::cuda {

namespace kernels {
struct PatchIndex {
  std::int64_t channels, height, width, patch, grid_w, patches, patch_dim;
  bool pixel_major;
  // Image element of patch element `pat` = (b * L + l) * P + within.
  __device__ std::int64_t image_index(std::int64_t pat) const {
    const std::int64_t within = pat % patch_dim, bl = pat / patch_dim, l = bl % patches, b = bl / patches;
    std::int64_t c, u, v;
    if (pixel_major) {  // within = (u p + v) C + c
      c = within % channels;
      u = within / channels / patch;
      v = within / channels % patch;
    } else {  // within = (c p + u) p + v
      v = within % patch;
      u = within / patch % patch;
      c = within / (patch * patch);
    }
    const std::int64_t i = l / grid_w, j = l % grid_w;
    return ((b * channels + c) * height + i * patch + u) * width + j * patch + v;
  }
};

template <class T, bool to_patches>
__global__ void permute_patches(const T* src, T* dst, PatchIndex index, std::int64_t n) {
  for (std::int64_t pat = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; pat < n;
       pat += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t img = index.image_index(pat);
    if constexpr (to_patches)
      dst[pat] = src[img];
    else
      dst[img] = src[pat];
  }
}
}  // namespace kernels

namespace detail {
inline kernels::PatchIndex patch_index(const PatchGeometry& g, PatchLayout layout) {
  g.validate();
  return {g.channels, g.height, g.width, g.patch, g.grid_w(), g.patches(), g.patch_dim(),
          layout == PatchLayout::pixel_major};
}
}  // namespace detail

// images [B, C, H, W] -> patches [B, L, P]
template <class T>
void patchify(CudaContext& ctx, const T* images, T* patches, const PatchGeometry& g, PatchLayout layout) {
  const kernels::PatchIndex index = detail::patch_index(g, layout);
  const std::int64_t n = g.batch * g.patches() * g.patch_dim();
  if (n <= 0) return;
  kernels::permute_patches<T, true><<<detail::grid_for(n), detail::kBlock, 0, ctx.stream()>>>(images, patches, index, n);
  check_launch("patchify");
}

template <class T>
void unpatchify(CudaContext& ctx, const T* patches, T* images, const PatchGeometry& g, PatchLayout layout) {
  const kernels::PatchIndex index = detail::patch_index(g, layout);
  const std::int64_t n = g.batch * g.patches() * g.patch_dim();
  if (n <= 0) return;
  kernels::permute_patches<T, false><<<detail::grid_for(n), detail::kBlock, 0, ctx.stream()>>>(patches, images, index, n);
  check_launch("unpatchify");
}

}  // namespace vitfreeze::cuda
