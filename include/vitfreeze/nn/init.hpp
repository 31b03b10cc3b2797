#pragma once
// Initialisers drawing from Philox streams keyed by the parameter's name, so a parameter's initial
// value does not depend on how many parameters were created before it.
#include <cmath>
#include <string_view>

#include "vitfreeze/autograd/parameter.hpp"
#include "vitfreeze/core/rng.hpp"

namespace vitfreeze::nn {

inline std::uint64_t name_hash(std::string_view s) {  // FNV-1a, 64 bit
  std::uint64_t h = 1469598103934665603ull;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

inline RandomStream init_stream(std::uint64_t seed, std::string_view name) {
  return RandomStream(seed, RngPurpose::init, name_hash(name));
}

// Xavier/Glorot uniform on a [fan_out, fan_in] matrix view.
template <CpuScalar T>
void xavier_uniform(Parameter<T>& p, std::int64_t fan_out, std::int64_t fan_in, std::uint64_t seed) {
  const double bound = std::sqrt(6.0 / double(fan_in + fan_out));
  RandomStream rng = init_stream(seed, p.name);
  for (std::int64_t i = 0; i < p.value.numel(); ++i) p.value[i] = T((2 * rng.uniform() - 1) * bound);
}

template <CpuScalar T>
void uniform_init(Parameter<T>& p, double bound, std::uint64_t seed) {
  RandomStream rng = init_stream(seed, p.name);
  for (std::int64_t i = 0; i < p.value.numel(); ++i) p.value[i] = T((2 * rng.uniform() - 1) * bound);
}

template <CpuScalar T>
void normal_init(Parameter<T>& p, double std, std::uint64_t seed) {
  RandomStream rng = init_stream(seed, p.name);
  for (std::int64_t i = 0; i < p.value.numel(); ++i) p.value[i] = T(rng.normal() * std);
}

// Truncated normal within +-2 std (timm's trunc_normal_ for classifier heads).
template <CpuScalar T>
void trunc_normal_init(Parameter<T>& p, double std, std::uint64_t seed) {
  RandomStream rng = init_stream(seed, p.name);
  for (std::int64_t i = 0; i < p.value.numel(); ++i) {
    double z = rng.normal();
    while (std::abs(z) > 2) z = rng.normal();
    p.value[i] = T(z * std);
  }
}

}  // namespace vitfreeze::nn
