#pragma once
// Resampling a box of a uint8 CHW image to a float CHW output with a separable filter, following
// Pillow's Image.resize (what torchvision applies to PIL images, and so what MAE trained with):
// output pixel x samples around the centre box.left + (x + 0.5) * scale, the filter widens by
// `scale` when shrinking (antialiasing), taps are limited to a clip rectangle and the weights are
// renormalised there. Bicubic uses Pillow's a = -0.5. Results stay in 0..255 but are not rounded
// to integers (Pillow rounds to uint8; the difference is below 0.5/255 after normalisation).
//
// The Resampler owns its coefficient and intermediate buffers and only grows them, so after the
// first few samples a worker resamples without allocating.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "vitfreeze/core/error.hpp"

namespace vitfreeze::data {

enum class Interpolation : std::uint8_t {
  bilinear,
  bicubic,
  random,  // bilinear or bicubic with equal chance per sample (timm "random", used by MAE-lite)
};

// A uint8 CHW image owned elsewhere.
struct ImageView {
  const std::uint8_t* data = nullptr;
  int channels = 0;
  int height = 0;
  int width = 0;
};

// Whole pixels: rows [top, top + height), columns [left, left + width).
struct PixelRect {
  int top = 0;
  int left = 0;
  int height = 0;
  int width = 0;
  friend bool operator==(const PixelRect&, const PixelRect&) = default;
};

// A region in continuous source coordinates (pixel edges): pixel k covers [k, k + 1).
struct CropBox {
  double top = 0;
  double left = 0;
  double height = 0;
  double width = 0;
};

namespace detail {

inline double filter_support(Interpolation m) { return m == Interpolation::bicubic ? 2.0 : 1.0; }

inline double filter_weight(Interpolation m, double x) {
  x = std::abs(x);
  if (m == Interpolation::bicubic) {
    constexpr double a = -0.5;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
  }
  return x < 1.0 ? 1.0 - x : 0.0;
}

// Filter taps of one axis: output i reads source [first[i], first[i] + count[i]) with
// weights[i * stride ...].
struct AxisTaps {
  std::vector<int> first;
  std::vector<int> count;
  std::vector<float> weights;
  int stride = 0;

  // Box [start, start + extent) onto `out` samples, taps restricted to [lo, hi).
  void compute(double start, double extent, int lo, int hi, int out, Interpolation m) {
    const double scale = extent / out;
    const double filter_scale = std::max(scale, 1.0);
    const double support = filter_support(m) * filter_scale;
    stride = int(std::ceil(support)) * 2 + 1;
    first.resize(std::size_t(out));
    count.resize(std::size_t(out));
    weights.resize(std::size_t(out) * std::size_t(stride));
    for (int i = 0; i < out; ++i) {
      const double centre = start + (i + 0.5) * scale;
      // Pillow truncates (int cast) relative to the clip origin before clamping.
      const int begin = lo + std::max(int(centre - lo - support + 0.5), 0);
      const int end = lo + std::min(int(centre - lo + support + 0.5), hi - lo);
      const int n = std::clamp(end - begin, 0, stride);
      float* w = weights.data() + std::size_t(i) * std::size_t(stride);
      double sum = 0.0;
      for (int k = 0; k < n; ++k) sum += w[k] = float(filter_weight(m, (begin + k - centre + 0.5) / filter_scale));
      if (sum != 0.0)
        for (int k = 0; k < n; ++k) w[k] = float(w[k] / sum);
      first[std::size_t(i)] = begin;
      count[std::size_t(i)] = n;
    }
  }
};

}  // namespace detail

class Resampler {
 public:
  // Resamples `box` of `src` to out (channels x out_h x out_w floats in 0..255). Taps never read
  // outside `clip`, which must lie inside the image (torchvision crops before it resizes, so for a
  // random crop the clip is the crop itself; for resize-then-centre-crop it is the whole image).
  void run(ImageView src, CropBox box, PixelRect clip, Interpolation m, float* out, int out_h, int out_w) {
    if (m == Interpolation::random) throw ConfigError("Resampler::run: resolve Interpolation::random per sample first");
    if (out_h <= 0 || out_w <= 0 || box.height <= 0 || box.width <= 0 || clip.height <= 0 || clip.width <= 0 ||
        clip.top < 0 || clip.left < 0 || clip.top + clip.height > src.height || clip.left + clip.width > src.width)
      throw ConfigError("Resampler::run: empty output or box, or clip rectangle outside the image");
    rows_.compute(box.top, box.height, clip.top, clip.top + clip.height, out_h, m);
    cols_.compute(box.left, box.width, clip.left, clip.left + clip.width, out_w, m);

    // Horizontal pass over just the source rows the vertical taps will read.
    const int row0 = rows_.first.front();
    const int row_count = rows_.first.back() + rows_.count.back() - row0;
    tmp_.resize(std::size_t(src.channels) * std::size_t(std::max(row_count, 0)) * std::size_t(out_w));
    for (int c = 0; c < src.channels; ++c)
      for (int r = 0; r < row_count; ++r) {
        const std::uint8_t* in = src.data + (std::size_t(c) * src.height + std::size_t(row0 + r)) * src.width;
        float* dst = tmp_.data() + (std::size_t(c) * row_count + std::size_t(r)) * std::size_t(out_w);
        for (int x = 0; x < out_w; ++x) {
          const float* w = cols_.weights.data() + std::size_t(x) * std::size_t(cols_.stride);
          const std::uint8_t* p = in + cols_.first[std::size_t(x)];
          float acc = 0.f;
          for (int k = 0; k < cols_.count[std::size_t(x)]; ++k) acc += w[k] * float(p[k]);
          dst[x] = acc;
        }
      }

    // Vertical pass, row by row so the inner loop runs along contiguous memory.
    for (int c = 0; c < src.channels; ++c)
      for (int y = 0; y < out_h; ++y) {
        float* dst = out + (std::size_t(c) * out_h + std::size_t(y)) * std::size_t(out_w);
        std::fill(dst, dst + out_w, 0.f);
        const float* w = rows_.weights.data() + std::size_t(y) * std::size_t(rows_.stride);
        for (int k = 0; k < rows_.count[std::size_t(y)]; ++k) {
          const float* line =
              tmp_.data() + (std::size_t(c) * row_count + std::size_t(rows_.first[std::size_t(y)] - row0 + k)) *
                                std::size_t(out_w);
          for (int x = 0; x < out_w; ++x) dst[x] += w[k] * line[x];
        }
        for (int x = 0; x < out_w; ++x) dst[x] = std::clamp(dst[x], 0.f, 255.f);  // bicubic overshoots
      }
  }

 private:
  detail::AxisTaps rows_, cols_;
  std::vector<float> tmp_;
};

}  // namespace vitfreeze::data
