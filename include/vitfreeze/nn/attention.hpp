#pragma once
#include "vitfreeze/autograd/ops/attention.hpp"
#include "vitfreeze/nn/linear.hpp"

namespace vitfreeze::nn {

// Multi-head self-attention with a fused qkv projection (with bias) and an output projection.
template <CpuScalar T>
class Attention {
 public:
  Attention(const std::string& name, std::int64_t dim, std::int64_t heads)
      : qkv(name + ".qkv", dim, 3 * dim), proj(name + ".proj", dim, dim), heads_(heads) {
    if (dim % heads != 0) throw ShapeError("Attention: dim " + std::to_string(dim) + " not divisible by heads");
  }
  Var<T> operator()(Tape<T>& tape, Var<T> x) { return proj(tape, ops::attention(tape, qkv(tape, x), heads_)); }
  // MAE initialises the fused qkv as one Xavier matrix [3D, D].
  void init_xavier(std::uint64_t seed) {
    qkv.init_xavier(seed);
    proj.init_xavier(seed);
  }
  void collect_parameters(ParameterList<T>& out) {
    qkv.collect_parameters(out);
    proj.collect_parameters(out);
  }
  std::int64_t heads() const { return heads_; }
  Linear<T> qkv, proj;

 private:
  std::int64_t heads_;
};

}  // namespace vitfreeze::nn
