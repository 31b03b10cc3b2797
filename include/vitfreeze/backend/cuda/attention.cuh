#pragma once
// Unfused fp32 attention, the fallback path (and the reference for a future cuDNN SDPA path), as
// cpu::attention_forward / attention_backward: q, k, v are read in place from the fused qkv
// projection, qkv[b, t, s*D + h*hd + d] for s in {q, k, v}; out[b, t, h*hd + d]; the probabilities
// P[b, h, t, t'] are saved for the backward. Straightforward kernels, no tiling: one block per query
// row (scores in shared memory), one block per key row for dK and dV. Deterministic (no atomics).
// Also softmax_rows_inplace, as cpu::softmax_rows_inplace.
#include "vitfreeze/backend/attention_shape.hpp"
#include <cmath>
#include <cstdint>
#include <string>

#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/device_math.cuh"

namespace vitfreeze::cuda {

using vitfreeze::AttentionShape;

namespace detail {
// Floats in the per-block shared row of the fallback kernels: T rounded up to a multiple of 4, plus 4
// (why: attention_shared_bytes).
__host__ __device__ constexpr std::int64_t attention_shared_floats(std::int64_t T) { return (T + 3) / 4 * 4 + 4; }
}  // namespace detail

namespace kernels {
// Zeroes the shared-row padding [T, padded) (see detail::attention_shared_bytes) so that speculative
// reads past T see defined values.
__device__ __forceinline__ void zero_row_padding(float* row, std::int64_t T, std::int64_t padded) {
  for (std::int64_t j = T + threadIdx.x; j < padded; j += blockDim.x) row[j] = 0.0f;
}

// Kernels are templates (on the element type, float here) so that several .cu files may include this
// header: a non-template __global__ function would be defined once per translation unit.
template <class F>
__global__ void softmax_rows(F* s, std::int64_t cols) {
  float* row = s + blockIdx.x * cols;
  float m = -INFINITY;
  for (std::int64_t i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, row[i]);
  m = detail::block_max(m);
  float z = 0.0f;
  for (std::int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    const float e = expf(row[i] - m);
    row[i] = e;
    z += e;
  }
  const float inv = 1.0f / detail::block_sum(z);
  for (std::int64_t i = threadIdx.x; i < cols; i += blockDim.x) row[i] *= inv;
}

// Block (b, h, t): scores of query t against every key, softmax, P row out, then out row = P V.
template <class F>
__global__ void attention_forward(const float* qkv, float* out, float* probs, std::int64_t T, std::int64_t H,
                                  std::int64_t hd, float scale) {
  extern __shared__ float p[];  // [T], padded to detail::attention_shared_floats(T)
  const std::int64_t row = blockIdx.x;  // (b * H + h) * T + t
  zero_row_padding(p, T, detail::attention_shared_floats(T));
  const std::int64_t t = row % T, h = row / T % H, b = row / (T * H);
  const std::int64_t D = H * hd, stride = 3 * D;
  const float* q = qkv + (b * T + t) * stride + h * hd;
  const float* k0 = qkv + b * T * stride + D + h * hd;
  const float* v0 = k0 + D;
  float m = -INFINITY;
  for (std::int64_t j = threadIdx.x; j < T; j += blockDim.x) {
    float s = 0.0f;
    for (std::int64_t d = 0; d < hd; ++d) s += q[d] * k0[j * stride + d];
    p[j] = s * scale;
    m = fmaxf(m, p[j]);
  }
  m = detail::block_max(m);
  float z = 0.0f;
  for (std::int64_t j = threadIdx.x; j < T; j += blockDim.x) {
    p[j] = expf(p[j] - m);
    z += p[j];
  }
  const float inv = 1.0f / detail::block_sum(z);
  for (std::int64_t j = threadIdx.x; j < T; j += blockDim.x) {
    p[j] *= inv;
    probs[row * T + j] = p[j];
  }
  __syncthreads();  // the whole P row is read below
  for (std::int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
    float acc = 0.0f;
    for (std::int64_t j = 0; j < T; ++j) acc += p[j] * v0[j * stride + d];
    out[(b * T + t) * D + h * hd + d] = acc;
  }
}

// Block (b, h, t): dP row = dO_t V^T, dS row = P (dP - <dP, P>) to scratch, dQ_t += scale dS K.
template <class F>
__global__ void attention_backward_query(const float* dout, const float* qkv, const float* probs, float* dqkv,
                                         float* dscores, std::int64_t T, std::int64_t H, std::int64_t hd,
                                         float scale) {
  extern __shared__ float ds[];  // [T], padded to detail::attention_shared_floats(T)
  const std::int64_t row = blockIdx.x;
  zero_row_padding(ds, T, detail::attention_shared_floats(T));
  const std::int64_t t = row % T, h = row / T % H, b = row / (T * H);
  const std::int64_t D = H * hd, stride = 3 * D;
  const float* dO = dout + (b * T + t) * D + h * hd;
  const float* k0 = qkv + b * T * stride + D + h * hd;
  const float* v0 = k0 + D;
  const float* P = probs + row * T;
  float local = 0.0f;
  for (std::int64_t j = threadIdx.x; j < T; j += blockDim.x) {
    float s = 0.0f;
    for (std::int64_t d = 0; d < hd; ++d) s += dO[d] * v0[j * stride + d];
    ds[j] = s;
    local += s * P[j];
  }
  const float dot = detail::block_sum(local);
  for (std::int64_t j = threadIdx.x; j < T; j += blockDim.x) {
    ds[j] = P[j] * (ds[j] - dot);
    dscores[row * T + j] = ds[j];
  }
  __syncthreads();
  float* dq = dqkv + (b * T + t) * stride + h * hd;
  for (std::int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
    float acc = 0.0f;
    for (std::int64_t j = 0; j < T; ++j) acc += ds[j] * k0[j * stride + d];
    dq[d] += scale * acc;
  }
}

// Block (b, h, j): dV_j += sum_t P[t, j] dO_t, dK_j += scale sum_t dS[t, j] Q_t.
template <class F>
__global__ void attention_backward_key(const float* dout, const float* qkv, const float* probs,
                                       const float* dscores, float* dqkv, std::int64_t T, std::int64_t H,
                                       std::int64_t hd, float scale) {
  const std::int64_t key = blockIdx.x;  // (b * H + h) * T + j
  const std::int64_t j = key % T, bh = key / T, h = bh % H, b = bh / H;
  const std::int64_t D = H * hd, stride = 3 * D;
  const float* q0 = qkv + b * T * stride + h * hd;
  const float* dO0 = dout + b * T * D + h * hd;
  const float* P = probs + bh * T * T;
  const float* S = dscores + bh * T * T;
  float* dk = dqkv + (b * T + j) * stride + D + h * hd;
  float* dv = dk + D;
  for (std::int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
    float accv = 0.0f, acck = 0.0f;
    for (std::int64_t t = 0; t < T; ++t) {
      accv += P[t * T + j] * dO0[t * D + d];
      acck += S[t * T + j] * q0[t * stride + d];
    }
    dv[d] += accv;
    dk[d] += scale * acck;
  }
}
}  // namespace kernels

namespace detail {
// Why the shared row is padded: compute-sanitizer on an H100 reported a 12-byte __shared__ read at
// 0x540 in attention_forward for T = 17, i.e. p[16..18] (1 KiB reserved + 256 B of reduction
// partials + 16 floats), past the 17 floats allocated. The final sum over j < T is unrolled by 4
// with 16-byte loads; the PTX reads the 1-3 float tail one by one behind bound tests, so the wide
// read is most likely ptxas merging those tail loads and discarding the unused lanes (the results
// were right). Rounding T up to a multiple of 4 and adding 4 floats keeps any such load inside the
// block's shared memory; the kernels zero the padding so it holds defined values.
inline std::size_t attention_shared_bytes(const AttentionShape& s) {
  const std::size_t bytes = sizeof(float) * static_cast<std::size_t>(detail::attention_shared_floats(s.tokens));
  if (bytes > 48 * 1024)
    throw ConfigError("cuda attention fallback: " + std::to_string(s.tokens) + " tokens exceed one block's shared memory");
  return bytes;
}
inline unsigned attention_rows(const AttentionShape& s) {
  return static_cast<unsigned>(s.batch * s.heads * s.tokens);
}
}  // namespace detail

inline void softmax_rows_inplace(CudaContext& ctx, float* s, std::int64_t rows, std::int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  kernels::softmax_rows<float><<<static_cast<unsigned>(rows), detail::kBlock, 0, ctx.stream()>>>(s, cols);
  check_launch("softmax_rows");
}

// probs: [B, H, T, T] output (saved for the backward, or scratch).
inline void attention_forward(CudaContext& ctx, const float* qkv, float* out, float* probs, const AttentionShape& s) {
  if (s.batch * s.heads * s.tokens == 0) return;
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  kernels::attention_forward<float><<<detail::attention_rows(s), detail::kBlock, detail::attention_shared_bytes(s),
                               ctx.stream()>>>(qkv, out, probs, s.tokens, s.heads, s.head_dim, scale);
  check_launch("attention_forward");
}

// Accumulates into dqkv. scratch: B*H*T*T floats (dS).
inline void attention_backward(CudaContext& ctx, const float* dout, const float* qkv, const float* probs, float* dqkv,
                               float* scratch, const AttentionShape& s) {
  if (s.batch * s.heads * s.tokens == 0) return;
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  kernels::attention_backward_query<float><<<detail::attention_rows(s), detail::kBlock, detail::attention_shared_bytes(s),
                                      ctx.stream()>>>(dout, qkv, probs, dqkv, scratch, s.tokens, s.heads,
                                                      s.head_dim, scale);
  check_launch("attention_backward_query");
  const unsigned threads = static_cast<unsigned>(std::min<std::int64_t>((s.head_dim + 31) / 32 * 32, detail::kBlock));
  kernels::attention_backward_key<float><<<detail::attention_rows(s), threads, 0, ctx.stream()>>>(
      dout, qkv, probs, scratch, dqkv, s.tokens, s.heads, s.head_dim, scale);
  check_launch("attention_backward_key");
}

}  // namespace vitfreeze::cuda
