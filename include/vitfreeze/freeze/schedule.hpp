#pragma once
// Freeze schedules as compile-time policies: `Cubic<800>` (t0 = 0.8), `Linear<500>`, `Squared<T0>`,
// `ViTTailored<Spacing::cubic, 800, 100>` (tau = 0.1), `NoFreeze`. Fractions are integers per mille
// because clang < 18 rejects floating-point template arguments (spec design §3.3).
//
// What a schedule must provide (the FreezeSchedule concept):
//   static constexpr double fraction(int unit, int units);
//     r_i for unit 0..units-1: the fraction of the post-warmup run the unit trains for, > 0,
//     non-decreasing in the unit index (units freeze strictly in index order), +inf for "never".
//     It must be usable in a constant expression.
// What it may provide (otherwise the defaults in brackets apply):
//   static constexpr LrMode lr_mode;   [LrMode::scaled_layerwise, the ViTFreeze default]: the LR policy
//                                      used when none is given (DefaultLrPolicy<S>)
//   static constexpr double tail;      [0.1; the vit_tailored tau]
#include <array>
#include <concepts>
#include <cstddef>
#include <limits>
#include <type_traits>
#include <vector>

#include "vitfreeze/freeze/lr_mode.hpp"
#include "vitfreeze/freeze/lr_policies.hpp"
#include "vitfreeze/freeze/spacing.hpp"

namespace vitfreeze::freeze {

template <class S>
concept FreezeSchedule = requires(int unit, int units) {
  { S::fraction(unit, units) } -> std::same_as<double>;
  // Rejects a fraction() that is not constexpr: the template argument must be a constant.
  typename std::bool_constant<(static_cast<void>(S::fraction(0, 2)), true)>;
};

// FreezeOut/ViTFreeze spacing with t0 given per mille.
template <Spacing S, int T0PerMille>
struct SpacedSchedule {
  static_assert(T0PerMille > 0 && T0PerMille <= 1000, "t0 is given per mille and must lie in (0, 1000]");
  static constexpr Spacing spacing = S;
  static constexpr double t0 = per_mille(T0PerMille);
  static constexpr double fraction(int unit, int units) { return freeze_fraction(S, t0, unit, units); }
};

template <int T0PerMille>
struct Linear : SpacedSchedule<Spacing::linear, T0PerMille> {};
template <int T0PerMille>
struct Squared : SpacedSchedule<Spacing::squared, T0PerMille> {};
template <int T0PerMille>
struct Cubic : SpacedSchedule<Spacing::cubic, T0PerMille> {};

// The project's ViT-tailored schedule (spec README): the spacing's freeze points, the global warmup +
// cosine, and a cosine tail of length tau (per mille of the post-warmup run) that brings each unit's
// LR to 0 exactly at its freeze point.
template <Spacing S, int T0PerMille, int TauPerMille = 100>
struct ViTTailored : SpacedSchedule<S, T0PerMille> {
  static_assert(TauPerMille >= 0 && TauPerMille <= 1000, "tau is given per mille and must lie in [0, 1000]");
  static constexpr LrMode lr_mode = LrMode::vit_tailored;
  static constexpr double tail = per_mille(TauPerMille);
};

// No unit ever freezes; every group follows the global recipe (the baseline).
struct NoFreeze {
  static constexpr double fraction(int, int) { return std::numeric_limits<double>::infinity(); }
  static constexpr LrMode lr_mode = LrMode::global_hard_freeze;
};

template <FreezeSchedule S>
constexpr LrMode default_lr_mode() {
  if constexpr (requires { { S::lr_mode } -> std::convertible_to<LrMode>; }) return S::lr_mode;
  else return LrMode::scaled_layerwise;
}

// The LR policy type of the schedule's LR mode.
template <FreezeSchedule S>
using DefaultLrPolicy = LrPolicyOf<default_lr_mode<S>()>;

template <FreezeSchedule S>
constexpr double default_tail() {
  if constexpr (requires { { S::tail } -> std::convertible_to<double>; }) return S::tail;
  else return 0.1;
}

// r_0..r_{Units-1} as a constant, for static_asserts and the cost model.
template <FreezeSchedule S, std::size_t Units>
constexpr std::array<double, Units> fraction_table() {
  static_assert(Units >= 1, "a schedule needs at least one unit");
  std::array<double, Units> r{};
  for (std::size_t i = 0; i < Units; ++i) r[i] = S::fraction(static_cast<int>(i), static_cast<int>(Units));
  return r;
}

template <FreezeSchedule S>
std::vector<double> fractions(int units) {
  if (units < 1) throw ConfigError("fractions: a schedule needs at least one unit");
  std::vector<double> r(static_cast<std::size_t>(units));
  for (int i = 0; i < units; ++i) r[static_cast<std::size_t>(i)] = S::fraction(i, units);
  return r;
}

}  // namespace vitfreeze::freeze
