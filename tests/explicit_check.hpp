#pragma once
// For the test files that check an explicit model (model/) against the tape: one step of a host
// objective on the tape and of its explicit model on the CPU backend, from the same host modules,
// images and masks; the loss and every parameter gradient must agree.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "vitfreeze/autograd/tape.hpp"
#include "vitfreeze/backend/cpu/backend.hpp"
#include "vitfreeze/mim/masking.hpp"
#include "vitfreeze/nn/module.hpp"

namespace vitfreeze::testing {

// Every gradient by name (copied), each parameter's buffer zeroed after.
template <class T>
std::map<std::string, Tensor<T>> take_gradients(const nn::ParameterList<T>& ps) {
  std::map<std::string, Tensor<T>> out;
  for (auto* p : ps) {
    if (!p->grad.empty()) out[p->name] = p->grad.clone();
    p->zero_grad();
  }
  return out;
}

// max |a - b| / max |a| over each tensor, and every name present in both.
template <class T>
double worst_relative_difference(const std::map<std::string, Tensor<T>>& a, const std::map<std::string, Tensor<T>>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (const auto& [name, x] : a) {
    REQUIRE_MESSAGE(b.count(name), name);
    const Tensor<T>& y = b.at(name);
    double scale = 0, diff = 0;
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      scale = std::max(scale, std::abs(double(x[i])));
      diff = std::max(diff, std::abs(double(x[i]) - double(y[i])));
    }
    const double rel = diff / std::max(scale, 1e-30);
    if (rel > worst) INFO(name << " " << rel);
    worst = std::max(worst, rel);
  }
  return worst;
}

// Returns the explicit model's weight sum (loss[1]).
template <class Explicit, class Encoder, class T, class Objective>
double check_against_tape(Encoder& encoder, Objective& objective, const Tensor<T>& images, const mim::MaskSet& masks,
                          double tolerance) {
  nn::ParameterList<T> params = encoder.parameters();
  objective.collect_parameters(params);

  Tape<T> tape;
  auto out = objective.forward(tape, encoder, images, masks);
  const double tape_loss = double(tape.value(out.loss)[0]);
  tape.backward(out.loss);
  const auto tape_grads = take_gradients(params);

  cpu::CpuContext ctx;
  Explicit explicit_model(ctx, encoder, objective);
  double loss[2] = {0, 0};
  explicit_model.forward_backward(ctx, images, explicit_model.upload_masks(ctx, masks), loss);
  const auto model_grads = take_gradients(params);

  CHECK(std::abs(loss[0] - tape_loss) <= tolerance * std::abs(tape_loss));
  CHECK(worst_relative_difference(tape_grads, model_grads) <= tolerance);
  return loss[1];
}

}  // namespace vitfreeze::testing
