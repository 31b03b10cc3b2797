#pragma once
// Device-side building blocks shared by the kernels: the storage types a kernel accepts (computing
// is always in fp32), conversions, block-wide reductions and launch sizes.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "vitfreeze/core/dtype.hpp"

namespace vitfreeze::cuda {

// Element storage types of the CUDA kernels. vitfreeze::bf16 has the same bits as __nv_bfloat16.
template <class T>
concept DeviceScalar = std::is_same_v<T, float> || std::is_same_v<T, bf16>;

static_assert(sizeof(bf16) == sizeof(__nv_bfloat16));

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16 x) { return __uint_as_float(static_cast<unsigned>(x.bits) << 16); }

template <DeviceScalar T>
__device__ __forceinline__ T from_float(float x) {
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else {
    T r;
    r.bits = __bfloat16_as_ushort(__float2bfloat16_rn(x));  // round to nearest even, NaN kept
    return r;
  }
}

namespace detail {

// Every kernel in this backend runs blocks of this many threads (a multiple of the warp size, which
// the reductions below rely on).
inline constexpr int kBlock = 256;

// Blocks for a grid-stride loop over n elements: enough to fill the GPU, never above the grid limit.
inline unsigned grid_for(std::int64_t n) {
  const std::int64_t blocks = (n + kBlock - 1) / kBlock;
  return static_cast<unsigned>(std::clamp<std::int64_t>(blocks, 1, 65535));
}

struct SumOp {
  template <class V>
  __device__ V operator()(V a, V b) const { return a + b; }
};
struct MaxOp {
  template <class V>
  __device__ V operator()(V a, V b) const { return a > b ? a : b; }
};

// Reduces one value per thread over the whole block; every thread gets the result. Requires
// blockDim.x to be a multiple of 32 (all launches use kBlock). Safe to call repeatedly: the first
// barrier keeps a new call from overwriting partials a previous call is still reading.
template <class V, class Op>
__device__ V block_reduce(V v, Op op) {
  __shared__ V partial[32];
  for (int offset = 16; offset > 0; offset /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  __syncthreads();
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  V result = partial[0];
  for (int w = 1; w < static_cast<int>(blockDim.x / 32); ++w) result = op(result, partial[w]);
  return result;
}

template <class V>
__device__ V block_sum(V v) { return block_reduce(v, SumOp{}); }
__device__ inline float block_max(float v) { return block_reduce(v, MaxOp{}); }

}  // namespace detail
}  // namespace vitfreeze::cuda
