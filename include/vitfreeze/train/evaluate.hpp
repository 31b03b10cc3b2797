#pragma once
// Top-k accuracy of class scores.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "vitfreeze/core/tensor.hpp"

namespace vitfreeze::train {

struct Accuracy {
  double top1 = 0, top5 = 0;
  std::int64_t count = 0;
};

// Adds the samples of logits [N, C] to running top-1 / top-5 counts (ties count against the label).
template <class T>
void accumulate_accuracy(const Tensor<T>& logits, const std::vector<std::int32_t>& labels, Accuracy& acc) {
  const std::int64_t N = logits.dim(0), C = logits.dim(1);
  for (std::int64_t n = 0; n < N; ++n) {
    const T* z = logits.data() + n * C;
    const T target = z[labels[std::size_t(n)]];
    std::int64_t higher = 0;
    for (std::int64_t c = 0; c < C; ++c) higher += (z[c] > target) || (z[c] == target && c < labels[std::size_t(n)]);
    const double w = 1.0 / double(acc.count + 1);
    acc.top1 += ((higher < 1 ? 1.0 : 0.0) - acc.top1) * w;
    acc.top5 += ((higher < 5 ? 1.0 : 0.0) - acc.top5) * w;
    ++acc.count;
  }
}

}  // namespace vitfreeze::train
