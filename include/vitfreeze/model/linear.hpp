#pragma once
// Linear layer y = x W^T + b over `rows` tokens (weight [out, in] as in timm), explicit forward and
// backward. The backward accumulates dW and db (when the weight trains) and writes or accumulates dx.
// forward_gelu / backward_through_gelu serve the MLP's first layer: the GELU runs in the GEMM's
// epilogue where the backend's epilogue computes the GELU the policy asks for (CPU: exact erf in
// every policy; cuBLASLt: the tanh form, used for the half policies), the pre-activation being the
// epilogue's aux; otherwise a bias epilogue and the exact GELU kernel.
#include "vitfreeze/model/module.hpp"

namespace vitfreeze::model {

template <Backend B, PrecisionPolicy P>
  requires BackendFor<B, P>
class Linear {
 public:
  using T = typename P::Activation;
  using M = typename P::Master;
  using Context = typename B::Context;
  static constexpr bool kGeluInEpilogue = B::template epilogue_gelu<P>;

  Linear() = default;
  template <class HostLinear>
  Linear(Context& ctx, HostLinear& host)
      : weight(ctx, host.weight), bias(ctx, host.bias), in_(host.in_features()), out_(host.out_features()) {
    if (host.bias.value.empty()) throw ConfigError("model::Linear " + host.weight.name + ": a bias is required");
  }

  std::int64_t in_features() const { return in_; }
  std::int64_t out_features() const { return out_; }
  bool trains() const { return weight.trainable() || bias.trainable(); }

  // y [rows, out] = x [rows, in] W^T + b; y's rows may be padded (ld_y >= out, 0: out) so that a narrow
  // output (LocalMIM's 27 values) keeps 16-byte aligned rows for the GPU's fast GEMM kernels.
  void forward(Context& ctx, const T* x, T* y, std::int64_t rows, std::int64_t ld_y = 0) const {
    GemmEpilogue<T> e;
    e.kind = Epilogue::bias;
    e.bias = bias.value();
    B::gemm(ctx, false, true, rows, out_, in_, 1.0, x, in_, weight.value(), in_, 0.0, y, ld_y > 0 ? ld_y : out_, e);
  }

  // pre = x W^T + b (kept for the backward), y = GELU(pre)
  void forward_gelu(Context& ctx, const T* x, T* pre, T* y, std::int64_t rows) const {
    GemmEpilogue<T> e;
    e.bias = bias.value();
    if constexpr (kGeluInEpilogue) {
      e.kind = Epilogue::gelu_aux_bias;
      e.aux = pre;
      e.ld_aux = out_;
      B::gemm(ctx, false, true, rows, out_, in_, 1.0, x, in_, weight.value(), in_, 0.0, y, out_, e);
    } else {
      e.kind = Epilogue::bias;
      B::gemm(ctx, false, true, rows, out_, in_, 1.0, x, in_, weight.value(), in_, 0.0, pre, out_, e);
      B::gelu_forward(ctx, pre, y, rows * out_);
    }
  }

  // dW += dy^T x, db += column sums of dy (if trainable); dx = dy W (overwritten, or added when
  // accumulate_dx), skipped when dx is null. ld_dy: dy's row stride (0: out), as forward's ld_y.
  void backward(Context& ctx, const T* dy, const T* x, T* dx, std::int64_t rows, bool accumulate_dx = false,
                std::int64_t ld_dy = 0) const {
    const std::int64_t ld = ld_dy > 0 ? ld_dy : out_;
    accumulate_parameter_grads(ctx, dy, x, rows, ld);
    if (dx) B::gemm(ctx, false, false, rows, in_, out_, 1.0, dy, ld, weight.value(), in_, accumulate_dx ? 1.0 : 0.0, dx, in_);
  }

  // For the layer after a GELU: x = GELU(pre); writes dpre = (dy W) * GELU'(pre), overwritten.
  void backward_through_gelu(Context& ctx, const T* dy, const T* x, const T* pre, T* dpre, std::int64_t rows) const {
    accumulate_parameter_grads(ctx, dy, x, rows, out_);
    if constexpr (kGeluInEpilogue) {
      GemmEpilogue<T> e;
      e.kind = Epilogue::dgelu;
      e.aux = const_cast<T*>(pre);  // read only by this epilogue
      e.ld_aux = in_;
      B::gemm(ctx, false, false, rows, in_, out_, 1.0, dy, out_, weight.value(), in_, 0.0, dpre, in_, e);
    } else {
      auto dgelu_out = B::template empty<T>(ctx, Shape{rows, in_});
      B::gemm(ctx, false, false, rows, in_, out_, 1.0, dy, out_, weight.value(), in_, 0.0, dgelu_out.data(), in_);
      B::zero(ctx, dpre, rows * in_);
      B::gelu_backward(ctx, dgelu_out.data(), pre, dpre, rows * in_);
    }
  }

  template <class List>
  void collect_parameters(List& out) {
    out.push_back(&weight);
    out.push_back(&bias);
  }

  ParameterOf<B, P> weight, bias;

 private:
  // db through the GEMM's bias-gradient epilogue (it overwrites), then added to the running sum.
  void accumulate_parameter_grads(Context& ctx, const T* dy, const T* x, std::int64_t rows, std::int64_t ld_dy) const {
    if (!weight.trainable()) return;
    auto db = B::template empty<M>(ctx, Shape{out_});
    GemmEpilogue<M> e;
    e.kind = Epilogue::bgradb;
    e.bias_grad = db.data();
    B::gemm(ctx, true, false, out_, in_, rows, 1.0, dy, ld_dy, x, in_, 1.0, weight.grad(), in_, e);
    B::add_in_place(ctx, bias.grad(), db.data(), out_);
  }

  std::int64_t in_ = 0, out_ = 0;
};

}  // namespace vitfreeze::model
