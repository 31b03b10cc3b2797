#pragma once
// FreezeController: per optimiser step, which units still train and at what learning rate.
//
// Call step(g) once per optimiser step, before the forward, with g the global micro-batch iteration
// (epoch * I + step, counted per rank; with gradient accumulation only on the first micro-step of
// each window, so g advances by the accumulation factor). It freezes every unit whose budget is
// spent (j > J_i), reports those units, and sets each active unit's LR by its LR policy (lr_policy.hpp:
// a built-in one named by LrSettings::mode, or any type satisfying LrPolicy, make_controller<S, P>).
// The trainer maps units to modules (patch embedding, block i, tap decoder k): this class knows only
// indices, so it does not depend on nn/.
//
// Units freeze strictly in index order: the constructor requires non-decreasing fractions, so the
// frozen units always form a prefix 0..first_active_unit()-1 (what truncate semantics needs).
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "vitfreeze/core/error.hpp"
#include "vitfreeze/freeze/freeze_timing.hpp"
#include "vitfreeze/freeze/lr_policies.hpp"
#include "vitfreeze/freeze/lr_policy.hpp"
#include "vitfreeze/freeze/schedule.hpp"

namespace vitfreeze::freeze {

class FreezeController {
 public:
  // Everything a checkpoint must store to resume exactly: the last step seen and the frozen flags.
  struct State {
    std::int64_t last_step = -1;  // -1: step() not called yet
    std::vector<bool> frozen;     // one flag per unit; always a prefix of true values
    friend bool operator==(const State&, const State&) = default;
  };

  // The built-in policy lr.mode names.
  FreezeController(std::vector<double> fractions, RunLength run, LrSettings lr)
      : FreezeController(std::move(fractions), run, lr, lr_policy_for(lr.mode)) {}

  // Any policy (lr_policy_ref<P>()); a built-in one also sets lr.mode, which checkpoints record.
  FreezeController(std::vector<double> fractions, RunLength run, LrSettings lr, LrPolicyRef policy)
      : fractions_(std::move(fractions)), run_(run), lr_settings_(lr), policy_(policy), frozen_(fractions_.size(), false),
        lrs_(fractions_.size(), 0.0) {
    if (!policy_.unit_lr || !policy_.global_lr || !policy_.name) throw ConfigError("FreezeController: empty LR policy");
    if (policy_.builtin_mode) lr_settings_.mode = *policy_.builtin_mode;
    run_.validate();
    if (fractions_.empty()) throw ConfigError("FreezeController: no units");
    for (std::size_t i = 0; i < fractions_.size(); ++i) {
      const double r = fractions_[i];
      if (!(r > 0.0)) throw ConfigError("FreezeController: fraction of unit " + std::to_string(i) + " must be > 0");
      if (i > 0 && r < fractions_[i - 1])
        throw ConfigError("FreezeController: fractions must not decrease (unit " + std::to_string(i) +
                          "), units freeze in index order");
    }
    if (!(lr.base_lr >= 0.0) || !(lr.min_lr >= 0.0)) throw ConfigError("FreezeController: negative learning rate");
    if (!(lr.tail >= 0.0 && lr.tail <= 1.0)) throw ConfigError("FreezeController: tail must lie in [0, 1]");
  }

  // Advances to iteration g (0 <= g < E*I, never decreasing). Returns the units that froze now,
  // in index order; usually empty. Calling again with the same g changes nothing.
  const std::vector<int>& step(std::int64_t g) {
    if (g < 0 || g >= run_.total_iterations())
      throw ConfigError("FreezeController::step: iteration " + std::to_string(g) + " outside the run [0, " +
                        std::to_string(run_.total_iterations()) + ")");
    if (g < last_step_)
      throw ConfigError("FreezeController::step: iteration " + std::to_string(g) + " before the last step " +
                        std::to_string(last_step_));
    froze_now_.clear();
    while (frozen_count_ < units() && is_past_freeze_point(run_, fraction(frozen_count_), g)) {
      frozen_[static_cast<std::size_t>(frozen_count_)] = true;
      froze_now_.push_back(frozen_count_++);
    }
    last_step_ = g;
    update_learning_rates();
    return froze_now_;
  }

  int units() const { return static_cast<int>(fractions_.size()); }
  // Smallest still-trainable unit; units() once all are frozen (impossible when r_L >= 1).
  int first_active_unit() const { return frozen_count_; }
  bool is_active(int unit) const { return !frozen_.at(checked(unit)); }
  // LR of the unit at the last step; 0 when frozen.
  double lr(int unit) const { return lrs_.at(checked(unit)); }
  // The global warmup + cosine at the last step: for parameters that never freeze (cls token under
  // vitfreeze semantics).
  double global_lr() const { return last_step_ < 0 ? 0.0 : policy_.global_lr(lr_settings_, run_, last_step_); }
  double fraction(int unit) const { return fractions_.at(checked(unit)); }
  const std::vector<int>& froze_at_last_step() const { return froze_now_; }
  std::int64_t last_step() const { return last_step_; }
  const RunLength& run() const { return run_; }
  const LrSettings& lr_settings() const { return lr_settings_; }
  const LrPolicyRef& lr_policy() const { return policy_; }

  State state() const { return {last_step_, frozen_}; }

  // How many units the schedule has frozen once step(g) ran (0 before any step, g = -1): what a
  // checkpoint taken at last step g must hold.
  int frozen_units_at(std::int64_t g) const {
    int count = 0;
    if (g < 0) return 0;
    while (count < units() && is_past_freeze_point(run_, fraction(count), g)) ++count;
    return count;
  }

  // Restores a saved state. The frozen flags win over the schedule (weights and optimizer state of a
  // frozen unit are gone, so it cannot thaw); a unit that is due but not yet frozen freezes at the next
  // step(). The LRs are those of the restored step; no freeze events are reported for it.
  void restore(const State& s) {
    if (s.frozen.size() != fractions_.size())
      throw ConfigError("FreezeController::restore: state has " + std::to_string(s.frozen.size()) +
                        " units, controller has " + std::to_string(fractions_.size()));
    if (s.last_step < -1 || s.last_step >= run_.total_iterations())
      throw ConfigError("FreezeController::restore: last step " + std::to_string(s.last_step) + " outside the run");
    int count = 0;
    while (count < units() && s.frozen[static_cast<std::size_t>(count)]) ++count;
    for (int u = count; u < units(); ++u)
      if (s.frozen[static_cast<std::size_t>(u)])
        throw ConfigError("FreezeController::restore: frozen units are not a prefix (unit " + std::to_string(u) + ")");
    frozen_ = s.frozen;
    frozen_count_ = count;
    last_step_ = s.last_step;
    froze_now_.clear();
    update_learning_rates();
  }

 private:
  std::size_t checked(int unit) const {
    if (unit < 0 || unit >= units())
      throw ConfigError("FreezeController: unit " + std::to_string(unit) + " outside 0.." + std::to_string(units() - 1));
    return static_cast<std::size_t>(unit);
  }

  // The policy is asked only for units that still train: a frozen unit, or one past its freeze
  // point that a restored state has not frozen yet, gets 0 whatever the policy's curve says.
  void update_learning_rates() {
    for (int u = 0; u < units(); ++u) {
      const bool trains = last_step_ >= 0 && is_active(u) && !is_past_freeze_point(run_, fraction(u), last_step_);
      lrs_[static_cast<std::size_t>(u)] = trains ? policy_.unit_lr(lr_settings_, run_, fraction(u), last_step_) : 0.0;
    }
  }

  std::vector<double> fractions_;
  RunLength run_;
  LrSettings lr_settings_;
  LrPolicyRef policy_;
  std::vector<bool> frozen_;
  int frozen_count_ = 0;
  std::int64_t last_step_ = -1;
  std::vector<double> lrs_;
  std::vector<int> froze_now_;
};

// A controller for a compile-time schedule with the schedule's tail and an LR policy: by default the
// one the schedule names (DefaultLrPolicy), or any type satisfying LrPolicy.
template <FreezeSchedule S, LrPolicy P = DefaultLrPolicy<S>>
FreezeController make_controller(int units, RunLength run, double base_lr, double min_lr = 1e-6) {
  return FreezeController(fractions<S>(units), run, LrSettings{default_lr_mode<S>(), base_lr, min_lr, default_tail<S>()},
                          lr_policy_ref<P>());
}

}  // namespace vitfreeze::freeze
