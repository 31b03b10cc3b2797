#pragma once
// SGD with momentum (optionally Nesterov) and coupled L2 weight decay, PyTorch's formulation:
//   g <- g + wd p;  b <- mu b + g;  step = nesterov ? g + mu b : b;  p <- p - lr step.
// Used for FreezeOut's original recipe and for linear probes.
#include <Eigen/Core>
#include <unordered_map>

#include "vitfreeze/core/parameter.hpp"

namespace vitfreeze::optim {

struct SgdOptions {
  double momentum = 0.9;
  double weight_decay = 0.0;
  bool nesterov = true;
};

template <CpuScalar T>
class Sgd {
 public:
  explicit Sgd(SgdOptions options = {}) : options_(options) {}

  void update(Parameter<T>& p, double lr) {
    if (!p.trainable || p.grad.empty()) return;
    using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
    Eigen::Map<Arr> w(p.value.data(), p.value.numel());
    Eigen::Map<const Arr> g0(p.grad.data(), p.grad.numel());
    const T wd = T(p.decay ? options_.weight_decay : 0.0), mu = T(options_.momentum);
    Arr g = g0 + wd * w;
    if (mu != T(0)) {
      Tensor<T>& buf = momentum_[&p];
      if (buf.empty()) {
        buf = Tensor<T>(p.value.shape());
        Eigen::Map<Arr>(buf.data(), buf.numel()) = g;  // PyTorch starts the buffer at the first gradient
      } else {
        Eigen::Map<Arr>(buf.data(), buf.numel()) = mu * Eigen::Map<Arr>(buf.data(), buf.numel()) + g;
      }
      Eigen::Map<Arr> b(buf.data(), buf.numel());
      if (options_.nesterov)
        g += mu * b;
      else
        g = b;
    }
    w -= T(lr) * g;
  }
  void release(const Parameter<T>& p) { momentum_.erase(&p); }
  bool has_state(const Parameter<T>& p) const { return momentum_.count(&p) != 0; }

 private:
  SgdOptions options_;
  std::unordered_map<const Parameter<T>*, Tensor<T>> momentum_;
};

}  // namespace vitfreeze::optim
