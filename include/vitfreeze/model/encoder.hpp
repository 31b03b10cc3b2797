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
// serve LocalMIM (hidden states after chosen blocks, no final norm, nothing above the deepest tap).
#include <algorithm>
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
    Array visible_patches;                              // [B, K, C p p]
    std::vector<typename Block<B, P>::Saved> blocks;    // from first_saved on
    int first_saved = 0;
    Array last;                                         // input of the final norm
    Statistics norm_stats;
    std::int64_t batch = 0, keep = 0, views = 1;        // samples, visible patches per sample
    std::int64_t sequences() const { return batch * views; }
    std::int64_t sequence_length() const { return keep / views + 1; }
  };

  template <class HostViT>
  Encoder(Context& ctx, HostViT& host)
      : cls_token(ctx, host.cls_token), patch_embed(ctx, host.patch_embed.proj), norm(ctx, host.norm),
        channels_(HostViT::spec.channels), image_(HostViT::spec.image), patch_(HostViT::spec.patch),
        patches_(HostViT::spec.tokens()), dim_(HostViT::spec.dim) {
    blocks.reserve(host.blocks.size());
    for (auto& b : host.blocks) blocks.emplace_back(ctx, b);
    pos_ = B::template upload<T>(ctx, as_activation(host.pos_embed()));
  }

  std::int64_t dim() const { return dim_; }
  std::int64_t patches() const { return patches_; }
  int depth() const { return int(blocks.size()); }

  // images [B, C, H, W], ids_keep [B, K] -> latent [B*V, 1 + K/V, D] after the final norm.
  Array forward(Context& ctx, const Array& images, const std::int32_t* ids_keep, std::int64_t batch, std::int64_t keep,
                int views, Saved* saved) const {
    Array x = run_blocks(ctx, images, ids_keep, batch, keep, views, depth() - 1, {}, nullptr, saved);
    const std::int64_t rows = batch * (keep + views);
    Array latent = B::template empty<T>(ctx, Shape{batch * views, keep / views + 1, dim_});
    Statistics stats = Statistics::make(ctx, rows);
    norm.forward(ctx, x.data(), latent.data(), stats, rows);
    if (saved) {
      saved->last = x;
      saved->norm_stats = stats;
    }
    return latent;
  }

  // dlatent [B*V, 1 + K/V, D]: accumulates the gradients of every trained parameter.
  void backward(Context& ctx, const Saved& k, const Array& dlatent) const {
    const std::int64_t rows = k.sequences() * k.sequence_length();
    expect_rows(dlatent, rows, dim_, "model::Encoder gradient");
    Array grad = B::template zeros<T>(ctx, Shape{rows, dim_});
    norm.backward(ctx, dlatent.data(), k.last.data(), k.norm_stats, grad.data(), rows);
    backward_blocks(ctx, k, grad, {});
  }

  // The hidden states [B, 1 + K, D] after blocks tap_blocks[j] (any order, repeats allowed), no
  // final norm; blocks after the deepest tap are not run.
  std::vector<Array> forward_taps(Context& ctx, const Array& images, const std::int32_t* ids_keep, std::int64_t batch,
                                  std::int64_t keep, std::span<const int> tap_blocks, Saved* saved) const {
    if (tap_blocks.empty()) throw ConfigError("model::Encoder::forward_taps: no taps");
    for (int b : tap_blocks)
      if (b < 0 || b >= depth()) throw ConfigError("model::Encoder::forward_taps: tap block outside the encoder");
    std::vector<Array> taps(tap_blocks.size());
    run_blocks(ctx, images, ids_keep, batch, keep, 1, *std::max_element(tap_blocks.begin(), tap_blocks.end()), tap_blocks,
               &taps, saved);
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
    Array grad = B::template zeros<T>(ctx, Shape{k.sequences() * k.sequence_length(), dim_});
    backward_blocks(ctx, k, grad, tap_grads);
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

  bool gradient_reaches_embedding() const { return cls_token.trainable() || patch_embed.weight.trainable(); }
  // The backward starts its block loop here: the first trained block, or block 0 while the
  // gradient must go on through the frozen blocks to the embedding.
  int first_saved_block() const {
    if (gradient_reaches_embedding()) return 0;
    for (int i = 0; i < depth(); ++i)
      if (blocks[std::size_t(i)].trains()) return i;
    return depth();
  }

  // Embedding and blocks 0..top; returns block top's output. taps (when given) receives the output
  // of block tap_blocks[j] in slot j. saved keeps the trained blocks' activations.
  Array run_blocks(Context& ctx, const Array& images, const std::int32_t* ids_keep, std::int64_t batch, std::int64_t keep,
                   int views, int top, std::span<const int> tap_blocks, std::vector<Array>* taps, Saved* saved) const {
    if (views < 1 || keep % views != 0)
      throw ShapeError("model::Encoder: " + std::to_string(keep) + " visible patches do not split into " +
                       std::to_string(views) + " views");
    expect_rows(images, batch * channels_ * image_, image_, "model::Encoder images");
    const std::int64_t patch_dim = channels_ * patch_ * patch_, sequences = batch * views, length = keep / views + 1;
    const PatchGeometry g{batch, channels_, image_, image_, patch_};
    Array all_patches = B::template empty<T>(ctx, Shape{batch, patches_, patch_dim});
    B::patchify(ctx, images.data(), all_patches.data(), g, PatchLayout::channel_major);
    Array visible = B::template empty<T>(ctx, Shape{batch, keep, patch_dim});
    B::gather_tokens_forward(ctx, all_patches.data(), ids_keep, visible.data(), batch, patches_, keep, patch_dim);
    all_patches = Array();
    Array embedded = B::template empty<T>(ctx, Shape{batch * keep, dim_});
    patch_embed.forward(ctx, visible.data(), embedded.data(), batch * keep);
    // [B, K] visible patches are [B V, K/V] sequences in memory: ids_keep is read the same way.
    Array x = B::template empty<T>(ctx, Shape{sequences, length, dim_});
    B::assemble_encoder_tokens(ctx, embedded.data(), cls_token.value(), pos_.data(), ids_keep, x.data(), sequences,
                               length - 1, dim_);

    const int first_saved = first_saved_block();
    if (saved) {
      saved->visible_patches = visible;
      saved->first_saved = first_saved;
      saved->blocks.assign(std::size_t(std::max(0, top + 1 - first_saved)), {});
      saved->batch = batch;
      saved->keep = keep;
      saved->views = views;
    }
    for (int i = 0; i <= top; ++i) {
      x = blocks[std::size_t(i)].forward(ctx, x, sequences, length,
                                         saved && i >= first_saved ? &saved->blocks[std::size_t(i - first_saved)] : nullptr);
      for (std::size_t j = 0; j < tap_blocks.size(); ++j)
        if (tap_blocks[j] == i) (*taps)[j] = x;  // block outputs are fresh arrays: sharing is safe
    }
    return x;
  }

  // grad: on entry d(output of the top saved block); tap gradients join at their blocks. Runs the
  // saved blocks down to first_saved, then the embedding if it trains.
  void backward_blocks(Context& ctx, const Saved& k, Array& grad, std::span<const TapGradient> tap_grads) const {
    const std::int64_t sequences = k.sequences(), length = k.sequence_length(), rows = sequences * length;
    const bool embedding_trains = gradient_reaches_embedding();
    if (k.blocks.empty()) return;  // every tap sits below the trained blocks
    for (int i = k.first_saved + int(k.blocks.size()) - 1; i >= k.first_saved; --i) {
      for (const TapGradient& t : tap_grads)
        if (t.block == i) B::add_in_place(ctx, grad.data(), t.grad, rows * dim_);
      blocks[std::size_t(i)].backward(ctx, k.blocks[std::size_t(i - k.first_saved)], grad, sequences, length,
                                      i > k.first_saved || embedding_trains);
    }
    if (!embedding_trains) return;
    Array dembedded = B::template empty<T>(ctx, Shape{k.batch * k.keep, dim_});
    Array dcls_rows = B::template empty<T>(ctx, Shape{sequences, dim_});
    B::split_encoder_token_grads(ctx, grad.data(), dembedded.data(), dcls_rows.data(), sequences, length - 1, dim_);
    if (cls_token.trainable()) B::add_column_sums(ctx, dcls_rows.data(), sequences, dim_, cls_token.grad());
    if (patch_embed.weight.trainable())
      patch_embed.backward(ctx, dembedded.data(), k.visible_patches.data(), nullptr, k.batch * k.keep);
  }

  std::int64_t channels_, image_, patch_, patches_, dim_;
  Array pos_;  // [1 + L, D], zero cls row
};

}  // namespace vitfreeze::model
