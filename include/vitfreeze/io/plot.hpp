#pragma once
// Line plots as PNG, for loss curves and per-unit learning-rate schedules (often 13+ series):
// axes with "nice" ticks and numbers, light grid, distinct colours per series (the first ten from
// a fixed qualitative palette, later ones spread over hue by the golden angle and drawn dashed so
// neighbours still differ), a legend to the right of the axes (in several columns when the series
// do not fit one), and optional log-scale y.
// Non-finite points (and y <= 0 with log_y) are skipped and break the line there.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "vitfreeze/core/error.hpp"
#include "vitfreeze/io/canvas.hpp"
#include "vitfreeze/io/png.hpp"

namespace vitfreeze::io {

struct PlotSeries {
  std::string label{};
  std::vector<double> x{}, y{};
};

struct PlotOptions {
  std::string title{}, x_label{}, y_label{};
  int width = 900, height = 500;
  bool log_y = false;
};

namespace detail {

// Colour of series i; series beyond the palette also get a dash pattern (see series_dash).
inline Rgb series_colour(std::size_t i) {
  static constexpr Rgb kPalette[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},
                                     {148, 103, 189}, {140, 86, 75},  {227, 119, 194}, {127, 127, 127},
                                     {188, 189, 34},  {23, 190, 207}};
  constexpr std::size_t kCount = sizeof kPalette / sizeof kPalette[0];
  if (i < kCount) return kPalette[i];
  // HSV with the golden-ratio hue step: successive hues stay far apart for any count.
  const double h = std::fmod(static_cast<double>(i - kCount) * 0.618033988749895 + 0.05, 1.0) * 6.0;
  const double s = 0.75, v = (i % 2) ? 0.62 : 0.85;
  const double c = v * s, xx = c * (1 - std::fabs(std::fmod(h, 2.0) - 1)), m = v - c;
  double r = 0, g = 0, b = 0;
  switch (static_cast<int>(h)) {
    case 0: r = c, g = xx; break;
    case 1: r = xx, g = c; break;
    case 2: g = c, b = xx; break;
    case 3: g = xx, b = c; break;
    case 4: r = xx, b = c; break;
    default: r = c, b = xx; break;
  }
  auto byte = [&](double u) { return static_cast<std::uint8_t>(std::lround((u + m) * 255)); };
  return {byte(r), byte(g), byte(b)};
}
inline double series_dash(std::size_t i) { return i < 10 ? 0.0 : 7.0; }

struct Axis {
  double lo = 0, hi = 1;
  std::vector<double> ticks;  // in data units (log10 units for a log axis)
  bool log = false;
  double step = 1;            // tick spacing, for number formatting
};

// A step of 1, 2 or 5 times a power of ten giving about `target` intervals over `span`.
inline double nice_step(double span, int target) {
  const double raw = span / target;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

inline Axis linear_axis(double lo, double hi, int target_ticks) {
  if (!(hi > lo)) {  // one value (or none): centre it in a unit-wide window
    const double half = lo == 0 ? 0.5 : std::fabs(lo) * 0.1;
    lo -= half, hi += half;
  }
  Axis a;
  a.step = nice_step(hi - lo, target_ticks);
  a.lo = std::floor(lo / a.step + 1e-9) * a.step;
  a.hi = std::ceil(hi / a.step - 1e-9) * a.step;
  for (double t = a.lo; t <= a.hi + a.step * 1e-6; t += a.step) a.ticks.push_back(std::fabs(t) < a.step * 1e-9 ? 0.0 : t);
  return a;
}

// Log axis in log10 units, spanning whole decades; ticks every decade (every few when many).
inline Axis log_axis(double lo, double hi) {
  Axis a;
  a.log = true;
  a.lo = std::floor(std::log10(lo) + 1e-9);
  a.hi = std::ceil(std::log10(hi) - 1e-9);
  if (a.hi <= a.lo) a.hi = a.lo + 1;
  const double every = std::max(1.0, std::ceil((a.hi - a.lo) / 8));
  for (double d = a.lo; d <= a.hi + 1e-9; d += every) {
    a.ticks.push_back(d);
    if (a.hi - a.lo <= 2 && d < a.hi) {  // few decades: also mark 2x and 5x
      a.ticks.push_back(d + std::log10(2.0));
      a.ticks.push_back(d + std::log10(5.0));
    }
  }
  return a;
}

// Tick label: fixed-point with as many decimals as the step needs, or "m.mme-k" when the
// numbers are very large or small.
inline std::string format_tick(double v, double step) {
  char buf[48];
  if (v == 0) return "0";
  const double mag = std::fabs(v);
  if (mag >= 1e5 || mag < 1e-3) {
    int e = static_cast<int>(std::floor(std::log10(mag)));
    double m = v / std::pow(10.0, e);
    if (std::fabs(std::round(m * 100) / 100) >= 10) m /= 10, ++e;  // 9.999 rounds up to 10.0
    const int decimals = std::clamp(e - static_cast<int>(std::floor(std::log10(step) + 1e-9)), 0, 2);
    std::snprintf(buf, sizeof buf, "%.*fe%d", decimals, m, e);
    return buf;
  }
  const int decimals = std::clamp(-static_cast<int>(std::floor(std::log10(step) + 1e-9)), 0, 6);
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

inline std::string log_tick_label(double decade_units) {
  const double v = std::pow(10.0, decade_units);
  const double rounded_decade = std::round(decade_units);
  if (std::fabs(decade_units - rounded_decade) < 1e-9) {
    const int e = static_cast<int>(rounded_decade);
    if (e >= 0 && e <= 4) return format_tick(v, 1);
    return "1e" + std::to_string(e);
  }
  const int e = static_cast<int>(std::floor(decade_units + 1e-9));
  const int lead = static_cast<int>(std::lround(v / std::pow(10.0, e)));
  if (e >= 0 && e <= 3) return std::to_string(lead * static_cast<int>(std::lround(std::pow(10.0, e))));
  return std::to_string(lead) + "e" + std::to_string(e);
}

}  // namespace detail

// Renders the plot; see write_line_plot.
inline Image render_line_plot(const std::vector<PlotSeries>& series, const PlotOptions& opt = {}) {
  using detail::Axis;
  if (opt.width < 200 || opt.height < 150)
    throw ConfigError("line plot: need at least 200x150 pixels, got " + std::to_string(opt.width) + "x" +
                      std::to_string(opt.height));
  for (const auto& s : series)
    if (s.x.size() != s.y.size())
      throw ConfigError("line plot: series \"" + s.label + "\" has " + std::to_string(s.x.size()) + " x values and " +
                        std::to_string(s.y.size()) + " y values");

  auto usable = [&](double x, double y) { return std::isfinite(x) && std::isfinite(y) && (!opt.log_y || y > 0); };
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo, y_lo = x_lo, y_hi = -x_lo;
  for (const auto& s : series)
    for (std::size_t i = 0; i < s.x.size(); ++i)
      if (usable(s.x[i], s.y[i])) {
        x_lo = std::min(x_lo, s.x[i]), x_hi = std::max(x_hi, s.x[i]);
        y_lo = std::min(y_lo, s.y[i]), y_hi = std::max(y_hi, s.y[i]);
      }
  if (!(x_lo <= x_hi)) x_lo = 0, x_hi = 1, y_lo = opt.log_y ? 1 : 0, y_hi = opt.log_y ? 10 : 1;

  // Text scale grows with the picture so labels stay legible on large plots.
  const int scale = std::max(1, std::min(opt.width / 450, opt.height / 250));
  const int line_h = Font5x7::kLineHeight * scale, gap = 4 * scale, tick_len = 4 * scale;
  const Axis xa = detail::linear_axis(x_lo, x_hi, std::max(3, opt.width / (90 * scale)));
  const Axis ya = opt.log_y ? detail::log_axis(y_lo, y_hi) : detail::linear_axis(y_lo, y_hi, std::max(3, opt.height / (60 * scale)));
  auto y_label_of = [&](double t) { return ya.log ? detail::log_tick_label(t) : detail::format_tick(t, ya.step); };

  // ---- layout ----
  int y_tick_w = 0;
  for (double t : ya.ticks) y_tick_w = std::max(y_tick_w, Font5x7::text_width(y_label_of(t), scale));
  const int left = gap + (opt.y_label.empty() ? 0 : line_h + gap) + y_tick_w + gap + tick_len;
  const int top = opt.title.empty() ? 2 * gap : 2 * line_h;
  const int bottom = tick_len + gap + line_h + (opt.x_label.empty() ? 0 : line_h + gap) + gap;

  std::vector<std::size_t> shown;  // series with a legend entry
  for (std::size_t i = 0; i < series.size(); ++i)
    if (!series[i].label.empty()) shown.push_back(i);
  const int swatch = 18 * scale, row_h = line_h + 2 * scale;
  const int max_label_px = opt.width * 3 / 10;  // a legend never takes more than ~30% per column
  const std::size_t max_chars = static_cast<std::size_t>(std::max(1, (max_label_px - swatch) / (Font5x7::kAdvance * scale)));
  int label_w = 0;
  for (std::size_t i : shown)
    label_w = std::max(label_w, Font5x7::text_width(series[i].label.substr(0, max_chars), scale));
  const int plot_h_est = opt.height - top - bottom;
  const int rows_per_col = std::max(1, (plot_h_est - gap) / row_h);
  const int legend_cols = shown.empty() ? 0 : static_cast<int>((shown.size() + rows_per_col - 1) / rows_per_col);
  const int col_w = swatch + gap + label_w + 2 * gap;
  const int right = shown.empty() ? 3 * gap : legend_cols * col_w + 2 * gap;
  const int px0 = left, px1 = opt.width - right, py0 = top, py1 = opt.height - bottom;
  if (px1 - px0 < 60 || py1 - py0 < 40)
    throw ConfigError("line plot: " + std::to_string(opt.width) + "x" + std::to_string(opt.height) +
                      " leaves no room for the axes next to the labels and legend");

  // The axis range maps slightly inside the frame so curves on the range limits stay visible.
  const int inset = 3 * scale;
  auto x_pixel = [&](double x) { return px0 + inset + (x - xa.lo) / (xa.hi - xa.lo) * (px1 - px0 - 2 * inset); };
  auto y_pixel = [&](double axis_units) {
    return py1 - inset - (axis_units - ya.lo) / (ya.hi - ya.lo) * (py1 - py0 - 2 * inset);
  };
  auto to_px = x_pixel;
  auto to_py = [&](double y) { return y_pixel(ya.log ? std::log10(y) : y); };

  // ---- axes, grid, ticks ----
  const Rgb ink{20, 20, 20}, grid{228, 228, 228};
  Canvas c(opt.width, opt.height);
  for (double t : xa.ticks) {
    const int x = static_cast<int>(std::lround(to_px(t)));
    c.fill_rect(x, py0, x + 1, py1, grid);
    c.fill_rect(x, py1, x + 1, py1 + tick_len, ink);
    const std::string s = detail::format_tick(t, xa.step);
    c.text(x - Font5x7::text_width(s, scale) / 2, py1 + tick_len + gap, s, ink, scale);
  }
  for (double t : ya.ticks) {
    const int y = static_cast<int>(std::lround(y_pixel(t)));
    c.fill_rect(px0, y, px1, y + 1, grid);
    c.fill_rect(px0 - tick_len, y, px0, y + 1, ink);
    const std::string s = y_label_of(t);
    c.text(px0 - tick_len - gap - Font5x7::text_width(s, scale), y - Font5x7::text_height(scale) / 2, s, ink, scale);
  }
  c.rect(px0, py0, px1, py1, ink);

  if (!opt.title.empty())
    c.text((px0 + px1 - Font5x7::text_width(opt.title, scale)) / 2, (top - Font5x7::text_height(scale)) / 2, opt.title,
           ink, scale);
  if (!opt.x_label.empty())
    c.text((px0 + px1 - Font5x7::text_width(opt.x_label, scale)) / 2, opt.height - gap - line_h, opt.x_label, ink, scale);
  if (!opt.y_label.empty())
    c.text(gap, (py0 + py1 + Font5x7::text_width(opt.y_label, scale)) / 2, opt.y_label, ink, scale,
           Canvas::TextDirection::up);

  // ---- data ----
  const double line_w = 1.3 + 0.4 * scale;
  c.set_clip(px0 + 1, py0 + 1, px1, py1);
  for (std::size_t k = 0; k < series.size(); ++k) {
    const PlotSeries& s = series[k];
    const Rgb colour = detail::series_colour(k);
    const double dash = detail::series_dash(k) * scale;
    double run = 0;  // length so far, so dashes continue across vertices
    bool have_prev = false;
    double qx = 0, qy = 0;
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!usable(s.x[i], s.y[i])) {
        have_prev = false;
        continue;
      }
      const double x = to_px(s.x[i]), y = to_py(s.y[i]);
      const bool isolated = !have_prev && (i + 1 >= s.x.size() || !usable(s.x[i + 1], s.y[i + 1]));
      if (isolated) c.dot(x, y, line_w, colour);  // a lone point would otherwise be invisible
      if (have_prev) {
        c.line(qx, qy, x, y, colour, line_w, dash, run);
        run += std::hypot(x - qx, y - qy);
      }
      qx = x, qy = y, have_prev = true;
    }
  }
  c.reset_clip();

  // ---- legend ----
  for (std::size_t j = 0; j < shown.size(); ++j) {
    const std::size_t k = shown[j];
    const int col = static_cast<int>(j) / rows_per_col, row = static_cast<int>(j) % rows_per_col;
    const int lx = px1 + 2 * gap + col * col_w;
    const int ly = py0 + gap + row * row_h;
    const double mid = ly + Font5x7::text_height(scale) / 2.0;
    c.line(lx, mid, lx + swatch, mid, detail::series_colour(k), line_w + 0.5, detail::series_dash(k) * scale * 0.6);
    c.text(lx + swatch + gap, ly, series[k].label.substr(0, max_chars), ink, scale);
  }
  return c.image();
}

// Writes the plot as a PNG (atomically) of exactly opt.width x opt.height RGB pixels.
inline void write_line_plot(const std::string& path, const std::vector<PlotSeries>& series, const PlotOptions& opt = {}) {
  write_png(std::filesystem::path(path), render_line_plot(series, opt));
}

}  // namespace vitfreeze::io
