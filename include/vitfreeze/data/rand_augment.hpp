#pragma once
// timm's RandAugment (rand_augment_transform), as MAE (`rand-m9-mstd0.5-inc1`) and MAE-lite
// (`rand-m10-mstd0.5-inc1`) fine-tune with it: `layers` operations drawn with replacement from the
// list, each applied with probability 0.5 at a magnitude drawn from N(m, mstd) clipped to [0, 10],
// on the uint8 image after the crop and flip (data/pil_ops.hpp: Pillow's arithmetic). Geometric
// operations fill with the data set's mean grey level (timm's img_mean) and use the recipe's
// interpolation.
//
// The operations (timm's "increasing" set with inc1, its original set with inc0): AutoContrast,
// Equalize, Invert, Rotate (30 m/10 degrees), Posterize, Solarize, SolarizeAdd, Color, Contrast,
// Brightness, Sharpness, ShearX/Y (0.3 m/10), TranslateX/YRel (0.45 m/10 of the side), signs drawn
// at random. On one channel (Fashion-MNIST) Color is left out: it blends an image with its own luma,
// which is the image itself, so it would only dilute the draws. Every other operation changes a grey
// 28x28 image in a way a photograph of the same object could show, and is kept.
//
// Determinism: the draws of one image come from a RandomStream the caller keys by (seed, epoch,
// sample), so an image is augmented the same way whatever the batch, worker or rank count.
#include <cctype>
#include <charconv>
#include <cmath>
#include <string>
#include <string_view>
#include <vector>

#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/data/pil_ops.hpp"

namespace vitfreeze::data {

enum class AugmentOp {
  auto_contrast, equalize, invert, rotate, posterize, solarize, solarize_add, color, contrast, brightness,
  sharpness, shear_x, shear_y, translate_x, translate_y
};

struct RandAugment {
  double magnitude = 9.0;      // m, 0..10
  int layers = 2;              // n: operations per image
  double magnitude_std = 0.0;  // mstd: per-operation magnitude noise (inf: uniform in [0, m])
  double magnitude_max = 10.0;
  bool increasing = false;     // inc1: the set whose strength grows with m
  double probability = 0.5;    // of each drawn operation
  Interpolation interpolation = Interpolation::bicubic;

  // timm's config string: "rand" then dash-separated m<float>, n<int>, mstd<float>, mmax<float>,
  // inc<0|1>, p<float> (e.g. rand-m9-mstd0.5-inc1).
  static RandAugment parse(std::string_view config) {
    RandAugment r;
    auto fail = [&](const std::string& why) -> RandAugment {
      throw ConfigError("RandAugment \"" + std::string(config) + "\": " + why);
    };
    if (config.substr(0, 4) != "rand") return fail("must start with rand");
    std::string_view rest = config.substr(4);
    while (!rest.empty()) {
      if (rest[0] != '-') return fail("expected '-' between settings");
      rest.remove_prefix(1);
      const std::size_t end = std::min(rest.find('-'), rest.size());
      const std::string_view part = rest.substr(0, end);
      rest.remove_prefix(end);
      std::size_t key_length = 0;
      while (key_length < part.size() && std::isalpha(static_cast<unsigned char>(part[key_length]))) ++key_length;
      const std::string_view key = part.substr(0, key_length), text = part.substr(key_length);
      double value = 0;
      const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || !std::isfinite(value))
        return fail("\"" + std::string(part) + "\" has no number");
      if (key == "m") r.magnitude = value;
      else if (key == "n") r.layers = int(value);
      else if (key == "mstd") r.magnitude_std = value;
      else if (key == "mmax") r.magnitude_max = value;
      else if (key == "inc") r.increasing = value != 0;
      else if (key == "p") r.probability = value;
      else return fail("unknown setting \"" + std::string(key) + "\"");
    }
    r.validate();
    return r;
  }

  void validate() const {
    if (!(magnitude >= 0 && magnitude_max > 0 && magnitude_std >= 0 && layers >= 0 && layers <= 16 && probability >= 0 &&
          probability <= 1) ||
        interpolation == Interpolation::random)
      throw ConfigError("RandAugment: need m >= 0, 0 <= n <= 16, mstd >= 0, 0 <= p <= 1 and a fixed interpolation");
  }

  // The operations drawn from for an image of `channels` channels (see the top of this file).
  static std::vector<AugmentOp> operations(int channels) {
    std::vector<AugmentOp> ops;
    for (int k = 0; k <= int(AugmentOp::translate_y); ++k)
      if (channels != 1 || AugmentOp(k) != AugmentOp::color) ops.push_back(AugmentOp(k));
    return ops;
  }

  // One image, uint8 CHW in place. fill: the grey level (per channel, or one) of uncovered pixels.
  void apply(const pil::Image& im, RandomStream& rng, std::span<const std::uint8_t> fill) const {
    im.check();
    const auto ops = operations(im.channels);
    for (int l = 0; l < layers; ++l) {
      const AugmentOp op = ops[rng.below(std::uint32_t(ops.size()))];
      if (probability < 1.0 && rng.uniform() > probability) continue;
      double m = magnitude;
      if (std::isinf(magnitude_std)) m = rng.uniform() * magnitude;
      else if (magnitude_std > 0) m = magnitude + magnitude_std * rng.normal();
      m = std::clamp(m, 0.0, magnitude_max);
      run(op, m / 10.0, im, rng, fill);
    }
  }

  // Operation `op` at level = magnitude / 10 (timm's level functions).
  void run(AugmentOp op, double level, const pil::Image& im, RandomStream& rng, std::span<const std::uint8_t> fill) const {
    auto signed_level = [&](double v) { return rng.uniform() > 0.5 ? -v : v; };  // timm's _randomly_negate
    auto enhance = [&] { return increasing ? std::max(0.1, 1.0 + signed_level(level * 0.9)) : level * 1.8 + 0.1; };
    switch (op) {
      case AugmentOp::auto_contrast: return pil::autocontrast(im);
      case AugmentOp::equalize: return pil::equalize(im);
      case AugmentOp::invert: return pil::invert(im);
      case AugmentOp::rotate: return pil::rotate(im, signed_level(level * 30.0), interpolation, fill);
      case AugmentOp::posterize: return pil::posterize(im, increasing ? 4 - int(level * 4) : int(level * 4));
      case AugmentOp::solarize: return pil::solarize(im, increasing ? 256 - int(level * 256) : int(level * 256));
      case AugmentOp::solarize_add: return pil::solarize_add(im, int(level * 110));
      case AugmentOp::color: return pil::color(im, enhance());
      case AugmentOp::contrast: return pil::contrast(im, enhance());
      case AugmentOp::brightness: return pil::brightness(im, enhance());
      case AugmentOp::sharpness: return pil::sharpness(im, enhance());
      case AugmentOp::shear_x: return pil::affine(im, {1, signed_level(level * 0.3), 0, 0, 1, 0}, interpolation, fill);
      case AugmentOp::shear_y: return pil::affine(im, {1, 0, 0, signed_level(level * 0.3), 1, 0}, interpolation, fill);
      case AugmentOp::translate_x:
        return pil::affine(im, {1, 0, signed_level(level * 0.45) * im.width, 0, 1, 0}, interpolation, fill);
      case AugmentOp::translate_y:
        return pil::affine(im, {1, 0, 0, 0, 1, signed_level(level * 0.45) * im.height}, interpolation, fill);
    }
  }
};

}  // namespace vitfreeze::data
