#pragma once
// Element-wise sums and scalings: residual add, adding a fixed table (position embeddings), reshape,
// constant and per-sample scale factors.
#include <Eigen/Core>

#include "vitfreeze/autograd/tape.hpp"

namespace vitfreeze::ops {

namespace detail {
template <CpuScalar T>
using Flat = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <CpuScalar T>
Flat<T> flat(const Tensor<T>& t) {
  return Flat<T>(t.data(), t.numel());
}
// Registers Y as the result of an op whose Jacobian with respect to x is the identity (adding a
// constant, reshaping): the backward passes dy through to dx unchanged.
template <CpuScalar T>
Var<T> identity_gradient_result(Tape<T>& tape, Var<T> x, Tensor<T> Y) {
  const bool grad = tape.needs_grad(x);
  Var<T> y = tape.result(std::move(Y), grad);
  if (grad)
    tape.record([x, y](Tape<T>& t) {
      if (t.has_grad(y)) flat(t.grad(x)) += flat(t.grad(y));
    });
  return y;
}
}  // namespace detail

// a + b, same shape.
template <CpuScalar T>
Var<T> add(Tape<T>& tape, Var<T> a, Var<T> b) {
  const Tensor<T>& A = tape.value(a);
  expect_shape(tape.value(b).shape(), A.shape(), "add");
  Tensor<T> Y = tape.alloc(A.shape());
  detail::flat(Y) = detail::flat(A) + detail::flat(tape.value(b));
  const bool grad = tape.needs_grad(a, b);
  Var<T> y = tape.result(Y, grad);
  if (grad)
    tape.record([a, b, y](Tape<T>& t) {
      if (!t.has_grad(y)) return;
      if (t.requires_grad(a)) detail::flat(t.grad(a)) += detail::flat(t.grad(y));
      if (t.requires_grad(b)) detail::flat(t.grad(b)) += detail::flat(t.grad(y));
    });
  return y;
}

// x [B, ...] + table [...] broadcast over the leading dimension; the table gets no gradient
// (fixed sin-cos position embeddings).
template <CpuScalar T>
Var<T> add_fixed(Tape<T>& tape, Var<T> x, const Tensor<T>& table) {
  const Tensor<T>& X = tape.value(x);
  const std::int64_t per = table.numel();
  if (X.numel() % per != 0 || X.rank() < 1 || X.numel() / X.dim(0) != per)
    throw ShapeError("add_fixed: table " + table.shape().str() + " does not broadcast over " + X.shape().str());
  Tensor<T> Y = tape.alloc(X.shape());
  Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> tab(table.data(), per);
  for (std::int64_t b = 0; b < X.dim(0); ++b)
    detail::Flat<T>(Y.data() + b * per, per) = detail::Flat<T>(X.data() + b * per, per) + tab;
  return detail::identity_gradient_result(tape, x, Y);
}

// Same data, new shape.
template <CpuScalar T>
Var<T> reshape(Tape<T>& tape, Var<T> x, const Shape& shape) {
  return detail::identity_gradient_result(tape, x, tape.value(x).view(shape));
}

// s * x for a constant s (loss weights, mixup mixing).
template <CpuScalar T>
Var<T> scale(Tape<T>& tape, Var<T> x, double s) {
  const Tensor<T>& X = tape.value(x);
  Tensor<T> Y = tape.alloc(X.shape());
  detail::flat(Y) = detail::flat(X) * T(s);
  const bool grad = tape.needs_grad(x);
  Var<T> y = tape.result(Y, grad);
  if (grad)
    tape.record([x, y, s](Tape<T>& t) {
      if (t.has_grad(y)) detail::flat(t.grad(x)) += T(s) * detail::flat(t.grad(y));
    });
  return y;
}

// y[b, ...] = factor[b] x[b, ...] for constant per-sample factors (drop path: 0 for a dropped
// sample's residual branch, 1 / keep probability for a kept one).
template <CpuScalar T>
Var<T> scale_samples(Tape<T>& tape, Var<T> x, const Tensor<T>& factor) {
  const Tensor<T>& X = tape.value(x);
  if (X.rank() < 1 || factor.numel() != X.dim(0))
    throw ShapeError("scale_samples: factors " + factor.shape().str() + " do not match " + X.shape().str());
  const std::int64_t B = X.dim(0), per = X.numel() / B;
  Tensor<T> Y = tape.alloc(X.shape());
  for (std::int64_t b = 0; b < B; ++b)
    detail::Flat<T>(Y.data() + b * per, per) = detail::Flat<T>(X.data() + b * per, per) * factor[b];
  const bool grad = tape.needs_grad(x);
  Var<T> y = tape.result(Y, grad);
  if (grad)
    tape.record([x, y, factor, B, per](Tape<T>& t) {
      if (!t.has_grad(y)) return;
      for (std::int64_t b = 0; b < B; ++b)
        detail::Flat<T>(t.grad(x).data() + b * per, per) += factor[b] * detail::Flat<T>(t.grad(y).data() + b * per, per);
    });
  return y;
}

// sum(x * weights) with fixed weights: a scalar probe of a tensor (gradient checks, tests).
template <CpuScalar T>
Var<T> weighted_sum(Tape<T>& tape, Var<T> x, const Tensor<T>& weights) {
  const Tensor<T>& X = tape.value(x);
  expect_shape(weights.shape(), X.shape(), "weighted_sum");
  Tensor<T> Y = tape.alloc(Shape{1});
  Y[0] = (detail::flat(X) * detail::flat(weights)).sum();
  const bool grad = tape.needs_grad(x);
  Var<T> y = tape.result(Y, grad);
  if (grad)
    tape.record([x, y, weights](Tape<T>& t) {
      if (t.has_grad(y)) detail::flat(t.grad(x)) += t.grad(y)[0] * detail::flat(weights);
    });
  return y;
}

}  // namespace vitfreeze::ops
