#pragma once
// The ViT encoder under masked image modeling (the visible patches of each sample), explicit forward
// and backward, made from a host nn::ViT so it starts from (on the CPU: works on) the same weights.
//
// Input sequence: cls row, then the embedding of each visible patch plus the fixed position of the
// patch it came from (only the visible patches are embedded). With `views` V > 1 each sample's K
// visible tokens are split into V consecutive groups run as separate sequences of 1 + K/V tokens
// (MiCL), sequence b*V + v being view v of sample b.
//
// Freezing is read from the parameters themselves: blocks before the first trained one run forward
// only and keep nothing (truncate semantics), and the backward stops there; while the cls token or
// the patch embedding still trains (ViTFreeze's semantics, --dont_freeze_pe) every block keeps its
// activations and the gradient goes on through the frozen blocks to them (input gradients only).
//
// forward/backward serve MAE and MiCL (final norm after the last block); forward_taps/backward_taps
// serve LocalMIM (hidden states after chosen blocks, no final norm, nothing above the deepest tap);
// forward_tokens/backward_tokens run the blocks and final norm on sequences the caller assembled
// (LoMaR's windows with mask tokens in place) and hand the gradient of those sequences back.
//
// A relative encoder (LoMaR) adds no positions and gives each block the relative bucket of every
// query-key pair; it sees whole square grids only (the full image in order, or a window).
#include <algorithm>
#include <map>
#include <span>
#include <vector>

#include "vitfreeze/model/block.hpp"

namespace vitfreeze::model {

template <Backend B, PrecisionPolicy P>
  requires BackendFor<B, P>
class Encoder {
 public:
  using T = typename P::Activation;
  using M = typename P::Master;
  using Context = typename B::Context;
  using Array = ArrayOf<B, T>;
  using Statistics = RowStatistics<B, M>;

  struct Saved {
    std::vector<typename Block<B, P>::Saved> blocks;    // from first_saved on
    int first_saved = 0;
    Array last;                                         // input of the final norm
    Statistics norm_stats;
    std::int64_t sequences = 0, length = 0;             // the token sequences the blocks ran on
    bool input_trains = false;                          // the gradient must reach the blocks' input
    // forward()'s embedding: the visible patches [B, K, C p p] of `batch` samples, `keep` each
    Array visible_patches;
    std::int64_t batch = 0, keep = 0;
  };

  template <class HostViT>
  Encoder(Context& ctx, HostViT& host)
      : cls_token(ctx, host.cls_token), patch_embed(ctx, host.patch_embed.proj), norm(ctx, host.norm),
        channels_(HostViT::spec.channels), image_(HostViT::spec.image), patch_(HostViT::spec.patch),
        patches_(HostViT::spec.tokens()), dim_(HostViT::spec.dim), relative_(HostViT::spec.relative_position()) {
    blocks.reserve(host.blocks.size());
    for (auto& b : host.blocks) blocks.emplace_back(ctx, b);
    pos_ = B::template upload<T>(ctx, as_activation(host.pos_embed()));  // zeros for a relative encoder
  }

  std::int64_t dim() const { return dim_; }
  std::int64_t patches() const { return patches_; }
  std::int64_t patch_dim() const { return channels_ * patch_ * patch_; }
  int depth() const { return int(blocks.size()); }
  bool relative_position() const { return relative_; }
  // The cls token and patch embedding train (the gradient must reach the embedding).
  bool embedding_trains() const { return cls_token.trainable() || patch_embed.weight.trainable(); }

  // images [B, C, H, W], ids_keep [B, K] -> latent [B*V, 1 + K/V, D] after the final norm.
  // top_qkv (when given) receives the last block's qkv [B*V*(1 + K/V), 3D], kept or not.
  Array forward(Context& ctx, const Array& images, const std::int32_t* ids_keep, std::int64_t batch, std::int64_t keep,
                int views, Saved* saved, Array* top_qkv = nullptr) const {
    const std::int64_t sequences = batch * views, length = keep / views + 1;
    Array x = embed(ctx, images, ids_keep, batch, keep, views, saved);
    x = run_blocks(ctx, std::move(x), sequences, length, embedding_trains(), depth() - 1, {}, nullptr, saved, top_qkv);
    return final_norm(ctx, x, sequences * length, saved);
  }

  // dlatent [B*V, 1 + K/V, D]: accumulates the gradients of every trained parameter. last_block_dqkv
  // (null: none): a gradient of the last block's qkv from a loss on its attention (distillation).
  void backward(Context& ctx, const Saved& k, const Array& dlatent, const T* last_block_dqkv = nullptr) const {
    Array grad = backward_norm(ctx, k, dlatent);
    backward_blocks(ctx, k, grad, {}, last_block_dqkv);
    if (k.input_trains) backward_embedding(ctx, k, grad);
  }

  // x [N, T, D]: sequences assembled by the caller (cls first). input_trains: something below the
  // blocks trains, so the gradient must reach x (backward_tokens then returns it). -> latent [N, T, D].
  Array forward_tokens(Context& ctx, Array x, std::int64_t sequences, std::int64_t length, bool input_trains,
                       Saved* saved) const {
    expect_rows(x, sequences * length, dim_, "model::Encoder tokens");
    x = run_blocks(ctx, std::move(x), sequences, length, input_trains, depth() - 1, {}, nullptr, saved, nullptr);
    return final_norm(ctx, x, sequences * length, saved);
  }
  // Backward of forward_tokens: d(x) [N, T, D] when the input trains (else an empty array).
  Array backward_tokens(Context& ctx, const Saved& k, const Array& dlatent) const {
    Array grad = backward_norm(ctx, k, dlatent);
    backward_blocks(ctx, k, grad, {}, nullptr);
    return k.input_trains ? grad : Array();
  }

  // The hidden states [B, 1 + K, D] after blocks tap_blocks[j] (any order, repeats allowed), no
  // final norm; blocks after the deepest tap are not run.
  std::vector<Array> forward_taps(Context& ctx, const Array& images, const std::int32_t* ids_keep, std::int64_t batch,
                                  std::int64_t keep, std::span<const int> tap_blocks, Saved* saved) const {
    if (tap_blocks.empty()) throw ConfigError("model::Encoder::forward_taps: no taps");
    for (int b : tap_blocks)
      if (b < 0 || b >= depth()) throw ConfigError("model::Encoder::forward_taps: tap block outside the encoder");
    std::vector<Array> taps(tap_blocks.size());
    Array x = embed(ctx, images, ids_keep, batch, keep, 1, saved);
    run_blocks(ctx, std::move(x), batch, keep + 1, embedding_trains(),
               *std::max_element(tap_blocks.begin(), tap_blocks.end()), tap_blocks, &taps, saved, nullptr);
    return taps;
  }

  // The gradient of the hidden state after block `block` (a tap of forward_taps).
  struct TapGradient {
    int block;
    const T* grad;  // [B, 1 + K, D]
  };

  // Backward of forward_taps: accumulates the gradients of every trained parameter. Taps at frozen
  // blocks send nothing into the encoder (nothing below them trains).
  void backward_taps(Context& ctx, const Saved& k, std::span<const TapGradient> tap_grads) const {
    Array grad = B::template zeros<T>(ctx, Shape{k.sequences * k.length, dim_});
    if (k.blocks.empty()) return;  // every tap sits below the trained blocks
    backward_blocks(ctx, k, grad, tap_grads, nullptr);
    if (k.input_trains) backward_embedding(ctx, k, grad);
  }

  // Parameters in timm order: cls_token, patch_embed, blocks, norm.
  template <class List>
  void collect_parameters(List& out) {
    out.push_back(&cls_token);
    patch_embed.collect_parameters(out);
    for (auto& b : blocks) b.collect_parameters(out);
    norm.collect_parameters(out);
  }

  ParameterOf<B, P> cls_token;
  Linear<B, P> patch_embed;
  std::vector<Block<B, P>> blocks;
  LayerNorm<B, P> norm;

 private:
  template <class HostTensor>
  static auto as_activation(const HostTensor& t) {
    if constexpr (std::is_same_v<typename HostTensor::value_type, T>)
      return t;
    else
      return t.template cast<T>();
  }

  // The backward starts its block loop here: the first trained block, or block 0 while the
  // gradient must go on through the frozen blocks to the input.
  int first_saved_block(bool input_trains) const {
    if (input_trains) return 0;
    for (int i = 0; i < depth(); ++i)
      if (blocks[std::size_t(i)].trains()) return i;
    return depth();
  }

  // The relative buckets of a sequence of `length` tokens in this backend's memory (relative
  // encoders; null otherwise), made on first use.
  const std::int32_t* buckets(Context& ctx, std::int64_t length) const {
    if (!relative_) return nullptr;
    auto it = buckets_.find(length);
    if (it == buckets_.end()) {
      const auto host = relative_position_buckets_for_tokens(int(length));
      Tensor<std::int32_t> t(Shape{length, length});
      std::copy(host.begin(), host.end(), t.data());
      it = buckets_.emplace(length, ArrayOf<B, std::int32_t>()).first;
      assign_from_host<B>(ctx, it->second, t);
    }
    return it->second.data();
  }

  // MAE's input: cls row, then each visible patch embedded plus its position (a relative encoder:
  // every patch in order, no positions) -> [B V, K/V + 1, D].
  Array embed(Context& ctx, const Array& images, const std::int32_t* ids_keep, std::int64_t batch, std::int64_t keep,
              int views, Saved* saved) const {
    if (views < 1 || keep % views != 0)
      throw ShapeError("model::Encoder: " + std::to_string(keep) + " visible patches do not split into " +
                       std::to_string(views) + " views");
    if (relative_ && (views != 1 || keep != patches_))
      throw ConfigError("model::Encoder: a relative position encoder sees whole grids (every patch, in order)");
    expect_rows(images, batch * channels_ * image_, image_, "model::Encoder images");
    const std::int64_t sequences = batch * views, length = keep / views + 1;
    const PatchGeometry g{batch, channels_, image_, image_, patch_};
    Array all_patches = B::template empty<T>(ctx, Shape{batch, patches_, patch_dim()});
    B::patchify(ctx, images.data(), all_patches.data(), g, PatchLayout::channel_major);
    Array visible = B::template empty<T>(ctx, Shape{batch, keep, patch_dim()});
    B::gather_tokens_forward(ctx, all_patches.data(), ids_keep, visible.data(), batch, patches_, keep, patch_dim());
    all_patches = Array();
    Array embedded = B::template empty<T>(ctx, Shape{batch * keep, dim_});
    patch_embed.forward(ctx, visible.data(), embedded.data(), batch * keep);
    // [B, K] visible patches are [B V, K/V] sequences in memory: ids_keep is read the same way.
    Array x = B::template empty<T>(ctx, Shape{sequences, length, dim_});
    B::assemble_encoder_tokens(ctx, embedded.data(), cls_token.value(), pos_.data(), ids_keep, x.data(), sequences,
                               length - 1, dim_);
    if (saved) {
      saved->visible_patches = visible;
      saved->batch = batch;
      saved->keep = keep;
    }
    return x;
  }

  // Blocks 0..top over x [sequences, length, D]; returns block top's output. taps (when given)
  // receives the output of block tap_blocks[j] in slot j; top_qkv the top block's qkv. saved keeps
  // the activations of the blocks the backward runs.
  Array run_blocks(Context& ctx, Array x, std::int64_t sequences, std::int64_t length, bool input_trains, int top,
                   std::span<const int> tap_blocks, std::vector<Array>* taps, Saved* saved, Array* top_qkv) const {
    const int first_saved = first_saved_block(input_trains);
    if (saved) {
      saved->first_saved = first_saved;
      saved->blocks.assign(std::size_t(std::max(0, top + 1 - first_saved)), {});
      saved->sequences = sequences;
      saved->length = length;
      saved->input_trains = input_trains;
    }
    const std::int32_t* bucket = buckets(ctx, length);
    for (int i = 0; i <= top; ++i) {
      typename Block<B, P>::Saved* record = saved && i >= first_saved ? &saved->blocks[std::size_t(i - first_saved)] : nullptr;
      typename Block<B, P>::Saved local;  // the top block's qkv, when asked for and not kept anyway
      if (!record && top_qkv && i == top) record = &local;
      x = blocks[std::size_t(i)].forward(ctx, x, sequences, length, record, bucket);
      if (top_qkv && i == top) *top_qkv = record->qkv;
      for (std::size_t j = 0; j < tap_blocks.size(); ++j)
        if (tap_blocks[j] == i) (*taps)[j] = x;  // block outputs are fresh arrays: sharing is safe
    }
    return x;
  }

  Array final_norm(Context& ctx, const Array& x, std::int64_t rows, Saved* saved) const {
    Array latent = B::template empty<T>(ctx, x.shape());
    Statistics stats = Statistics::make(ctx, rows);
    norm.forward(ctx, x.data(), latent.data(), stats, rows);
    if (saved) {
      saved->last = x;
      saved->norm_stats = stats;
    }
    return latent;
  }

  Array backward_norm(Context& ctx, const Saved& k, const Array& dlatent) const {
    const std::int64_t rows = k.sequences * k.length;
    expect_rows(dlatent, rows, dim_, "model::Encoder gradient");
    Array grad = B::template zeros<T>(ctx, Shape{rows, dim_});
    norm.backward(ctx, dlatent.data(), k.last.data(), k.norm_stats, grad.data(), rows);
    return grad;
  }

  // grad: on entry d(output of the top saved block); tap gradients join at their blocks, the extra
  // qkv gradient at the top block. Runs the saved blocks down to first_saved; on return grad is
  // d(input) when the input trains.
  void backward_blocks(Context& ctx, const Saved& k, Array& grad, std::span<const TapGradient> tap_grads,
                       const T* top_dqkv) const {
    const std::int64_t rows = k.sequences * k.length;
    if (k.blocks.empty()) return;
    const std::int32_t* bucket = buckets(ctx, k.length);
    const int top = k.first_saved + int(k.blocks.size()) - 1;
    for (int i = top; i >= k.first_saved; --i) {
      for (const TapGradient& t : tap_grads)
        if (t.block == i) B::add_in_place(ctx, grad.data(), t.grad, rows * dim_);
      blocks[std::size_t(i)].backward(ctx, k.blocks[std::size_t(i - k.first_saved)], grad, k.sequences, k.length,
                                      i > k.first_saved || k.input_trains, bucket, i == top ? top_dqkv : nullptr);
    }
  }

  // d(embedding's output) -> the cls token's and patch embedding's gradients.
  void backward_embedding(Context& ctx, const Saved& k, const Array& grad) const {
    Array dembedded = B::template empty<T>(ctx, Shape{k.batch * k.keep, dim_});
    Array dcls_rows = B::template empty<T>(ctx, Shape{k.sequences, dim_});
    B::split_encoder_token_grads(ctx, grad.data(), dembedded.data(), dcls_rows.data(), k.sequences, k.length - 1, dim_);
    if (cls_token.trainable()) B::add_column_sums(ctx, dcls_rows.data(), k.sequences, dim_, cls_token.grad());
    if (patch_embed.weight.trainable())
      patch_embed.backward(ctx, dembedded.data(), k.visible_patches.data(), nullptr, k.batch * k.keep);
  }

  std::int64_t channels_, image_, patch_, patches_, dim_;
  bool relative_;
  Array pos_;  // [1 + L, D], zero cls row
  mutable std::map<std::int64_t, ArrayOf<B, std::int32_t>> buckets_;  // by sequence length
};

}  // namespace vitfreeze::model
