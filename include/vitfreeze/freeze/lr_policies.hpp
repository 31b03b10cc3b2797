#pragma once
// The built-in LR policies (the LrPolicy concept, lr_policy.hpp), one per LrMode.
//
// Notation: g global micro-batch iteration from 0, e = g / I, W_it = W * I, j = g - W_it,
// J_i = (E - W) * I * r_i, c(e) = warmup_cosine(e, lr, min_lr, W, E) (lr_mode.hpp).
// In every built-in policy, during warmup (g < W_it) every unit gets c(e) = lr * e / W: there is
// no per-unit warmup (spec §3.3 step 1), and a unit whose fraction is +inf (NoFreeze) has no freeze
// point and follows c(e) throughout. After warmup:
//
//   ScaledLayerwise    ViTFreeze default: lr_i = 0.5 * (lr / r_i) * (1 + cos(pi * j / J_i)). At j = 0
//                      this jumps from lr to lr / r_i (the code's behaviour, not the README figure),
//                      reaches exactly 0 at j = J_i and ignores min_lr.
//   UnscaledLayerwise  same with lr in place of lr / r_i (the `not_scale_lr` runs).
//   GlobalHardFreeze   lr_i = c(e) (LocalMIM's recipe) and a hard freeze at j > J_i (`--non_layerwise_lr`).
//   ViTTailoredLr      this project's decision (spec README): lr_i = c(e) * 0.5 * (1 + cos(pi * u)),
//                      u = clamp((p - (t_i - tau)) / tau, 0, 1), where p = j / ((E - W) * I) is the
//                      fraction of post-warmup iterations done, t_i = r_i, and tau (LrSettings::tail)
//                      a fraction of the post-warmup run. We evaluate the algebraically equal
//                      u = clamp(1 - (J_i - j) / (tau * (E - W) * I), 0, 1), so that u is exactly 1
//                      and the LR exactly 0 at j = J_i, the last iteration before the freeze.
//                      tau <= 0 degenerates to GlobalHardFreeze.
//
// The formulas keep the reference's evaluation order, 0.5 * initial_lr * (1 + cos(pi * j / J)), so
// the LRs agree with it bit for bit.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <tuple>

#include "vitfreeze/freeze/constexpr_math.hpp"
#include "vitfreeze/freeze/freeze_timing.hpp"
#include "vitfreeze/freeze/lr_mode.hpp"
#include "vitfreeze/freeze/lr_policy.hpp"

namespace vitfreeze::freeze {

namespace detail {
// What the built-in policies share: the global recipe during warmup and for a unit that never
// freezes, 0 past the freeze point, and otherwise Policy::after_warmup(lr, run, r, global, j, J).
template <class Policy>
struct LayerwiseAfterWarmup {
  static constexpr double unit_lr(const LrSettings& lr, const RunLength& run, double fraction, std::int64_t g) {
    const double global = global_learning_rate(lr, run, g);
    if (g < run.warmup_iterations() || !is_finite(fraction)) return global;
    if (is_past_freeze_point(run, fraction, g)) return 0.0;
    const double J = freeze_iteration(run, fraction);
    const double j = static_cast<double>(g - run.warmup_iterations());
    return Policy::after_warmup(lr, run, fraction, global, j, J);
  }
};
}  // namespace detail

struct ScaledLayerwise : detail::LayerwiseAfterWarmup<ScaledLayerwise> {
  static constexpr const char* name = "scaled";
  static constexpr LrMode mode = LrMode::scaled_layerwise;
  static constexpr double after_warmup(const LrSettings& lr, const RunLength&, double fraction, double, double j,
                                       double J) {
    return 0.5 * (lr.base_lr / fraction) * (1.0 + detail::cos(detail::pi * j / J));
  }
};

struct UnscaledLayerwise : detail::LayerwiseAfterWarmup<UnscaledLayerwise> {
  static constexpr const char* name = "unscaled";
  static constexpr LrMode mode = LrMode::unscaled_layerwise;
  static constexpr double after_warmup(const LrSettings& lr, const RunLength&, double, double, double j, double J) {
    return 0.5 * lr.base_lr * (1.0 + detail::cos(detail::pi * j / J));
  }
};

struct GlobalHardFreeze : detail::LayerwiseAfterWarmup<GlobalHardFreeze> {
  static constexpr const char* name = "global";
  static constexpr LrMode mode = LrMode::global_hard_freeze;
  static constexpr double after_warmup(const LrSettings&, const RunLength&, double, double global, double, double) {
    return global;
  }
};

struct ViTTailoredLr : detail::LayerwiseAfterWarmup<ViTTailoredLr> {
  static constexpr const char* name = "vit-tailored";
  static constexpr LrMode mode = LrMode::vit_tailored;
  static constexpr double after_warmup(const LrSettings& lr, const RunLength& run, double, double global, double j,
                                       double J) {
    const double tail_iterations = lr.tail * run.post_warmup_iterations();
    if (!(tail_iterations > 0.0)) return global;
    const double u = std::clamp(1.0 - (J - j) / tail_iterations, 0.0, 1.0);
    return global * 0.5 * (1.0 + detail::cos(detail::pi * u));
  }
};

static_assert(LrPolicy<ScaledLayerwise> && LrPolicy<UnscaledLayerwise> && LrPolicy<GlobalHardFreeze> &&
              LrPolicy<ViTTailoredLr>);

// The run-time name onto its policy type (LrMode's values in order) ...
using BuiltinLrPolicies = std::tuple<ScaledLayerwise, UnscaledLayerwise, GlobalHardFreeze, ViTTailoredLr>;
template <LrMode M>
using LrPolicyOf = std::tuple_element_t<std::size_t(M), BuiltinLrPolicies>;
static_assert(LrPolicyOf<LrMode::scaled_layerwise>::mode == LrMode::scaled_layerwise &&
              LrPolicyOf<LrMode::unscaled_layerwise>::mode == LrMode::unscaled_layerwise &&
              LrPolicyOf<LrMode::global_hard_freeze>::mode == LrMode::global_hard_freeze &&
              LrPolicyOf<LrMode::vit_tailored>::mode == LrMode::vit_tailored);

// ... and onto its functions, for a mode chosen at run time (--lr-mode).
constexpr LrPolicyRef lr_policy_for(LrMode mode) {
  switch (mode) {
    case LrMode::scaled_layerwise: return lr_policy_ref<ScaledLayerwise>();
    case LrMode::unscaled_layerwise: return lr_policy_ref<UnscaledLayerwise>();
    case LrMode::global_hard_freeze: return lr_policy_ref<GlobalHardFreeze>();
    case LrMode::vit_tailored: return lr_policy_ref<ViTTailoredLr>();
  }
  return lr_policy_ref<ScaledLayerwise>();
}

// LR of a unit with freeze fraction r at iteration g under the settings' mode; 0 once the unit is
// frozen (j > J_i).
constexpr double unit_learning_rate(const LrSettings& lr, const RunLength& run, double fraction, std::int64_t g) {
  return lr_policy_for(lr.mode).unit_lr(lr, run, fraction, g);
}

}  // namespace vitfreeze::freeze
