#pragma once
#include <string>

#include "vitfreeze/autograd/ops/linear.hpp"
#include "vitfreeze/nn/init.hpp"
#include "vitfreeze/nn/module.hpp"

namespace vitfreeze::nn {

// timm/PyTorch nn.Linear: weight [out, in], bias [out].
template <CpuScalar T>
class Linear {
 public:
  Linear(const std::string& name, std::int64_t in, std::int64_t out, bool bias = true)
      : weight(name + ".weight", Shape{out, in}, true), bias_(bias) {
    if (bias) this->bias = Parameter<T>(name + ".bias", Shape{out}, false);
  }

  Var<T> operator()(Tape<T>& tape, Var<T> x) {
    return ops::linear(tape, x, tape.parameter(weight), bias_ ? tape.parameter(bias) : Var<T>{});
  }

  // MAE init: Xavier-uniform weight, zero bias.
  void init_xavier(std::uint64_t seed) {
    xavier_uniform(weight, weight.value.dim(0), weight.value.dim(1), seed);
    if (bias_) bias.value.zero();
  }
  // PyTorch's default Linear/Conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
  void init_default(std::uint64_t seed) {
    const double bound = 1.0 / std::sqrt(double(weight.value.dim(1)));
    uniform_init(weight, bound, seed);
    if (bias_) uniform_init(bias, bound, seed);
  }

  void collect_parameters(ParameterList<T>& out) {
    out.push_back(&weight);
    if (bias_) out.push_back(&bias);
  }
  std::int64_t in_features() const { return weight.value.dim(1); }
  std::int64_t out_features() const { return weight.value.dim(0); }

  Parameter<T> weight;
  Parameter<T> bias;

 private:
  bool bias_;
};

}  // namespace vitfreeze::nn
