#pragma once
// When a unit freezes (spec §3.2, §3.3, checklist §6.1-6.2).
//
// Iterations are counted in micro-batches per rank: g = epoch * I + step, from 0. The post-warmup
// counter is j = g - W * I. Unit i with fraction r_i trains for J_i = (E - W) * I * r_i post-warmup
// iterations and is frozen from the first g with j > J_i (strict, compared in double, as the
// reference does). A fraction that is +inf means "never freezes".
#include <cstdint>
#include <optional>
#include <string>

#include "vitfreeze/core/error.hpp"
#include "vitfreeze/freeze/constexpr_math.hpp"

namespace vitfreeze::freeze {

struct RunLength {
  int epochs = 100;                 // E
  int warmup_epochs = 10;           // W
  std::int64_t iters_per_epoch = 0; // I: micro-batches per epoch per rank (the loader's length)

  constexpr std::int64_t warmup_iterations() const { return std::int64_t(warmup_epochs) * iters_per_epoch; }
  constexpr std::int64_t total_iterations() const { return std::int64_t(epochs) * iters_per_epoch; }
  // (E - W) * I in double, the reference's `(epochs - warmup) * len(loader)` before multiplying by r_i.
  constexpr double post_warmup_iterations() const {
    return static_cast<double>(std::int64_t(epochs - warmup_epochs) * iters_per_epoch);
  }

  constexpr void validate() const {
    if (iters_per_epoch < 1) throw ConfigError("RunLength: iters_per_epoch must be >= 1");
    if (warmup_epochs < 0) throw ConfigError("RunLength: warmup_epochs must be >= 0");
    if (epochs <= warmup_epochs)
      throw ConfigError("RunLength: epochs (" + std::to_string(epochs) + ") must exceed warmup_epochs (" +
                        std::to_string(warmup_epochs) + ")");
  }
};

// J_i: post-warmup iterations unit i trains for. +inf for a unit that never freezes.
constexpr double freeze_iteration(const RunLength& run, double fraction) {
  if (!detail::is_finite(fraction)) return fraction;
  return run.post_warmup_iterations() * fraction;
}

// Is the unit frozen at global iteration g? (j > J_i, strict, in double.)
constexpr bool is_past_freeze_point(const RunLength& run, double fraction, std::int64_t g) {
  const std::int64_t j = g - run.warmup_iterations();
  return static_cast<double>(j) > freeze_iteration(run, fraction);
}

// Smallest integer g with g - W*I > J_i, or nullopt when that g lies outside the run (g >= E*I).
// The smallest integer j above a non-negative J is trunc(J) + 1, exact while J < 2^53.
constexpr std::optional<std::int64_t> first_frozen_iteration(const RunLength& run, double fraction) {
  const double J = freeze_iteration(run, fraction);
  if (!(J < static_cast<double>(run.total_iterations()))) return std::nullopt;  // also catches +inf
  const std::int64_t j = J < 0 ? 0 : static_cast<std::int64_t>(J) + 1;
  const std::int64_t g = j + run.warmup_iterations();
  if (g >= run.total_iterations()) return std::nullopt;
  return g;
}

// The (fractional) epoch at which the unit's post-warmup budget ends, W + (E - W) * r_i: the value
// the spec's freeze-epoch tables list. nullopt for a unit that does not freeze within the run.
constexpr std::optional<double> freeze_epoch(const RunLength& run, double fraction) {
  if (!first_frozen_iteration(run, fraction)) return std::nullopt;
  return run.warmup_epochs + (run.epochs - run.warmup_epochs) * fraction;
}

}  // namespace vitfreeze::freeze
