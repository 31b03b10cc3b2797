#pragma once
// A freeze schedule chosen at run time (command-line tools, config files). It evaluates the same
// freeze_fraction() as the compile-time policies, so RuntimeSchedule{Spacing::cubic, 0.8} and
// Cubic<800> give bit-identical fractions.
#include <cstddef>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
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

// The schedules a run can name, each with its published t0 (spec §1.2, §3.2): cubic 0.8 is the
// reference code's default (ViTFreeze keeps it; vit-tailored spaces its freeze points the same
// way), linear 0.5 is the setting FreezeOut's README reports working out of the box (and the
// reference's fallback for linear). Squared has no published value and takes cubic's.
struct NamedSchedule {
  std::string_view name;
  Spacing spacing;
  bool freezes;
  double published_t0;
};
inline constexpr NamedSchedule kNamedSchedules[] = {{"cubic", Spacing::cubic, true, 0.8},
                                                    {"linear", Spacing::linear, true, 0.5},
                                                    {"squared", Spacing::squared, true, 0.8},
                                                    {"vit-tailored", Spacing::cubic, true, 0.8},
                                                    {"none", Spacing::cubic, false, 0.8}};

// The smallest t0 a named schedule takes: below it the first units' fractions (t0 cubed: 1e-6) and
// LR multipliers (1 / r, a million) stop meaning anything, and far below they underflow to 0 and inf.
inline constexpr double kMinT0 = 0.01;

// The schedule called `name`, with `t0` or else its published one.
inline RuntimeSchedule named_schedule(std::string_view name, std::optional<double> t0 = std::nullopt) {
  for (const auto& s : kNamedSchedules) {
    if (s.name != name) continue;
    const double value = t0.value_or(s.published_t0);
    if (!(value >= kMinT0 && value <= 1.0))
      throw ConfigError("schedule " + std::string(name) + ": t0 must lie in [" + std::to_string(kMinT0) + ", 1], got " +
                        std::to_string(value));
    return {s.spacing, value, s.freezes};
  }
  throw ConfigError("unknown schedule " + quoted_excerpt(name) + " (none, linear, squared, cubic, vit-tailored)");
}

}  // namespace vitfreeze::freeze
