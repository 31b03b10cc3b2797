#pragma once
// The MAE decoder, explicit forward and backward: embed the visible latents to the decoder width,
// put mask tokens at the removed positions (unshuffle to patch order), add the fixed sin-cos
// positions, run the blocks, LayerNorm, and (unless it is LocalMIM's per-tap decoder, which ends at
// the norm and feeds its scale head) predict per patch.
//
// Row layout: the output keeps its cls row ([B, 1 + L, .]); targets and loss weights have a zero
// row there, so no slicing copies are needed on either side.
#include <vector>

#include "vitfreeze/model/block.hpp"
#include "vitfreeze/model/masks.hpp"

namespace vitfreeze::model {

template <Backend B, PrecisionPolicy P>
  requires BackendFor<B, P>
class MaeDecoder {
 public:
  using T = typename P::Activation;
  using M = typename P::Master;
  using Context = typename B::Context;
  using Array = ArrayOf<B, T>;
  using Statistics = RowStatistics<B, M>;

  struct Saved {
    Array latent, x_last, normed;
    Statistics norm_stats;
    std::vector<typename Block<B, P>::Saved> blocks;
  };

  // host: mim::MaeDecoder; positions: its fixed [1 + L, Dd] table (zero cls row).
  template <class HostDecoder, class HostTensor>
  MaeDecoder(Context& ctx, HostDecoder& host, const HostTensor& positions, bool with_pred = true)
      : embed(ctx, host.embed), mask_token(ctx, host.mask_token), norm(ctx, host.norm),
        dim_(host.embed.out_features()), with_pred_(with_pred) {
    if (with_pred) pred = Linear<B, P>(ctx, host.pred);
    blocks.reserve(host.blocks.size());
    for (auto& b : host.blocks) blocks.emplace_back(ctx, b);
    if constexpr (std::is_same_v<typename HostTensor::value_type, T>)
      pos_ = B::template upload<T>(ctx, positions);
    else
      pos_ = B::template upload<T>(ctx, positions.template cast<T>());
  }

  std::int64_t dim() const { return dim_; }
  std::int64_t out_features() const { return pred.out_features(); }

  // latent [B, 1 + K, D] -> prediction [B, 1 + L, out] (row 0 of each sample: the cls position)
  Array forward(Context& ctx, const Array& latent, const Masks<B, M>& m, Saved& k) const {
    const std::int64_t rows = m.batch * (m.patches + 1);
    forward_features(ctx, latent, m, k);
    Array prediction = B::template empty<T>(ctx, Shape{m.batch, m.patches + 1, pred.out_features()});
    pred.forward(ctx, k.normed.data(), prediction.data(), rows);
    return prediction;
  }

  // dprediction [B, 1 + L, out] -> dlatent [B, 1 + K, D] (new array)
  Array backward(Context& ctx, const Saved& k, const Masks<B, M>& m, const T* dprediction) const {
    const std::int64_t rows = m.batch * (m.patches + 1);
    Array dnormed = B::template empty<T>(ctx, Shape{rows, dim_});
    pred.backward(ctx, dprediction, k.normed.data(), dnormed.data(), rows);
    return backward_features(ctx, k, m, dnormed.data());
  }

  // Everything before pred: latent [B, 1 + K, D] -> the normed tokens k.normed [B, 1 + L, Dd] (returned).
  const Array& forward_features(Context& ctx, const Array& latent, const Masks<B, M>& m, Saved& k) const {
    const std::int64_t Bn = m.batch, K = m.keep, L = m.patches, rows = Bn * (L + 1);
    expect_rows(latent, Bn * (K + 1), embed.in_features(), "model::MaeDecoder latent");
    Array embedded = B::template empty<T>(ctx, Shape{Bn * (K + 1), dim_});
    embed.forward(ctx, latent.data(), embedded.data(), Bn * (K + 1));
    Array x = B::template empty<T>(ctx, Shape{Bn, L + 1, dim_});
    B::unshuffle_forward(ctx, embedded.data(), mask_token.value(), m.ids_restore.data(), x.data(), Bn, K, L, dim_);
    B::add_broadcast_in_place(ctx, x.data(), pos_.data(), (L + 1) * dim_, rows * dim_);
    k.latent = latent;
    k.blocks.assign(blocks.size(), {});
    for (std::size_t i = 0; i < blocks.size(); ++i) x = blocks[i].forward(ctx, x, Bn, L + 1, &k.blocks[i]);
    k.x_last = x;
    k.normed = B::template empty<T>(ctx, Shape{Bn, L + 1, dim_});
    k.norm_stats = Statistics::make(ctx, rows);
    norm.forward(ctx, x.data(), k.normed.data(), k.norm_stats, rows);
    return k.normed;
  }

  // dnormed [B, 1 + L, Dd] -> dlatent [B, 1 + K, D] (new array)
  Array backward_features(Context& ctx, const Saved& k, const Masks<B, M>& m, const T* dnormed) const {
    const std::int64_t Bn = m.batch, K = m.keep, L = m.patches, rows = Bn * (L + 1);
    Array grad = B::template zeros<T>(ctx, Shape{rows, dim_});
    norm.backward(ctx, dnormed, k.x_last.data(), k.norm_stats, grad.data(), rows);
    for (std::size_t i = blocks.size(); i-- > 0;) blocks[i].backward(ctx, k.blocks[i], grad, Bn, L + 1);
    Array dembedded = B::template zeros<T>(ctx, Shape{Bn * (K + 1), dim_});
    B::unshuffle_backward(ctx, grad.data(), m.ids_restore.data(), dembedded.data(), mask_token.grad(), Bn, K, L, dim_);
    Array dlatent = B::template empty<T>(ctx, Shape{Bn, K + 1, embed.in_features()});
    embed.backward(ctx, dembedded.data(), k.latent.data(), dlatent.data(), Bn * (K + 1));
    return dlatent;
  }

  // facebookresearch/mae's order: embed, mask_token, blocks, norm, pred.
  template <class List>
  void collect_parameters(List& out) {
    embed.collect_parameters(out);
    out.push_back(&mask_token);
    for (auto& b : blocks) b.collect_parameters(out);
    norm.collect_parameters(out);
    if (with_pred_) pred.collect_parameters(out);
  }

  Linear<B, P> embed;
  ParameterOf<B, P> mask_token;
  std::vector<Block<B, P>> blocks;
  LayerNorm<B, P> norm;
  Linear<B, P> pred;  // empty without pred

 private:
  std::int64_t dim_;
  bool with_pred_;
  Array pos_;
};

}  // namespace vitfreeze::model
