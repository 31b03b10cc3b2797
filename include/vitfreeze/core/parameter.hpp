#pragma once
// Parameter: a named trainable tensor with its gradient buffer. A frozen parameter has no gradient
// buffer at all (released at freeze time), so a frozen unit costs no gradient memory.
#include <string>

#include "vitfreeze/core/tensor.hpp"

namespace vitfreeze {

template <CpuScalar T>
struct Parameter {
  std::string name;       // timm name, e.g. "blocks.0.attn.qkv.weight"
  Tensor<T> value;
  Tensor<T> grad;         // empty until the first backward that reaches it; empty again when frozen
  bool trainable = true;
  bool decay = true;      // weight decay applies (false for 1-D tensors and biases, the timm rule)
  Shape file_shape;       // shape in weight files when it differs from value's (conv kernels)

  Parameter() = default;
  Parameter(std::string n, const Shape& shape, bool weight_decay)
      : name(std::move(n)), value(shape), decay(weight_decay), file_shape(shape) {}

  Tensor<T>& ensure_grad() {
    if (grad.empty()) grad = Tensor<T>(value.shape());
    return grad;
  }
  void zero_grad() {
    if (!grad.empty()) grad.zero();
  }
  // Stop training this parameter: its gradient buffer is released and no backward work reaches it.
  void freeze() {
    trainable = false;
    grad = Tensor<T>();
  }
  void unfreeze() { trainable = true; }
};

}  // namespace vitfreeze
