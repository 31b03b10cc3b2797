#pragma once
// What every explicit module shares: the backend's parameter handle for a policy, lists of them in
// the host modules' order (timm names), and the shape checks at module boundaries.
//
// The model layer (model/) states each network once, as modules with an explicit forward and
// backward side by side, generic over a Backend (backend/backend.hpp) and a PrecisionPolicy. A
// forward keeps what its backward reads in a Saved record; with no record (a frozen prefix, or
// evaluation) it keeps nothing and its temporaries return to the backend's cache as it goes.
// Modules are made from the host modules (nn/, mim/), which own names, shapes and initialisation:
// on the CPU the explicit model reads and writes the host parameters in place; on the GPU each
// parameter has a device copy made from its host tensor.
#include <string>
#include <vector>

#include "vitfreeze/backend/backend.hpp"

namespace vitfreeze::model {

template <class B, class P>
using ParameterOf = typename B::template Parameter<P>;
template <class B, class P>
using ParameterRefs = std::vector<ParameterOf<B, P>*>;
template <class B, class T>
using ArrayOf = Tensor<T, typename B::Space>;

// x must be [rows, width] in row-major memory (any leading shape whose last extent is width).
template <class T, class S>
void expect_rows(const Tensor<T, S>& x, std::int64_t rows, std::int64_t width, const char* who) {
  if (x.numel() != rows * width || (x.rank() > 0 && x.shape().cols() != width))
    throw ShapeError(std::string(who) + ": expected " + std::to_string(rows) + " rows of " + std::to_string(width) +
                     ", got " + x.shape().str());
}

// Host data into an array of backend B: a host backend reads it in place; another copies it into
// dst (allocated on first use, reused after: a captured GPU step keeps reading the same address).
template <class B, class E>
void assign_from_host(typename B::Context& ctx, ArrayOf<B, E>& dst, const Tensor<E>& src) {
  if constexpr (std::is_same_v<typename B::Space, HostMemory>) {
    dst = src;
  } else {
    if (dst.empty()) dst = B::template empty<E>(ctx, src.shape());
    B::copy_from_host(ctx, src, dst);
  }
}

template <class List>
bool any_trainable(const List& ps) {
  for (const auto* p : ps)
    if (p->trainable()) return true;
  return false;
}

}  // namespace vitfreeze::model
