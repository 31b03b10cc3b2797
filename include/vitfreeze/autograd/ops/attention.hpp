#pragma once
// Multi-head self-attention core on a fused qkv tensor [B, T, 3D] -> [B, T, D], with an optional
// relative key bias (LoMaR's iRPE): `table` [head_dim, buckets] shared by the heads, `buckets`
// [T, T] the bucket of each query-key pair (backend/relative_position.hpp).
#include "vitfreeze/autograd/tape.hpp"
#include "vitfreeze/backend/cpu/attention.hpp"

namespace vitfreeze::ops {

template <CpuScalar T>
Var<T> attention(Tape<T>& tape, Var<T> qkv, std::int64_t heads, Var<T> table = {},
                 const Tensor<std::int32_t>* buckets = nullptr) {
  const Tensor<T>& QKV = tape.value(qkv);
  if (QKV.rank() != 3 || QKV.dim(2) % (3 * heads) != 0)
    throw ShapeError("attention: qkv must be [B, T, 3*D] with D divisible by heads, got " + QKV.shape().str());
  const cpu::AttentionShape s{QKV.dim(0), QKV.dim(1), heads, QKV.dim(2) / (3 * heads)};
  if (table.valid() != (buckets != nullptr)) throw ConfigError("attention: a relative bias needs its table and buckets");
  std::int64_t nb = 0;
  if (table.valid()) {
    const Tensor<T>& W = tape.value(table);
    if (W.rank() != 2 || W.dim(0) != s.head_dim) throw ShapeError("attention: relative table must be [head_dim, buckets]");
    nb = W.dim(1);
    expect_shape(buckets->shape(), Shape{s.tokens, s.tokens}, "attention buckets");
    for (std::int64_t i = 0; i < buckets->numel(); ++i)
      if ((*buckets)[i] < 0 || (*buckets)[i] >= nb) throw ShapeError("attention: a bucket index outside the table");
  }
  auto bias = [&](Tape<T>& t, bool backward) {
    cpu::RelativeKeyBias<T> r;
    if (!table.valid()) return r;
    r.table = t.value(table).data();
    r.bucket = buckets->data();
    r.buckets = nb;
    if (backward) r.dtable = t.grad_or_null(table);
    return r;
  };
  Tensor<T> out = tape.alloc(Shape{s.batch, s.tokens, s.dim()});
  const bool grad = tape.needs_grad(qkv, table);
  // Inference keeps the probabilities only for the duration of this call.
  const Arena::Mark scratch_mark = tape.arena().mark();
  Tensor<T> probs = tape.alloc(Shape{s.batch, s.heads, s.tokens, s.tokens});
  const cpu::RelativeKeyBias<T> forward_bias = bias(tape, false);
  cpu::attention_forward(QKV.data(), out.data(), probs.data(), s, table.valid() ? &forward_bias : nullptr);
  if (!grad) tape.arena().rewind(scratch_mark);
  Var<T> y = tape.result(out, grad);
  if (grad) {
    const Tensor<std::int32_t> kept_buckets = buckets ? *buckets : Tensor<std::int32_t>();
    tape.record([qkv, y, probs, s, table, kept_buckets, nb](Tape<T>& t) {
      if (!t.has_grad(y)) return;
      Tensor<T> scratch = t.alloc(probs.shape());
      cpu::RelativeKeyBias<T> r;
      if (table.valid()) r = {t.value(table).data(), kept_buckets.data(), nb, t.grad_or_null(table)};
      T* dqkv = t.grad_or_null(qkv);
      // The kernel accumulates into dqkv; without an input gradient it still needs somewhere to write.
      Tensor<T> discard;
      if (!dqkv) discard = t.alloc(t.value(qkv).shape()), discard.zero(), dqkv = discard.data();
      cpu::attention_backward(t.grad(y).data(), t.value(qkv).data(), probs.data(), dqkv, scratch.data(), s,
                              table.valid() ? &r : nullptr);
    });
  }
  return y;
}

// The pre-softmax logits of the same attention without a relative bias, qkv [B, T, 3D] ->
// [B, heads, T, T] = q k^T / sqrt(head_dim) (MAE-lite's distilled quantity).
template <CpuScalar T>
Var<T> attention_logits(Tape<T>& tape, Var<T> qkv, std::int64_t heads) {
  const Tensor<T>& QKV = tape.value(qkv);
  if (QKV.rank() != 3 || QKV.dim(2) % (3 * heads) != 0)
    throw ShapeError("attention_logits: qkv must be [B, T, 3*D] with D divisible by heads, got " + QKV.shape().str());
  const cpu::AttentionShape s{QKV.dim(0), QKV.dim(1), heads, QKV.dim(2) / (3 * heads)};
  Tensor<T> logits = tape.alloc(Shape{s.batch, s.heads, s.tokens, s.tokens});
  cpu::attention_logits_forward(QKV.data(), logits.data(), s);
  const bool grad = tape.needs_grad(qkv);
  Var<T> y = tape.result(logits, grad);
  if (grad)
    tape.record([qkv, y, s](Tape<T>& t) {
      if (t.has_grad(y)) cpu::attention_logits_backward(t.grad(y).data(), t.value(qkv).data(), t.grad(qkv).data(), s);
    });
  return y;
}

}  // namespace vitfreeze::ops
