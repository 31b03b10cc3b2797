#pragma once
// Contrastive losses between views of the same images.
#include <memory>

#include "vitfreeze/autograd/tape.hpp"
#include "vitfreeze/backend/cpu/contrastive.hpp"

namespace vitfreeze::ops {

// Symmetric t-vMF InfoNCE (MiCL) over z [2N, D], rows 2i and 2i+1 being the two views of image i;
// the other images' opposite views are the negatives. Scalar result; see cpu/contrastive.hpp.
template <CpuScalar T>
Var<T> tvmf_info_nce(Tape<T>& tape, Var<T> z, double kappa, double tau) {
  const Tensor<T>& Z = tape.value(z);
  if (Z.rank() != 2 || Z.dim(0) < 2 || Z.dim(0) % 2 != 0)
    throw ShapeError("tvmf_info_nce: need [2N, D] paired rows, got " + Z.shape().str());
  if (!(tau > 0) || !(kappa >= 0)) throw ConfigError("tvmf_info_nce: need tau > 0 and kappa >= 0");
  const std::int64_t N = Z.dim(0) / 2, D = Z.dim(1);
  auto saved = std::make_shared<cpu::TvmfInfoNceSaved>();
  Tensor<T> Y = tape.alloc(Shape{1});
  Y[0] = T(cpu::tvmf_info_nce_forward(Z.data(), N, D, kappa, tau, *saved));
  const bool grad = tape.needs_grad(z);
  Var<T> y = tape.result(Y, grad);
  if (grad)
    tape.record([z, y, saved, kappa, tau, N, D](Tape<T>& t) {
      if (t.has_grad(y)) cpu::tvmf_info_nce_backward(double(t.grad(y)[0]), *saved, kappa, tau, t.grad(z).data(), N, D);
    });
  return y;
}

}  // namespace vitfreeze::ops
