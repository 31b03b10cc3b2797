#pragma once
// Shape of a multi-head attention call, shared by the CPU and CUDA backends (Eigen-free, so .cu
// files can include it).
#include <cstdint>

namespace vitfreeze {

struct AttentionShape {
  std::int64_t batch, tokens, heads, head_dim;
  std::int64_t dim() const { return heads * head_dim; }
};

// LoMaR's relative key bias (backend/relative_position.hpp): logit_ij gains q_i . table[:, bucket_ij],
// one table [head_dim, buckets] shared by the heads, not scaled by 1/sqrt(head_dim). Pointers into
// the backend's memory.
template <class T>
struct RelativeKeyBias {
  const T* table = nullptr;              // [head_dim, buckets]
  const std::int32_t* bucket = nullptr;  // [tokens, tokens]
  std::int64_t buckets = 0;
  T* dtable = nullptr;                   // backward: accumulates [head_dim, buckets] (null: no gradient)
};

}  // namespace vitfreeze
