#pragma once
// The image relative position encoding of LoMaR (iRPE, "product" method, contextual on keys, shared
// across heads; spec mae-lomar-maelite-micl.md §2.5). Tokens are an optional leading cls token and a
// side x side grid in raster order. A query-key pair of grid cells gets the bucket of its row and
// column offsets, each mapped by the piecewise function below to -3..3; any pair with the cls token
// gets the extra bucket 49: 50 buckets, whatever the grid size, so a model moves between
// resolutions with no interpolation. The attention logit gains q_i . W[:, bucket(i, j)], W [d_h, 50]
// per layer (not scaled by 1/sqrt(d_h)).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "vitfreeze/core/error.hpp"

namespace vitfreeze {

inline constexpr int kRelativePositionBuckets = 50;
inline constexpr int kRelativePositionClsBucket = 49;

// Per-axis bucket of an offset d: d itself while |d| <= alpha = 1.9, else sign(d) * min(beta,
// round(alpha + ln(|d| / alpha) / ln(gamma / alpha) * (beta - alpha))) truncated to an integer, with
// beta = 3.8, gamma = 15.2 (ratio 1.9). |d| = 0, 1, 2, 3, >= 4 -> 0, 1, 2, 2, 3.
inline int relative_position_axis_bucket(int d) {
  constexpr double alpha = 1.9, beta = 3.8, gamma = 15.2;
  const int magnitude = d < 0 ? -d : d;
  if (magnitude <= alpha) return d;
  const double scaled = std::round(alpha + std::log(magnitude / alpha) / std::log(gamma / alpha) * (beta - alpha));
  const int bucket = static_cast<int>(std::min(beta, scaled));  // truncated toward zero
  return d < 0 ? -bucket : bucket;
}

// bucket[i * T + j] for T = leading + side * side tokens (leading: 0, or 1 for a cls token first).
inline std::vector<std::int32_t> relative_position_buckets(int side, int leading) {
  if (side < 1 || leading < 0 || leading > 1)
    throw ConfigError("relative_position_buckets: a grid side >= 1 and at most one leading token");
  const int T = leading + side * side;
  std::vector<std::int32_t> bucket(std::size_t(T) * std::size_t(T), kRelativePositionClsBucket);
  for (int i = leading; i < T; ++i)
    for (int j = leading; j < T; ++j) {
      const int ri = (i - leading) / side, ci = (i - leading) % side, rj = (j - leading) / side, cj = (j - leading) % side;
      bucket[std::size_t(i) * T + j] =
          (relative_position_axis_bucket(ri - rj) + 3) * 7 + (relative_position_axis_bucket(ci - cj) + 3);
    }
  return bucket;
}

// The buckets of a sequence of `tokens` as iRPE lays it out: a square grid of side floor(sqrt(tokens))
// in raster order after 0 or 1 leading (cls) tokens (a 7x7 window + cls: 50; a 14x14 image + cls: 197).
inline std::vector<std::int32_t> relative_position_buckets_for_tokens(int tokens) {
  int side = int(std::sqrt(double(tokens)));
  while ((side + 1) * (side + 1) <= tokens) ++side;  // exact integer square root
  while (side * side > tokens) --side;
  const int leading = tokens - side * side;
  if (side < 1 || leading > 1)
    throw ConfigError("relative position: " + std::to_string(tokens) +
                      " tokens are not a square grid with at most one leading cls token");
  return relative_position_buckets(side, leading);
}

}  // namespace vitfreeze
