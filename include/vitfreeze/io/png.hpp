#pragma once
// PNG output (via stb_image_write, encoded in memory and written atomically) and image grids for
// reconstruction pictures: one image per cell, e.g. rows of original / masked / reconstruction.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "vitfreeze/core/error.hpp"
#include "vitfreeze/core/tensor.hpp"
#include "vitfreeze/io/atomic_file.hpp"
#include "vitfreeze/io/stb_image_write_impl.hpp"

namespace vitfreeze::io {

// An 8-bit image, row-major, channels interleaved (HWC): 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA.
struct Image {
  int width = 0, height = 0, channels = 0;
  std::vector<std::uint8_t> pixels;

  Image() = default;
  Image(int w, int h, int c, std::uint8_t fill = 0) : width(w), height(h), channels(c) {
    if (w <= 0 || h <= 0 || c < 1 || c > 4)
      throw ConfigError("Image: need width, height > 0 and 1-4 channels, got " + std::to_string(w) + "x" +
                        std::to_string(h) + "x" + std::to_string(c));
    pixels.assign(static_cast<std::size_t>(w) * static_cast<std::size_t>(h) * static_cast<std::size_t>(c), fill);
  }
  std::uint8_t* at(int x, int y) {
    return pixels.data() + (static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x)) *
                               static_cast<std::size_t>(channels);
  }
  const std::uint8_t* at(int x, int y) const { return const_cast<Image*>(this)->at(x, y); }
};

// PNG bytes of a width x height x channels 8-bit image.
inline std::vector<std::byte> encode_png(int width, int height, int channels, const std::uint8_t* pixels) {
  if (width <= 0 || height <= 0 || channels < 1 || channels > 4 || !pixels)
    throw ConfigError("encode_png: need width, height > 0, 1-4 channels and pixel data, got " + std::to_string(width) +
                      "x" + std::to_string(height) + "x" + std::to_string(channels));
  // stb uses int for sizes.
  if (static_cast<long long>(width) * channels * height > INT_MAX / 2)
    throw ConfigError("encode_png: image too large for the PNG encoder");
  std::vector<std::byte> out;
  auto append = [](void* context, void* data, int size) {
    auto* v = static_cast<std::vector<std::byte>*>(context);
    const auto* p = static_cast<const std::byte*>(data);
    v->insert(v->end(), p, p + size);
  };
  if (!stbi_write_png_to_func(append, &out, width, height, channels, pixels, width * channels))
    throw ConfigError("encode_png: the PNG encoder failed (out of memory?)");
  return out;
}

// Writes a PNG atomically. ConfigError for bad dimensions, FileError naming the path on I/O failure.
inline void write_png(const std::filesystem::path& path, int width, int height, int channels, const std::uint8_t* pixels) {
  write_file_atomic(path, std::span<const std::byte>(encode_png(width, height, channels, pixels)));
}
inline void write_png(const std::filesystem::path& path, const Image& image) {
  write_png(path, image.width, image.height, image.channels, image.pixels.data());
}

// Maps [lo, hi] linearly to [0, 255], clamping; NaN becomes 0.
inline std::uint8_t to_byte(float v, float lo, float hi) {
  const float t = (v - lo) / (hi - lo);
  if (!(t > 0.0f)) return 0;  // also catches NaN
  if (t >= 1.0f) return 255;
  return static_cast<std::uint8_t>(std::lround(t * 255.0f));
}

// Lays out images ([C, H, W] with C = 1 or 3, or [H, W]; all the same H and W) in rows of
// `columns`, separated and framed by `pad` white pixels. Values in [lo, hi] map to 0..255. The grid
// is RGB when any image is, with gray images repeated over the three channels.
inline Image render_image_grid(const std::vector<Tensor<float>>& images_chw, int columns, int pad = 2, float lo = 0.0f,
                               float hi = 1.0f) {
  if (images_chw.empty()) throw ConfigError("image grid: no images");
  if (columns <= 0 || pad < 0) throw ConfigError("image grid: need columns > 0 and pad >= 0");
  if (!(hi > lo)) throw ConfigError("image grid: need hi > lo for the value range");
  auto dims = [](const Tensor<float>& t, int& c, int& h, int& w) {
    if (t.rank() == 2) {
      c = 1, h = static_cast<int>(t.dim(0)), w = static_cast<int>(t.dim(1));
    } else if (t.rank() == 3 && (t.dim(0) == 1 || t.dim(0) == 3)) {
      c = static_cast<int>(t.dim(0)), h = static_cast<int>(t.dim(1)), w = static_cast<int>(t.dim(2));
    } else {
      throw ShapeError("image grid: expected [C, H, W] with C = 1 or 3, or [H, W], got " + t.shape().str());
    }
  };
  int c0, h, w, out_channels = 1;
  dims(images_chw[0], c0, h, w);
  for (const auto& t : images_chw) {
    int c, hh, ww;
    dims(t, c, hh, ww);
    if (hh != h || ww != w)
      throw ShapeError("image grid: all images must be " + std::to_string(h) + "x" + std::to_string(w) + ", got " +
                       t.shape().str());
    out_channels = std::max(out_channels, c);
  }
  const int count = static_cast<int>(images_chw.size());
  const int cols = std::min(columns, count);
  const int rows = (count + columns - 1) / columns;
  Image grid(cols * (w + pad) + pad, rows * (h + pad) + pad, out_channels, 255);
  for (int k = 0; k < count; ++k) {
    const Tensor<float>& t = images_chw[static_cast<std::size_t>(k)];
    const int c = t.rank() == 2 ? 1 : static_cast<int>(t.dim(0));
    const int x0 = pad + (k % columns) * (w + pad);
    const int y0 = pad + (k / columns) * (h + pad);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        std::uint8_t* px = grid.at(x0 + x, y0 + y);
        for (int ch = 0; ch < out_channels; ++ch) {
          const int src = c == 1 ? 0 : ch;
          px[ch] = to_byte(t[(static_cast<std::int64_t>(src) * h + y) * w + x], lo, hi);
        }
      }
  }
  return grid;
}

inline void write_image_grid(const std::filesystem::path& path, const std::vector<Tensor<float>>& images_chw,
                             int columns, int pad = 2, float lo = 0.0f, float hi = 1.0f) {
  write_png(path, render_image_grid(images_chw, columns, pad, lo, hi));
}

}  // namespace vitfreeze::io
