#pragma once
// The tape: reverse-mode autograd over coarse, fused ops.
//
// Every value produced during a step lives in a slot (its tensor, and its gradient once backward
// reaches it). An op records a backward node only if the tape is recording and one of its inputs
// requires a gradient; so a frozen prefix (frozen parameters, an input image that needs no
// gradient) records nothing at all: no nodes, no saved tensors, no gradient buffers. Buffers come
// from the tape's Arena, which reset() recycles for the next step, so steady-state steps do not
// allocate.
#include <functional>
#include <utility>
#include <vector>

#include "vitfreeze/autograd/parameter.hpp"
#include "vitfreeze/core/arena.hpp"

namespace vitfreeze {

template <CpuScalar T>
struct Var {
  int id = -1;
  bool valid() const { return id >= 0; }
};

template <CpuScalar T>
class NoGrad;

template <CpuScalar T>
class Tape {
 public:
  using Node = std::function<void(Tape&)>;

  Tape() = default;
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  // ---- values -----------------------------------------------------------------------------------
  Var<T> constant(Tensor<T> value) { return add_slot(std::move(value), false, nullptr); }
  // A leaf whose gradient the caller wants (gradient checks, inputs of interest).
  Var<T> leaf(Tensor<T> value) { return add_slot(std::move(value), recording_, nullptr); }
  Var<T> parameter(Parameter<T>& p) { return add_slot(p.value, recording_ && p.trainable, &p); }
  // The result of an op; it requires a gradient iff the op recorded a node.
  Var<T> result(Tensor<T> value, bool requires_grad) { return add_slot(std::move(value), requires_grad, nullptr); }

  const Tensor<T>& value(Var<T> v) const { return slots_[v.id].value; }
  bool requires_grad(Var<T> v) const { return v.valid() && slots_[v.id].requires_grad; }
  bool has_grad(Var<T> v) const { return v.valid() && !slots_[v.id].grad.empty(); }
  // Gradient buffer of v, created (zeroed) on first use. Parameters accumulate into their own
  // persistent buffer, so gradient accumulation over micro-batches is free.
  const Tensor<T>& grad(Var<T> v) {
    Slot& s = slots_[v.id];
    if (s.grad.empty()) s.grad = s.param ? s.param->ensure_grad() : arena_.zeros<T>(s.value.shape());
    return s.grad;
  }
  // Gradient pointer for a backward kernel, or null when v needs none (the kernel then skips it).
  T* grad_or_null(Var<T> v) { return requires_grad(v) ? grad(v).data() : nullptr; }

  // ---- recording ---------------------------------------------------------------------------------
  bool recording() const { return recording_; }
  template <class... V>
  bool needs_grad(V... inputs) const {
    return recording_ && (requires_grad(inputs) || ...);
  }
  void record(Node node) { nodes_.push_back(std::move(node)); }

  Tensor<T> alloc(const Shape& shape) { return arena_.tensor<T>(shape); }
  Tensor<T> zeros(const Shape& shape) { return arena_.zeros<T>(shape); }
  Arena& arena() { return arena_; }

  // ---- backward -----------------------------------------------------------------------------------
  // Seeds d(loss)/d(loss) = 1 (or the given seed for a non-scalar output) and runs the nodes in
  // reverse order.
  void backward(Var<T> loss) {
    if (!requires_grad(loss)) return;
    const Tensor<T>& g = grad(loss);
    g.fill(T(1));
    run_backward();
  }
  void backward(Var<T> output, const Tensor<T>& seed) {
    if (!requires_grad(output)) return;
    grad(output).copy_from(seed);
    run_backward();
  }

  // Forget the step: slots, nodes, and every arena buffer (values returned earlier become invalid).
  void reset() {
    slots_.clear();
    nodes_.clear();
    arena_.reset();
  }

  std::size_t node_count() const { return nodes_.size(); }
  std::size_t slot_count() const { return slots_.size(); }

 private:
  friend class NoGrad<T>;
  struct Slot {
    Tensor<T> value;
    Tensor<T> grad;
    bool requires_grad;
    Parameter<T>* param;
  };
  Var<T> add_slot(Tensor<T> value, bool requires_grad, Parameter<T>* param) {
    slots_.push_back({std::move(value), Tensor<T>(), requires_grad, param});
    return Var<T>{static_cast<int>(slots_.size()) - 1};
  }
  void run_backward() {
    for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) (*it)(*this);
  }

  bool recording_ = true;
  std::vector<Slot> slots_;
  std::vector<Node> nodes_;
  Arena arena_;
};

// While alive, ops on `tape` record nothing (inference, frozen prefixes, evaluation).
template <CpuScalar T>
class NoGrad {
 public:
  explicit NoGrad(Tape<T>& tape) : tape_(tape), previous_(tape.recording_) { tape.recording_ = false; }
  ~NoGrad() { tape_.recording_ = previous_; }
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  Tape<T>& tape_;
  bool previous_;
};

}  // namespace vitfreeze
