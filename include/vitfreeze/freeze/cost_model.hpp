#pragma once
// Predicted share of training compute that a freeze schedule saves, before training (constexpr, so a
// user can static_assert on it). FLOP counts come from the caller (nn/flops.hpp computes them for a
// ViT); this file knows only per-unit numbers, so freeze/ stays independent of nn/.
//
// Model (machine-facts §4: training = 3x forward, and a frozen prefix saves 2x its forward, checked
// against torch.profiler to 0.3 %):
//   baseline per step  = 3 * sum_i forward_i + sum_i dropped_i + untracked
//   saved while frozen = k * forward_i + dropped_i,  k = 2 (truncate: no weight and no input gradient)
//                                                     k = 1 (vitfreeze: no weight gradient only)
//   unit i is frozen for the share (1 - r_i) of the post-warmup run, i.e. (1 - r_i) * (E - W) / E of
//   the whole run (warmup included); r_i >= 1 or +inf never freezes.
//   saving = sum_i (1 - r_i) * (E - W) / E * saved_i / baseline
// It treats freezing as continuous in time and ignores the non-GEMM work (norms, softmax, optimizer),
// so it is an estimate of FLOPs, not of wall time.
#include <cstddef>
#include <span>

#include "vitfreeze/core/error.hpp"
#include "vitfreeze/freeze/semantics.hpp"

namespace vitfreeze::freeze {

struct UnitCosts {
  std::span<const double> forward;             // forward FLOPs per step of unit 0..L
  std::span<const double> dropped_when_frozen;  // training FLOPs per step that vanish with the unit
                                               // (a tap decoder's fwd + bwd); empty = none
  double untracked_training = 0.0;             // training FLOPs per step outside every unit (never saved)
};

constexpr double dropped_flops(const UnitCosts& costs, std::size_t unit) {
  return costs.dropped_when_frozen.empty() ? 0.0 : costs.dropped_when_frozen[unit];
}

constexpr void validate(const UnitCosts& costs) {
  if (!costs.dropped_when_frozen.empty() && costs.dropped_when_frozen.size() != costs.forward.size())
    throw ConfigError("UnitCosts: dropped_when_frozen must be empty or have one entry per unit");
}

// Training FLOPs per step with nothing frozen.
constexpr double baseline_training_flops(const UnitCosts& costs) {
  validate(costs);
  double total = costs.untracked_training;
  for (std::size_t i = 0; i < costs.forward.size(); ++i) total += 3.0 * costs.forward[i] + dropped_flops(costs, i);
  return total;
}

// FLOPs per step that unit i no longer costs once frozen.
constexpr double saved_flops_while_frozen(const UnitCosts& costs, std::size_t unit, FreezeSemantics semantics) {
  validate(costs);
  const double backward_share = semantics == FreezeSemantics::truncate ? 2.0 : 1.0;
  return backward_share * costs.forward[unit] + dropped_flops(costs, unit);
}

// Share of the whole run's training FLOPs saved by the schedule with fractions r_0..r_L.
constexpr double predicted_saving(const UnitCosts& costs, std::span<const double> fractions, FreezeSemantics semantics,
                                  int epochs, int warmup_epochs) {
  if (fractions.size() != costs.forward.size()) throw ConfigError("predicted_saving: one fraction per unit needed");
  if (!(epochs > warmup_epochs && warmup_epochs >= 0)) throw ConfigError("predicted_saving: need epochs > warmup >= 0");
  const double post_warmup_share = double(epochs - warmup_epochs) / double(epochs);
  double saved = 0.0;
  for (std::size_t i = 0; i < fractions.size(); ++i) {
    const double frozen_share = fractions[i] < 1.0 ? 1.0 - fractions[i] : 0.0;  // +inf: never frozen
    saved += frozen_share * post_warmup_share * saved_flops_while_frozen(costs, i, semantics);
  }
  return saved / baseline_training_flops(costs);
}

}  // namespace vitfreeze::freeze
