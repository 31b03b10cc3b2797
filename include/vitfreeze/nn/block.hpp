#pragma once
#include "vitfreeze/autograd/ops/elementwise.hpp"
#include "vitfreeze/nn/attention.hpp"
#include "vitfreeze/nn/layernorm.hpp"
#include "vitfreeze/nn/mlp.hpp"

namespace vitfreeze::nn {

// Pre-LN transformer block: x += Attn(LN1(x)); x += MLP(LN2(x)).
template <CpuScalar T>
class Block {
 public:
  Block(const std::string& name, std::int64_t dim, std::int64_t heads, std::int64_t hidden)
      : norm1(name + ".norm1", dim), attn(name + ".attn", dim, heads), norm2(name + ".norm2", dim),
        mlp(name + ".mlp", dim, hidden) {}

  Var<T> operator()(Tape<T>& tape, Var<T> x) {
    x = ops::add(tape, x, attn(tape, norm1(tape, x)));
    return ops::add(tape, x, mlp(tape, norm2(tape, x)));
  }
  void init_xavier(std::uint64_t seed) {
    norm1.init();
    norm2.init();
    attn.init_xavier(seed);
    mlp.init_xavier(seed);
  }
  void collect_parameters(ParameterList<T>& out) {
    norm1.collect_parameters(out);
    attn.collect_parameters(out);
    norm2.collect_parameters(out);
    mlp.collect_parameters(out);
  }

  LayerNorm<T> norm1;
  Attention<T> attn;
  LayerNorm<T> norm2;
  Mlp<T> mlp;
};

}  // namespace vitfreeze::nn
