#pragma once
// A cosine usable in constant expressions. std::cos is not constexpr in C++20 (g++ accepts it as an
// extension, clang does not), yet users should be able to static_assert on a learning-rate curve.
// At run time we call std::cos so that values match libm (and so PyTorch/Python) bit for bit; in a
// constant evaluation we use our own series, accurate to about one ulp on the [0, pi] range that the
// schedules use.
#include <cmath>
#include <limits>
#include <numbers>
#include <type_traits>

namespace vitfreeze::freeze::detail {

inline constexpr double pi = std::numbers::pi;

// Taylor series, |x| <= pi/4: terms up to x^24/24! are below 1e-25, far under one ulp.
constexpr double cos_series(double x) {
  const double x2 = x * x;
  double term = 1.0, sum = 1.0;
  for (int n = 2; n <= 24; n += 2) {
    term *= -x2 / (double(n - 1) * double(n));
    sum += term;
  }
  return sum;
}

constexpr double sin_series(double x) {
  const double x2 = x * x;
  double term = x, sum = x;
  for (int n = 3; n <= 25; n += 2) {
    term *= -x2 / (double(n - 1) * double(n));
    sum += term;
  }
  return sum;
}

// Range reduction by symmetry: cos is even, 2*pi periodic, cos(pi - x) = -cos(x) and
// cos(x) = sin(pi/2 - x). The reduction subtracts multiples of 2*pi in double, so accuracy degrades
// for huge arguments; the schedules only pass values in [0, pi].
constexpr double series_cos(double x) {
  if (x < 0) x = -x;
  constexpr double two_pi = 2.0 * pi;
  if (x >= two_pi) x -= two_pi * static_cast<double>(static_cast<long long>(x / two_pi));
  if (x > pi) x = two_pi - x;
  bool negate = false;
  if (x > pi / 2) {
    x = pi - x;
    negate = true;
  }
  const double c = x <= pi / 4 ? cos_series(x) : sin_series(pi / 2 - x);
  return negate ? -c : c;
}

constexpr double cos(double x) {
  if (std::is_constant_evaluated()) return series_cos(x);
  return std::cos(x);
}

// True for every finite double; false for +-inf and NaN (std::isfinite is not constexpr in C++20).
constexpr bool is_finite(double x) {
  return x >= -std::numeric_limits<double>::max() && x <= std::numeric_limits<double>::max();
}

}  // namespace vitfreeze::freeze::detail
