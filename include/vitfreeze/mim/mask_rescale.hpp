#pragma once
// LocalMIM multi-scale geometry (spec vitfreeze-localmim-freezeout.md §2.4-2.5). A decoder tap
// predicts on a grid s times the patch grid, s = num/den (LocalMIM: 4, 2, 1, 1/2; ViTFreeze adds 8).
// Its HOG target pools cells of patch/s pixels, and its loss weights cells by the patch mask
// re-scaled to that grid:
//   s >= 1 (den = 1): nearest upsampling, every patch repeated s x s;
//   s = 1/k (num = 1): average of k x k patch blocks (k = 2: values {0, .25, .5, .75, 1}).
// General num/den is defined the same way: upsample by num, then average den x den blocks.
#include <cstdint>
#include <string>

#include "vitfreeze/core/error.hpp"
#include "vitfreeze/core/tensor.hpp"

namespace vitfreeze::mim {

// A scale can be used on an image when its HOG cell is a whole number of pixels (>= 1) and its
// grid a whole number of cells. Usable in static_assert: 28x28 with patch 2 rejects s = 4 (cell of
// half a pixel); a 7x7 grid rejects s = 1/2 (3.5 cells).
constexpr bool scale_is_feasible(int image, int patch, int num, int den) {
  if (image < 1 || patch < 1 || num < 1 || den < 1 || image % patch != 0) return false;
  if ((patch * den) % num != 0 || patch * den / num < 1) return false;  // whole pixels per cell
  return (image / patch * num) % den == 0;                              // whole cells per side
}

// HOG pool (cell side in pixels) of scale num/den: patch * den / num. Not a constant expression
// (a compile error in a constant context) and a ConfigError at run time when the scale is infeasible.
constexpr int hog_pool_for_scale(int image, int patch, int num, int den) {
  if (!scale_is_feasible(image, patch, num, den))
    throw ConfigError("hog_pool_for_scale: scale is infeasible for this image and patch size");
  return patch * den / num;
}

// Cells per side of the re-scaled grid: grid * num / den.
constexpr int rescaled_grid(int grid, int num, int den) { return grid * num / den; }

static_assert(hog_pool_for_scale(224, 16, 4, 1) == 4 && hog_pool_for_scale(224, 16, 1, 2) == 32);
static_assert(!scale_is_feasible(28, 2, 4, 1) && !scale_is_feasible(28, 4, 1, 2));

// mask [B, grid_h*grid_w] (0/1, any numeric type) -> out [B, (grid_h*s)*(grid_w*s)] of T.
template <class T, class M>
void rescale_mask_into(const Tensor<M>& mask, int grid_h, int grid_w, int num, int den, const Tensor<T>& out) {
  if (num < 1 || den < 1 || (grid_h * num) % den != 0 || (grid_w * num) % den != 0)
    throw ConfigError("rescale_mask: scale " + std::to_string(num) + "/" + std::to_string(den) +
                      " does not give whole cells on a " + std::to_string(grid_h) + "x" + std::to_string(grid_w) +
                      " grid");
  if (mask.rank() != 2 || mask.dim(1) != std::int64_t(grid_h) * grid_w)
    throw ShapeError("rescale_mask: mask must be [B, " + std::to_string(grid_h * grid_w) + "], got " +
                     mask.shape().str());
  const std::int64_t B = mask.dim(0), oh = rescaled_grid(grid_h, num, den), ow = rescaled_grid(grid_w, num, den);
  expect_shape(out.shape(), Shape{B, oh * ow}, "rescale_mask_into");
  const T inv_area = T(1) / static_cast<T>(den * den);
#pragma omp parallel for schedule(static)
  for (std::int64_t b = 0; b < B; ++b) {
    const M* src = mask.data() + b * grid_h * grid_w;
    T* dst = out.data() + b * oh * ow;
    for (std::int64_t y = 0; y < oh; ++y)
      for (std::int64_t x = 0; x < ow; ++x) {
        // Upsampled pixel (Y, X) lies in patch (Y / num, X / num); average the den x den block.
        T sum = 0;
        for (std::int64_t dy = 0; dy < den; ++dy)
          for (std::int64_t dx = 0; dx < den; ++dx)
            sum += static_cast<T>(src[((y * den + dy) / num) * grid_w + (x * den + dx) / num]);
        dst[y * ow + x] = sum * inv_area;
      }
  }
}

template <class T, class M>
Tensor<T> rescale_mask(const Tensor<M>& mask, int grid_h, int grid_w, int num, int den) {
  if (num < 1 || den < 1) throw ConfigError("rescale_mask: scale must be positive");
  Tensor<T> out(Shape{mask.rank() == 2 ? mask.dim(0) : 0,
                      std::int64_t(rescaled_grid(grid_h, num, den)) * rescaled_grid(grid_w, num, den)});
  rescale_mask_into(mask, grid_h, grid_w, num, den, out);
  return out;
}

}  // namespace vitfreeze::mim
