#pragma once
// A synthetic image-classification set for tests and smoke runs that must not depend on a data
// package: 28x28 grey images of stripes whose orientation and period encode one of 4 classes,
// with uniform noise.
#include <algorithm>

#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/data/dataset.hpp"

namespace vitfreeze::testing {

inline data::Dataset stripes(int count, std::uint64_t seed) {
  data::Dataset d;
  d.name = "stripes";
  d.count = count, d.channels = 1, d.height = 28, d.width = 28, d.num_classes = 4;
  d.pixels.resize(std::size_t(count) * 784);
  RandomStream rng(seed, RngPurpose::test);
  for (int n = 0; n < count; ++n) {
    const int cls = n % 4;
    d.labels.push_back(cls);
    for (int y = 0; y < 28; ++y)
      for (int x = 0; x < 28; ++x) {
        const int v = cls == 0 ? x : cls == 1 ? y : cls == 2 ? x + y : x - y + 28;
        const double base = ((v / (2 + cls)) % 2) * 200.0 + 20.0;
        d.pixels[std::size_t(n) * 784 + std::size_t(y * 28 + x)] = std::uint8_t(std::min(255.0, base + 30 * rng.uniform()));
      }
  }
  return d;
}

}  // namespace vitfreeze::testing
