#pragma once
// A device engine that runs on the CPU: its own copy of the host models ("device" tensors), its own
// AdamW, losses kept in slots the trainer reads late. The trainer's path for engines that keep the
// parameters away from the host (the GPU's: update, freeze by index, download before a checkpoint,
// upload after a restore, losses read at logging points) is then tested where there is no GPU: it
// must give bit for bit what the host-gradient path gives, since the arithmetic is the same.
#include <map>
#include <string>
#include <vector>

#include "vitfreeze/io/json.hpp"
#include "vitfreeze/optim/adamw.hpp"
#include "vitfreeze/train/step_engine.hpp"

namespace vitfreeze::testing {

template <class HostEncoder, class HostObjective, CpuScalar T>
class MirroredEngine {
 public:
  static constexpr bool immediate_losses = false;
  static constexpr bool host_gradients = false;

  // host: the trainer's all_parameters() order; the copies are made with the same constructors and
  // then take the host's values, trainability and dropped taps.
  MirroredEngine(HostEncoder& /*encoder*/, HostObjective& objective, const nn::ParameterList<T>& host,
                 optim::AdamWOptions adam)
      : encoder_(0), objective_(0), inner_(encoder_, objective_), adam_(adam) {
    std::map<std::string, Parameter<T>*> by_name;
    nn::ParameterList<T> mine = encoder_.parameters();
    objective_.collect_parameters(mine);
    for (auto* p : mine) by_name[p->name] = p;
    for (auto* h : host) {
      auto it = by_name.find(h->name);
      if (it == by_name.end()) throw ConfigError("MirroredEngine: no copy of " + h->name);
      copies_.push_back(it->second);
    }
    if constexpr (requires { objective.tap_count(); })
      for (int k = 0; k < objective.tap_count(); ++k)
        if (!objective.tap_active(k)) drop_tap(k);
    optim::AdamW<T> none(adam);
    upload(host, none);
  }

  void forward_backward(const Tensor<T>& images, const mim::MaskSet& masks, double weight, std::int64_t slot) {
    inner_.forward_backward(images, masks, weight, 0);
    reserve_loss_slots(slot + 1);
    losses_[std::size_t(slot)] = inner_.loss(0);
    ++forward_backward_calls;
  }
  double loss(std::int64_t slot) {
    ++loss_reads;
    return losses_.at(std::size_t(slot));
  }
  void reserve_loss_slots(std::int64_t n) {
    if (std::int64_t(losses_.size()) < n) losses_.resize(std::size_t(n), NAN);
  }
  void drop_tap(int k) {
    if constexpr (requires { objective_.drop_tap(k); })
      if (objective_.tap_active(k)) objective_.drop_tap(k);
    inner_.drop_tap(k);
  }

  void update(std::span<const double> lrs, double grad_scale) {
    if (lrs.size() != copies_.size() || grad_scale != 1.0) throw ConfigError("MirroredEngine::update: bad arguments");
    for (std::size_t i = 0; i < copies_.size(); ++i) adam_.update(*copies_[i], lrs[i]);
  }
  void zero_grad() {
    for (auto* p : copies_) p->zero_grad();
  }
  void freeze(std::size_t i) {
    copies_.at(i)->freeze();
    adam_.release(*copies_[i]);
  }

  // Values, trainability and AdamW state, copy by copy.
  void download(const nn::ParameterList<T>& host, optim::AdamW<T>& adam) const {
    transfer(copies_, adam_, host, adam);
    ++downloads;
  }
  void upload(const nn::ParameterList<T>& host, const optim::AdamW<T>& adam) { transfer(host, adam, copies_, adam_); }
  void epoch_record(io::Json& record) const { record["engine"] = "mirrored"; }

  mutable int downloads = 0;
  int forward_backward_calls = 0, loss_reads = 0;

 private:
  static void transfer(const nn::ParameterList<T>& from, const optim::AdamW<T>& from_adam, const nn::ParameterList<T>& to,
                       optim::AdamW<T>& to_adam) {
    for (std::size_t i = 0; i < from.size(); ++i) {
      to[i]->value.copy_from(from[i]->value);
      if (!from[i]->trainable) {
        to[i]->freeze();
        to_adam.release(*to[i]);
        continue;
      }
      to[i]->unfreeze();
      to[i]->zero_grad();
      const auto* s = from_adam.state(*from[i]);
      if (!s || s->m.empty()) {
        to_adam.release(*to[i]);
        continue;
      }
      auto& d = to_adam.mutable_state(*to[i]);
      d.m = s->m.clone(), d.v = s->v.clone(), d.step = s->step;
    }
  }

  HostEncoder encoder_;
  HostObjective objective_;
  train::ExplicitStepEngine<HostEncoder, HostObjective, T> inner_;
  optim::AdamW<T> adam_;
  nn::ParameterList<T> copies_;  // in the host list's order
  std::vector<double> losses_;
};

}  // namespace vitfreeze::testing
