#pragma once
// Patchify: images [B, C, H, W] -> patches [B, L, P], L = (H/p)(W/p), P = C p p, patch l = i*w + j.
// Two layouts within a patch:
//   pixel-major   (u, v, c), channel fastest: the MAE reconstruction-target layout;
//   channel-major (c, u, v): the layout of a Conv2d kernel [D][C][p][p], used by the patch
//                            embedding GEMM so its weight matches timm's conv weight directly.
// Both are permutations, so unpatchify (the inverse) is also the adjoint used as the backward.
#include <cstdint>

#include "vitfreeze/backend/geometry.hpp"

namespace vitfreeze::cpu {

// The shared argument types (backend/geometry.hpp), by their old names too.
using vitfreeze::PatchGeometry;
using vitfreeze::PatchLayout;

namespace detail {
// Calls f(image_index, patch_index) for every pair: both layouts walk the same pairs.
template <class T, class F>
inline void for_each_patch_element(const PatchGeometry& g, PatchLayout layout, F&& f) {
  const std::int64_t p = g.patch, C = g.channels, gw = g.grid_w(), L = g.patches(), P = g.patch_dim();
#pragma omp parallel for schedule(static) if (g.batch * L * P > 65536)
  for (std::int64_t b = 0; b < g.batch; ++b)
    for (std::int64_t l = 0; l < L; ++l) {
      const std::int64_t i = l / gw, j = l % gw;
      for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t u = 0; u < p; ++u)
          for (std::int64_t v = 0; v < p; ++v) {
            const std::int64_t img = ((b * C + c) * g.height + i * p + u) * g.width + j * p + v;
            const std::int64_t within = layout == PatchLayout::pixel_major ? (u * p + v) * C + c : (c * p + u) * p + v;
            f(img, (b * L + l) * P + within);
          }
    }
}
}  // namespace detail

template <class T>
inline void patchify(const T* images, T* patches, const PatchGeometry& g, PatchLayout layout) {
  g.validate();
  detail::for_each_patch_element<T>(g, layout, [&](std::int64_t img, std::int64_t pat) { patches[pat] = images[img]; });
}

template <class T>
inline void unpatchify(const T* patches, T* images, const PatchGeometry& g, PatchLayout layout) {
  g.validate();
  detail::for_each_patch_element<T>(g, layout, [&](std::int64_t img, std::int64_t pat) { images[img] = patches[pat]; });
}

}  // namespace vitfreeze::cpu
