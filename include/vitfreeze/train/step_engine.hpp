#pragma once
// How a trainer runs each micro-batch's forward and backward: the one part of the training loop
// that differs per backend (train/pretrainer.hpp is the rest, written once). The trainer decides
// everything around it (masks, freezing, LRs, the update, checkpoints, the non-finite policy).
//
// Every engine (StepEngine):
//   forward_backward(images, masks, weight, slot)  runs (or queues) one micro-batch, adding
//       weight x the gradients into the trained parameters; its loss lands in loss slot `slot`
//   loss(slot)          that loss (waits for it if the engine runs ahead)
//   reserve_loss_slots(n), drop_tap(k)
//   immediate_losses    true when loss(slot) is known as soon as forward_backward returns
//   host_gradients      true when the gradients are the host Parameters' own (the CPU engines):
//                       the trainer then sums them over ranks, checks them and runs AdamW itself.
// An engine with host_gradients false (DeviceStepEngine: the GPU's) keeps its own copies of the
// parameters and optimiser state and is told what the trainer decided:
//   update(lrs, grad_scale)    AdamW on every trained tensor, lrs[i] for all_parameters()[i]
//   zero_grad(), freeze(i)     (parameter i of all_parameters() stops training)
//   download(host, adam)       values, trainability and AdamW state into the host objects (before
//                              a checkpoint, and at the end: the host models are then the result)
//   upload(host, adam)         the reverse, after a checkpoint was restored into the host objects
//   epoch_record(json&)        what it adds to each epoch's metrics record (e.g. the fp16 loss scale)
//
// The CPU engines (host gradients, immediate losses):
//   ExplicitStepEngine  the explicit model (model/) on the CPU backend, reading and writing the host
//                       modules' parameters in place: the training path.
//   TapeStepEngine      the host objective's own forward on the tape and the tape's backward: the
//                       reference (and the way to train an objective that has no explicit model yet).
#include <cmath>
#include <concepts>
#include <span>
#include <type_traits>
#include <vector>

#include "vitfreeze/autograd/tape.hpp"
#include "vitfreeze/backend/cpu/backend.hpp"
#include "vitfreeze/io/json.hpp"
#include "vitfreeze/mim/masking.hpp"
#include "vitfreeze/model/explicit_of.hpp"
#include "vitfreeze/nn/module.hpp"
#include "vitfreeze/optim/adamw.hpp"

namespace vitfreeze::train {

template <class E, class T>
concept StepEngine = requires(E& e, const Tensor<T>& images, const mim::MaskSet& masks, double weight, std::int64_t slot,
                              int k) {
  { E::immediate_losses } -> std::convertible_to<bool>;
  { E::host_gradients } -> std::convertible_to<bool>;
  e.forward_backward(images, masks, weight, slot);
  { e.loss(slot) } -> std::same_as<double>;
  e.reserve_loss_slots(slot);
  e.drop_tap(k);
};

template <class E, class T>
concept DeviceStepEngine = StepEngine<E, T> && !E::host_gradients &&
                           requires(E& e, std::span<const double> lrs, double scale, std::size_t i,
                                    const nn::ParameterList<T>& host, optim::AdamW<T>& adam, io::Json& record) {
                             e.update(lrs, scale);
                             e.zero_grad();
                             e.freeze(i);
                             e.download(host, adam);
                             e.upload(host, adam);
                             e.epoch_record(record);
                           };

// Loss slots of a synchronous engine: written by forward_backward, read right after.
class ImmediateLosses {
 public:
  void reserve(std::int64_t n) {
    if (std::int64_t(losses_.size()) < n) losses_.resize(std::size_t(n), NAN);
  }
  void set(std::int64_t slot, double loss) {
    reserve(slot + 1);
    losses_[std::size_t(slot)] = loss;
  }
  double get(std::int64_t slot) const { return losses_.at(std::size_t(slot)); }

 private:
  std::vector<double> losses_;
};

template <CpuScalar T>
using CpuPolicyFor = std::conditional_t<std::is_same_v<T, float>, Fp32, Fp64>;

template <class HostEncoder, class HostObjective, CpuScalar T>
class ExplicitStepEngine {
 public:
  using Model = model::ExplicitOf<HostObjective, Cpu, CpuPolicyFor<T>>;
  static constexpr bool immediate_losses = true;
  static constexpr bool host_gradients = true;

  ExplicitStepEngine(HostEncoder& encoder, HostObjective& objective) : model_(ctx_, encoder, objective) {}

  void forward_backward(const Tensor<T>& images, const mim::MaskSet& masks, double gradient_weight, std::int64_t slot) {
    const auto buffers = model_.upload_masks(ctx_, masks);
    double loss[2] = {0, 0};
    model_.forward_backward(ctx_, images, buffers, loss, nullptr, gradient_weight);
    losses_.set(slot, loss[0]);
  }
  double loss(std::int64_t slot) const { return losses_.get(slot); }
  void reserve_loss_slots(std::int64_t n) { losses_.reserve(n); }

  // The objective's tap k stops being computed (its block froze).
  void drop_tap(int k) {
    if constexpr (requires { model_.drop_tap(k); }) model_.drop_tap(k);
  }

  Model& model() { return model_; }
  cpu::CpuContext& context() { return ctx_; }

 private:
  cpu::CpuContext ctx_;
  Model model_;
  ImmediateLosses losses_;
};

template <class HostEncoder, class HostObjective, CpuScalar T>
class TapeStepEngine {
 public:
  static constexpr bool immediate_losses = true;
  static constexpr bool host_gradients = true;

  TapeStepEngine(HostEncoder& encoder, HostObjective& objective) : encoder_(encoder), objective_(objective) {}

  void forward_backward(const Tensor<T>& images, const mim::MaskSet& masks, double gradient_weight, std::int64_t slot) {
    tape_.reset();
    auto out = objective_.forward(tape_, encoder_, images, masks);
    const double loss = double(tape_.value(out.loss)[0]);
    losses_.set(slot, loss);
    if (!std::isfinite(loss)) return;  // nothing reaches the gradients
    if (gradient_weight == 1.0)
      tape_.backward(out.loss);
    else
      tape_.backward(out.loss, Tensor<T>::full(Shape{1}, T(gradient_weight)));
  }
  double loss(std::int64_t slot) const { return losses_.get(slot); }
  void reserve_loss_slots(std::int64_t n) { losses_.reserve(n); }
  void drop_tap(int) {}  // the host objective's drop_tap is all the tape needs
  Tape<T>& tape() { return tape_; }

 private:
  HostEncoder& encoder_;
  HostObjective& objective_;
  Tape<T> tape_;
  ImmediateLosses losses_;
};

}  // namespace vitfreeze::train
