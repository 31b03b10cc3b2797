#pragma once
// A tiny RGB rasteriser for plots: anti-aliased thick lines (coverage from the distance to the
// segment, optionally dashed), rectangles, dots and 5x7 bitmap text, all clipped to a rectangle.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>

#include "vitfreeze/io/font5x7.hpp"
#include "vitfreeze/io/png.hpp"

namespace vitfreeze::io {

struct Rgb {
  std::uint8_t r = 0, g = 0, b = 0;
};

class Canvas {
 public:
  enum class TextDirection { right, up };  // `up`: rotated 90 degrees counter-clockwise

  Canvas(int width, int height, Rgb background = {255, 255, 255}) : image_(width, height, 3) {
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x) put(x, y, background);
    reset_clip();
  }

  const Image& image() const { return image_; }
  int width() const { return image_.width; }
  int height() const { return image_.height; }

  // Drawing outside [x0, x1) x [y0, y1) is discarded.
  void set_clip(int x0, int y0, int x1, int y1) {
    clip_x0_ = std::max(0, x0), clip_y0_ = std::max(0, y0);
    clip_x1_ = std::min(width(), x1), clip_y1_ = std::min(height(), y1);
  }
  void reset_clip() { set_clip(0, 0, width(), height()); }

  // Mixes `c` into pixel (x, y) with opacity `alpha` in [0, 1].
  void blend(int x, int y, Rgb c, double alpha) {
    if (x < clip_x0_ || y < clip_y0_ || x >= clip_x1_ || y >= clip_y1_ || alpha <= 0) return;
    alpha = std::min(alpha, 1.0);
    std::uint8_t* p = image_.at(x, y);
    const std::uint8_t src[3] = {c.r, c.g, c.b};
    for (int k = 0; k < 3; ++k) p[k] = static_cast<std::uint8_t>(std::lround(p[k] + (src[k] - p[k]) * alpha));
  }

  void fill_rect(int x0, int y0, int x1, int y1, Rgb c) {
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) blend(x, y, c, 1.0);
  }
  // One-pixel crisp outline of [x0, x1] x [y0, y1].
  void rect(int x0, int y0, int x1, int y1, Rgb c) {
    fill_rect(x0, y0, x1 + 1, y0 + 1, c);
    fill_rect(x0, y1, x1 + 1, y1 + 1, c);
    fill_rect(x0, y0, x0 + 1, y1 + 1, c);
    fill_rect(x1, y0, x1 + 1, y1 + 1, c);
  }

  // Line of `width` pixels between pixel-centre coordinates. With dash > 0, ink is on for `dash`
  // pixels then off for `dash` pixels along the line, starting `phase` pixels into the pattern
  // (pass the running length so a polyline's dashes continue across vertices).
  void line(double x0, double y0, double x1, double y1, Rgb c, double width = 1.0, double dash = 0, double phase = 0) {
    const double half = width / 2;
    const double dx = x1 - x0, dy = y1 - y0;
    const double length2 = dx * dx + dy * dy;
    const int bx0 = static_cast<int>(std::floor(std::min(x0, x1) - half - 1));
    const int bx1 = static_cast<int>(std::ceil(std::max(x0, x1) + half + 1));
    const int by0 = static_cast<int>(std::floor(std::min(y0, y1) - half - 1));
    const int by1 = static_cast<int>(std::ceil(std::max(y0, y1) + half + 1));
    for (int y = std::max(by0, clip_y0_); y <= std::min(by1, clip_y1_ - 1); ++y)
      for (int x = std::max(bx0, clip_x0_); x <= std::min(bx1, clip_x1_ - 1); ++x) {
        double t = length2 > 0 ? ((x - x0) * dx + (y - y0) * dy) / length2 : 0;
        t = std::clamp(t, 0.0, 1.0);
        const double px = x0 + t * dx - x, py = y0 + t * dy - y;
        const double coverage = std::clamp(half + 0.5 - std::sqrt(px * px + py * py), 0.0, 1.0);
        if (coverage <= 0) continue;
        if (dash > 0 && std::fmod(phase + t * std::sqrt(length2), 2 * dash) >= dash) continue;
        blend(x, y, c, coverage);
      }
  }

  void dot(double cx, double cy, double radius, Rgb c) {
    for (int y = static_cast<int>(std::floor(cy - radius - 1)); y <= static_cast<int>(std::ceil(cy + radius + 1)); ++y)
      for (int x = static_cast<int>(std::floor(cx - radius - 1)); x <= static_cast<int>(std::ceil(cx + radius + 1)); ++x)
        blend(x, y, c, std::clamp(radius + 0.5 - std::hypot(x - cx, y - cy), 0.0, 1.0));
  }

  // Text whose glyph box starts at (x, y): its top-left corner for `right`, its bottom-left
  // corner for `up` (the text then reads upwards).
  void text(int x, int y, std::string_view s, Rgb c, int scale = 1, TextDirection dir = TextDirection::right) {
    for (std::size_t i = 0; i < s.size(); ++i) {
      const int along = static_cast<int>(i) * Font5x7::kAdvance * scale;
      for (int gy = 0; gy < Font5x7::kGlyphHeight; ++gy)
        for (int gx = 0; gx < Font5x7::kGlyphWidth; ++gx) {
          if (!Font5x7::ink(s[i], gx, gy)) continue;
          for (int sy = 0; sy < scale; ++sy)
            for (int sx = 0; sx < scale; ++sx) {
              const int u = along + gx * scale + sx;  // along the text
              const int v = gy * scale + sy;          // down the glyph
              if (dir == TextDirection::right) blend(x + u, y + v, c, 1.0);
              else blend(x + v, y - u, c, 1.0);
            }
        }
    }
  }

 private:
  Image image_;
  int clip_x0_ = 0, clip_y0_ = 0, clip_x1_ = 0, clip_y1_ = 0;

  void put(int x, int y, Rgb c) {
    std::uint8_t* p = image_.at(x, y);
    p[0] = c.r, p[1] = c.g, p[2] = c.b;
  }
};

}  // namespace vitfreeze::io
