#pragma once
// What every layer provides: its parameters in a stable order (timm's), for optimisers, weight
// files and freezing.
#include <concepts>
#include <vector>

#include "vitfreeze/autograd/parameter.hpp"

namespace vitfreeze::nn {

template <CpuScalar T>
using ParameterList = std::vector<Parameter<T>*>;

template <class M, class T>
concept Module = requires(M& m, ParameterList<T>& out) {
  { m.collect_parameters(out) } -> std::same_as<void>;
};

template <CpuScalar T, class M>
ParameterList<T> parameters_of(M& m) {
  ParameterList<T> out;
  m.collect_parameters(out);
  return out;
}

template <CpuScalar T>
bool any_trainable(const ParameterList<T>& ps) {
  for (auto* p : ps)
    if (p->trainable) return true;
  return false;
}

}  // namespace vitfreeze::nn
