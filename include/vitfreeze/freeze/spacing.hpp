#pragma once
// Spacing of freeze points over the units (FreezeOut's "how_scale", spec §1.2, §3.2):
//
//   r_i = s(t0 + (1 - t0) * i / L),   i = 0..L,   L = units - 1,   s(x) = x, x^2 or x^3
//
// r_i is the fraction of the post-warmup run during which unit i trains; t0 is the *un-scaled* start
// (cubic with t0 = 0.8 gives r_0 = 0.512). This is the single implementation of the formula: the
// compile-time policies (schedule.hpp) and the run-time schedule (runtime_schedule.hpp) both call
// freeze_fraction().
#include <string>

#include "vitfreeze/core/error.hpp"

namespace vitfreeze::freeze {

enum class Spacing { linear, squared, cubic };

constexpr double apply_spacing(Spacing spacing, double x) {
  switch (spacing) {
    case Spacing::linear: return x;
    case Spacing::squared: return x * x;
    case Spacing::cubic: return x * x * x;  // same rounding as Python's x**3 for the spec's values
  }
  return x;
}

// Fractions are template arguments as integers per mille, because clang before 18 rejects
// floating-point non-type template parameters. 800 / 1000.0 is the double nearest 0.8, i.e. the
// same value as the literal 0.8.
constexpr double per_mille(int value) { return value / 1000.0; }

// r_i for unit `unit` of `units`. The last unit gets exactly 1 (it never freezes within the run)
// instead of s(t0 + (1 - t0)), which could round to 1 - ulp. The operation order
// (1 - t0) * i / L matches the reference code, so r_i agrees with it to the last bit.
constexpr double freeze_fraction(Spacing spacing, double t0, int unit, int units) {
  if (units < 1 || unit < 0 || unit >= units)
    throw ConfigError("freeze_fraction: unit " + std::to_string(unit) + " outside 0.." + std::to_string(units - 1));
  if (!(t0 > 0.0 && t0 <= 1.0))
    throw ConfigError("freeze_fraction: t0 must lie in (0, 1], got " + std::to_string(t0));
  const int last = units - 1;
  if (unit == last) return 1.0;
  return apply_spacing(spacing, t0 + (1.0 - t0) * unit / last);
}

}  // namespace vitfreeze::freeze
