#pragma once
// Learning-rate modes for progressive freezing, and the global warmup + cosine recipe they build on.
//
// Notation: g global micro-batch iteration from 0, e = g / I the fractional epoch, W_it = W * I,
// j = g - W_it, J_i = (E - W) * I * r_i, c(e) = warmup_cosine(e, lr, min_lr, W, E).
// In every mode, during warmup (g < W_it) every group (units and never-frozen parameters alike)
// gets c(e) = lr * e / W: there is no per-unit warmup (spec §3.3 step 1). After warmup:
//
//   scaled_layerwise    ViTFreeze default: lr_i = 0.5 * (lr / r_i) * (1 + cos(pi * j / J_i)). At j = 0
//                       this jumps from lr to lr / r_i (the code's behaviour, not the README figure),
//                       reaches exactly 0 at j = J_i and ignores min_lr.
//   unscaled_layerwise  same with lr in place of lr / r_i (the `not_scale_lr` runs).
//   global_hard_freeze  lr_i = c(e) (LocalMIM's recipe) and a hard freeze at j > J_i (`--non_layerwise_lr`).
//   vit_tailored        this project's decision (spec README): lr_i = c(e) * 0.5 * (1 + cos(pi * u)),
//                       u = clamp((p - (t_i - tau)) / tau, 0, 1), where p = j / ((E - W) * I) is the
//                       fraction of post-warmup iterations done, t_i = r_i, and tau is a fraction of
//                       the post-warmup run. We evaluate the algebraically equal
//                       u = clamp(1 - (J_i - j) / (tau * (E - W) * I), 0, 1), so that u is exactly 1
//                       and the LR exactly 0 at j = J_i, the last iteration before the freeze.
//                       tau <= 0 degenerates to global_hard_freeze.
//
// A unit whose fraction is +inf (NoFreeze) has no freeze point and follows c(e) in every mode.
#include <algorithm>
#include <cstdint>

#include "vitfreeze/freeze/constexpr_math.hpp"
#include "vitfreeze/freeze/freeze_timing.hpp"

namespace vitfreeze::freeze {

enum class LrMode { scaled_layerwise, unscaled_layerwise, global_hard_freeze, vit_tailored };

// The LocalMIM/MAE recipe (spec §2.6), per iteration over the fractional epoch e:
//   e < W: lr_max * e / W;   otherwise min_lr + (lr_max - min_lr) * 0.5 * (1 + cos(pi * (e - W) / (E - W))).
// Precondition E > W >= 0. constexpr, so the optimiser's schedules and static_asserts can use it.
constexpr double warmup_cosine(double e, double lr_max, double min_lr, double warmup_epochs, double epochs) {
  if (e < warmup_epochs) return lr_max * e / warmup_epochs;
  const double progress = (e - warmup_epochs) / (epochs - warmup_epochs);
  return min_lr + (lr_max - min_lr) * 0.5 * (1.0 + detail::cos(detail::pi * progress));
}

struct LrSettings {
  LrMode mode = LrMode::scaled_layerwise;
  double base_lr = 1.6e-3;  // lr_max: blr * effective batch / 256
  double min_lr = 1e-6;     // floor of the global cosine (ignored by the layer-wise modes)
  double tail = 0.1;        // vit_tailored's tau, a fraction of the post-warmup run
};

// Ratio of a unit's LR right after warmup to base_lr: 1 / r_i in scaled_layerwise, else 1.
constexpr double initial_lr_multiplier(LrMode mode, double fraction) {
  if (mode == LrMode::scaled_layerwise && detail::is_finite(fraction)) return 1.0 / fraction;
  return 1.0;
}

// The global recipe's LR at iteration g: what never-frozen parameters (the cls token under
// vitfreeze semantics) get in every mode.
constexpr double global_learning_rate(const LrSettings& lr, const RunLength& run, std::int64_t g) {
  return warmup_cosine(static_cast<double>(g) / static_cast<double>(run.iters_per_epoch), lr.base_lr, lr.min_lr,
                       run.warmup_epochs, run.epochs);
}

// LR of a unit with freeze fraction r at iteration g; 0 once the unit is frozen (j > J_i).
constexpr double unit_learning_rate(const LrSettings& lr, const RunLength& run, double fraction, std::int64_t g) {
  const double global = global_learning_rate(lr, run, g);
  if (g < run.warmup_iterations() || !detail::is_finite(fraction)) return global;
  if (is_past_freeze_point(run, fraction, g)) return 0.0;
  const double J = freeze_iteration(run, fraction);
  const double j = static_cast<double>(g - run.warmup_iterations());
  // Evaluation order as in the reference, 0.5 * initial_lr * (1 + cos(pi * j / J)), for bitwise parity.
  switch (lr.mode) {
    case LrMode::scaled_layerwise: return 0.5 * (lr.base_lr / fraction) * (1.0 + detail::cos(detail::pi * j / J));
    case LrMode::unscaled_layerwise: return 0.5 * lr.base_lr * (1.0 + detail::cos(detail::pi * j / J));
    case LrMode::global_hard_freeze: return global;
    case LrMode::vit_tailored: {
      const double tail_iterations = lr.tail * run.post_warmup_iterations();
      if (!(tail_iterations > 0.0)) return global;
      const double u = std::clamp(1.0 - (J - j) / tail_iterations, 0.0, 1.0);
      return global * 0.5 * (1.0 + detail::cos(detail::pi * u));
    }
  }
  return global;
}

}  // namespace vitfreeze::freeze
