#pragma once
// The CUDA backend's attention (Cuda::attention_forward/backward): softmax(q k^T / sqrt(hd)) v over
// the fused qkv buffer [B, T, 3D] -> [B, T, D], the path picked by the storage type and what the
// machine offers:
//   bf16, fp16: cuDNN's fused flash attention (cudnn_sdpa.hpp) when the translation unit opts in with
//         VITFREEZE_WITH_CUDNN and cuDNN supports the shape; otherwise batched cuBLASLt GEMMs plus
//         own softmax/permute kernels (attention_gemm.cuh), with the reason printed once per shape;
//   fp32: the unfused fp32 kernels (attention.cuh), the exact reference (cuDNN has no fp32 SDPA).
// The backward overwrites dqkv.
#include <cuda_runtime.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <type_traits>

#include "vitfreeze/backend/cuda/attention.cuh"
#include "vitfreeze/backend/cuda/attention_gemm.cuh"
#if defined(VITFREEZE_WITH_CUDNN)
#include "vitfreeze/backend/cuda/cudnn_sdpa.hpp"
#endif

namespace vitfreeze::cuda {

// Per-context switch and memory of the attention path (a CudaContext service).
struct AttentionPaths {
  explicit AttentionPaths(CudaContext& ctx)
#if defined(VITFREEZE_WITH_CUDNN)
      : sdpa(ctx)
#endif
  {
    (void)ctx;
    if (const char* e = std::getenv("VITFREEZE_CUDNN_ATTENTION"); e && std::string(e) == "0") cudnn_enabled = false;
  }

  // Benchmarks turn it off to time the GEMM path; VITFREEZE_CUDNN_ATTENTION=0 in the environment
  // turns it off from the start (a run-time escape hatch should cuDNN misbehave on some machine).
  bool cudnn_enabled = true;

  static constexpr bool cudnn_compiled() {
#if defined(VITFREEZE_WITH_CUDNN)
    return true;
#else
    return false;
#endif
  }

  template <HalfScalar E>
  bool use_cudnn(const AttentionShape& s) {
#if defined(VITFREEZE_WITH_CUDNN)
    if (!cudnn_enabled) return false;
    std::string why;
    const cudnnDataType_t io = detail::sdpa_io_type<E>();
    if (sdpa.supports(s, &why, io)) return true;
    if (reported.insert({s.batch, s.tokens, s.heads, s.head_dim, std::int64_t(io)}).second)
      std::fprintf(stderr, "vitfreeze: cuDNN attention unavailable for B=%lld T=%lld H=%lld hd=%lld %s (%s); using GEMM attention\n",
                   (long long)s.batch, (long long)s.tokens, (long long)s.heads, (long long)s.head_dim,
                   std::is_same_v<E, bf16> ? "bf16" : "fp16", why.c_str());
#else
    (void)s;
#endif
    return false;
  }

#if defined(VITFREEZE_WITH_CUDNN)
  CudnnSdpa sdpa;
  std::set<std::array<std::int64_t, 5>> reported;
#endif
};

template <DeviceScalar T>
struct AttentionPath {
  static constexpr bool kHalf = HalfScalar<T>;  // bf16 or fp16: cuDNN or GEMM attention

  struct Saved {
    DeviceBuffer probs;  // fp32 path: P [B, H, T, T]
    DeviceBuffer stats;  // cuDNN path: fp32 log-sum-exp [B, H, T]
    bool cudnn = false;
    std::conditional_t<kHalf, GemmAttentionSaved, char> gemm{};
  };

  static void forward(CudaContext& ctx, const T* qkv, T* out, const AttentionShape& s, Saved* saved) {
    if constexpr (kHalf) {
#if defined(VITFREEZE_WITH_CUDNN)
      AttentionPaths& paths = ctx.service<AttentionPaths>();
      if (paths.use_cudnn<T>(s)) {
        DeviceBuffer stats =
            saved ? ctx.allocator().allocate(sizeof(float) * std::size_t(s.batch * s.heads * s.tokens)) : DeviceBuffer();
        paths.sdpa.forward(qkv, out, saved ? stats.as<float>() : nullptr, s);
        if (saved) {
          saved->stats = stats;
          saved->cudnn = true;
        }
        return;
      }
#endif
      if (saved)
        attention_forward_gemm(ctx, qkv, out, s, saved->gemm);
      else
        attention_forward_gemm_inference(ctx, qkv, out, s);
    } else {
      DeviceBuffer probs = ctx.allocator().allocate(sizeof(float) * std::size_t(s.batch * s.heads * s.tokens * s.tokens));
      attention_forward(ctx, qkv, out, probs.as<float>(), s);
      if (saved) saved->probs = probs;
    }
  }

  // out: the forward's output (the cuDNN backward reads it).
  static void backward(CudaContext& ctx, const T* dout, const T* qkv, const T* out, const Saved& saved, T* dqkv,
                       const AttentionShape& s) {
    if constexpr (kHalf) {
#if defined(VITFREEZE_WITH_CUDNN)
      if (saved.cudnn) {
        ctx.service<AttentionPaths>().sdpa.backward(qkv, out, dout, saved.stats.template as<float>(), dqkv, s);
        return;
      }
#endif
      (void)qkv;
      (void)out;
      attention_backward_gemm(ctx, dout, saved.gemm, dqkv, s);
    } else {
      (void)out;
      check(cudaMemsetAsync(dqkv, 0, sizeof(float) * std::size_t(s.batch * s.tokens * 3 * s.dim()), ctx.stream()),
            "cudaMemsetAsync(dqkv)");
      DeviceBuffer scratch = ctx.allocator().allocate(sizeof(float) * std::size_t(s.batch * s.heads * s.tokens * s.tokens));
      attention_backward(ctx, dout, qkv, saved.probs.template as<float>(), dqkv, scratch.as<float>(), s);
    }
  }
};

}  // namespace vitfreeze::cuda
