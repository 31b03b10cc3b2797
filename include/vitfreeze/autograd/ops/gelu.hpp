#pragma once
#include "vitfreeze/autograd/tape.hpp"
#include "vitfreeze/backend/cpu/gelu.hpp"

namespace vitfreeze::ops {

template <CpuScalar T>
Var<T> gelu(Tape<T>& tape, Var<T> x) {
  const Tensor<T>& X = tape.value(x);
  Tensor<T> Y = tape.alloc(X.shape());
  cpu::gelu_forward(X.data(), Y.data(), X.numel());
  const bool grad = tape.needs_grad(x);
  Var<T> y = tape.result(Y, grad);
  if (grad)
    tape.record([x, y](Tape<T>& t) {
      if (!t.has_grad(y)) return;
      cpu::gelu_backward(t.grad(y).data(), t.value(x).data(), t.grad(x).data(), t.value(x).numel());
    });
  return y;
}

}  // namespace vitfreeze::ops
