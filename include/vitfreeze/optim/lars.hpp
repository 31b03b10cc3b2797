#pragma once
// LARS as MAE's linear probe uses it (util/lars.py): for a tensor of more than one dimension the
// update direction g + wd p is scaled by the trust ratio 0.001 |p| / |g + wd p| (1 when either norm
// is 0); biases and other 1-D tensors take g unscaled, without decay. Then heavy-ball momentum:
//   mu <- momentum mu + direction;  p <- p - lr mu   (mu starts at 0).
#include <Eigen/Core>
#include <cmath>
#include <unordered_map>

#include "vitfreeze/core/parameter.hpp"

namespace vitfreeze::optim {

struct LarsOptions {
  double momentum = 0.9;
  double weight_decay = 0.0;
  double trust_coefficient = 0.001;
};

template <CpuScalar T>
class Lars {
 public:
  explicit Lars(LarsOptions options = {}) : options_(options) {}

  void update(Parameter<T>& p, double lr) {
    if (!p.trainable || p.grad.empty()) return;
    using Arr = Eigen::Array<double, Eigen::Dynamic, 1>;
    const std::int64_t n = p.value.numel();
    Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> w(p.value.data(), n);
    Arr direction = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(p.grad.data(), n).template cast<double>();
    if (p.value.rank() > 1) {
      direction += options_.weight_decay * w.template cast<double>();
      const double param_norm = std::sqrt(w.template cast<double>().square().sum());
      const double update_norm = std::sqrt(direction.square().sum());
      if (param_norm > 0 && update_norm > 0) direction *= options_.trust_coefficient * param_norm / update_norm;
    }
    Arr& mu = momentum_.try_emplace(&p, Arr::Zero(n)).first->second;
    mu = options_.momentum * mu + direction;
    w -= (lr * mu).template cast<T>();
  }
  void release(const Parameter<T>& p) { momentum_.erase(&p); }
  bool has_state(const Parameter<T>& p) const { return momentum_.count(&p) != 0; }
  const LarsOptions& options() const { return options_; }

 private:
  LarsOptions options_;
  std::unordered_map<const Parameter<T>*, Eigen::Array<double, Eigen::Dynamic, 1>> momentum_;
};

}  // namespace vitfreeze::optim
