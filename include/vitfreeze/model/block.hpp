#pragma once
// Pre-LN transformer block x + Attn(LN1(x)), then + MLP(LN2(.)), explicit forward and backward.
// The residual add after the attention is fused into LN2's pass; GELU into fc1's GEMM (where the
// backend's epilogue computes the policy's GELU) and its derivative into fc2's input-gradient GEMM.
// The residual gradient is updated in place: the backward turns d(out) into d(x) in one buffer.
// A relative block (LoMaR) adds its table's key bias inside the attention: the forward and backward
// then take the bucket of each query-key pair ([tokens, tokens] in the backend's memory), and the
// backend must have the relative attention kernels (backend/backend.hpp).
#include <string>

#include "vitfreeze/backend/relative_position.hpp"
#include "vitfreeze/model/layer_norm.hpp"
#include "vitfreeze/model/linear.hpp"

namespace vitfreeze::model {

template <Backend B, PrecisionPolicy P>
  requires BackendFor<B, P>
class Block {
 public:
  using T = typename P::Activation;
  using M = typename P::Master;
  using Context = typename B::Context;
  using Array = ArrayOf<B, T>;
  using Statistics = RowStatistics<B, M>;

  struct Saved {
    Array x, ln1, qkv, attn, h, ln2, pre, act;
    Statistics stats1, stats2;
    typename B::template AttentionSaved<P> attention;
  };

  template <class HostBlock>
  Block(Context& ctx, HostBlock& host)
      : norm1(ctx, host.norm1), qkv(ctx, host.attn.qkv), proj(ctx, host.attn.proj), norm2(ctx, host.norm2),
        fc1(ctx, host.mlp.fc1), fc2(ctx, host.mlp.fc2), heads_(host.attn.heads()),
        relative_(host.attn.relative_position()) {
    if (relative_) relative_table = ParameterOf<B, P>(ctx, *host.attn.rpe_k);
  }

  std::int64_t dim() const { return norm1.dim(); }
  bool relative_position() const { return relative_; }
  bool trains() const {
    return norm1.trains() || qkv.trains() || proj.trains() || norm2.trains() || fc1.trains() || fc2.trains() ||
           (relative_ && relative_table.trainable());
  }

  // x [B, tokens, D] -> a new array [B, tokens, D]. buckets: [tokens, tokens] (relative blocks only).
  Array forward(Context& ctx, const Array& x, std::int64_t batch, std::int64_t tokens, Saved* saved,
                const std::int32_t* buckets = nullptr) const {
    const std::int64_t D = dim(), rows = batch * tokens, hidden = fc1.out_features();
    expect_rows(x, rows, D, "model::Block input");
    const AttentionShape s{batch, tokens, heads_, D / heads_};
    Saved local;
    Saved& k = saved ? *saved : local;
    k.x = x;
    k.ln1 = B::template empty<T>(ctx, Shape{rows, D});
    k.stats1 = Statistics::make(ctx, rows);
    norm1.forward(ctx, x.data(), k.ln1.data(), k.stats1, rows);
    k.qkv = B::template empty<T>(ctx, Shape{rows, 3 * D});
    qkv.forward(ctx, k.ln1.data(), k.qkv.data(), rows);
    k.attn = B::template empty<T>(ctx, Shape{rows, D});
    attention_forward(ctx, k.qkv.data(), k.attn.data(), s, saved ? &k.attention : nullptr, buckets);
    Array out = B::template empty<T>(ctx, Shape{batch, tokens, D});  // the attention's projection, then the block's output
    proj.forward(ctx, k.attn.data(), out.data(), rows);
    k.h = B::template empty<T>(ctx, Shape{rows, D});
    k.ln2 = B::template empty<T>(ctx, Shape{rows, D});
    k.stats2 = Statistics::make(ctx, rows);
    norm2.forward_residual(ctx, x.data(), out.data(), k.h.data(), k.ln2.data(), k.stats2, rows);
    k.pre = B::template empty<T>(ctx, Shape{rows, hidden});
    k.act = B::template empty<T>(ctx, Shape{rows, hidden});
    fc1.forward_gelu(ctx, k.ln2.data(), k.pre.data(), k.act.data(), rows);
    fc2.forward(ctx, k.act.data(), out.data(), rows);
    B::add_in_place(ctx, out.data(), k.h.data(), rows * D);
    return out;
  }

  // grad: on entry d(out), on return d(x) (left as d(h) when need_input_grad is false). extra_dqkv
  // [rows, 3D] (null: none) joins the attention's qkv gradient: a loss on this block's attention
  // logits (MAE-lite's distillation).
  void backward(Context& ctx, const Saved& k, Array& grad, std::int64_t batch, std::int64_t tokens,
                bool need_input_grad = true, const std::int32_t* buckets = nullptr,
                const T* extra_dqkv = nullptr) const {
    const std::int64_t D = dim(), rows = batch * tokens, hidden = fc1.out_features();
    expect_rows(grad, rows, D, "model::Block gradient");
    const AttentionShape s{batch, tokens, heads_, D / heads_};
    T* g = grad.data();
    Array dpre = B::template empty<T>(ctx, Shape{rows, hidden});
    fc2.backward_through_gelu(ctx, g, k.act.data(), k.pre.data(), dpre.data(), rows);
    Array dln = B::template empty<T>(ctx, Shape{rows, D});
    fc1.backward(ctx, dpre.data(), k.ln2.data(), dln.data(), rows);
    norm2.backward(ctx, dln.data(), k.h.data(), k.stats2, g, rows);  // g = d(h)
    Array dattn = B::template empty<T>(ctx, Shape{rows, D});
    proj.backward(ctx, g, k.attn.data(), dattn.data(), rows);
    Array dqkv = B::template empty<T>(ctx, Shape{rows, 3 * D});
    attention_backward(ctx, dattn.data(), k, dqkv.data(), s, buckets);
    if (extra_dqkv) B::add_in_place(ctx, dqkv.data(), extra_dqkv, rows * 3 * D);
    qkv.backward(ctx, dqkv.data(), k.ln1.data(), dln.data(), rows);  // LN1's own gradients need it
    norm1.backward(ctx, dln.data(), k.x.data(), k.stats1, need_input_grad ? g : nullptr, rows);  // g = d(x)
  }

  template <class List>
  void collect_parameters(List& out) {
    norm1.collect_parameters(out);
    qkv.collect_parameters(out);
    proj.collect_parameters(out);
    if (relative_) out.push_back(&relative_table);
    norm2.collect_parameters(out);
    fc1.collect_parameters(out);
    fc2.collect_parameters(out);
  }

  LayerNorm<B, P> norm1;
  Linear<B, P> qkv, proj;
  LayerNorm<B, P> norm2;
  Linear<B, P> fc1, fc2;
  ParameterOf<B, P> relative_table;  // LoMaR's rpe_k.lookup_table_weight [head_dim, 50] (relative blocks)

 private:
  static constexpr bool kRelativeKernels = requires(Context& c, const T* x, T* y, const AttentionShape& s,
                                                    typename B::template AttentionSaved<P>* a,
                                                    const RelativeKeyBias<T>* r) {
    B::template attention_forward<P>(c, x, y, s, a, r);
    B::template attention_backward<P>(c, x, x, x, *a, y, s, r);
  };

  RelativeKeyBias<T> relative_bias(const std::int32_t* buckets, bool backward) const {
    if (!buckets) throw ConfigError("model::Block: relative attention needs the buckets of its sequence");
    return {relative_table.value(), buckets, kRelativePositionBuckets, backward ? relative_table.grad() : nullptr};
  }

  void attention_forward(Context& ctx, const T* qkv_rows, T* out, const AttentionShape& s,
                         typename B::template AttentionSaved<P>* saved, const std::int32_t* buckets) const {
    if (!relative_) return B::template attention_forward<P>(ctx, qkv_rows, out, s, saved);
    if constexpr (kRelativeKernels) {
      const RelativeKeyBias<T> bias = relative_bias(buckets, false);
      B::template attention_forward<P>(ctx, qkv_rows, out, s, saved, &bias);
    } else {
      throw ConfigError(std::string("model::Block: the ") + B::name + " backend has no relative position attention");
    }
  }
  void attention_backward(Context& ctx, const T* dattn, const Saved& k, T* dqkv, const AttentionShape& s,
                          const std::int32_t* buckets) const {
    if (!relative_)
      return B::template attention_backward<P>(ctx, dattn, k.qkv.data(), k.attn.data(), k.attention, dqkv, s);
    if constexpr (kRelativeKernels) {
      const RelativeKeyBias<T> bias = relative_bias(buckets, true);
      B::template attention_backward<P>(ctx, dattn, k.qkv.data(), k.attn.data(), k.attention, dqkv, s, &bias);
    } else {
      throw ConfigError(std::string("model::Block: the ") + B::name + " backend has no relative position attention");
    }
  }

  std::int64_t heads_;
  bool relative_ = false;
};

}  // namespace vitfreeze::model
