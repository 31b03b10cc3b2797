#pragma once
#include <string>

#include "vitfreeze/autograd/ops/layernorm.hpp"
#include "vitfreeze/nn/module.hpp"

namespace vitfreeze::nn {

// LayerNorm over the last dimension, weight 1 and bias 0 at init, eps 1e-6 (all timm ViTs here).
template <CpuScalar T>
class LayerNorm {
 public:
  LayerNorm(const std::string& name, std::int64_t dim, double eps = 1e-6)
      : weight(name + ".weight", Shape{dim}, false), bias(name + ".bias", Shape{dim}, false), eps_(eps) {
    weight.value.fill(T(1));
  }
  Var<T> operator()(Tape<T>& tape, Var<T> x) {
    return ops::layernorm(tape, x, tape.parameter(weight), tape.parameter(bias), eps_);
  }
  void init() {
    weight.value.fill(T(1));
    bias.value.zero();
  }
  void collect_parameters(ParameterList<T>& out) {
    out.push_back(&weight);
    out.push_back(&bias);
  }

  Parameter<T> weight, bias;

 private:
  double eps_;
};

}  // namespace vitfreeze::nn
