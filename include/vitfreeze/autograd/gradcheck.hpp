#pragma once
// Finite-difference gradient checker (double precision). The caller supplies a function that builds
// a scalar loss on a tape and a list of inputs: tensors that the loss reads (parameter values or
// leaf inputs) together with a way to read their analytic gradient after backward. Each checked
// entry is perturbed by +-h and the central difference compared with the analytic value.
#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "vitfreeze/autograd/tape.hpp"
#include "vitfreeze/core/rng.hpp"

namespace vitfreeze {

struct GradCheckInput {
  std::string name;
  Tensor<double> value;                                         // perturbed in place (shared buffer)
  std::function<Tensor<double>(Tape<double>&)> analytic;        // gradient after backward
  std::function<void()> zero = [] {};                           // clears a persistent gradient
};

inline GradCheckInput grad_input(Parameter<double>& p) {
  return {p.name, p.value, [&p](Tape<double>&) { return p.grad.empty() ? Tensor<double>(p.value.shape()) : p.grad.clone(); },
          [&p] { p.zero_grad(); }};
}
// For a leaf created by the loss function: `var` is written by the loss function on every build.
inline GradCheckInput grad_input(std::string name, Tensor<double> value, const Var<double>& var) {
  return {std::move(name), value, [&var](Tape<double>& t) { return t.grad(var).clone(); }};
}

struct GradCheckOptions {
  double step = 1e-6;
  int max_entries_per_input = 48;  // a random subset above this, to bound the cost
  std::uint64_t seed = 7;
};

struct GradCheckReport {
  double max_error = 0;  // max over entries of |analytic - numeric| / max(|analytic|, |numeric|, scale)
  std::string worst;     // "input[index]: analytic vs numeric"
  int entries = 0;
};

// The error is relative to the entry, with a floor of 1e-3 of the input's largest gradient, so entries
// whose true gradient is zero are judged on the scale of that tensor rather than on 0.
template <class LossFn>
GradCheckReport check_gradients(LossFn&& loss_fn, std::vector<GradCheckInput> inputs, GradCheckOptions opt = {}) {
  Tape<double> tape;
  for (auto& in : inputs) in.zero();
  Var<double> loss = loss_fn(tape);
  if (tape.value(loss).numel() != 1) throw ShapeError("check_gradients: the loss must be a scalar");
  tape.backward(loss);
  std::vector<Tensor<double>> analytic;
  for (auto& in : inputs) analytic.push_back(in.analytic(tape));

  auto evaluate = [&] {
    tape.reset();
    NoGrad<double> no_grad(tape);
    return tape.value(loss_fn(tape))[0];
  };
  GradCheckReport report;
  RandomStream pick(opt.seed, RngPurpose::test);
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    const Tensor<double>& v = inputs[k].value;
    const Tensor<double>& a = analytic[k];
    expect_shape(a.shape(), v.shape(), "check_gradients analytic gradient");
    double scale = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i) scale = std::max(scale, std::abs(a[i]));
    scale = std::max(scale * 1e-3, 1e-10);
    std::vector<std::int64_t> entries;
    if (v.numel() <= opt.max_entries_per_input) {
      for (std::int64_t i = 0; i < v.numel(); ++i) entries.push_back(i);
    } else {
      for (int i = 0; i < opt.max_entries_per_input; ++i) entries.push_back(pick.below(std::uint32_t(v.numel())));
    }
    for (std::int64_t i : entries) {
      const double saved = v[i];
      v[i] = saved + opt.step;
      const double up = evaluate();
      v[i] = saved - opt.step;
      const double down = evaluate();
      v[i] = saved;
      const double numeric = (up - down) / (2 * opt.step);
      const double err = std::abs(a[i] - numeric) / std::max({std::abs(a[i]), std::abs(numeric), scale});
      ++report.entries;
      if (!(err <= report.max_error)) {  // NaN counts as the worst
        report.max_error = std::isnan(err) ? INFINITY : err;
        report.worst = inputs[k].name + "[" + std::to_string(i) + "]: analytic " + std::to_string(a[i]) +
                       " vs numeric " + std::to_string(numeric);
      }
    }
  }
  return report;
}

}  // namespace vitfreeze
