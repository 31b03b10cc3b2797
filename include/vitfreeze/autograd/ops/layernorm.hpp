#pragma once
// LayerNorm over the last dimension (also LayerNorm2d on channels-last maps).
#include "vitfreeze/autograd/tape.hpp"
#include "vitfreeze/backend/cpu/layernorm.hpp"

namespace vitfreeze::ops {

template <CpuScalar T>
Var<T> layernorm(Tape<T>& tape, Var<T> x, Var<T> gamma, Var<T> beta, double eps = 1e-6) {
  const Tensor<T>& X = tape.value(x);
  const std::int64_t D = X.shape().cols(), rows = X.shape().rows();
  expect_shape(tape.value(gamma).shape(), Shape{D}, "layernorm weight");
  expect_shape(tape.value(beta).shape(), Shape{D}, "layernorm bias");
  Tensor<T> Y = tape.alloc(X.shape());
  const bool grad = tape.needs_grad(x, gamma, beta);
  Tensor<T> stats = grad ? tape.alloc(Shape{2, rows}) : Tensor<T>();  // mean, rstd: saved only when needed
  cpu::layernorm_forward(X.data(), tape.value(gamma).data(), tape.value(beta).data(), Y.data(),
                         grad ? stats.data() : nullptr, grad ? stats.data() + rows : nullptr, rows, D, eps);
  Var<T> y = tape.result(Y, grad);
  if (grad)
    tape.record([x, gamma, beta, y, stats, rows, D](Tape<T>& t) {
      if (!t.has_grad(y)) return;
      cpu::layernorm_backward(t.grad(y).data(), t.value(x).data(), t.value(gamma).data(), stats.data(),
                              stats.data() + rows, t.grad_or_null(x), t.grad_or_null(gamma), t.grad_or_null(beta),
                              rows, D);
    });
  return y;
}

}  // namespace vitfreeze::ops
