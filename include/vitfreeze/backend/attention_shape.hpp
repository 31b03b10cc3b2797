#pragma once
// Shape of a multi-head attention call, shared by the CPU and CUDA backends (Eigen-free, so .cu
// files can include it).
#include <cstdint>

namespace vitfreeze {

struct AttentionShape {
  std::int64_t batch, tokens, heads, head_dim;
  std::int64_t dim() const { return heads * head_dim; }
};

}  // namespace vitfreeze
