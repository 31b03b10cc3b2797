#pragma once
// MAE reconstruction targets straight from the images: pixel-major patches, optionally normalised
// per patch as mim::normalize_patches_in_place (mean, unbiased variance + eps, in double), written as
// rows lead..lead+L-1 of a [B, lead + L, P] buffer whose first `lead` rows per sample are zero. The
// decoder's prediction keeps its cls row (lead 1), so prediction and target line up row for row and
// the loss weights the cls rows with 0: no slicing copies on either side.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "vitfreeze/backend/cpu/patchify.hpp"
#include "vitfreeze/core/dtype.hpp"

namespace vitfreeze::cpu {

template <CpuScalar T>
inline void patch_targets(const T* images, T* target, const PatchGeometry& g, bool normalize, double eps,
                          std::int64_t lead = 1) {
  g.validate();
  const std::int64_t L = g.patches(), P = g.patch_dim(), p = g.patch, C = g.channels, gw = g.grid_w();
  if (normalize && P < 2) throw ShapeError("patch_targets: normalising needs >= 2 values per patch");
#pragma omp parallel for schedule(static) if (g.batch * L * P > 65536)
  for (std::int64_t row = 0; row < g.batch * (lead + L); ++row) {
    T* out = target + row * P;
    const std::int64_t t = row % (lead + L), b = row / (lead + L);
    if (t < lead) {
      std::fill(out, out + P, T(0));
      continue;
    }
    const std::int64_t top = (t - lead) / gw * p, left = (t - lead) % gw * p;
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t u = 0; u < p; ++u)
        for (std::int64_t v = 0; v < p; ++v)
          out[(u * p + v) * C + c] = images[((b * C + c) * g.height + top + u) * g.width + left + v];
    if (!normalize) continue;
    double sum = 0;
    for (std::int64_t k = 0; k < P; ++k) sum += out[k];
    const double mean = sum / double(P);
    double squares = 0;
    for (std::int64_t k = 0; k < P; ++k) squares += (out[k] - mean) * (out[k] - mean);
    const double inv_std = 1.0 / std::sqrt(squares / double(P - 1) + eps);
    for (std::int64_t k = 0; k < P; ++k) out[k] = T((out[k] - mean) * inv_std);
  }
}

}  // namespace vitfreeze::cpu
