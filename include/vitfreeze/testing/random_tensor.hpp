#pragma once
// Helpers for tests and benchmarks: tensors of reproducible random values.
#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/core/tensor.hpp"

namespace vitfreeze::testing {

template <class T>
Tensor<T> random_tensor(const Shape& shape, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Tensor<T> t(shape);
  RandomStream rng(seed, RngPurpose::test);
  for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = T(lo + (hi - lo) * rng.uniform());
  return t;
}

}  // namespace vitfreeze::testing
