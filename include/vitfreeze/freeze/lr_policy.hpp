#pragma once
// LR policies: the learning rate of each freezable unit over the run, as a type. The built-in ones
// (ScaledLayerwise, UnscaledLayerwise, GlobalHardFreeze, ViTTailoredLr) are in lr_policies.hpp; a
// user brings a curve of their own by writing a type with the same two members.
//
// What a policy must provide (the LrPolicy concept):
//   static constexpr const char* name;
//   static double unit_lr(const LrSettings& lr, const RunLength& run, double fraction, std::int64_t g);
//     the LR of a unit that still trains at global iteration g; `fraction` is the unit's r_i from the
//     freeze schedule (+inf: it never freezes). The controller gives frozen units 0 and asks only
//     for active ones, so the policy decides the curve up to the freeze point, warmup included.
//     Make it constexpr where possible: users can then static_assert on the curve.
// What it may provide (otherwise the default in brackets applies):
//   static double global_lr(const LrSettings&, const RunLength&, std::int64_t g);
//     [global_learning_rate: warmup + cosine] the LR of parameters outside every unit (the cls token
//     under vitfreeze semantics, the patch embedding with dont_freeze_pe).
//
// Where the policy is a template argument (make_controller<Schedule, Policy>, the Pretraining
// recipe), LrPolicyRef holds its functions by pointer: the controller stays one non-template class.
#include <concepts>
#include <cstdint>
#include <optional>

#include "vitfreeze/freeze/freeze_timing.hpp"
#include "vitfreeze/freeze/lr_mode.hpp"

namespace vitfreeze::freeze {

template <class P>
concept LrPolicy = requires(const LrSettings& lr, const RunLength& run, double fraction, std::int64_t g) {
  { P::name } -> std::convertible_to<const char*>;
  { P::unit_lr(lr, run, fraction, g) } -> std::same_as<double>;
};

// A policy's functions, by pointer (constexpr: a controller's policy is known at compile time too).
struct LrPolicyRef {
  using UnitLr = double (*)(const LrSettings&, const RunLength&, double fraction, std::int64_t g);
  using GlobalLr = double (*)(const LrSettings&, const RunLength&, std::int64_t g);
  const char* name = nullptr;
  UnitLr unit_lr = nullptr;
  GlobalLr global_lr = nullptr;
  // The LrMode of a built-in policy (what checkpoints record); empty for a user's own policy.
  std::optional<LrMode> builtin_mode;
};

template <LrPolicy P>
constexpr LrPolicyRef lr_policy_ref() {
  LrPolicyRef ref;
  ref.name = P::name;
  ref.unit_lr = [](const LrSettings& lr, const RunLength& run, double fraction, std::int64_t g) {
    return P::unit_lr(lr, run, fraction, g);
  };
  if constexpr (requires(const LrSettings& lr, const RunLength& run, std::int64_t g) {
                  { P::global_lr(lr, run, g) } -> std::convertible_to<double>;
                })
    ref.global_lr = [](const LrSettings& lr, const RunLength& run, std::int64_t g) -> double {
      return P::global_lr(lr, run, g);
    };
  else
    ref.global_lr = global_learning_rate;
  if constexpr (requires { { P::mode } -> std::convertible_to<LrMode>; }) ref.builtin_mode = P::mode;
  return ref;
}

}  // namespace vitfreeze::freeze
