#pragma once
// How a trainer runs one micro-batch's forward and backward. The trainer decides everything around
// it (masks, freezing, the update, checkpoints); the engine only turns images and masks into a loss
// and gradients accumulated into the trained parameters, each weighted by `gradient_weight`.
//
//   ExplicitStepEngine  the explicit model (model/) on the CPU backend, reading and writing the host
//                       modules' parameters in place: the training path.
//   TapeStepEngine      the host objective's own forward on the tape and the tape's backward: the
//                       reference (and the way to train an objective that has no explicit model yet).
//
// What an engine must provide (the StepEngine concept), for the trainer's scalar T:
//   a constructor from (Encoder&, Objective&);
//   double forward_backward(const Tensor<T>& images, const mim::MaskSet& masks, double gradient_weight):
//     the loss (non-finite: nothing reached the gradients), gradients accumulated into the trained
//     parameters, each weighted by gradient_weight;
//   void drop_tap(int k): the objective's tap k is no longer computed (its block froze).
#include <concepts>
#include <type_traits>

#include "vitfreeze/autograd/tape.hpp"
#include "vitfreeze/backend/cpu/backend.hpp"
#include "vitfreeze/mim/masking.hpp"
#include "vitfreeze/model/explicit_of.hpp"

namespace vitfreeze::train {

template <class E, class T>
concept StepEngine = requires(E& engine, const Tensor<T>& images, const mim::MaskSet& masks, double weight, int k) {
  { engine.forward_backward(images, masks, weight) } -> std::convertible_to<double>;
  engine.drop_tap(k);
};

template <CpuScalar T>
using CpuPolicyFor = std::conditional_t<std::is_same_v<T, float>, Fp32, Fp64>;

template <class HostEncoder, class HostObjective, CpuScalar T>
class ExplicitStepEngine {
 public:
  using Model = model::ExplicitOf<HostObjective, Cpu, CpuPolicyFor<T>>;

  ExplicitStepEngine(HostEncoder& encoder, HostObjective& objective) : model_(ctx_, encoder, objective) {}

  double forward_backward(const Tensor<T>& images, const mim::MaskSet& masks, double gradient_weight) {
    const auto buffers = model_.upload_masks(ctx_, masks);
    double loss[2] = {0, 0};
    model_.forward_backward(ctx_, images, buffers, loss, nullptr, gradient_weight);
    return loss[0];
  }

  // The objective's tap k stops being computed (its block froze).
  void drop_tap(int k) {
    if constexpr (requires { model_.drop_tap(k); }) model_.drop_tap(k);
  }

  Model& model() { return model_; }
  cpu::CpuContext& context() { return ctx_; }

 private:
  cpu::CpuContext ctx_;
  Model model_;
};

template <class HostEncoder, class HostObjective, CpuScalar T>
class TapeStepEngine {
 public:
  TapeStepEngine(HostEncoder& encoder, HostObjective& objective) : encoder_(encoder), objective_(objective) {}

  double forward_backward(const Tensor<T>& images, const mim::MaskSet& masks, double gradient_weight) {
    tape_.reset();
    auto out = objective_.forward(tape_, encoder_, images, masks);
    const double loss = double(tape_.value(out.loss)[0]);
    if (!std::isfinite(loss)) return loss;  // nothing reaches the gradients
    if (gradient_weight == 1.0)
      tape_.backward(out.loss);
    else
      tape_.backward(out.loss, Tensor<T>::full(Shape{1}, T(gradient_weight)));
    return loss;
  }
  void drop_tap(int) {}  // the host objective's drop_tap is all the tape needs
  Tape<T>& tape() { return tape_; }

 private:
  HostEncoder& encoder_;
  HostObjective& objective_;
  Tape<T> tape_;
};

}  // namespace vitfreeze::train
