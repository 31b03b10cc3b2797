#pragma once
// nn::ViT on the device (masked-image-modeling input: the visible patches of each sample), made
// from a host encoder so it starts from the same weights. Units as the freezing code counts them:
// unit 0 = patch embedding and cls token, unit i = block i - 1; the final norm trains to the end.
// A frozen prefix (truncate semantics) runs forward only, keeps no activations, and the backward
// stops at the first trained block. With the cls token or the patch embedding still training
// (freeze_prefix: ViTFreeze's semantics, --dont_freeze_pe) the gradient goes on through the frozen
// blocks to them. forward/backward serve MAE (final norm on the last block); forward_taps/
// backward_taps serve LocalMIM (hidden states after chosen blocks, no final norm).
#include <algorithm>
#include <span>
#include <vector>

#include "vitfreeze/backend/cuda/encoder_tokens.cuh"
#include "vitfreeze/backend/cuda/nn/block.cuh"
#include "vitfreeze/backend/cuda/patchify.cuh"
#include "vitfreeze/backend/cuda/reduce.cuh"
#include "vitfreeze/backend/cuda/tokens.cuh"
#include "vitfreeze/nn/vit.hpp"

namespace vitfreeze::cuda::nn {

template <PrecisionPolicy P>
class DeviceViT {
 public:
  using T = typename P::Activation;

  struct Saved {
    DeviceBuffer visible_patches;  // [B, K, C p p]
    std::vector<typename DeviceBlock<P>::Saved> blocks;  // from first_saved_block on
    DeviceBuffer last;              // input of the final norm
    RowStatistics norm_stats;
    std::int64_t batch = 0, keep = 0;
  };

  template <ViTSpec S>
  DeviceViT(CudaContext& ctx, const vitfreeze::nn::ViT<S, float>& host)
      : cls_token(ctx, host.cls_token), patch_embed(ctx, host.patch_embed.proj), norm(ctx, host.norm),
        channels_(S.channels), image_(S.image), patch_(S.patch), patches_(S.tokens()), dim_(S.dim) {
    for (const auto& b : host.blocks) blocks.emplace_back(ctx, b);
    const Tensor<float>& pos = host.pos_embed();
    DeviceBuffer staging = device_array<float>(ctx, pos.numel());
    check(cudaMemcpyAsync(staging.data(), pos.data(), pos.bytes(), cudaMemcpyHostToDevice, ctx.stream()),
          "cudaMemcpyAsync(pos_embed)");
    pos_ = device_array<T>(ctx, pos.numel());
    convert<T>(ctx, data_of<float>(staging), data_of<T>(pos_), pos.numel());
  }

  std::int64_t dim() const { return dim_; }
  std::int64_t patches() const { return patches_; }
  int units() const { return int(blocks.size()) + 1; }
  int frozen_units() const { return frozen_units_; }

  // Freezes units [0, n): their gradients and optimizer state are released.
  void freeze_units(int n) {
    if (n < 0 || n >= units()) throw ConfigError("DeviceViT: can freeze 0.." + std::to_string(units() - 1) + " units");
    freeze_prefix(n >= 1 ? n - 1 : 0, n >= 1, n >= 1);
    frozen_units_ = n;
  }

  // The general form, for the other freeze semantics: freezes blocks [0, blocks) and, when asked,
  // the patch embedding and the cls token. While either of those still trains (ViTFreeze's
  // semantics: the cls token; --dont_freeze_pe: both), the frozen blocks keep their activations and
  // pass the gradient back through them (input gradients only, no weight gradients).
  void freeze_prefix(int blocks_frozen, bool patch_embedding, bool cls) {
    if (blocks_frozen < 0 || blocks_frozen >= int(blocks.size()))
      throw ConfigError("DeviceViT: can freeze 0.." + std::to_string(blocks.size() - 1) + " blocks");
    if (patch_embedding) patch_embed.weight.freeze(), patch_embed.bias.freeze();
    if (cls) cls_token.freeze();
    for (int i = 0; i < blocks_frozen; ++i) {
      DeviceParameterList<T> ps;
      blocks[i].collect_parameters(ps);
      for (auto* p : ps) p->freeze();
    }
    frozen_blocks_ = std::max(frozen_blocks_, blocks_frozen);
    frozen_units_ = -1;  // not a unit prefix unless freeze_units says so
  }

  // images [B, C, H, W] (activation type), ids_keep [B, K] -> latent [B, 1 + K, D] after the final norm.
  DeviceBuffer forward(CudaContext& ctx, const T* images, const std::int32_t* ids_keep, std::int64_t B, std::int64_t K,
                       Saved* saved) const {
    const std::int64_t rows = B * (K + 1);
    DeviceBuffer x = run_blocks(ctx, images, ids_keep, B, K, int(blocks.size()) - 1, {}, nullptr, saved);
    DeviceBuffer latent = device_array<T>(ctx, rows * dim_);
    RowStatistics stats = RowStatistics::make(ctx, rows);
    norm.forward(ctx, data_of<T>(x), data_of<T>(latent), stats, rows);
    if (saved) {
      saved->last = x;
      saved->norm_stats = stats;
    }
    return latent;
  }

  // dlatent [B, 1 + K, D]: accumulates the gradients of every trained parameter.
  void backward(CudaContext& ctx, const Saved& k, const T* dlatent) const {
    const std::int64_t rows = k.batch * (k.keep + 1);
    DeviceBuffer grad = device_zeros<T>(ctx, rows * dim_);
    norm.backward(ctx, dlatent, data_of<T>(k.last), k.norm_stats, data_of<T>(grad), rows);
    backward_blocks(ctx, k, grad, {});
  }

  // LocalMIM's encoder: the hidden states [B, 1 + K, D] after blocks tap_blocks[j] (any order,
  // repeats allowed), no final norm; blocks after the deepest tap are not run.
  std::vector<DeviceBuffer> forward_taps(CudaContext& ctx, const T* images, const std::int32_t* ids_keep, std::int64_t B,
                                         std::int64_t K, std::span<const int> tap_blocks, Saved* saved) const {
    if (tap_blocks.empty()) throw ConfigError("DeviceViT::forward_taps: no taps");
    for (int b : tap_blocks)
      if (b < 0 || b >= int(blocks.size())) throw ConfigError("DeviceViT::forward_taps: tap block outside the encoder");
    std::vector<DeviceBuffer> taps(tap_blocks.size());
    run_blocks(ctx, images, ids_keep, B, K, *std::max_element(tap_blocks.begin(), tap_blocks.end()), tap_blocks, &taps, saved);
    return taps;
  }

  // The gradient of the hidden state after block `block` (a tap of forward_taps).
  struct TapGradient {
    int block;
    const T* grad;  // [B, 1 + K, D]
  };

  // Backward of forward_taps: accumulates the gradients of every trained parameter. Taps at frozen
  // blocks send nothing into the encoder (nothing below them trains).
  void backward_taps(CudaContext& ctx, const Saved& k, std::span<const TapGradient> tap_grads) const {
    DeviceBuffer grad = device_zeros<T>(ctx, k.batch * (k.keep + 1) * dim_);
    backward_blocks(ctx, k, grad, tap_grads);
  }

  void collect_parameters(DeviceParameterList<T>& out) {
    out.push_back(&cls_token);
    patch_embed.collect_parameters(out);
    for (auto& b : blocks) b.collect_parameters(out);
    norm.collect_parameters(out);
  }

  DeviceParameter<T> cls_token;
  DeviceLinear<P> patch_embed;
  std::vector<DeviceBlock<P>> blocks;
  DeviceLayerNorm<P> norm;

 private:
  bool gradient_reaches_embedding() const { return cls_token.trainable() || patch_embed.weight.trainable(); }
  // The backward starts its block loop here: the first trained block, or block 0 while the
  // gradient must go on through the frozen blocks to the embedding.
  int first_saved_block() const { return gradient_reaches_embedding() ? 0 : frozen_blocks_; }


  // Embedding and blocks 0..top; returns block top's output. taps (when given) receives the output
  // of block tap_blocks[j] in slot j. saved keeps the trained blocks' activations.
  DeviceBuffer run_blocks(CudaContext& ctx, const T* images, const std::int32_t* ids_keep, std::int64_t B, std::int64_t K,
                          int top, std::span<const int> tap_blocks, std::vector<DeviceBuffer>* taps, Saved* saved) const {
    const std::int64_t patch_dim = channels_ * patch_ * patch_, rows = B * (K + 1);
    const PatchGeometry g{B, channels_, image_, image_, patch_};
    DeviceBuffer all_patches = device_array<T>(ctx, B * patches_ * patch_dim);
    patchify<T>(ctx, images, data_of<T>(all_patches), g, PatchLayout::channel_major);
    DeviceBuffer visible = device_array<T>(ctx, B * K * patch_dim);
    gather_tokens_forward<T>(ctx, data_of<T>(all_patches), ids_keep, data_of<T>(visible), B, patches_, K, patch_dim);
    DeviceBuffer embedded = device_array<T>(ctx, B * K * dim_);
    patch_embed.forward(ctx, data_of<T>(visible), data_of<T>(embedded), B * K);
    DeviceBuffer x = device_array<T>(ctx, rows * dim_);
    assemble_encoder_tokens<T>(ctx, data_of<T>(embedded), cls_token.value(), data_of<T>(pos_), ids_keep, data_of<T>(x), B, K, dim_);

    const int first_trained = first_saved_block();
    if (saved) {
      saved->visible_patches = visible;
      saved->blocks.assign(std::size_t(std::max(0, top + 1 - first_trained)), {});
      saved->batch = B;
      saved->keep = K;
    }
    for (int i = 0; i <= top; ++i) {
      x = blocks[i].forward(ctx, x, B, K + 1, saved && i >= first_trained ? &saved->blocks[i - first_trained] : nullptr);
      for (std::size_t j = 0; j < tap_blocks.size(); ++j)
        if (tap_blocks[j] == i) (*taps)[j] = x;  // block outputs are fresh buffers: sharing is safe
    }
    return x;
  }

  // grad: on entry d(output of the top saved block); tap gradients join at their blocks. Runs the
  // trained blocks down to first_saved_block, then the embedding if it trains.
  void backward_blocks(CudaContext& ctx, const Saved& k, DeviceBuffer& grad, std::span<const TapGradient> tap_grads) const {
    const std::int64_t B = k.batch, K = k.keep, rows = B * (K + 1);
    const int first_trained = first_saved_block();
    const bool embedding_trains = gradient_reaches_embedding();
    if (k.blocks.empty()) return;  // every tap sits below the trained blocks
    for (int i = first_trained + int(k.blocks.size()) - 1; i >= first_trained; --i) {
      for (const TapGradient& t : tap_grads)
        if (t.block == i) add_in_place<T>(ctx, data_of<T>(grad), t.grad, rows * dim_);
      blocks[i].backward(ctx, k.blocks[i - first_trained], grad, B, K + 1, i > first_trained || embedding_trains);
    }
    if (!embedding_trains) return;
    DeviceBuffer dembedded = device_array<T>(ctx, B * K * dim_);
    DeviceBuffer dcls_rows = device_array<T>(ctx, B * dim_);
    split_encoder_token_grads<T>(ctx, data_of<T>(grad), data_of<T>(dembedded), data_of<T>(dcls_rows), B, K, dim_);
    if (cls_token.trainable()) add_column_sums<T>(ctx, data_of<T>(dcls_rows), B, dim_, cls_token.grad());
    if (patch_embed.weight.trainable())
      patch_embed.backward(ctx, data_of<T>(dembedded), data_of<T>(k.visible_patches), nullptr, B * K);
  }

  std::int64_t channels_, image_, patch_, patches_, dim_;
  DeviceBuffer pos_;  // [1 + L, D], zero cls row
  int frozen_units_ = 0;   // -1 after a freeze_prefix that is no unit prefix
  int frozen_blocks_ = 0;  // blocks [0, frozen_blocks_) are frozen
};

}  // namespace vitfreeze::cuda::nn
