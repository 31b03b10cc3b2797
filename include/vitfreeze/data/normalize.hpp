#pragma once
// Per-channel normalisation with torchvision's convention: pixels are first scaled to [0, 1]
// (ToTensor), then out = (x - mean[c]) / std[c], so mean and std are given on the [0, 1] scale.
// A single value applies to every channel.
#include <string>
#include <vector>

#include "vitfreeze/core/error.hpp"

namespace vitfreeze::data {

struct Normalize {
  std::vector<float> mean{0.0f};
  std::vector<float> stddev{1.0f};

  static Normalize unit() { return {}; }  // x / 255 only
  static Normalize imagenet() { return {{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}}; }
  // Train-split statistics, machine-facts §1: 72.94 / 90.02 on the 0..255 scale.
  static Normalize fashion_mnist() { return {{float(72.94 / 255.0)}, {float(90.02 / 255.0)}}; }

  void validate(int channels) const {
    auto fits = [&](std::size_t n) { return n == 1 || n == std::size_t(channels); };
    if (!fits(mean.size()) || !fits(stddev.size()))
      throw ConfigError("Normalize: mean/std need 1 or " + std::to_string(channels) + " values");
    for (float s : stddev)
      if (!(s > 0.0f)) throw ConfigError("Normalize: every std must be positive");
  }

  // out = x * scale + bias for x on the 0..255 scale.
  float scale(int c) const { return 1.0f / (255.0f * pick(stddev, c)); }
  float bias(int c) const { return -pick(mean, c) / pick(stddev, c); }

 private:
  static float pick(const std::vector<float>& v, int c) { return v.size() == 1 ? v[0] : v[std::size_t(c)]; }
};

}  // namespace vitfreeze::data
