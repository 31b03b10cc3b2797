#pragma once
// timm's RandomErasing in 'pixel' mode (MAE fine-tuning: probability 0.25, one rectangle): with the
// given probability, up to ten tries of an area uniform in [0.02, 1/3] of the image and an aspect
// ratio log-uniform in [0.3, 1/0.3]; the first rectangle that fits strictly inside is filled with
// N(0, 1) noise per pixel and channel, on the normalised image (after Normalize).
#include <cmath>
#include <cstdint>

#include "vitfreeze/core/error.hpp"
#include "vitfreeze/core/rng.hpp"

namespace vitfreeze::data {

struct RandomErasing {
  double probability = 0.25;
  double min_area = 0.02, max_area = 1.0 / 3.0;
  double min_aspect = 0.3;

  void validate() const {
    if (!(probability >= 0 && probability <= 1 && min_area > 0 && min_area <= max_area && max_area <= 1 &&
          min_aspect > 0 && min_aspect <= 1))
      throw ConfigError("RandomErasing: need 0 <= p <= 1, 0 < min_area <= max_area <= 1 and 0 < min_aspect <= 1");
  }

  // The rectangle erased (height 0: none).
  struct Box {
    int top = 0, left = 0, height = 0, width = 0;
  };

  Box draw(int height, int width, RandomStream& rng) const {
    if (rng.uniform() > probability) return {};
    const double area = double(height) * width, log_lo = std::log(min_aspect), log_hi = -log_lo;
    for (int attempt = 0; attempt < 10; ++attempt) {
      const double target = (min_area + (max_area - min_area) * rng.uniform()) * area;
      const double aspect = std::exp(log_lo + (log_hi - log_lo) * rng.uniform());
      const int h = int(std::nearbyint(std::sqrt(target * aspect))), w = int(std::nearbyint(std::sqrt(target / aspect)));
      if (w < width && h < height)
        return {int(rng.below(std::uint32_t(height - h + 1))), int(rng.below(std::uint32_t(width - w + 1))), h, w};
    }
    return {};
  }

  // image: float CHW, normalised.
  void apply(float* image, int channels, int height, int width, RandomStream& rng) const {
    const Box b = draw(height, width, rng);
    for (int c = 0; c < channels; ++c)
      for (int y = b.top; y < b.top + b.height; ++y)
        for (int x = b.left; x < b.left + b.width; ++x)
          image[(std::size_t(c) * height + std::size_t(y)) * width + x] = float(rng.normal());
  }
};

}  // namespace vitfreeze::data
