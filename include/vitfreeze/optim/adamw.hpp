#pragma once
// AdamW with decoupled weight decay (PyTorch's formulation):
//   p <- p * (1 - lr * wd);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
//   p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// State (m, v, t) is per parameter and created on the first step that updates it; release() drops
// it (a frozen parameter keeps no optimiser state). The LR is given per parameter at each step,
// which is how param groups, layer-wise decay and per-unit freezing schedules drive it.
#include <Eigen/Core>
#include <cmath>
#include <unordered_map>

#include "vitfreeze/core/parameter.hpp"

namespace vitfreeze::optim {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.05;
};

template <CpuScalar T>
class AdamW {
 public:
  struct State {
    Tensor<T> m, v;
    std::int64_t step = 0;
  };

  explicit AdamW(AdamWOptions options = {}) : options_(options) {}

  // One update of p with learning rate lr (weight decay only if p.decay). No-op without a gradient.
  void update(Parameter<T>& p, double lr) { update(p, lr, p.decay); }
  // The same with the decay decided by the caller (fine-tuning's rule differs from pretraining's).
  void update(Parameter<T>& p, double lr, bool decay) {
    if (!p.trainable || p.grad.empty()) return;
    State& s = state_[&p];
    if (s.m.empty()) {
      s.m = Tensor<T>(p.value.shape());
      s.v = Tensor<T>(p.value.shape());
    }
    ++s.step;
    using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
    Eigen::Map<Arr> w(p.value.data(), p.value.numel()), m(s.m.data(), s.m.numel()), v(s.v.data(), s.v.numel());
    Eigen::Map<const Arr> g(p.grad.data(), p.grad.numel());
    const double wd = decay ? options_.weight_decay : 0.0;
    if (wd != 0) w *= T(1 - lr * wd);
    const T b1 = T(options_.beta1), b2 = T(options_.beta2);
    m = b1 * m + (T(1) - b1) * g;
    v = b2 * v + (T(1) - b2) * g.square();
    const double c1 = 1 - std::pow(options_.beta1, double(s.step));
    const double c2 = 1 - std::pow(options_.beta2, double(s.step));
    const T step_size = T(lr / c1), inv_sqrt_c2 = T(1 / std::sqrt(c2));
    w -= step_size * m / (v.sqrt() * inv_sqrt_c2 + T(options_.eps));
  }

  void release(const Parameter<T>& p) { state_.erase(&p); }
  bool has_state(const Parameter<T>& p) const { return state_.count(&p) != 0; }
  const State* state(const Parameter<T>& p) const {
    auto it = state_.find(&p);
    return it == state_.end() ? nullptr : &it->second;
  }
  State& mutable_state(const Parameter<T>& p) { return state_[&p]; }
  std::size_t state_count() const { return state_.size(); }
  const AdamWOptions& options() const { return options_; }

 private:
  AdamWOptions options_;
  std::unordered_map<const Parameter<T>*, State> state_;
};

}  // namespace vitfreeze::optim
