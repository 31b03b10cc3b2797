#pragma once
// torchvision's ColorJitter(brightness, contrast, saturation) as timm builds it from a single
// `color_jitter` value (MAE-lite: 0.3; hue 0): each factor uniform in [max(0, 1 - j), 1 + j], the
// three adjustments in a random order, each Pillow's ImageEnhance (data/pil_ops.hpp) on the uint8
// image. Saturation leaves a one-channel image as it is. timm applies it only when no RandAugment
// is set (transforms_factory: auto_augment, else color jitter); data::Transform follows that rule.
#include <algorithm>
#include <array>

#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/data/pil_ops.hpp"

namespace vitfreeze::data {

struct ColorJitter {
  double brightness = 0.0, contrast = 0.0, saturation = 0.0;

  static ColorJitter uniform(double j) { return {j, j, j}; }

  void validate() const {
    if (!(brightness >= 0 && contrast >= 0 && saturation >= 0))
      throw ConfigError("ColorJitter: the strengths must be >= 0");
  }

  void apply(const pil::Image& im, RandomStream& rng) const {
    std::array<int, 3> order{0, 1, 2};
    for (int i = 2; i > 0; --i) std::swap(order[std::size_t(i)], order[rng.below(std::uint32_t(i + 1))]);
    for (int k : order) {
      const double j = k == 0 ? brightness : k == 1 ? contrast : saturation;
      if (j <= 0) continue;
      const double lo = std::max(0.0, 1.0 - j), factor = lo + (1.0 + j - lo) * rng.uniform();
      if (k == 0) pil::brightness(im, factor);
      else if (k == 1) pil::contrast(im, factor);
      else pil::color(im, factor);
    }
  }
};

}  // namespace vitfreeze::data
