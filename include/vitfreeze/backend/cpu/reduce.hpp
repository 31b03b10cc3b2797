#pragma once
// Reductions shared by several kernels.
#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "vitfreeze/core/parallel.hpp"
#include "vitfreeze/core/dtype.hpp"

namespace vitfreeze::cpu {

// out[c] += sum_r x[r, c] for a row-major [rows, cols] matrix. Rows are split across threads, each
// thread sums into its own partial row, and partials are added in thread order (deterministic for a
// fixed thread count).
template <CpuScalar T>
inline void add_column_sums_strided(const T* x, std::int64_t rows, std::int64_t cols, std::int64_t ld, T* out) {
  using Row = Eigen::Array<T, 1, Eigen::Dynamic>;
  const int threads = rows * cols > 32768 ? thread_count() : 1;
  std::vector<Row> partial(threads, Row::Zero(cols));
#pragma omp parallel num_threads(threads)
  {
    const int t = thread_index();
    const std::int64_t begin = rows * t / threads, end = rows * (t + 1) / threads;
    Row& acc = partial[t];
    for (std::int64_t r = begin; r < end; ++r) acc += Eigen::Map<const Row>(x + r * ld, cols);
  }
  Eigen::Map<Row> o(out, cols);
  for (const Row& p : partial) o += p;
}
template <CpuScalar T>
inline void add_column_sums(const T* x, std::int64_t rows, std::int64_t cols, T* out) {
  add_column_sums_strided(x, rows, cols, cols, out);
}

template <CpuScalar T>
inline double sum(const T* x, std::int64_t n) {
  double s = 0;
#pragma omp parallel for reduction(+ : s) if (n > 65536)
  for (std::int64_t i = 0; i < n; ++i) s += x[i];
  return s;
}

}  // namespace vitfreeze::cpu
