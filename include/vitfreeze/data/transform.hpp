#pragma once
// The per-sample pipeline: geometry (random resized crop for training, resize + centre crop for
// evaluation, or none), horizontal flip, then (fine-tuning recipes) RandAugment or else colour jitter
// on the image rounded to uint8 as Pillow keeps it, normalisation, and random erasing; written as
// float CHW into a caller's buffer. timm's order, and its rule that colour jitter is skipped when
// RandAugment is set. Randomness is a pure function of (seed, epoch, sample index): the crop draws
// from RandomStream(seed, crop, epoch << 32 | index), the flip, RandAugment, colour jitter and
// erasing from the same coordinates with their own purposes, so a sample is augmented the same way
// whatever the batch size, worker count or rank count. Without the fine-tuning parts the output is
// what it always was.
#include <array>
#include <cstdint>
#include <optional>

#include <cmath>
#include <vector>

#include "vitfreeze/data/color_jitter.hpp"
#include "vitfreeze/data/crop.hpp"
#include "vitfreeze/data/normalize.hpp"
#include "vitfreeze/data/rand_augment.hpp"
#include "vitfreeze/data/random_erasing.hpp"
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
  std::optional<RandAugment> rand_augment{};     // fine-tuning: timm's RandAugment, or else
  std::optional<ColorJitter> color_jitter{};     //   colour jitter (ignored when RandAugment is set)
  std::optional<RandomErasing> random_erasing{}; // fine-tuning: on the normalised image

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
    if (rand_augment) rand_augment->validate();
    if (color_jitter) color_jitter->validate();
    if (random_erasing) random_erasing->validate();
    if ((rand_augment || color_jitter) && channels != 1 && channels != 3)
      throw ConfigError("Transform: RandAugment and colour jitter take 1 or 3 channels");
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
    if (rand_augment || color_jitter) {
      adjust_colours(out, src.channels, oh, ow, flip, key);
      flip = false;  // done
    }
    for (int c = 0; c < src.channels; ++c) {
      const float scale = normalize.scale(c), bias = normalize.bias(c);
      for (int y = 0; y < oh; ++y) {
        float* row = out + (std::size_t(c) * oh + std::size_t(y)) * std::size_t(ow);
        if (flip) std::reverse(row, row + ow);
        for (int x = 0; x < ow; ++x) row[x] = row[x] * scale + bias;
      }
    }
    if (random_erasing) {
      RandomStream rng(key.seed, RngPurpose::random_erasing, key.coordinate());
      random_erasing->apply(out, src.channels, oh, ow, rng);
    }
  }

 private:
  // RandAugment, or else colour jitter, on the (flipped) image as Pillow holds it: uint8, rounded.
  void adjust_colours(float* image, int channels, int height, int width, bool flip, SampleKey key) const {
    thread_local std::vector<std::uint8_t> bytes;
    bytes.resize(std::size_t(channels) * std::size_t(height) * std::size_t(width));
    for (int c = 0; c < channels; ++c)
      for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x) {
          const std::size_t row = (std::size_t(c) * height + std::size_t(y)) * std::size_t(width);
          bytes[row + std::size_t(x)] =
              std::uint8_t(std::clamp(std::lround(image[row + std::size_t(flip ? width - 1 - x : x)]), 0l, 255l));
        }
    const pil::Image im{bytes.data(), channels, height, width};
    if (rand_augment) {
      std::vector<std::uint8_t> fill(std::size_t(channels), 0);  // timm's img_mean: the data's mean grey level
      for (int c = 0; c < channels; ++c)
        fill[std::size_t(c)] = std::uint8_t(std::clamp(
            std::lround(255.0 * normalize.mean[normalize.mean.size() == 1 ? 0 : std::size_t(c)]), 0l, 255l));
      RandomStream rng(key.seed, RngPurpose::rand_augment, key.coordinate());
      rand_augment->apply(im, rng, fill);
    } else {
      RandomStream rng(key.seed, RngPurpose::color_jitter, key.coordinate());
      color_jitter->apply(im, rng);
    }
    for (std::size_t i = 0; i < bytes.size(); ++i) image[i] = float(bytes[i]);
  }
};

}  // namespace vitfreeze::data
