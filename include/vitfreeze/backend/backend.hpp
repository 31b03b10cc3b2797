#pragma once
// The Backend concept: what the models (model/) need from a device to run a training step, and
// nothing else. A backend has a Context (its allocator, its stream), a memory Space its arrays are
// typed by, a Parameter<P> handle per precision policy (values the kernels read, a gradient the
// backwards accumulate into, null once frozen), and the kernel set as static functions:
//   memory      empty, zeros, zero, upload, download, read_scalar
//   dense       gemm (with bias / GELU / dGELU / bias-gradient epilogues), add_in_place,
//               add_broadcast_in_place, gelu_forward/backward, add_column_sums
//   norms       layernorm_forward, residual_layernorm_forward, layernorm_backward
//   attention   attention_forward/backward over the fused qkv buffer (AttentionSaved<P> per backend)
// Optional kernels (a model that needs one does not compile, or refuses at run time, without it):
//   relative    attention_forward/backward taking a last argument `const RelativeKeyBias<T>*`
//               (backend/attention_shape.hpp: LoMaR's iRPE, q_i . table[:, bucket_ij] added to the
//               logits, dtable accumulated in the backward), defaulted to null; model::Block asks
//               for it only when its attention is relative and throws ConfigError where it is missing
//   logits      attention_logits_forward(ctx, qkv, logits, shape) -> [B, H, T, T] = q k^T / sqrt(d_h)
//               and attention_logits_backward(ctx, dlogits, qkv, dqkv, shape) accumulating into
//               dqkv's q and k parts (MAE-lite's attention distillation, model/mae_distill.hpp)
//   tokens      patchify, gather_tokens_forward/backward, assemble_encoder_tokens,
//               split_encoder_token_grads, unshuffle_forward/backward
//   maps        pixel_shuffle_2x2_forward/backward, fold_kernel_position_sums, avg_pool_2x2_forward/backward
//   targets     patch_targets, hog_targets, masked_mse_forward/backward, tvmf_info_nce_forward/backward
//               (ContrastiveSaved per backend)
// Implementations: backend/cpu/backend.hpp (Cpu), backend/cuda/backend.cuh (Cuda, nvcc only).
// `supports<P>` says which precision policies a backend runs; `epilogue_gelu<P>` whether its GEMM's
// GELU epilogue computes the GELU policy P expects (model/linear.hpp falls back to the GELU kernel).
#include <concepts>
#include <cstdint>
#include <span>

#include "vitfreeze/backend/attention_shape.hpp"
#include "vitfreeze/backend/gemm_epilogue.hpp"
#include "vitfreeze/backend/geometry.hpp"
#include "vitfreeze/core/memory_space.hpp"
#include "vitfreeze/core/precision.hpp"
#include "vitfreeze/core/tensor.hpp"

namespace vitfreeze {

template <class B>
concept Backend =
    requires {
      typename B::Context;
      typename B::Space;
      { B::name } -> std::convertible_to<const char*>;
    } && MemorySpace<typename B::Space> &&
    requires(typename B::Context& ctx, float* f, const float* cf, double* result, const std::int32_t* ids,
             const AttentionShape& s, const PatchGeometry& pg, const MapGeometry& mg,
             std::span<const HogGeometry> hg, std::span<float* const> targets) {
      { B::template empty<float>(ctx, Shape{1}) } -> std::same_as<Tensor<float, typename B::Space>>;
      { B::template zeros<float>(ctx, Shape{1}) } -> std::same_as<Tensor<float, typename B::Space>>;
      B::zero(ctx, f, 1);
      B::gemm(ctx, false, true, 1, 1, 1, 1.0, cf, 1, cf, 1, 0.0, f, 1, GemmEpilogue<float>{});
      B::add_in_place(ctx, f, cf, 1);
      B::add_broadcast_in_place(ctx, f, cf, 1, 1);
      B::gelu_forward(ctx, cf, f, 1);
      B::gelu_backward(ctx, cf, cf, f, 1);
      B::add_column_sums(ctx, cf, 1, 1, f);
      B::layernorm_forward(ctx, cf, cf, cf, f, f, f, 1, 1, 1e-6);
      B::residual_layernorm_forward(ctx, cf, cf, f, cf, cf, f, f, f, 1, 1, 1e-6);
      B::layernorm_backward(ctx, cf, cf, cf, cf, cf, f, f, f, 1, 1);
      B::template attention_forward<Fp32>(ctx, cf, f, s, (typename B::template AttentionSaved<Fp32>*)nullptr);
      B::patchify(ctx, cf, f, pg, PatchLayout::channel_major);
      B::gather_tokens_forward(ctx, cf, ids, f, 1, 1, 1, 1);
      B::gather_tokens_backward(ctx, cf, ids, f, 1, 1, 1, 1);
      B::assemble_encoder_tokens(ctx, cf, cf, cf, ids, f, 1, 1, 1);
      B::split_encoder_token_grads(ctx, cf, f, f, 1, 1, 1);
      B::unshuffle_forward(ctx, cf, cf, ids, f, 1, 1, 1, 1);
      B::unshuffle_backward(ctx, cf, ids, f, f, 1, 1, 1, 1);
      B::pixel_shuffle_2x2_forward(ctx, cf, cf, f, mg, 1);
      B::pixel_shuffle_2x2_backward(ctx, cf, f, mg, 1);
      B::fold_kernel_position_sums(ctx, cf, f, 1);
      B::avg_pool_2x2_forward(ctx, cf, f, mg, 1);
      B::avg_pool_2x2_backward(ctx, cf, f, mg, 1);
      B::patch_targets(ctx, cf, f, pg, true, 1e-6);
      B::hog_targets(ctx, cf, hg, targets);
      B::masked_mse_forward(ctx, cf, cf, cf, 1, 1, result, false, 0);
      B::masked_mse_backward(ctx, 1.0, cf, cf, cf, 1.0, f, 1, 1, 0, cf);
      typename B::ContrastiveSaved;
    } && B::template supports<Fp32>;

// A backend that runs precision policy P.
template <class B, class P>
concept BackendFor = Backend<B> && PrecisionPolicy<P> && B::template supports<P>;

}  // namespace vitfreeze
