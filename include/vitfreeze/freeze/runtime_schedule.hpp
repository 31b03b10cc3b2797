#pragma once
// A freeze schedule chosen at run time (command-line tools, config files). It evaluates the same
// freeze_fraction() as the compile-time policies, so RuntimeSchedule{Spacing::cubic, 0.8} and
// Cubic<800> give bit-identical fractions.
#include <cstddef>
#include <limits>
#include <vector>

#include "vitfreeze/freeze/lr_mode.hpp"
#include "vitfreeze/freeze/spacing.hpp"

namespace vitfreeze::freeze {

struct RuntimeSchedule {
  Spacing spacing = Spacing::cubic;
  double t0 = 0.8;
  bool freezes = true;  // false: the NoFreeze baseline (every fraction +inf)

  double fraction(int unit, int units) const {
    if (!freezes) {
      if (units < 1 || unit < 0 || unit >= units) throw ConfigError("RuntimeSchedule: unit outside the schedule");
      return std::numeric_limits<double>::infinity();
    }
    return freeze_fraction(spacing, t0, unit, units);
  }

  std::vector<double> fractions(int units) const {
    if (units < 1) throw ConfigError("RuntimeSchedule: a schedule needs at least one unit");
    std::vector<double> r(static_cast<std::size_t>(units));
    for (int i = 0; i < units; ++i) r[static_cast<std::size_t>(i)] = fraction(i, units);
    return r;
  }
};

}  // namespace vitfreeze::freeze
