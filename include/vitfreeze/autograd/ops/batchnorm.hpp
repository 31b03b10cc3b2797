#pragma once
// BatchNorm without affine parameters over the rows of x [N, D], with the batch's statistics (the
// training mode of MAE's linear probe head, BatchNorm1d(affine=False)). The batch's mean and biased
// variance per column go to `statistics` when given, for running estimates.
#include "vitfreeze/autograd/tape.hpp"
#include "vitfreeze/backend/cpu/batchnorm.hpp"

namespace vitfreeze::ops {

template <CpuScalar T>
struct BatchStatistics {
  Tensor<T> mean, variance;  // [D]
};

template <CpuScalar T>
Var<T> batch_norm(Tape<T>& tape, Var<T> x, double eps, BatchStatistics<T>* statistics = nullptr) {
  const Tensor<T>& X = tape.value(x);
  if (X.rank() != 2 || X.dim(0) < 1) throw ShapeError("batch_norm: x must be [N, D], got " + X.shape().str());
  const std::int64_t N = X.dim(0), D = X.dim(1);
  Tensor<T> Y = tape.alloc(X.shape()), mean = tape.alloc(Shape{D}), rstd = tape.alloc(Shape{D});
  cpu::batch_norm_forward(X.data(), Y.data(), mean.data(), rstd.data(), N, D, eps);
  if (statistics) {
    statistics->mean = mean.clone();
    statistics->variance = Tensor<T>(Shape{D});
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t d = 0; d < D; ++d)
        statistics->variance[d] += (X[n * D + d] - mean[d]) * (X[n * D + d] - mean[d]) / T(N);
  }
  const bool grad = tape.needs_grad(x);
  Var<T> y = tape.result(Y, grad);
  if (grad)
    tape.record([x, y, mean, rstd, N, D](Tape<T>& t) {
      if (t.has_grad(y))
        cpu::batch_norm_backward(t.grad(y).data(), t.value(x).data(), mean.data(), rstd.data(), t.grad(x).data(), N, D);
    });
  return y;
}

}  // namespace vitfreeze::ops
