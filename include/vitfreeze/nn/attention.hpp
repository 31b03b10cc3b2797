#pragma once
#include <optional>

#include "vitfreeze/autograd/ops/attention.hpp"
#include "vitfreeze/backend/relative_position.hpp"
#include "vitfreeze/nn/linear.hpp"

namespace vitfreeze::nn {

// Multi-head self-attention with a fused qkv projection (with bias) and an output projection.
// With `relative_position`, LoMaR's iRPE on the keys (backend/relative_position.hpp): one table
// `rpe_k.lookup_table_weight` [head_dim, 50] shared by the heads, zero-initialised (attention then
// starts as plain attention), weight-decayed like any matrix; files hold it as iRPE does, [1, head_dim, 50].
template <CpuScalar T>
class Attention {
 public:
  Attention(const std::string& name, std::int64_t dim, std::int64_t heads, bool relative_position = false)
      : qkv(name + ".qkv", dim, 3 * dim), proj(name + ".proj", dim, dim), heads_(heads) {
    if (dim % heads != 0) throw ShapeError("Attention: dim " + std::to_string(dim) + " not divisible by heads");
    if (relative_position) {
      rpe_k.emplace(name + ".rpe_k.lookup_table_weight", Shape{dim / heads, kRelativePositionBuckets}, true);
      rpe_k->file_shape = Shape{1, dim / heads, kRelativePositionBuckets};
    }
  }

  // x [B, T, D]; buckets [T, T]: the relative bucket of each query-key pair (relative attention only).
  // The qkv of the latest call stays readable as last_qkv (MAE-lite's attention distillation reads it).
  Var<T> operator()(Tape<T>& tape, Var<T> x, const Tensor<std::int32_t>* buckets = nullptr) {
    if (rpe_k.has_value() != (buckets != nullptr))
      throw ConfigError("Attention: relative position attention needs its buckets, and only it takes them");
    last_qkv = qkv(tape, x);
    const Var<T> table = rpe_k ? tape.parameter(*rpe_k) : Var<T>{};
    return proj(tape, ops::attention(tape, last_qkv, heads_, table, buckets));
  }
  // MAE initialises the fused qkv as one Xavier matrix [3D, D].
  void init_xavier(std::uint64_t seed) {
    qkv.init_xavier(seed);
    proj.init_xavier(seed);
    if (rpe_k) rpe_k->value.zero();
  }
  // iRPE's module order: qkv, proj, then the relative table.
  void collect_parameters(ParameterList<T>& out) {
    qkv.collect_parameters(out);
    proj.collect_parameters(out);
    if (rpe_k) out.push_back(&*rpe_k);
  }
  std::int64_t heads() const { return heads_; }
  bool relative_position() const { return rpe_k.has_value(); }

  Linear<T> qkv, proj;
  std::optional<Parameter<T>> rpe_k;
  Var<T> last_qkv;

 private:
  std::int64_t heads_;
};

}  // namespace vitfreeze::nn
