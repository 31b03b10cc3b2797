#pragma once
// Dataset: a labelled image collection held in memory as uint8 CHW, one contiguous array for all
// images. Every image has the same size: the loader then indexes by multiplication and never
// allocates per sample (readers of variable-size sources resize at load time, see image_folder.hpp).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vitfreeze/core/error.hpp"

namespace vitfreeze::data {

enum class Split { train, test };

inline const char* split_name(Split s) { return s == Split::train ? "train" : "test"; }

// One file (or record) a reader left out because the caller asked it to (skip_bad options).
struct SkippedFile {
  std::string file;
  std::string reason;
};

struct Dataset {
  std::string name;
  std::int64_t count = 0;
  int channels = 0;
  int height = 0;
  int width = 0;
  int num_classes = 0;
  std::vector<std::uint8_t> pixels;   // count * channels * height * width, image-major, CHW within
  std::vector<std::int32_t> labels;   // count values in [0, num_classes)
  std::vector<std::string> class_names;  // may be empty (IDX, CIFAR give only ids)
  std::vector<SkippedFile> skipped;      // what a skip_bad reader left out, in load order

  std::size_t image_size() const { return std::size_t(channels) * std::size_t(height) * std::size_t(width); }
  std::span<const std::uint8_t> image(std::int64_t i) const {
    return {pixels.data() + std::size_t(i) * image_size(), image_size()};
  }
  std::span<std::uint8_t> image(std::int64_t i) {
    return {pixels.data() + std::size_t(i) * image_size(), image_size()};
  }

  // Throws ConfigError if the fields disagree with each other (sizes, label range).
  void validate() const {
    auto fail = [&](const std::string& why) { throw ConfigError("Dataset '" + name + "': " + why); };
    if (count < 0 || channels <= 0 || height <= 0 || width <= 0 || num_classes <= 0)
      fail("count, channels, height, width and num_classes must be positive");
    if (pixels.size() != std::size_t(count) * image_size())
      fail("pixels has " + std::to_string(pixels.size()) + " bytes, expected " +
           std::to_string(std::size_t(count) * image_size()));
    if (labels.size() != std::size_t(count))
      fail("labels has " + std::to_string(labels.size()) + " entries, expected " + std::to_string(count));
    for (std::size_t i = 0; i < labels.size(); ++i)
      if (labels[i] < 0 || labels[i] >= num_classes)
        fail("label " + std::to_string(labels[i]) + " of image " + std::to_string(i) + " outside [0, " +
             std::to_string(num_classes) + ")");
  }
};

// Per-channel mean and standard deviation (population) of the pixels on the 0..255 scale.
struct PixelStats {
  std::vector<double> mean;
  std::vector<double> stddev;
};

inline PixelStats pixel_stats(const Dataset& d) {
  PixelStats s{std::vector<double>(d.channels, 0.0), std::vector<double>(d.channels, 0.0)};
  const std::size_t plane = std::size_t(d.height) * std::size_t(d.width);
  for (int c = 0; c < d.channels; ++c) {
    // Integer sums are exact: 255^2 * 2^40 pixels still fits in 64 bits.
    std::uint64_t sum = 0, sum_sq = 0;
    for (std::int64_t i = 0; i < d.count; ++i) {
      const std::uint8_t* p = d.image(i).data() + std::size_t(c) * plane;
      for (std::size_t k = 0; k < plane; ++k) {
        sum += p[k];
        sum_sq += std::uint64_t(p[k]) * p[k];
      }
    }
    const double n = double(plane) * double(d.count);
    if (n == 0) continue;
    s.mean[c] = double(sum) / n;
    s.stddev[c] = std::sqrt(std::max(0.0, double(sum_sq) / n - s.mean[c] * s.mean[c]));
  }
  return s;
}

// How many images carry each label.
inline std::vector<std::int64_t> class_counts(const Dataset& d) {
  std::vector<std::int64_t> n(std::size_t(std::max(d.num_classes, 0)), 0);
  for (std::int32_t y : d.labels)
    if (y >= 0 && y < d.num_classes) ++n[std::size_t(y)];
  return n;
}

}  // namespace vitfreeze::data
