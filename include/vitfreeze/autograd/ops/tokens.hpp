#pragma once
// Token-sequence ops: gather visible tokens, prepend the cls token, restore the full sequence with
// mask tokens, slice, and average.
#include <Eigen/Core>

#include "vitfreeze/autograd/tape.hpp"
#include "vitfreeze/backend/cpu/tokens.hpp"

namespace vitfreeze::ops {

// x [B, L, D], ids [B, K] -> [B, K, D]
template <CpuScalar T>
Var<T> gather_tokens(Tape<T>& tape, Var<T> x, const Tensor<std::int32_t>& ids) {
  const Tensor<T>& X = tape.value(x);
  if (X.rank() != 3 || ids.rank() != 2 || ids.dim(0) != X.dim(0))
    throw ShapeError("gather_tokens: x " + X.shape().str() + " and ids " + ids.shape().str() + " do not match");
  const std::int64_t B = X.dim(0), L = X.dim(1), D = X.dim(2), K = ids.dim(1);
  for (std::int64_t i = 0; i < ids.numel(); ++i)
    if (ids[i] < 0 || ids[i] >= L) throw ShapeError("gather_tokens: index out of range");
  Tensor<T> Y = tape.alloc(Shape{B, K, D});
  cpu::gather_tokens_forward(X.data(), ids.data(), Y.data(), B, L, K, D);
  const bool grad = tape.needs_grad(x);
  Var<T> y = tape.result(Y, grad);
  if (grad)
    tape.record([x, y, ids, B, L, K, D](Tape<T>& t) {
      if (t.has_grad(y)) cpu::gather_tokens_backward(t.grad(y).data(), ids.data(), t.grad(x).data(), B, L, K, D);
    });
  return y;
}

// token [D] (any shape with D elements), x [B, K, D] -> [B, 1 + K, D]
template <CpuScalar T>
Var<T> prepend_token(Tape<T>& tape, Var<T> token, Var<T> x) {
  const Tensor<T>& X = tape.value(x);
  const Tensor<T>& tok = tape.value(token);
  if (X.rank() != 3 || tok.numel() != X.dim(2))
    throw ShapeError("prepend_token: token " + tok.shape().str() + " does not fit " + X.shape().str());
  const std::int64_t B = X.dim(0), K = X.dim(1), D = X.dim(2);
  Tensor<T> Y = tape.alloc(Shape{B, K + 1, D});
  for (std::int64_t b = 0; b < B; ++b) {
    std::memcpy(Y.data() + b * (K + 1) * D, tok.data(), sizeof(T) * D);
    std::memcpy(Y.data() + (b * (K + 1) + 1) * D, X.data() + b * K * D, sizeof(T) * K * D);
  }
  const bool grad = tape.needs_grad(token, x);
  Var<T> y = tape.result(Y, grad);
  if (grad)
    tape.record([token, x, y, B, K, D](Tape<T>& t) {
      if (!t.has_grad(y)) return;
      const T* dy = t.grad(y).data();
      using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
      if (T* dt = t.grad_or_null(token))
        for (std::int64_t b = 0; b < B; ++b) Eigen::Map<Arr>(dt, D) += Eigen::Map<const Arr>(dy + b * (K + 1) * D, D);
      if (T* dx = t.grad_or_null(x))
        for (std::int64_t b = 0; b < B; ++b)
          Eigen::Map<Arr>(dx + b * K * D, K * D) += Eigen::Map<const Arr>(dy + (b * (K + 1) + 1) * D, K * D);
    });
  return y;
}

// x [B, 1 + K, D] (cls + visible in shuffled order), mask_token [D], ids_restore [B, L]
// -> [B, 1 + L, D] in original patch order with mask tokens at removed patches.
template <CpuScalar T>
Var<T> unshuffle_with_mask_token(Tape<T>& tape, Var<T> x, Var<T> mask_token, const Tensor<std::int32_t>& ids_restore) {
  const Tensor<T>& X = tape.value(x);
  const std::int64_t B = X.dim(0), K = X.dim(1) - 1, D = X.dim(2), L = ids_restore.dim(1);
  if (X.rank() != 3 || ids_restore.dim(0) != B || tape.value(mask_token).numel() != D)
    throw ShapeError("unshuffle_with_mask_token: x " + X.shape().str() + ", ids_restore " + ids_restore.shape().str());
  Tensor<T> Y = tape.alloc(Shape{B, L + 1, D});
  cpu::unshuffle_forward(X.data(), tape.value(mask_token).data(), ids_restore.data(), Y.data(), B, K, L, D);
  const bool grad = tape.needs_grad(x, mask_token);
  Var<T> y = tape.result(Y, grad);
  if (grad)
    tape.record([x, mask_token, y, ids_restore, B, K, L, D](Tape<T>& t) {
      if (t.has_grad(y))
        cpu::unshuffle_backward(t.grad(y).data(), ids_restore.data(), t.grad_or_null(x), t.grad_or_null(mask_token),
                                B, K, L, D);
    });
  return y;
}

// Tokens [begin, end) of x [B, T, D].
template <CpuScalar T>
Var<T> slice_tokens(Tape<T>& tape, Var<T> x, std::int64_t begin, std::int64_t end) {
  const Tensor<T>& X = tape.value(x);
  const std::int64_t B = X.dim(0), Tn = X.dim(1), D = X.dim(2), n = end - begin;
  if (X.rank() != 3 || begin < 0 || end > Tn || n <= 0) throw ShapeError("slice_tokens: bad range for " + X.shape().str());
  Tensor<T> Y = tape.alloc(Shape{B, n, D});
  for (std::int64_t b = 0; b < B; ++b)
    std::memcpy(Y.data() + b * n * D, X.data() + (b * Tn + begin) * D, sizeof(T) * n * D);
  const bool grad = tape.needs_grad(x);
  Var<T> y = tape.result(Y, grad);
  if (grad)
    tape.record([x, y, B, Tn, D, n, begin](Tape<T>& t) {
      if (!t.has_grad(y)) return;
      using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
      for (std::int64_t b = 0; b < B; ++b)
        Eigen::Map<Arr>(t.grad(x).data() + (b * Tn + begin) * D, n * D) +=
            Eigen::Map<const Arr>(t.grad(y).data() + b * n * D, n * D);
    });
  return y;
}

// Mean over tokens [begin, T) of x [B, T, D] -> [B, D] (global average pooling of patch tokens).
template <CpuScalar T>
Var<T> mean_tokens(Tape<T>& tape, Var<T> x, std::int64_t begin = 0) {
  const Tensor<T>& X = tape.value(x);
  const std::int64_t B = X.dim(0), Tn = X.dim(1), D = X.dim(2), n = Tn - begin;
  if (X.rank() != 3 || n <= 0) throw ShapeError("mean_tokens: bad input " + X.shape().str());
  using Mat = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
  Tensor<T> Y = tape.alloc(Shape{B, D});
  for (std::int64_t b = 0; b < B; ++b)
    Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(Y.data() + b * D, D) =
        Mat(X.data() + (b * Tn + begin) * D, n, D).colwise().mean();
  const bool grad = tape.needs_grad(x);
  Var<T> y = tape.result(Y, grad);
  if (grad)
    tape.record([x, y, B, Tn, D, n, begin](Tape<T>& t) {
      if (!t.has_grad(y)) return;
      using Row = Eigen::Array<T, 1, Eigen::Dynamic>;
      T* dx = t.grad(x).data();
      const T* dy = t.grad(y).data();
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t i = 0; i < n; ++i)
          Eigen::Map<Row>(dx + (b * Tn + begin + i) * D, D) += Eigen::Map<const Row>(dy + b * D, D) / T(n);
    });
  return y;
}

}  // namespace vitfreeze::ops
