#pragma once
// The per-sample pipeline: geometry (random resized crop for training, resize + centre crop for
// evaluation, or none), horizontal flip, normalisation, written as float CHW into a caller's
// buffer. Randomness is a pure function of (seed, epoch, sample index): the crop draws from
// RandomStream(seed, crop, epoch << 32 | index) and the flip from the same coordinates with purpose
// flip, so a sample is augmented the same way whatever the batch size, worker count or rank count.
#include <array>
#include <cstdint>
#include <optional>

#include "vitfreeze/data/crop.hpp"
#include "vitfreeze/data/normalize.hpp"
#include "vitfreeze/data/resample.hpp"

namespace vitfreeze::data {

// Which draw of which epoch a sample gets. Index and epoch must each fit in 32 bits.
struct SampleKey {
  std::uint64_t seed = 0;
  std::uint64_t epoch = 0;
  std::uint64_t index = 0;

  std::uint64_t coordinate() const {
    if (epoch >> 32 || index >> 32) throw ConfigError("SampleKey: epoch and sample index must be below 2^32");
    return epoch << 32 | index;
  }
};

struct Transform {
  std::optional<RandomResizedCrop> random_crop;  // training geometry
  std::optional<ResizeCenterCrop> center_crop;   // evaluation geometry
  double flip_p = 0.0;                           // chance of a horizontal flip
  Normalize normalize;

  // MAE pretraining: RandomResizedCrop(size, scale (0.2, 1), ratio (3/4, 4/3), bicubic) + flip 0.5.
  static Transform mae_pretrain(int size, Normalize n = Normalize::imagenet()) {
    return {RandomResizedCrop{size, 0.2, 1.0, 3.0 / 4.0, 4.0 / 3.0, Interpolation::bicubic}, std::nullopt, 0.5,
            std::move(n)};
  }

  void validate(int channels) const {
    if (random_crop && center_crop) throw ConfigError("Transform: choose random_crop or center_crop, not both");
    if (random_crop) random_crop->validate();
    if (center_crop) center_crop->validate();
    if (!(flip_p >= 0.0 && flip_p <= 1.0)) throw ConfigError("Transform: flip_p must lie in [0, 1]");
    normalize.validate(channels);
  }

  // {height, width} of the output for a source of height x width.
  std::array<int, 2> output_size(int height, int width) const {
    if (random_crop) return {random_crop->size, random_crop->size};
    if (center_crop) return {center_crop->crop, center_crop->crop};
    return {height, width};
  }

  // Writes src.channels x output_size floats to `out`. `ws` is the caller's scratch (one per thread).
  void apply(ImageView src, SampleKey key, float* out, Resampler& ws) const {
    const auto [oh, ow] = output_size(src.height, src.width);
    const PixelRect whole{0, 0, src.height, src.width};
    if (random_crop) {
      RandomStream rng(key.seed, RngPurpose::crop, key.coordinate());
      const PixelRect r = random_crop->sample(src.height, src.width, rng);
      Interpolation m = random_crop->interpolation;
      if (m == Interpolation::random) m = rng.uniform() < 0.5 ? Interpolation::bilinear : Interpolation::bicubic;
      ws.run(src, {double(r.top), double(r.left), double(r.height), double(r.width)}, r, m, out, oh, ow);
    } else if (center_crop) {
      ws.run(src, center_crop->box(src.height, src.width), whole, center_crop->interpolation, out, oh, ow);
    } else {
      const std::size_t n = std::size_t(src.channels) * std::size_t(oh) * std::size_t(ow);
      for (std::size_t i = 0; i < n; ++i) out[i] = float(src.data[i]);
    }

    bool flip = false;
    if (flip_p > 0.0) flip = RandomStream(key.seed, RngPurpose::flip, key.coordinate()).uniform() < flip_p;
    for (int c = 0; c < src.channels; ++c) {
      const float scale = normalize.scale(c), bias = normalize.bias(c);
      for (int y = 0; y < oh; ++y) {
        float* row = out + (std::size_t(c) * oh + std::size_t(y)) * std::size_t(ow);
        if (flip) std::reverse(row, row + ow);
        for (int x = 0; x < ow; ++x) row[x] = row[x] * scale + bias;
      }
    }
  }
};

}  // namespace vitfreeze::data
