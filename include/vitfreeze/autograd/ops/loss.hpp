#pragma once
// Scalar losses.
#include "vitfreeze/autograd/tape.hpp"
#include "vitfreeze/backend/cpu/loss.hpp"

namespace vitfreeze::ops {

// Mean over rows weighted by `weight` ([rows], or empty for all ones) of the per-row mean squared
// error: the MAE / LocalMIM reconstruction loss with weight = mask.
template <CpuScalar T>
Var<T> masked_mse(Tape<T>& tape, Var<T> pred, const Tensor<T>& target, const Tensor<T>& weight = {}) {
  const Tensor<T>& Pr = tape.value(pred);
  expect_shape(target.shape(), Pr.shape(), "masked_mse target");
  const std::int64_t P = Pr.shape().cols(), rows = Pr.shape().rows();
  if (!weight.empty() && weight.numel() != rows)
    throw ShapeError("masked_mse: weight " + weight.shape().str() + " does not match " + Pr.shape().str());
  double wsum = 0;
  Tensor<T> Y = tape.alloc(Shape{1});
  const double value = cpu::masked_mse_forward(Pr.data(), target.data(), weight.empty() ? nullptr : weight.data(),
                                               rows, P, &wsum);
  if (!(wsum > 0)) throw NumericError("masked_mse: the weights sum to zero (no masked patch), the loss is undefined");
  Y[0] = T(value);
  const bool grad = tape.needs_grad(pred);
  Var<T> y = tape.result(Y, grad);
  if (grad)
    tape.record([pred, y, target, weight, wsum, rows, P](Tape<T>& t) {
      if (!t.has_grad(y)) return;
      cpu::masked_mse_backward(double(t.grad(y)[0]), t.value(pred).data(), target.data(),
                               weight.empty() ? nullptr : weight.data(), wsum, t.grad(pred).data(), rows, P);
    });
  return y;
}

// Mean cross-entropy of logits [N, C] with optional label smoothing.
template <CpuScalar T>
Var<T> cross_entropy(Tape<T>& tape, Var<T> logits, const std::vector<std::int32_t>& labels, double smoothing = 0) {
  const Tensor<T>& Z = tape.value(logits);
  const std::int64_t N = Z.shape().rows(), C = Z.shape().cols();
  if (static_cast<std::int64_t>(labels.size()) != N) throw ShapeError("cross_entropy: label count differs from rows");
  for (auto l : labels)
    if (l < 0 || l >= C) throw ConfigError("cross_entropy: label " + std::to_string(l) + " outside [0, " + std::to_string(C) + ")");
  Tensor<T> probs = tape.alloc(Z.shape());
  Tensor<std::int32_t> lab = Tensor<std::int32_t>::borrow(
      static_cast<std::int32_t*>(tape.arena().allocate(sizeof(std::int32_t) * N)), Shape{N});
  std::copy(labels.begin(), labels.end(), lab.data());
  Tensor<T> Y = tape.alloc(Shape{1});
  Y[0] = T(cpu::cross_entropy_forward(Z.data(), lab.data(), probs.data(), N, C, smoothing));
  const bool grad = tape.needs_grad(logits);
  Var<T> y = tape.result(Y, grad);
  if (grad)
    tape.record([logits, y, probs, lab, N, C, smoothing](Tape<T>& t) {
      if (t.has_grad(y))
        cpu::cross_entropy_backward(double(t.grad(y)[0]), probs.data(), lab.data(), t.grad(logits).data(), N, C,
                                    smoothing);
    });
  return y;
}

}  // namespace vitfreeze::ops
