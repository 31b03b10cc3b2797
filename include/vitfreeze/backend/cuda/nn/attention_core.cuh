#pragma once
// softmax(q k^T / sqrt(hd)) v over the fused qkv buffer [B, T, 3D] -> [B, T, D], picked by the
// precision policy: bf16 runs on batched cuBLASLt GEMMs plus own softmax/permute kernels
// (attention_gemm.cuh); fp32 runs the unfused fp32 kernels (attention.cuh), the exact reference.
// The backward overwrites dqkv.
#include <cuda_runtime.h>

#include <type_traits>

#include "vitfreeze/backend/cuda/attention.cuh"
#include "vitfreeze/backend/cuda/attention_gemm.cuh"
#include "vitfreeze/backend/cuda/nn/parameter.cuh"
#include "vitfreeze/backend/cuda/nn/precision.hpp"

namespace vitfreeze::cuda::nn {

template <PrecisionPolicy P>
struct AttentionCore {
  using T = typename P::Activation;
  static constexpr bool kGemmPath = std::is_same_v<T, bf16>;

  struct Saved {
    DeviceBuffer probs;  // fp32 path: P [B, H, T, T]
    std::conditional_t<kGemmPath, GemmAttentionSaved, char> gemm{};
  };

  static void forward(CudaContext& ctx, const T* qkv, T* out, const AttentionShape& s, Saved* saved) {
    if constexpr (kGemmPath) {
      if (saved)
        attention_forward_gemm(ctx, qkv, out, s, saved->gemm);
      else
        attention_forward_gemm_inference(ctx, qkv, out, s);
    } else {
      DeviceBuffer probs = device_array<float>(ctx, s.batch * s.heads * s.tokens * s.tokens);
      attention_forward(ctx, qkv, out, data_of<float>(probs), s);
      if (saved) saved->probs = probs;
    }
  }

  static void backward(CudaContext& ctx, const T* dout, const T* qkv, const Saved& saved, T* dqkv, const AttentionShape& s) {
    if constexpr (kGemmPath) {
      (void)qkv;
      attention_backward_gemm(ctx, dout, saved.gemm, dqkv, s);
    } else {
      check(cudaMemsetAsync(dqkv, 0, sizeof(float) * std::size_t(s.batch * s.tokens * 3 * s.dim()), ctx.stream()),
            "cudaMemsetAsync(dqkv)");
      DeviceBuffer scratch = device_array<float>(ctx, s.batch * s.heads * s.tokens * s.tokens);
      attention_backward(ctx, dout, qkv, data_of<float>(saved.probs), dqkv, data_of<float>(scratch), s);
    }
  }
};

}  // namespace vitfreeze::cuda::nn
