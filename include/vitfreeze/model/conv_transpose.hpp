#pragma once
// ConvTranspose2d(in -> out, kernel 2, stride 2) on a channels-last map, explicit forward and backward,
// as mim::ConvTranspose2x2 computes it: one GEMM x W^T over every pixel (W [4 out, in], one output
// column per output channel and kernel position), then pixel_shuffle_2x2 adding the bias. The
// backward un-shuffles the gradient and takes dW (with, through the GEMM's bias-gradient epilogue,
// the per-position column sums that fold into db) and dx from it.
#include "vitfreeze/model/module.hpp"

namespace vitfreeze::model {

template <Backend B, PrecisionPolicy P>
  requires BackendFor<B, P>
class ConvTranspose2x2 {
 public:
  using T = typename P::Activation;
  using M = typename P::Master;
  using Context = typename B::Context;
  using Array = ArrayOf<B, T>;

  template <class HostConv>
  ConvTranspose2x2(Context& ctx, HostConv& host)
      : weight(ctx, host.weight), bias(ctx, host.bias), in_(host.in_channels()), out_(host.out_channels()) {}

  std::int64_t in_channels() const { return in_; }
  std::int64_t out_channels() const { return out_; }

  // x: g.rows() rows of `in` channels (map h x w behind g.skip rows per sample) -> new [B, 2h, 2w, out].
  Array forward(Context& ctx, const T* x, const MapGeometry& g) const {
    Array positions = B::template empty<T>(ctx, Shape{g.rows(), 4 * out_});
    B::gemm(ctx, false, true, g.rows(), 4 * out_, in_, 1.0, x, in_, weight.value(), in_, 0.0, positions.data(), 4 * out_);
    Array y = B::template empty<T>(ctx, Shape{g.batch, 2 * g.height, 2 * g.width, out_});
    B::pixel_shuffle_2x2_forward(ctx, positions.data(), bias.value(), y.data(), g, out_);
    return y;
  }

  // dy [B, 2h, 2w, out]; x: the forward's input. Accumulates dW, db (if trainable); dx is
  // overwritten (skipped rows get 0), or not computed when null.
  void backward(Context& ctx, const T* dy, const T* x, T* dx, const MapGeometry& g) const {
    Array dpositions = B::template empty<T>(ctx, Shape{g.rows(), 4 * out_});
    B::pixel_shuffle_2x2_backward(ctx, dy, dpositions.data(), g, out_);
    if (weight.trainable()) {
      auto column_sums = B::template empty<M>(ctx, Shape{4 * out_});
      GemmEpilogue<M> e;
      e.kind = Epilogue::bgradb;
      e.bias_grad = column_sums.data();
      B::gemm(ctx, true, false, 4 * out_, in_, g.rows(), 1.0, dpositions.data(), 4 * out_, x, in_, 1.0, weight.grad(),
              in_, e);
      B::fold_kernel_position_sums(ctx, column_sums.data(), bias.grad(), out_);
    }
    if (dx)
      B::gemm(ctx, false, false, g.rows(), in_, 4 * out_, 1.0, dpositions.data(), 4 * out_, weight.value(), in_, 0.0, dx,
              in_);
  }

  template <class List>
  void collect_parameters(List& out) {
    out.push_back(&weight);
    out.push_back(&bias);
  }

  ParameterOf<B, P> weight;  // [4 out, in]
  ParameterOf<B, P> bias;    // [out]

 private:
  std::int64_t in_ = 0, out_ = 0;
};

}  // namespace vitfreeze::model
