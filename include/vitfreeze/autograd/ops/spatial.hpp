#pragma once
// Spatial ops on channels-last maps [B, H, W, C] (kernels and channel order: backend/cpu/spatial.hpp).
// With ops::linear on the last axis (1x1 convolution, and the kernel-position GEMM of a transposed
// convolution) and ops::layernorm on the last axis (LayerNorm2d) they make LocalMIM's heads.
#include <string>

#include "vitfreeze/autograd/tape.hpp"
#include "vitfreeze/backend/cpu/spatial.hpp"

namespace vitfreeze::ops {

namespace detail {
inline void expect_map(const Shape& s, const char* who) {
  if (s.rank() != 4) throw ShapeError(std::string(who) + ": expected a channels-last map [B, H, W, C], got " + s.str());
}
}  // namespace detail

// x [B, h, w, 4C] -> [B, 2h, 2w, C], plus bias [C] per output channel when given. After
// linear(Cin -> 4 Cout) this is ConvTranspose2d(Cin -> Cout, kernel 2, stride 2) with that bias.
template <CpuScalar T>
Var<T> pixel_shuffle_2x2(Tape<T>& tape, Var<T> x, Var<T> bias = {}) {
  const Tensor<T>& X = tape.value(x);
  detail::expect_map(X.shape(), "pixel_shuffle_2x2");
  if (X.dim(3) % 4 != 0) throw ShapeError("pixel_shuffle_2x2: channels of " + X.shape().str() + " are not a multiple of 4");
  const std::int64_t B = X.dim(0), h = X.dim(1), w = X.dim(2), C = X.dim(3) / 4;
  if (bias.valid()) expect_shape(tape.value(bias).shape(), Shape{C}, "pixel_shuffle_2x2 bias");
  Tensor<T> Y = tape.alloc(Shape{B, 2 * h, 2 * w, C});
  cpu::pixel_shuffle_2x2_forward(X.data(), bias.valid() ? tape.value(bias).data() : nullptr, Y.data(), B, h, w, C);
  const bool grad = tape.needs_grad(x, bias);
  Var<T> y = tape.result(Y, grad);
  if (grad)
    tape.record([x, bias, y, B, h, w, C](Tape<T>& t) {
      if (!t.has_grad(y)) return;
      cpu::pixel_shuffle_2x2_backward(t.grad(y).data(), t.grad_or_null(x), t.grad_or_null(bias), B, h, w, C);
    });
  return y;
}

// x [B, 2h, 2w, C] -> [B, h, w, C], the mean of each 2x2 block.
template <CpuScalar T>
Var<T> avg_pool_2x2(Tape<T>& tape, Var<T> x) {
  const Tensor<T>& X = tape.value(x);
  detail::expect_map(X.shape(), "avg_pool_2x2");
  if (X.dim(1) % 2 != 0 || X.dim(2) % 2 != 0)
    throw ShapeError("avg_pool_2x2: height and width of " + X.shape().str() + " must be even");
  const std::int64_t B = X.dim(0), h = X.dim(1) / 2, w = X.dim(2) / 2, C = X.dim(3);
  Tensor<T> Y = tape.alloc(Shape{B, h, w, C});
  cpu::avg_pool_2x2_forward(X.data(), Y.data(), B, h, w, C);
  const bool grad = tape.needs_grad(x);
  Var<T> y = tape.result(Y, grad);
  if (grad)
    tape.record([x, y, B, h, w, C](Tape<T>& t) {
      if (t.has_grad(y)) cpu::avg_pool_2x2_backward(t.grad(y).data(), t.grad(x).data(), B, h, w, C);
    });
  return y;
}

}  // namespace vitfreeze::ops
