#pragma once
// The Pillow 9 image operations that timm's RandAugment and torchvision's ColorJitter apply, on one
// uint8 CHW image (each channel a Pillow "L" band; 1 or 3 channels), with Pillow's arithmetic so that
// an image comes out as Pillow would leave it (checked against Pillow in test_augment.cpp, numbers
// from scripts/pil_reference.py):
//   point ops    autocontrast, equalize, invert, posterize, solarize, solarize_add (lookup tables)
//   enhance      brightness, contrast, color (saturation), sharpness: Image.blend(degenerate, image,
//                factor) in float, truncated, clipped when extrapolating
//   geometry     affine (Image.transform AFFINE: output pixel centre (x + .5, y + .5) maps to the
//                source point matrix . (x + .5, y + .5, 1)), bilinear or bicubic, outside: `fill`;
//                rotate (Image.rotate about the centre, counter-clockwise degrees)
#include <array>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "vitfreeze/core/error.hpp"
#include "vitfreeze/data/resample.hpp"

namespace vitfreeze::data::pil {

// One uint8 CHW image, modified in place.
struct Image {
  std::uint8_t* data = nullptr;
  int channels = 0, height = 0, width = 0;

  std::size_t plane() const { return std::size_t(height) * std::size_t(width); }
  std::uint8_t* band(int c) const { return data + std::size_t(c) * plane(); }
  void check() const {
    if (!data || (channels != 1 && channels != 3) || height < 1 || width < 1)
      throw ConfigError("pil::Image: 1 or 3 channels of a non-empty image");
  }
};

using Lut = std::array<std::uint8_t, 256>;

inline void apply_lut(const Image& im, int c, const Lut& lut) {
  std::uint8_t* p = im.band(c);
  for (std::size_t i = 0; i < im.plane(); ++i) p[i] = lut[p[i]];
}
inline void apply_lut(const Image& im, const Lut& lut) {
  for (int c = 0; c < im.channels; ++c) apply_lut(im, c, lut);
}
template <class F>
Lut make_lut(F&& f) {
  Lut lut{};
  for (int i = 0; i < 256; ++i) lut[std::size_t(i)] = std::uint8_t(f(i));
  return lut;
}

inline std::array<std::int64_t, 256> histogram(const Image& im, int c) {
  std::array<std::int64_t, 256> h{};
  const std::uint8_t* p = im.band(c);
  for (std::size_t i = 0; i < im.plane(); ++i) ++h[p[i]];
  return h;
}

// ---- point operations (ImageOps) ------------------------------------------------------------

inline void invert(const Image& im) { apply_lut(im, make_lut([](int i) { return 255 - i; })); }

// Keep the `bits` most significant bits (bits >= 8: unchanged, as timm).
inline void posterize(const Image& im, int bits) {
  if (bits >= 8) return;
  const int mask = ~((1 << (8 - std::max(bits, 0))) - 1);
  apply_lut(im, make_lut([&](int i) { return i & mask; }));
}

// Pixels at or above the threshold are inverted.
inline void solarize(const Image& im, int threshold) {
  apply_lut(im, make_lut([&](int i) { return i < threshold ? i : 255 - i; }));
}

// timm's solarize_add: pixels below the threshold gain `add` (clipped at 255).
inline void solarize_add(const Image& im, int add, int threshold = 128) {
  apply_lut(im, make_lut([&](int i) { return i < threshold ? std::min(255, std::max(0, i + add)) : i; }));
}

// Each band stretched so its darkest pixel is 0 and its brightest 255 (cutoff 0).
inline void autocontrast(const Image& im) {
  for (int c = 0; c < im.channels; ++c) {
    const auto h = histogram(im, c);
    int lo = 0, hi = 255;
    while (lo < 256 && h[std::size_t(lo)] == 0) ++lo;
    while (hi >= 0 && h[std::size_t(hi)] == 0) --hi;
    if (hi <= lo) continue;  // one grey level: unchanged
    const double scale = 255.0 / (hi - lo), offset = -lo * scale;
    apply_lut(im, c, make_lut([&](int i) { return std::clamp(int(i * scale + offset), 0, 255); }));
  }
}

// Histogram equalisation per band, Pillow's lookup: step = (pixels - count of the last level) / 255.
inline void equalize(const Image& im) {
  for (int c = 0; c < im.channels; ++c) {
    const auto h = histogram(im, c);
    std::int64_t total = 0, last = 0;
    int levels = 0;
    for (std::int64_t n : h)
      if (n) total += n, last = n, ++levels;
    if (levels <= 1) continue;
    const std::int64_t step = (total - last) / 255;
    if (step == 0) continue;
    std::int64_t n = step / 2;
    Lut lut{};
    for (int i = 0; i < 256; ++i) {
      lut[std::size_t(i)] = std::uint8_t(std::min<std::int64_t>(n / step, 255));
      n += h[std::size_t(i)];
    }
    apply_lut(im, c, lut);
  }
}

// ---- enhance (ImageEnhance) -----------------------------------------------------------------

// Image.blend(degenerate, image, factor), band by band: degenerate + factor (image - degenerate) in
// float, truncated; clipped to 0..255 (Pillow clips only when extrapolating, where it can leave it).
inline void blend_from(const Image& im, const std::uint8_t* degenerate, float factor) {
  const std::size_t n = std::size_t(im.channels) * im.plane();
  for (std::size_t i = 0; i < n; ++i) {
    const float v = float(int(degenerate[i])) + factor * float(int(im.data[i]) - int(degenerate[i]));
    im.data[i] = v <= 0.0f ? 0 : v >= 255.0f ? 255 : std::uint8_t(v);
  }
}

// Pillow's "L" conversion of an RGB pixel (ITU-R 601-2 luma, rounded), or the band itself.
inline std::vector<std::uint8_t> luma(const Image& im) {
  std::vector<std::uint8_t> l(im.plane());
  for (std::size_t i = 0; i < im.plane(); ++i)
    l[i] = im.channels == 1 ? im.data[i]
                            : std::uint8_t((im.band(0)[i] * 19595 + im.band(1)[i] * 38470 + im.band(2)[i] * 7471 + 0x8000) >> 16);
  return l;
}

inline void brightness(const Image& im, double factor) {
  const std::vector<std::uint8_t> black(std::size_t(im.channels) * im.plane(), 0);
  blend_from(im, black.data(), float(factor));
}

// Towards the mean grey level (of the luma, rounded) of the whole image.
inline void contrast(const Image& im, double factor) {
  const auto l = luma(im);
  double sum = 0;
  for (std::uint8_t v : l) sum += v;
  const std::uint8_t mean = std::uint8_t(int(sum / double(l.size()) + 0.5));
  const std::vector<std::uint8_t> grey(std::size_t(im.channels) * im.plane(), mean);
  blend_from(im, grey.data(), float(factor));
}

// Saturation: towards the image's own luma (identity on one channel).
inline void color(const Image& im, double factor) {
  if (im.channels == 1) return;
  const auto l = luma(im);
  std::vector<std::uint8_t> grey(std::size_t(im.channels) * im.plane());
  for (int c = 0; c < im.channels; ++c) std::copy(l.begin(), l.end(), grey.begin() + std::ptrdiff_t(c * im.plane()));
  blend_from(im, grey.data(), float(factor));
}

// Towards ImageFilter.SMOOTH (3x3 kernel 1 1 1 / 1 5 1 / 1 1 1 over 13, rounded; the border
// pixels are left as they are).
inline void sharpness(const Image& im, double factor) {
  std::vector<std::uint8_t> smooth(im.data, im.data + std::size_t(im.channels) * im.plane());
  const int H = im.height, W = im.width;
  for (int c = 0; c < im.channels; ++c) {
    const std::uint8_t* in = im.band(c);
    std::uint8_t* out = smooth.data() + std::size_t(c) * im.plane();
    for (int y = 1; y + 1 < H; ++y)
      for (int x = 1; x + 1 < W; ++x) {
        float s = 0;
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) s += float(in[(y + dy) * W + x + dx]) * (dx == 0 && dy == 0 ? 5.0f : 1.0f);
        const float v = s / 13.0f;
        out[y * W + x] = std::uint8_t(std::clamp(int(v + 0.5f), 0, 255));
      }
  }
  blend_from(im, smooth.data(), float(factor));
}

// ---- geometry (Image.transform AFFINE, Image.rotate) ------------------------------------------

namespace detail {
inline int clip(int v, int n) { return v < 0 ? 0 : v < n ? v : n - 1; }
inline double cubic(double v1, double v2, double v3, double v4, double d) {  // Pillow's BICUBIC (a = -1)
  const double p1 = v2, p2 = -v1 + v3, p3 = 2 * (v1 - v2) + v3 - v4, p4 = -v1 + v2 - v3 + v4;
  return p1 + d * (p2 + d * (p3 + d * p4));
}
}  // namespace detail

// matrix (a, b, c, d, e, f): output pixel (x, y) reads the source at (a X + b Y + c, d X + e Y + f),
// X = x + 0.5, Y = y + 0.5; a source point outside the image gives `fill[channel]`.
inline void affine(const Image& im, const std::array<double, 6>& m, Interpolation interpolation,
                   std::span<const std::uint8_t> fill) {
  if (interpolation == Interpolation::random) throw ConfigError("pil::affine: choose the interpolation first");
  const int H = im.height, W = im.width;
  std::vector<std::uint8_t> src(im.data, im.data + std::size_t(im.channels) * im.plane());
  for (int c = 0; c < im.channels; ++c) {
    const std::uint8_t* in = src.data() + std::size_t(c) * im.plane();
    std::uint8_t* out = im.band(c);
    const std::uint8_t outside = fill[fill.size() == 1 ? 0 : std::size_t(c)];
    auto at = [&](int y, int x) { return double(in[y * W + detail::clip(x, W)]); };
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        const double X = x + 0.5, Y = y + 0.5;
        double xin = m[0] * X + m[1] * Y + m[2], yin = m[3] * X + m[4] * Y + m[5];
        std::uint8_t& o = out[y * W + x];
        if (xin < 0.0 || xin >= W || yin < 0.0 || yin >= H) {
          o = outside;
          continue;
        }
        xin -= 0.5, yin -= 0.5;
        const int xi = int(std::floor(xin)), yi = int(std::floor(yin));
        const double dx = xin - xi, dy = yin - yi;
        if (interpolation == Interpolation::bilinear) {
          const int y0 = detail::clip(yi, H);
          double v1 = at(y0, xi) + (at(y0, xi + 1) - at(y0, xi)) * dx, v2 = v1;
          if (yi + 1 >= 0 && yi + 1 < H) v2 = at(yi + 1, xi) + (at(yi + 1, xi + 1) - at(yi + 1, xi)) * dx;
          o = std::uint8_t(v1 + (v2 - v1) * dy);
        } else {
          auto row = [&](int r) { return detail::cubic(at(r, xi - 1), at(r, xi), at(r, xi + 1), at(r, xi + 2), dx); };
          const double v1 = row(detail::clip(yi - 1, H));
          const double v2 = yi >= 0 && yi < H ? row(yi) : v1;
          const double v3 = yi + 1 >= 0 && yi + 1 < H ? row(yi + 1) : v2;
          const double v4 = yi + 2 >= 0 && yi + 2 < H ? row(yi + 2) : v3;
          const double v = detail::cubic(v1, v2, v3, v4, dy);
          o = v <= 0.0 ? 0 : v >= 255.0 ? 255 : std::uint8_t(v);
        }
      }
  }
}

// Image.rotate(degrees) without expand: counter-clockwise about the image centre.
inline void rotate(const Image& im, double degrees, Interpolation interpolation, std::span<const std::uint8_t> fill) {
  if (std::fmod(degrees, 360.0) == 0.0) return;
  const double a = -degrees * M_PI / 180.0;
  auto r15 = [](double v) { return std::nearbyint(v * 1e15) / 1e15; };  // Pillow rounds to 15 digits
  std::array<double, 6> m{r15(std::cos(a)), r15(std::sin(a)), 0.0, r15(-std::sin(a)), r15(std::cos(a)), 0.0};
  const double cx = im.width / 2.0, cy = im.height / 2.0;
  m[2] = m[0] * -cx + m[1] * -cy + cx;
  m[5] = m[3] * -cx + m[4] * -cy + cy;
  affine(im, m, interpolation, fill);
}

}  // namespace vitfreeze::data::pil
