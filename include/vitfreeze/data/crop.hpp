#pragma once
// Where to crop: torchvision's RandomResizedCrop.get_params (training) and Resize + CenterCrop
// (evaluation), as geometry only. Rounding follows Python: round() is half-to-even (std::nearbyint
// in the default rounding mode) and int() truncates.
#include <algorithm>
#include <cmath>
#include <string>

#include "vitfreeze/core/error.hpp"
#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/data/resample.hpp"

namespace vitfreeze::data {

struct RandomResizedCrop {
  int size = 224;  // square output side
  double scale_min = 0.08, scale_max = 1.0;           // crop area / image area
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;  // crop width / height
  Interpolation interpolation = Interpolation::bilinear;

  void validate() const {
    if (size <= 0 || !(scale_min > 0 && scale_min <= scale_max) || !(ratio_min > 0 && ratio_min <= ratio_max))
      throw ConfigError("RandomResizedCrop: need size > 0, 0 < scale_min <= scale_max, 0 < ratio_min <= ratio_max");
  }

  // Ten tries of (area, log-ratio) sampling; a try succeeds when the crop fits, and its position is
  // then uniform. After ten failures: the largest centred crop whose ratio is within range.
  PixelRect sample(int height, int width, RandomStream& rng) const {
    const double area = double(height) * double(width);
    const double log_lo = std::log(ratio_min), log_hi = std::log(ratio_max);
    for (int attempt = 0; attempt < 10; ++attempt) {
      const double target_area = area * (scale_min + (scale_max - scale_min) * rng.uniform());
      const double aspect = std::exp(log_lo + (log_hi - log_lo) * rng.uniform());
      const int w = int(std::nearbyint(std::sqrt(target_area * aspect)));
      const int h = int(std::nearbyint(std::sqrt(target_area / aspect)));
      if (0 < w && w <= width && 0 < h && h <= height) {
        const int top = int(rng.below(std::uint32_t(height - h + 1)));
        const int left = int(rng.below(std::uint32_t(width - w + 1)));
        return {top, left, h, w};
      }
    }
    const double in_ratio = double(width) / double(height);
    int w = width, h = height;
    if (in_ratio < ratio_min)
      h = int(std::nearbyint(w / ratio_min));
    else if (in_ratio > ratio_max)
      w = int(std::nearbyint(h * ratio_max));
    return {(height - h) / 2, (width - w) / 2, h, w};
  }
};

// Resize the shorter side to `resize` (aspect kept), then take the centred crop x crop square.
struct ResizeCenterCrop {
  int resize = 256;
  int crop = 224;
  Interpolation interpolation = Interpolation::bicubic;

  void validate() const {
    if (crop <= 0 || resize < crop || interpolation == Interpolation::random)
      throw ConfigError("ResizeCenterCrop: need 0 < crop <= resize and a fixed interpolation");
  }

  // The crop expressed in source coordinates, so one resampling does both steps.
  CropBox box(int height, int width) const {
    const bool tall = height >= width;
    const int short_side = tall ? width : height, long_side = tall ? height : width;
    const int new_long = int(double(resize) * long_side / short_side);  // torchvision truncates
    const int new_h = tall ? new_long : resize, new_w = tall ? resize : new_long;
    const int top = int(std::nearbyint((new_h - crop) / 2.0)), left = int(std::nearbyint((new_w - crop) / 2.0));
    const double sy = double(height) / new_h, sx = double(width) / new_w;
    return {top * sy, left * sx, crop * sy, crop * sx};
  }
};

}  // namespace vitfreeze::data
