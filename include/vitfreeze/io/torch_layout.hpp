#pragma once
// A parameter (or its gradient) in PyTorch's layout, for every file that uses PyTorch's names: the
// timm/MAE weight export and import (io/weights.hpp) and the step dump (train/step_dump.hpp).
// Usually that layout is a view of our memory under another shape (Parameter::file_shape: the patch
// embedding's [D, C*p*p] is the conv kernel [D, C, p, p]); a transposed convolution's kernel is a
// permutation of it (Parameter::torch_permutation: our [4*out, in] viewed as [out, 2, 2, in] is
// PyTorch's [in, out, 2, 2] with axes (3, 0, 1, 2)). Checkpoints keep our own layout: only we read
// them, and they are checked against the model on load.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "vitfreeze/core/parameter.hpp"
#include "vitfreeze/core/error.hpp"
#include "vitfreeze/io/safetensors.hpp"

namespace vitfreeze::io {

namespace detail {
// For each element of the permuted tensor (row-major), the flat index it comes from in the view.
inline std::vector<std::int64_t> permutation_sources(const AxisPermutation& perm) {
  const int rank = perm.view.rank();
  if (int(perm.axes.size()) != rank) throw ShapeError("AxisPermutation: one axis per dimension of the view needed");
  std::array<std::int64_t, Shape::kMaxRank> view_stride{}, out_extent{}, out_stride{};
  std::array<bool, Shape::kMaxRank> seen{};
  for (int d = rank - 1, s = 1; d >= 0; --d) view_stride[std::size_t(d)] = s, s *= int(perm.view[d]);
  for (int i = 0; i < rank; ++i) {
    const int a = perm.axes[std::size_t(i)];
    if (a < 0 || a >= rank || seen[std::size_t(a)]) throw ShapeError("AxisPermutation: axes are not a permutation");
    seen[std::size_t(a)] = true;
    out_extent[std::size_t(i)] = perm.view[a];
    out_stride[std::size_t(i)] = view_stride[std::size_t(a)];
  }
  std::vector<std::int64_t> sources;
  sources.reserve(std::size_t(perm.view.numel()));
  std::array<std::int64_t, Shape::kMaxRank> index{};
  for (std::int64_t n = 0; n < perm.view.numel(); ++n) {
    std::int64_t from = 0;
    for (int i = 0; i < rank; ++i) from += index[std::size_t(i)] * out_stride[std::size_t(i)];
    sources.push_back(from);
    for (int i = rank - 1; i >= 0 && ++index[std::size_t(i)] == out_extent[std::size_t(i)]; --i) index[std::size_t(i)] = 0;
  }
  return sources;
}

template <CpuScalar T>
Shape permuted_shape(const Parameter<T>& p) {
  const AxisPermutation& perm = p.torch_permutation;
  std::vector<std::int64_t> extents;
  for (int a : perm.axes) extents.push_back(perm.view[a]);
  return make_shape(extents);
}
}  // namespace detail

// The shape a parameter has in PyTorch.
template <CpuScalar T>
Shape torch_shape(const Parameter<T>& p) {
  if (!p.torch_permutation.axes.empty()) return detail::permuted_shape(p);
  return p.file_shape.numel() == p.value.numel() ? p.file_shape : p.value.shape();
}

// `t` (the parameter's value, or a tensor of the same shape such as its gradient) in PyTorch's
// layout: a view when that layout is ours under another shape, else a permuted copy.
template <CpuScalar T>
Tensor<T> to_torch_layout(const Parameter<T>& p, const Tensor<T>& t) {
  expect_shape(t.shape(), p.value.shape(), ("to_torch_layout(" + p.name + ")").c_str());
  if (p.torch_permutation.axes.empty()) return t.view(torch_shape(p));
  Tensor<T> out(detail::permuted_shape(p));
  const auto sources = detail::permutation_sources(p.torch_permutation);
  for (std::int64_t i = 0; i < out.numel(); ++i) out[i] = t[sources[std::size_t(i)]];
  return out;
}

// The inverse: `file` in PyTorch's layout written into `out` (shaped as the parameter's value).
template <CpuScalar T>
void from_torch_layout(const Parameter<T>& p, const Tensor<T>& file, Tensor<T>& out) {
  const std::string where = "from_torch_layout(" + p.name + ")";
  expect_shape(file.shape(), torch_shape(p), where.c_str());
  expect_shape(out.shape(), p.value.shape(), where.c_str());
  if (p.torch_permutation.axes.empty()) {
    out.copy_from(file.view(out.shape()));
    return;
  }
  const auto sources = detail::permutation_sources(p.torch_permutation);
  for (std::int64_t i = 0; i < file.numel(); ++i) out[sources[std::size_t(i)]] = file[i];
}

}  // namespace vitfreeze::io
