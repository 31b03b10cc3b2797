#pragma once
#include "vitfreeze/autograd/ops/gelu.hpp"
#include "vitfreeze/nn/linear.hpp"

namespace vitfreeze::nn {

// Linear(D, hidden) - GELU - Linear(hidden, D).
template <CpuScalar T>
class Mlp {
 public:
  Mlp(const std::string& name, std::int64_t dim, std::int64_t hidden)
      : fc1(name + ".fc1", dim, hidden), fc2(name + ".fc2", hidden, dim) {}
  Var<T> operator()(Tape<T>& tape, Var<T> x) { return fc2(tape, ops::gelu(tape, fc1(tape, x))); }
  void init_xavier(std::uint64_t seed) {
    fc1.init_xavier(seed);
    fc2.init_xavier(seed);
  }
  void collect_parameters(ParameterList<T>& out) {
    fc1.collect_parameters(out);
    fc2.collect_parameters(out);
  }
  Linear<T> fc1, fc2;
};

}  // namespace vitfreeze::nn
