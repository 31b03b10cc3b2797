#pragma once
// Batch mixing as timm's Mixup (mode 'batch', correct_lam) does it for fine-tuning: per batch, with
// probability `probability` the batch is mixed with itself reversed (sample i with sample B-1-i);
// when both mixup and cutmix are on, cutmix is chosen with probability `switch_probability` (MAE:
// mixup 0.8, cutmix 1.0, switch 0.5; MAE-lite: mixup 0.2 only). Mixup blends whole images with
// lam ~ Beta(mixup_alpha); cutmix pastes the reversed batch's box into every image, the box of side
// sqrt(1 - lam) (lam ~ Beta(cutmix_alpha)) centred at a uniform pixel and clipped at the border, and
// lam becomes the share of each image left uncovered. The loss weighs a sample's label by lam and its
// partner's by 1 - lam.
//
// Determinism: the draws of a batch come from RandomStream(seed, mixup, epoch, step).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "vitfreeze/core/error.hpp"
#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/core/tensor.hpp"

namespace vitfreeze::data {

// Gamma(a) (Marsaglia-Tsang; a < 1 through the a + 1 boost); Beta(a, a) = G1 / (G1 + G2).
inline double sample_gamma(RandomStream& rng, double a) {
  if (a < 1) return sample_gamma(rng, a + 1) * std::pow(rng.uniform() + 1e-300, 1.0 / a);
  const double d = a - 1.0 / 3, c = 1 / std::sqrt(9 * d);
  for (;;) {
    double x = rng.normal(), v = 1 + c * x;
    if (v <= 0) continue;
    v = v * v * v;
    const double u = rng.uniform();
    if (std::log(u + 1e-300) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
  }
}
inline double sample_beta(RandomStream& rng, double a) {
  const double x = sample_gamma(rng, a), y = sample_gamma(rng, a);
  return x / (x + y);
}

// A cutmix box [top, bottom) x [left, right).
struct MixBox {
  int top = 0, bottom = 0, left = 0, right = 0;
  int area() const { return (bottom - top) * (right - left); }
};

// timm's rand_bbox for a centre (cy, cx): side int(H sqrt(1 - lam)) by int(W sqrt(1 - lam)).
inline MixBox cutmix_box(double lam, int cy, int cx, int height, int width) {
  const double ratio = std::sqrt(1.0 - lam);
  const int cut_h = int(height * ratio), cut_w = int(width * ratio);
  return {std::clamp(cy - cut_h / 2, 0, height), std::clamp(cy + cut_h / 2, 0, height), std::clamp(cx - cut_w / 2, 0, width),
          std::clamp(cx + cut_w / 2, 0, width)};
}

struct MixDraw {
  enum class Kind { none, mixup, cutmix } kind = Kind::none;
  double lam = 1.0;  // the weight of each sample's own label
  MixBox box;        // cutmix
};

struct MixSettings {
  double mixup_alpha = 0.0, cutmix_alpha = 0.0;  // 0: off
  double switch_probability = 0.5;               // cutmix rather than mixup, when both are on
  double probability = 1.0;                      // of mixing a batch at all

  bool enabled() const { return mixup_alpha > 0 || cutmix_alpha > 0; }
  void validate() const {
    if (!(mixup_alpha >= 0 && cutmix_alpha >= 0 && switch_probability >= 0 && switch_probability <= 1 &&
          probability >= 0 && probability <= 1))
      throw ConfigError("MixSettings: alphas >= 0, probabilities in [0, 1]");
  }

  MixDraw draw(std::uint64_t seed, std::uint64_t epoch, std::uint32_t step, int height, int width) const {
    validate();
    MixDraw d;
    if (!enabled()) return d;
    RandomStream rng(seed, RngPurpose::mixup, epoch, step);
    bool cutmix = cutmix_alpha > 0;
    if (mixup_alpha > 0 && cutmix_alpha > 0) cutmix = rng.uniform() < switch_probability;
    const double lam = sample_beta(rng, cutmix ? cutmix_alpha : mixup_alpha);
    if (rng.uniform() >= probability) return d;
    if (!cutmix) return {MixDraw::Kind::mixup, lam, {}};
    const int cy = int(rng.below(std::uint32_t(height))), cx = int(rng.below(std::uint32_t(width)));
    const MixBox box = cutmix_box(lam, cy, cx, height, width);
    return {MixDraw::Kind::cutmix, 1.0 - double(box.area()) / (double(height) * width), box};
  }
};

// images [B, C, H, W] -> the mixed batch (a new tensor; the input is left as it is); partner[i] =
// labels[B - 1 - i].
inline Tensor<float> apply_mix(const MixDraw& d, const Tensor<float>& images, const std::vector<std::int32_t>& labels,
                               std::vector<std::int32_t>& partner) {
  const std::int64_t B = images.dim(0), C = images.dim(1), H = images.dim(2), W = images.dim(3), per = C * H * W;
  partner.resize(std::size_t(B));
  for (std::int64_t i = 0; i < B; ++i) partner[std::size_t(i)] = labels[std::size_t(B - 1 - i)];
  Tensor<float> out = images.clone();
  for (std::int64_t i = 0; i < B; ++i) {
    const float* own = images.data() + i * per;
    const float* other = images.data() + (B - 1 - i) * per;
    float* o = out.data() + i * per;
    if (d.kind == MixDraw::Kind::mixup)
      for (std::int64_t k = 0; k < per; ++k) o[k] = float(d.lam * own[k] + (1 - d.lam) * other[k]);
    else if (d.kind == MixDraw::Kind::cutmix)
      for (std::int64_t c = 0; c < C; ++c)
        for (int y = d.box.top; y < d.box.bottom; ++y)
          for (int x = d.box.left; x < d.box.right; ++x) o[(c * H + y) * W + x] = other[(c * H + y) * W + x];
  }
  return out;
}

}  // namespace vitfreeze::data
