#pragma once
// The ViT encoder, configured at compile time by a ViTSpec: cls token, patch embedding, fixed
// sin-cos positions (or, for a relative spec, no absolute position and LoMaR's iRPE in every
// attention layer), `depth` pre-LN blocks, final LayerNorm; timm parameter names.
//
// forward() optionally takes the visible patch indices of each sample (masked image modeling: the
// encoder then sees 1 + K tokens), the blocks after which to return the hidden states (LocalMIM
// taps), and a number of views: with V > 1 each sample's K visible tokens are split into V
// consecutive groups encoded as separate sequences of 1 + K/V tokens (MiCL), sequence b*V + v
// being view v of sample b. Blocks whose parameters are frozen and whose input needs no gradient (the frozen prefix
// under `truncate` semantics) run forward only: nothing is recorded, and their temporaries are
// released block by block, so the prefix keeps no activations. encode() runs the blocks on token
// sequences the caller assembled (LoMaR's windows with mask tokens in place).
//
// A relative encoder sees whole square grids (the full image, or a window) so that every token's
// place follows from its index: it takes no visible-patch subset.
#include <algorithm>
#include <map>
#include <optional>
#include <span>
#include <vector>

#include "vitfreeze/autograd/ops/tokens.hpp"
#include "vitfreeze/nn/block.hpp"
#include "vitfreeze/nn/patch_embed.hpp"
#include "vitfreeze/nn/pos_embed.hpp"
#include "vitfreeze/nn/vit_spec.hpp"

namespace vitfreeze::nn {

template <CpuScalar T>
struct EncoderOutput {
  Var<T> tokens;             // [B, 1 + K, D] after the final norm (or after the last block if no norm)
  std::vector<Var<T>> taps;  // hidden state after each requested block, in request order
};

template <ViTSpec S, CpuScalar T = float>
  requires ValidViTSpec<S>
class ViT {
 public:
  static constexpr ViTSpec spec = S;
  using Scalar = T;

  explicit ViT(std::uint64_t seed = 0)
      : cls_token("cls_token", Shape{1, 1, S.dim}, true),
        patch_embed("patch_embed", S.channels, S.patch, S.dim),
        norm("norm", S.dim),
        pos_embed_(S.relative_position() ? Tensor<T>(Shape{S.tokens() + 1, S.dim})
                                         : sincos_pos_embed_2d<T>(S.dim, S.grid(), S.grid(), true)) {
    blocks.reserve(S.depth);
    for (int i = 0; i < S.depth; ++i)
      blocks.emplace_back("blocks." + std::to_string(i), S.dim, S.heads, S.hidden(), S.relative_position());
    init(seed);
  }

  // MAE initialisation (peers spec §0.5).
  void init(std::uint64_t seed) {
    patch_embed.init(seed);
    normal_init(cls_token, 0.02, seed);
    for (auto& b : blocks) b.init_xavier(seed);
    norm.init();
  }

  // drop_path: stochastic depth for this step (fine-tuning), none otherwise.
  EncoderOutput<T> forward(Tape<T>& tape, const Tensor<T>& images, const Tensor<std::int32_t>* ids_keep = nullptr,
                           std::span<const int> tap_after = {}, bool final_norm = true, int views = 1,
                           const StochasticDepth* drop_path = nullptr) {
    expect_shape(images.shape(), Shape{images.dim(0), S.channels, S.image, S.image}, "ViT input");
    if constexpr (S.relative_position())
      if (views != 1 || (ids_keep && !keeps_every_patch_in_order(*ids_keep)))
        throw ConfigError("ViT: a relative position encoder sees whole grids, not a subset of the patches");
    Var<T> x = patch_embed(tape, images);
    if constexpr (!S.relative_position()) x = ops::add_fixed(tape, x, patch_positions());
    if (ids_keep) x = ops::gather_tokens(tape, x, *ids_keep);
    if (views != 1) {
      const Shape& s = tape.value(x).shape();
      if (views < 1 || s[1] % views != 0)
        throw ShapeError("ViT: " + std::to_string(s[1]) + " tokens do not split into " + std::to_string(views) + " views");
      x = ops::reshape(tape, x, Shape{s[0] * views, s[1] / views, s[2]});  // consecutive groups: a free view
    }
    x = ops::prepend_token(tape, tape.parameter(cls_token), x);  // cls position row is zero
    return encode(tape, x, tap_after, final_norm, drop_path);
  }

  // The blocks (and final norm) over assembled sequences x [N, T, D], cls first.
  EncoderOutput<T> encode(Tape<T>& tape, Var<T> x, std::span<const int> tap_after = {}, bool final_norm = true,
                          const StochasticDepth* drop_path = nullptr) {
    const std::int64_t sequences = tape.value(x).dim(0);
    const Tensor<std::int32_t>* buckets = nullptr;
    if constexpr (S.relative_position()) buckets = &relative_buckets(int(tape.value(x).dim(1)));
    EncoderOutput<T> out;
    out.taps.resize(tap_after.size());
    for (int i = 0; i < S.depth; ++i) {
      const bool tapped = std::find(tap_after.begin(), tap_after.end(), i) != tap_after.end();
      std::optional<BranchScales<T>> drop;
      if (drop_path) drop = drop_path->template scales<T>(i, S.depth, sequences);
      if (!tape.requires_grad(x) && !block_trainable(i) && !tapped)
        x = forward_without_keeping(tape, i, x, buckets, drop ? &*drop : nullptr);
      else
        x = blocks[i](tape, x, buckets, drop ? &*drop : nullptr);
      for (std::size_t k = 0; k < tap_after.size(); ++k)
        if (tap_after[k] == i) out.taps[k] = x;
    }
    out.tokens = final_norm ? norm(tape, x) : x;
    return out;
  }

  // The bucket of every query-key pair of a sequence of `tokens` (relative encoders), made once.
  const Tensor<std::int32_t>& relative_buckets(int tokens) {
    auto it = buckets_.find(tokens);
    if (it != buckets_.end()) return it->second;
    const auto b = relative_position_buckets_for_tokens(tokens);
    Tensor<std::int32_t> t(Shape{tokens, tokens});
    std::copy(b.begin(), b.end(), t.data());
    return buckets_.emplace(tokens, std::move(t)).first->second;
  }

  bool block_trainable(int i) {
    ParameterList<T> ps;
    blocks[i].collect_parameters(ps);
    return any_trainable(ps);
  }

  // Parameters in timm order: cls_token, patch_embed, blocks, norm.
  void collect_parameters(ParameterList<T>& out) {
    out.push_back(&cls_token);
    patch_embed.collect_parameters(out);
    for (auto& b : blocks) b.collect_parameters(out);
    norm.collect_parameters(out);
  }
  ParameterList<T> parameters() { return parameters_of<T>(*this); }

  // The fixed table [1 + L, D] (zero cls row); all zeros for a relative encoder, which adds none.
  const Tensor<T>& pos_embed() const { return pos_embed_; }

  Parameter<T> cls_token;
  PatchEmbed<T> patch_embed;
  std::vector<Block<T>> blocks;
  LayerNorm<T> norm;

 private:
  Tensor<T> patch_positions() const { return pos_embed_.slice(1, S.tokens() + 1); }

  // Runs block i with nothing recorded, copies its output into a model-owned buffer and releases
  // every temporary the block allocated.
  Var<T> forward_without_keeping(Tape<T>& tape, int i, Var<T> x, const Tensor<std::int32_t>* buckets,
                                 const BranchScales<T>* drop) {
    const Arena::Mark mark = tape.arena().mark();
    Var<T> y;
    {
      NoGrad<T> no_grad(tape);
      y = blocks[i](tape, x, buckets, drop);
    }
    Tensor<T>& buffer = frozen_buffers_[i % 2];
    if (!(buffer.shape() == tape.value(y).shape())) buffer = Tensor<T>(tape.value(y).shape());
    buffer.copy_from(tape.value(y));
    tape.arena().rewind(mark);
    return tape.constant(buffer);
  }

  static bool keeps_every_patch_in_order(const Tensor<std::int32_t>& ids) {
    if (ids.rank() != 2 || ids.dim(1) != S.tokens()) return false;
    for (std::int64_t i = 0; i < ids.numel(); ++i)
      if (ids[i] != std::int32_t(i % S.tokens())) return false;
    return true;
  }

  Tensor<T> pos_embed_;
  Tensor<T> frozen_buffers_[2];
  std::map<int, Tensor<std::int32_t>> buckets_;
};

}  // namespace vitfreeze::nn
