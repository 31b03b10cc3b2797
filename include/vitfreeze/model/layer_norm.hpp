#pragma once
// LayerNorm over `rows` rows of width D, explicit forward and backward; the statistics (mean and
// 1/std per row, in the policy's master type) are what the forward keeps. The backward accumulates
// dx and the parameter gradients.
#include "vitfreeze/model/module.hpp"

namespace vitfreeze::model {

template <class B, class M>
struct RowStatistics {
  ArrayOf<B, M> mean, rstd;  // [rows]
  static RowStatistics make(typename B::Context& ctx, std::int64_t rows) {
    return {B::template empty<M>(ctx, Shape{rows}), B::template empty<M>(ctx, Shape{rows})};
  }
};

template <Backend B, PrecisionPolicy P>
  requires BackendFor<B, P>
class LayerNorm {
 public:
  using T = typename P::Activation;
  using M = typename P::Master;
  using Context = typename B::Context;
  using Statistics = RowStatistics<B, M>;

  LayerNorm() = default;
  template <class HostLayerNorm>
  LayerNorm(Context& ctx, HostLayerNorm& host)
      : weight(ctx, host.weight), bias(ctx, host.bias), dim_(host.weight.value.numel()) {}

  std::int64_t dim() const { return dim_; }
  bool trains() const { return weight.trainable() || bias.trainable(); }

  void forward(Context& ctx, const T* x, T* y, const Statistics& stats, std::int64_t rows) const {
    B::layernorm_forward(ctx, x, weight.value(), bias.value(), y, stats.mean.data(), stats.rstd.data(), rows, dim_,
                         kLayerNormEps);
  }
  // sum = x + residual (written), y = LayerNorm(sum)
  void forward_residual(Context& ctx, const T* x, const T* residual, T* sum, T* y, const Statistics& stats,
                        std::int64_t rows) const {
    B::residual_layernorm_forward(ctx, x, residual, sum, weight.value(), bias.value(), y, stats.mean.data(),
                                  stats.rstd.data(), rows, dim_, kLayerNormEps);
  }
  // x: the forward's input. dx accumulates (may be null).
  void backward(Context& ctx, const T* dy, const T* x, const Statistics& stats, T* dx, std::int64_t rows) const {
    const bool train = weight.trainable();
    B::layernorm_backward(ctx, dy, x, weight.value(), stats.mean.data(), stats.rstd.data(), dx,
                          train ? weight.grad() : nullptr, train ? bias.grad() : nullptr, rows, dim_);
  }

  template <class List>
  void collect_parameters(List& out) {
    out.push_back(&weight);
    out.push_back(&bias);
  }

  ParameterOf<B, P> weight, bias;

 private:
  std::int64_t dim_ = 0;
};

}  // namespace vitfreeze::model
