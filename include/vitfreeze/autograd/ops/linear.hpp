#pragma once
// y = x W^T + b over the last dimension of x.
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

}  // namespace vitfreeze::ops
