#pragma once
// Learning-rate modes for progressive freezing, as a run-time name (command lines, checkpoints), and
// the global warmup + cosine recipe every mode builds on. Each mode is a policy type
// (lr_policies.hpp, the LrPolicy concept in lr_policy.hpp) where its formula is written down;
// lr_policy_for(mode) maps the name onto it.
//
// Notation: g global micro-batch iteration from 0, e = g / I the fractional epoch, W_it = W * I,
// c(e) = warmup_cosine(e, lr, min_lr, W, E).
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

// The numbers an LR policy reads. `mode` names the built-in policy a controller built from the
// settings alone uses; a controller given a policy of its own (lr_policy.hpp) ignores it.
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

}  // namespace vitfreeze::freeze
