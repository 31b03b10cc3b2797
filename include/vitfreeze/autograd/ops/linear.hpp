#pragma once
// y = x W^T + b over the last dimension of x; a 1x1 convolution over the channel axis.
#include "vitfreeze/autograd/tape.hpp"
#include "vitfreeze/backend/cpu/linear.hpp"

namespace vitfreeze::ops {

template <CpuScalar T>
Var<T> linear(Tape<T>& tape, Var<T> x, Var<T> weight, Var<T> bias = {}) {
  const Tensor<T>& X = tape.value(x);
  const Tensor<T>& W = tape.value(weight);
  const std::int64_t K = X.shape().cols(), M = X.shape().rows(), N = W.dim(0);
  if (W.rank() != 2 || W.dim(1) != K)
    throw ShapeError("linear: input " + X.shape().str() + " does not match weight " + W.shape().str());
  if (bias.valid()) expect_shape(tape.value(bias).shape(), Shape{N}, "linear bias");
  Tensor<T> Y = tape.alloc(X.shape().with_last(N));
  cpu::linear_forward(X.data(), W.data(), bias.valid() ? tape.value(bias).data() : nullptr, Y.data(), M, K, N);
  const bool grad = tape.needs_grad(x, weight, bias);
  Var<T> y = tape.result(Y, grad);
  if (grad)
    tape.record([x, weight, bias, y, M, K, N](Tape<T>& t) {
      if (!t.has_grad(y)) return;
      cpu::linear_backward(t.grad(y).data(), t.value(x).data(), t.value(weight).data(), t.grad_or_null(x),
                           t.grad_or_null(weight), t.grad_or_null(bias), M, K, N);
    });
  return y;
}

// x [B, Cin, ...] -> [B, Cout, ...]: y[b, o, ...] = sum_c W[o, c] x[b, c, ...] (a 1x1 convolution
// without bias, W [Cout, Cin]; any trailing axes are the convolution's positions).
template <CpuScalar T>
Var<T> channel_mix(Tape<T>& tape, Var<T> x, Var<T> weight) {
  const Tensor<T>& X = tape.value(x);
  const Tensor<T>& W = tape.value(weight);
  if (X.rank() < 2 || X.rank() > 4 || W.rank() != 2 || W.dim(1) != X.dim(1))
    throw ShapeError("channel_mix: input " + X.shape().str() + " does not match weight " + W.shape().str());
  const std::int64_t B = X.dim(0), Cin = X.dim(1), Cout = W.dim(0), N = X.numel() / (B * Cin);
  const Shape out_shape = X.rank() == 2 ? Shape{B, Cout}
                          : X.rank() == 3 ? Shape{B, Cout, X.dim(2)}
                                          : Shape{B, Cout, X.dim(2), X.dim(3)};
  Tensor<T> Y = tape.alloc(out_shape);
  cpu::channel_mix_forward(X.data(), W.data(), Y.data(), B, Cin, Cout, N);
  const bool grad = tape.needs_grad(x, weight);
  Var<T> y = tape.result(Y, grad);
  if (grad)
    tape.record([x, weight, y, B, Cin, Cout, N](Tape<T>& t) {
      if (!t.has_grad(y)) return;
      cpu::channel_mix_backward(t.grad(y).data(), t.value(x).data(), t.value(weight).data(), t.grad_or_null(x),
                                t.grad_or_null(weight), B, Cin, Cout, N);
    });
  return y;
}

}  // namespace vitfreeze::ops
