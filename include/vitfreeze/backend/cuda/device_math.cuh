#pragma once
// Device-side building blocks shared by the kernels: the storage types a kernel accepts (computing
// is always in fp32), conversions, block-wide reductions and launch sizes.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "vitfreeze/core/dtype.hpp"

namespace vitfreeze::cuda {

// Element storage types of the CUDA kernels. vitfreeze::bf16 has the same bits as __nv_bfloat16,
// vitfreeze::f16 those of __half. The 16-bit ones (HalfScalar) are storage only: kernels widen to fp32.
template <class T>
concept HalfScalar = std::is_same_v<T, bf16> || std::is_same_v<T, f16>;
template <class T>
concept DeviceScalar = std::is_same_v<T, float> || HalfScalar<T>;

static_assert(sizeof(bf16) == sizeof(__nv_bfloat16) && sizeof(f16) == sizeof(__half));

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16 x) { return __uint_as_float(static_cast<unsigned>(x.bits) << 16); }
__device__ __forceinline__ float to_float(f16 x) { return __half2float(__ushort_as_half(x.bits)); }

// Round to nearest even; NaN stays NaN; fp16 overflows to +-inf (what the loss scaler detects).
template <DeviceScalar T>
__device__ __forceinline__ T from_float(float x) {
  if constexpr (std::is_same_v<T, float>) {
    return x;
  } else {
    T r;
    if constexpr (std::is_same_v<T, bf16>)
      r.bits = __bfloat16_as_ushort(__float2bfloat16_rn(x));
    else
      r.bits = __half_as_ushort(__float2half_rn(x));
    return r;
  }
}

// The 16-bit element held in the low (element 0) or high half of a 32-bit word, widened.
template <HalfScalar T>
__device__ __forceinline__ float half_word_to_float(unsigned bits16) {
  T x;
  x.bits = static_cast<std::uint16_t>(bits16);
  return to_float(x);
}

// ---- 16-byte vector access -------------------------------------------------------------------
// Memory-bound kernels move 16 bytes per load/store (8 bf16/fp16 or 4 fp32) when the data allows it:
// kVec<T> elements per vector. W == 1 is the scalar fallback for unaligned pointers or odd sizes.
template <DeviceScalar T>
inline constexpr int kVec = 16 / static_cast<int>(sizeof(T));

// p points at W consecutive elements (16-byte aligned when W == kVec<T>).
template <DeviceScalar T, int W>
__device__ __forceinline__ void load_vec(const T* p, float (&v)[W]) {
  if constexpr (W == 1) {
    v[0] = to_float(p[0]);
  } else {
    static_assert(W == kVec<T>, "vector width must be 1 or 16 bytes");
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    if constexpr (std::is_same_v<T, float>) {
      v[0] = __uint_as_float(u.x), v[1] = __uint_as_float(u.y), v[2] = __uint_as_float(u.z), v[3] = __uint_as_float(u.w);
    } else {  // two 16-bit values per word, element 0 in the low half (little endian)
      const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        v[2 * i] = half_word_to_float<T>(w[i] & 0xffffu);
        v[2 * i + 1] = half_word_to_float<T>(w[i] >> 16);
      }
    }
  }
}

template <DeviceScalar T, int W>
__device__ __forceinline__ void store_vec(T* p, const float (&v)[W]) {
  if constexpr (W == 1) {
    p[0] = from_float<T>(v[0]);
  } else {
    static_assert(W == kVec<T>, "vector width must be 1 or 16 bytes");
    uint4 u;
    if constexpr (std::is_same_v<T, float>) {
      u = make_uint4(__float_as_uint(v[0]), __float_as_uint(v[1]), __float_as_uint(v[2]), __float_as_uint(v[3]));
    } else {
      unsigned w[4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
        w[i] = static_cast<unsigned>(from_float<T>(v[2 * i]).bits) | (static_cast<unsigned>(from_float<T>(v[2 * i + 1]).bits) << 16);
      u = make_uint4(w[0], w[1], w[2], w[3]);
    }
    *reinterpret_cast<uint4*>(p) = u;
  }
}

// Host side: may a kernel use 16-byte vectors of T on these pointers (nullptr allowed) when every
// row / period is a multiple of kVec<T> elements?
inline bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }
template <class... P>
inline bool all_aligned16(const P*... p) { return (aligned16(p) && ...); }

namespace detail {

// Sum over the 32 lanes of a warp; every lane gets the result (butterfly: same order on every lane).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}


// Every kernel in this backend runs blocks of this many threads (a multiple of the warp size, which
// the reductions below rely on).
inline constexpr int kBlock = 256;

// Blocks for a grid-stride loop over n elements: enough to fill the GPU, never above the grid limit.
inline unsigned grid_for(std::int64_t n) {
  const std::int64_t blocks = (n + kBlock - 1) / kBlock;
  return static_cast<unsigned>(std::clamp<std::int64_t>(blocks, 1, 65535));
}

// Multi-tensor launches over a table of tensors (AdamW, the loss scaler's gradient check):
// blockIdx.y picks the tensor, blockIdx.x strides over its elements. Calls launch(grid, first) once
// per chunk of at most 65535 tensors (the grid's y limit), starting at table entry `first`; the grid
// width covers the largest tensor, capped at 1024 blocks (the kernels stride over the rest).
template <class Launch>
void for_each_table_chunk(std::size_t count, std::int64_t largest, Launch&& launch) {
  const auto blocks_x = static_cast<unsigned>(std::clamp<std::int64_t>((largest + kBlock - 1) / kBlock, 1, 1024));
  constexpr std::size_t kMaxGridY = 65535;
  for (std::size_t first = 0; first < count; first += kMaxGridY)
    launch(dim3(blocks_x, static_cast<unsigned>(std::min(kMaxGridY, count - first))), first);
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
