#pragma once
// Fixed 2-D sin-cos position embedding (MAE): for a grid_h x grid_w grid and width D (D % 4 == 0),
// q = D/4, omega_k = 10000^(-k/q); cell (i, j) -> [sin(j w), cos(j w), sin(i w), cos(i w)]
// (the first half encodes the column). Cells row-major; with_cls prepends a zero row.
#include <cmath>

#include "vitfreeze/core/tensor.hpp"

namespace vitfreeze::nn {

template <CpuScalar T>
Tensor<T> sincos_pos_embed_2d(std::int64_t dim, std::int64_t grid_h, std::int64_t grid_w, bool with_cls) {
  if (dim % 4 != 0) throw ShapeError("sincos_pos_embed_2d: width " + std::to_string(dim) + " is not a multiple of 4");
  const std::int64_t q = dim / 4, first = with_cls ? 1 : 0;
  Tensor<T> table(Shape{first + grid_h * grid_w, dim});
  for (std::int64_t i = 0; i < grid_h; ++i)
    for (std::int64_t j = 0; j < grid_w; ++j) {
      T* row = table.data() + (first + i * grid_w + j) * dim;
      for (std::int64_t k = 0; k < q; ++k) {
        const double omega = 1.0 / std::pow(10000.0, double(k) / double(q));
        row[k] = T(std::sin(double(j) * omega));
        row[q + k] = T(std::cos(double(j) * omega));
        row[2 * q + k] = T(std::sin(double(i) * omega));
        row[3 * q + k] = T(std::cos(double(i) * omega));
      }
    }
  return table;
}

}  // namespace vitfreeze::nn
