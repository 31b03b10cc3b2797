#pragma once
// Pre-LN transformer block x + Attn(LN1(x)), then + MLP(LN2(.)), explicit forward and backward.
// The residual add after the attention is fused into LN2's pass; GELU into fc1's GEMM (where the
// backend's epilogue computes the policy's GELU) and its derivative into fc2's input-gradient GEMM.
// The residual gradient is updated in place: the backward turns d(out) into d(x) in one buffer.
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
        fc1(ctx, host.mlp.fc1), fc2(ctx, host.mlp.fc2), heads_(host.attn.heads()) {}

  std::int64_t dim() const { return norm1.dim(); }
  bool trains() const {
    return norm1.trains() || qkv.trains() || proj.trains() || norm2.trains() || fc1.trains() || fc2.trains();
  }

  // x [B, tokens, D] -> a new array [B, tokens, D]
  Array forward(Context& ctx, const Array& x, std::int64_t batch, std::int64_t tokens, Saved* saved) const {
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
    B::template attention_forward<P>(ctx, k.qkv.data(), k.attn.data(), s, saved ? &k.attention : nullptr);
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

  // grad: on entry d(out), on return d(x) (left as d(h) when need_input_grad is false).
  void backward(Context& ctx, const Saved& k, Array& grad, std::int64_t batch, std::int64_t tokens,
                bool need_input_grad = true) const {
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
    B::template attention_backward<P>(ctx, dattn.data(), k.qkv.data(), k.attn.data(), k.attention, dqkv.data(), s);
    qkv.backward(ctx, dqkv.data(), k.ln1.data(), dln.data(), rows);  // LN1's own gradients need it
    norm1.backward(ctx, dln.data(), k.x.data(), k.stats1, need_input_grad ? g : nullptr, rows);  // g = d(x)
  }

  template <class List>
  void collect_parameters(List& out) {
    norm1.collect_parameters(out);
    qkv.collect_parameters(out);
    proj.collect_parameters(out);
    norm2.collect_parameters(out);
    fc1.collect_parameters(out);
    fc2.collect_parameters(out);
  }

  LayerNorm<B, P> norm1;
  Linear<B, P> qkv, proj;
  LayerNorm<B, P> norm2;
  Linear<B, P> fc1, fc2;

 private:
  std::int64_t heads_;
};

}  // namespace vitfreeze::model
