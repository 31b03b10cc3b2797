#pragma once
#include "vitfreeze/autograd/ops/elementwise.hpp"
#include "vitfreeze/nn/attention.hpp"
#include "vitfreeze/nn/drop_path.hpp"
#include "vitfreeze/nn/layernorm.hpp"
#include "vitfreeze/nn/mlp.hpp"

namespace vitfreeze::nn {

// Pre-LN transformer block: x += Attn(LN1(x)); x += MLP(LN2(x)). With `relative_position` the
// attention carries LoMaR's relative key bias (nn/attention.hpp); `buckets` then gives the bucket of
// each query-key pair of the sequence. `drop` (fine-tuning only) scales each sample's two residual
// branches (nn/drop_path.hpp).
template <CpuScalar T>
class Block {
 public:
  Block(const std::string& name, std::int64_t dim, std::int64_t heads, std::int64_t hidden,
        bool relative_position = false)
      : norm1(name + ".norm1", dim), attn(name + ".attn", dim, heads, relative_position), norm2(name + ".norm2", dim),
        mlp(name + ".mlp", dim, hidden) {}

  Var<T> operator()(Tape<T>& tape, Var<T> x, const Tensor<std::int32_t>* buckets = nullptr,
                    const BranchScales<T>* drop = nullptr) {
    Var<T> a = attn(tape, norm1(tape, x), buckets);
    if (drop) a = ops::scale_samples(tape, a, drop->attention);
    x = ops::add(tape, x, a);
    Var<T> m = mlp(tape, norm2(tape, x));
    if (drop) m = ops::scale_samples(tape, m, drop->mlp);
    return ops::add(tape, x, m);
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
