#pragma once
// Multi-head self-attention core on a fused qkv tensor [B, T, 3D] -> [B, T, D].
#include "vitfreeze/autograd/tape.hpp"
#include "vitfreeze/backend/cpu/attention.hpp"

namespace vitfreeze::ops {

template <CpuScalar T>
Var<T> attention(Tape<T>& tape, Var<T> qkv, std::int64_t heads) {
  const Tensor<T>& QKV = tape.value(qkv);
  if (QKV.rank() != 3 || QKV.dim(2) % (3 * heads) != 0)
    throw ShapeError("attention: qkv must be [B, T, 3*D] with D divisible by heads, got " + QKV.shape().str());
  const cpu::AttentionShape s{QKV.dim(0), QKV.dim(1), heads, QKV.dim(2) / (3 * heads)};
  Tensor<T> out = tape.alloc(Shape{s.batch, s.tokens, s.dim()});
  const bool grad = tape.needs_grad(qkv);
  // Inference keeps the probabilities only for the duration of this call.
  const Arena::Mark scratch_mark = tape.arena().mark();
  Tensor<T> probs = tape.alloc(Shape{s.batch, s.heads, s.tokens, s.tokens});
  cpu::attention_forward(QKV.data(), out.data(), probs.data(), s);
  if (!grad) tape.arena().rewind(scratch_mark);
  Var<T> y = tape.result(out, grad);
  if (grad)
    tape.record([qkv, y, probs, s](Tape<T>& t) {
      if (!t.has_grad(y)) return;
      Tensor<T> scratch = t.alloc(probs.shape());
      cpu::attention_backward(t.grad(y).data(), t.value(qkv).data(), probs.data(), t.grad(qkv).data(),
                              scratch.data(), s);
    });
  return y;
}

}  // namespace vitfreeze::ops
