#pragma once
// nn::Block on the device with an explicit backward: x + Attn(LN1(x)), then + MLP(LN2(.)).
// The forward keeps what the backward reads in a Saved record; with no record (a frozen block, or
// evaluation) it keeps nothing and its temporaries go back to the cache as soon as it returns.
// The residual gradient is updated in place: the backward turns d(out) into d(x) in one buffer.
#include "vitfreeze/backend/cuda/nn/attention_core.cuh"
#include "vitfreeze/backend/cuda/nn/layer_norm.cuh"
#include "vitfreeze/backend/cuda/nn/linear.cuh"
#include "vitfreeze/nn/block.hpp"

namespace vitfreeze::cuda::nn {

template <PrecisionPolicy P>
class DeviceBlock {
 public:
  using T = typename P::Activation;

  struct Saved {
    DeviceBuffer x, ln1, qkv, attn, h, ln2, pre, act;
    RowStatistics stats1, stats2;
    typename AttentionCore<P>::Saved attention;
  };

  DeviceBlock(CudaContext& ctx, const vitfreeze::nn::Block<float>& host)
      : norm1(ctx, host.norm1), qkv(ctx, host.attn.qkv), proj(ctx, host.attn.proj), norm2(ctx, host.norm2),
        fc1(ctx, host.mlp.fc1), fc2(ctx, host.mlp.fc2), heads_(host.attn.heads()) {}

  // x [B, tokens, D] -> new buffer [B, tokens, D]
  DeviceBuffer forward(CudaContext& ctx, const DeviceBuffer& x, std::int64_t batch, std::int64_t tokens, Saved* saved) const {
    const std::int64_t D = norm1.dim(), rows = batch * tokens, hidden = fc1.out_features();
    const AttentionShape s{batch, tokens, heads_, D / heads_};
    Saved local;
    Saved& k = saved ? *saved : local;
    k.x = x;
    k.ln1 = device_array<T>(ctx, rows * D);
    k.stats1 = RowStatistics::make(ctx, rows);
    norm1.forward(ctx, data_of<T>(x), data_of<T>(k.ln1), k.stats1, rows);
    k.qkv = device_array<T>(ctx, rows * 3 * D);
    qkv.forward(ctx, data_of<T>(k.ln1), data_of<T>(k.qkv), rows);
    k.attn = device_array<T>(ctx, rows * D);
    AttentionCore<P>::forward(ctx, data_of<T>(k.qkv), data_of<T>(k.attn), s, saved ? &k.attention : nullptr);
    DeviceBuffer attn_out = device_array<T>(ctx, rows * D);
    proj.forward(ctx, data_of<T>(k.attn), data_of<T>(attn_out), rows);
    k.h = device_array<T>(ctx, rows * D);
    k.ln2 = device_array<T>(ctx, rows * D);
    k.stats2 = RowStatistics::make(ctx, rows);
    norm2.forward_residual(ctx, data_of<T>(x), data_of<T>(attn_out), data_of<T>(k.h), data_of<T>(k.ln2), k.stats2, rows);
    k.pre = device_array<T>(ctx, rows * hidden);
    k.act = device_array<T>(ctx, rows * hidden);
    fc1.forward_gelu(ctx, data_of<T>(k.ln2), data_of<T>(k.pre), data_of<T>(k.act), rows);
    DeviceBuffer out = attn_out;  // reused: fc2's output, then the residual sum
    fc2.forward(ctx, data_of<T>(k.act), data_of<T>(out), rows);
    add_in_place<T>(ctx, data_of<T>(out), data_of<T>(k.h), rows * D);
    return out;
  }

  // grad: on entry d(out), on return d(x) (skipped, left as d(h), when need_input_grad is false).
  void backward(CudaContext& ctx, const Saved& k, DeviceBuffer& grad, std::int64_t batch, std::int64_t tokens,
                bool need_input_grad = true) const {
    const std::int64_t D = norm1.dim(), rows = batch * tokens, hidden = fc1.out_features();
    const AttentionShape s{batch, tokens, heads_, D / heads_};
    T* g = data_of<T>(grad);
    DeviceBuffer dpre = device_array<T>(ctx, rows * hidden);
    fc2.backward_through_gelu(ctx, g, data_of<T>(k.act), data_of<T>(k.pre), data_of<T>(dpre), rows);
    DeviceBuffer dln = device_array<T>(ctx, rows * D);
    fc1.backward(ctx, data_of<T>(dpre), data_of<T>(k.ln2), data_of<T>(dln), rows);
    norm2.backward(ctx, data_of<T>(dln), data_of<T>(k.h), k.stats2, g, rows);  // g = d(h)
    DeviceBuffer dattn = device_array<T>(ctx, rows * D);
    proj.backward(ctx, g, data_of<T>(k.attn), data_of<T>(dattn), rows);
    DeviceBuffer dqkv = device_array<T>(ctx, rows * 3 * D);
    AttentionCore<P>::backward(ctx, data_of<T>(dattn), data_of<T>(k.qkv), data_of<T>(k.attn), k.attention, data_of<T>(dqkv), s);
    qkv.backward(ctx, data_of<T>(dqkv), data_of<T>(k.ln1), data_of<T>(dln), rows);  // LN1's own gradients need it
    norm1.backward(ctx, data_of<T>(dln), data_of<T>(k.x), k.stats1, need_input_grad ? g : nullptr, rows);  // g = d(x)
  }

  void collect_parameters(DeviceParameterList<T>& out) {
    norm1.collect_parameters(out);
    qkv.collect_parameters(out);
    proj.collect_parameters(out);
    norm2.collect_parameters(out);
    fc1.collect_parameters(out);
    fc2.collect_parameters(out);
  }

  DeviceLayerNorm<P> norm1;
  DeviceLinear<P> qkv, proj;
  DeviceLayerNorm<P> norm2;
  DeviceLinear<P> fc1, fc2;

 private:
  std::int64_t heads_;
};

}  // namespace vitfreeze::cuda::nn
