#pragma once
// The MAE decoder (peers spec §1.3): embed the visible latents to the decoder width, append mask
// tokens, unshuffle to patch order, add the decoder's fixed sin-cos positions, run `depth` blocks,
// LayerNorm, and predict `out_dim` values per patch. Names follow facebookresearch/mae.
#include <vector>

#include "vitfreeze/autograd/ops/tokens.hpp"
#include "vitfreeze/mim/decoder_spec.hpp"
#include "vitfreeze/nn/block.hpp"
#include "vitfreeze/nn/pos_embed.hpp"

namespace vitfreeze::mim {

// Parameter names of the reference code the weights must open in: facebookresearch/mae
// (decoder_embed, decoder_blocks.N, decoder_norm, decoder_pred) or LocalMIM's per-tap MAE_Decoder
// (embed, blocks.N, norm, pred under "decoder.K.").
enum class DecoderNaming { mae, localmim };

template <CpuScalar T>
class MaeDecoder {
 public:
  MaeDecoder(const std::string& prefix, std::int64_t encoder_dim, DecoderSpec spec, std::int64_t grid, std::int64_t out_dim,
             bool with_pred = true, DecoderNaming naming = DecoderNaming::mae)
      : embed(prefix + part(naming, "embed"), encoder_dim, spec.dim),
        mask_token(prefix + "mask_token", Shape{1, 1, spec.dim}, true),
        norm(prefix + part(naming, "norm"), spec.dim),
        pred(prefix + part(naming, "pred"), spec.dim, with_pred ? out_dim : 1),
        pos_(nn::sincos_pos_embed_2d<T>(spec.dim, grid, grid, true)),
        with_pred_(with_pred) {
    for (int i = 0; i < spec.depth; ++i)
      blocks.emplace_back(prefix + part(naming, "blocks") + "." + std::to_string(i), spec.dim, spec.heads,
                          std::int64_t(spec.dim) * spec.mlp_ratio);
  }

  void init(std::uint64_t seed) {
    embed.init_xavier(seed);
    nn::normal_init(mask_token, 0.02, seed);
    for (auto& b : blocks) b.init_xavier(seed);
    norm.init();
    pred.init_xavier(seed);
  }

  // latent [B, 1 + K, D] -> per-patch output [B, L, out_dim] (or the normed tokens [B, L, Dd] without pred)
  Var<T> operator()(Tape<T>& tape, Var<T> latent, const Tensor<std::int32_t>& ids_restore) {
    Var<T> x = embed(tape, latent);
    x = ops::unshuffle_with_mask_token(tape, x, tape.parameter(mask_token), ids_restore);
    x = ops::add_fixed(tape, x, pos_);
    for (auto& b : blocks) x = b(tape, x);
    x = norm(tape, x);
    x = ops::slice_tokens(tape, x, 1, tape.value(x).dim(1));
    return with_pred_ ? pred(tape, x) : x;
  }

  void collect_parameters(nn::ParameterList<T>& out) {
    embed.collect_parameters(out);
    out.push_back(&mask_token);
    for (auto& b : blocks) b.collect_parameters(out);
    norm.collect_parameters(out);
    if (with_pred_) pred.collect_parameters(out);
  }

  nn::Linear<T> embed;
  Parameter<T> mask_token;
  std::vector<nn::Block<T>> blocks;
  nn::LayerNorm<T> norm;
  nn::Linear<T> pred;

 private:
  static std::string part(DecoderNaming naming, const std::string& what) {
    return naming == DecoderNaming::mae ? "decoder_" + what : what;
  }

  Tensor<T> pos_;
  bool with_pred_;
};

}  // namespace vitfreeze::mim
