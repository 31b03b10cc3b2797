#pragma once
// The encoder's input sequence under masking, built after the patch embedding of the visible
// patches only: row 0 is the cls token (its position row is zero), row 1 + k is the embedding of
// visible patch k plus the fixed position of the patch it came from. This equals embedding every
// patch, adding positions and gathering (the CPU order) at a quarter of the GEMM work for mask 0.75.
#include <cstdint>

#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/device_math.cuh"

namespace vitfreeze::cuda {

namespace kernels {
template <DeviceScalar T>
__global__ void assemble_encoder_tokens(const T* patch_tokens, const T* cls, const T* pos, const std::int32_t* ids_keep,
                                        T* x, std::int64_t K, std::int64_t D, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t d = i % D, t = i / D % (K + 1), b = i / (D * (K + 1));
    if (t == 0) {
      x[i] = cls[d];
    } else {
      const std::int64_t patch = ids_keep[b * K + t - 1];
      x[i] = from_float<T>(to_float(patch_tokens[(b * K + t - 1) * D + d]) + to_float(pos[(1 + patch) * D + d]));
    }
  }
}

template <DeviceScalar T>
__global__ void split_encoder_token_grads(const T* dx, T* dpatch_tokens, T* dcls_rows, std::int64_t K, std::int64_t D,
                                          std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t d = i % D, t = i / D % (K + 1), b = i / (D * (K + 1));
    if (t == 0)
      dcls_rows[b * D + d] = dx[i];
    else
      dpatch_tokens[(b * K + t - 1) * D + d] = dx[i];
  }
}
}  // namespace kernels

// patch_tokens [B, K, D], cls [D], pos [1 + L, D], ids_keep [B, K] -> x [B, 1 + K, D]
template <DeviceScalar T>
void assemble_encoder_tokens(CudaContext& ctx, const T* patch_tokens, const T* cls, const T* pos,
                             const std::int32_t* ids_keep, T* x, std::int64_t B, std::int64_t K, std::int64_t D) {
  const std::int64_t n = B * (K + 1) * D;
  if (n <= 0) return;
  kernels::assemble_encoder_tokens<T><<<detail::grid_for(n), detail::kBlock, 0, ctx.stream()>>>(patch_tokens, cls, pos,
                                                                                                  ids_keep, x, K, D, n);
  check_launch("assemble_encoder_tokens");
}

// dx [B, 1 + K, D] -> dpatch_tokens [B, K, D] and the per-sample cls gradients dcls_rows [B, D]
// (both overwritten; the cls gradient is their column sum).
template <DeviceScalar T>
void split_encoder_token_grads(CudaContext& ctx, const T* dx, T* dpatch_tokens, T* dcls_rows, std::int64_t B,
                               std::int64_t K, std::int64_t D) {
  const std::int64_t n = B * (K + 1) * D;
  if (n <= 0) return;
  kernels::split_encoder_token_grads<T><<<detail::grid_for(n), detail::kBlock, 0, ctx.stream()>>>(dx, dpatch_tokens,
                                                                                                    dcls_rows, K, D, n);
  check_launch("split_encoder_token_grads");
}

}  // namespace vitfreeze::cuda
