#pragma once
// The LocalMIM objective (mim::LocalMim, spec §2.2-2.5), explicit: the encoder on the visible patches
// up to its deepest active tap, no final norm; per active tap k its LayerNorm, its one-block MAE
// decoder (without pred) and its scale head, scored against HOG targets pooled to the tap's scale on
// the patch mask re-scaled to that grid (HOG by default; any reconstruction target):
//   loss = sum_k  sum_p M_k[p] mean_c (pred_k[p, c] - hog_k[p, c])^2 / sum_p M_k[p]
// One call runs forward and backward; the loss goes to loss[0] (this backend's memory), the taps'
// weight sums to loss[1]. Each tap runs its forward and backward before the next starts, so only one
// decoder's activations are alive at a time; the taps' gradients then enter the encoder's backward
// at their blocks. The targets of every active scale come from one call (HOG: one pass).
//
// Row layout: a scale-1 prediction keeps the decoder's cls row (as MAE's), so its HOG target and
// loss weights carry a zero row there; the other scales' maps have no cls row.
//
// Freezing: drop_tap(k) (when tap k's block freezes) stops computing the tap and freezes its
// parameters (the host objective's drop_tap does the same on the host modules).
#include <algorithm>
#include <utility>
#include <vector>

#include "vitfreeze/mim/localmim.hpp"
#include "vitfreeze/mim/mask_rescale.hpp"
#include "vitfreeze/model/encoder.hpp"
#include "vitfreeze/model/mae.hpp"
#include "vitfreeze/model/mae_decoder.hpp"
#include "vitfreeze/model/scale_head.hpp"
#include "vitfreeze/model/targets.hpp"

namespace vitfreeze::model {

template <Backend B, PrecisionPolicy P, mim::ReconstructionTarget Target = mim::Hog<9>>
  requires BackendFor<B, P>
class LocalMim {
 public:
  using T = typename P::Activation;
  using M = typename P::Master;
  using Context = typename B::Context;
  using Array = ArrayOf<B, T>;
  using Statistics = RowStatistics<B, M>;
  static constexpr const char* name = "localmim";

  struct Tap {
    LayerNorm<B, P> norm;
    MaeDecoder<B, P> decoder;
    ScaleHead<B, P> head;
    int block;   // the encoder block whose output it reads
    int cell;    // target cell side in pixels
    bool active;
  };

  // One batch's masks: the token bookkeeping and, per tap, the patch mask re-scaled to the tap's grid
  // as loss weights in its prediction's rows.
  struct MaskBuffers {
    Masks<B, M> tokens;
    std::vector<ArrayOf<B, M>> tap_weight;  // [B, lead + cells] per tap
    std::vector<double> tap_weight_sum;
  };

  template <class HostEncoder, class HostLocalMim>
  LocalMim(Context& ctx, HostEncoder& host_encoder, HostLocalMim& host)
      : encoder(ctx, host_encoder), channels_(HostEncoder::spec.channels), image_(HostEncoder::spec.image),
        grid_(HostEncoder::spec.grid()) {
    static_assert(std::is_same_v<typename HostLocalMim::TargetType, Target>,
                  "model::LocalMim: the host objective's target differs");
    const auto positions = nn::sincos_pos_embed_2d<M>(host.decoder(0).embed.out_features(), grid_, grid_, true);
    taps.reserve(HostLocalMim::kTaps);  // parameters are handed out by address: the vector never reallocates
    for (int k = 0; k < HostLocalMim::kTaps; ++k)
      taps.push_back(Tap{LayerNorm<B, P>(ctx, host.tap_norm(k)),
                         MaeDecoder<B, P>(ctx, host.decoder(k), positions, /*with_pred=*/false),
                         ScaleHead<B, P>(ctx, host.head(k)), HostLocalMim::tap_block(k), HostLocalMim::cell(k),
                         host.tap_active(k)});
  }

  int tap_count() const { return int(taps.size()); }
  int tap_block(int k) const { return taps.at(std::size_t(k)).block; }
  bool tap_active(int k) const { return taps.at(std::size_t(k)).active; }

  // Tap k is no longer computed; its parameters freeze. Idempotent.
  void drop_tap(int k) {
    taps.at(std::size_t(k)).active = false;
    ParameterRefs<B, P> ps;
    collect_tap_parameters(k, ps);
    for (auto* p : ps) p->freeze();
  }

  MaskBuffers upload_masks(Context& ctx, const mim::MaskSet& m) const {
    if (m.views != 1) throw ConfigError("model::LocalMim: one view per image");
    MaskBuffers d;
    d.tokens = Masks<B, M>::upload(ctx, m);
    for (std::size_t k = 0; k < taps.size(); ++k) {
      double sum = 0;
      const Tensor<M> weight = tap_weight(k, m, &sum);
      assign_from_host<B>(ctx, d.tap_weight.emplace_back(), weight);
      d.tap_weight_sum.push_back(sum);
    }
    return d;
  }
  // New masks into buffers from upload_masks, at the same addresses (a captured GPU step reads them
  // and was built with their weight sums: these must not change, as Masks::assign requires).
  void assign_masks(Context& ctx, MaskBuffers& into, const mim::MaskSet& m) const {
    if (m.views != 1) throw ConfigError("model::LocalMim: one view per image");
    if (into.tap_weight.size() != taps.size()) throw ConfigError("model::LocalMim: masks not from upload_masks");
    into.tokens.assign(ctx, m);
    for (std::size_t k = 0; k < taps.size(); ++k) {
      double sum = 0;
      const Tensor<M> weight = tap_weight(k, m, &sum);
      if (sum != into.tap_weight_sum[k])
        throw ShapeError("model::LocalMim::assign_masks: tap " + std::to_string(k) + "'s loss weights sum to " +
                         std::to_string(sum) + ", these buffers' to " + std::to_string(into.tap_weight_sum[k]));
      assign_from_host<B>(ctx, into.tap_weight[k], weight);
    }
  }

  // images [B, C, H, W] (normalised, master type). Gradients accumulate into the trained parameters,
  // scaled by loss_scale (null, or a scalar in this backend's memory) and `weight`.
  void forward_backward(Context& ctx, const ArrayOf<B, M>& images, const MaskBuffers& m, double* loss,
                        const float* loss_scale = nullptr, double weight = 1.0) const {
    const Masks<B, M>& tokens = m.tokens;
    const std::int64_t Bn = tokens.batch, K = tokens.keep, encoder_rows = Bn * (K + 1), D = encoder.dim();
    std::vector<int> active, blocks;
    for (int k = 0; k < tap_count(); ++k)
      if (taps[std::size_t(k)].active) {
        active.push_back(k);
        blocks.push_back(taps[std::size_t(k)].block);
      }
    if (active.empty()) throw ConfigError("model::LocalMim: every tap has been dropped, there is no loss");
    if (m.tap_weight.size() != taps.size()) throw ConfigError("model::LocalMim: masks not from upload_masks");

    typename Encoder<B, P>::Saved encoder_saved;
    const std::vector<Array> hidden =
        encoder.forward_taps(ctx, as_activation<B, P>(ctx, images), tokens.ids_keep.data(), Bn, K, blocks, &encoder_saved);
    const std::vector<Array> targets = tap_targets(ctx, images, Bn, active);

    B::zero(ctx, loss, 2);
    std::vector<Array> dhidden;
    std::vector<typename Encoder<B, P>::TapGradient> tap_grads;
    for (std::size_t a = 0; a < active.size(); ++a) {
      const Tap& t = taps[std::size_t(active[a])];
      const ScaleHead<B, P>& head = t.head;
      Array latent = B::template empty<T>(ctx, Shape{Bn, K + 1, D});
      const Statistics latent_stats = Statistics::make(ctx, encoder_rows);
      t.norm.forward(ctx, hidden[a].data(), latent.data(), latent_stats, encoder_rows);
      typename MaeDecoder<B, P>::Saved decoder_saved;
      const Array normed = t.decoder.forward_features(ctx, latent, tokens, decoder_saved);
      typename ScaleHead<B, P>::Saved head_saved;
      const Array prediction = head.forward(ctx, normed, Bn, head_saved);

      const std::int64_t rows = Bn * head.rows_per_sample(), values = head.out_dim(), ld = head.prediction_ld();
      const T* target = targets[a].data();
      const M* w = m.tap_weight[std::size_t(active[a])].data();
      B::masked_mse_forward(ctx, prediction.data(), target, w, rows, values, loss, /*accumulate=*/true, ld);
      Array dprediction = B::template zeros<T>(ctx, Shape{rows, ld});
      B::masked_mse_backward(ctx, weight, prediction.data(), target, w, m.tap_weight_sum[std::size_t(active[a])],
                             dprediction.data(), rows, values, ld, loss_scale);

      const Array dnormed = head.backward(ctx, head_saved, dprediction.data());
      const Array dlatent = t.decoder.backward_features(ctx, decoder_saved, tokens, dnormed.data());
      Array dh = B::template zeros<T>(ctx, Shape{encoder_rows, D});
      t.norm.backward(ctx, dlatent.data(), hidden[a].data(), latent_stats, dh.data(), encoder_rows);
      tap_grads.push_back({t.block, dh.data()});
      dhidden.push_back(std::move(dh));
    }
    encoder.backward_taps(ctx, encoder_saved, tap_grads);
  }

  // norm.K, decoder.K and its head, in LocalMIM's order.
  template <class List>
  void collect_tap_parameters(int k, List& out) {
    Tap& t = taps.at(std::size_t(k));
    t.norm.collect_parameters(out);
    t.decoder.collect_parameters(out);
    t.head.collect_parameters(out);
  }

  // The encoder's (its unused final norm included, as the host lists it), then every tap's.
  template <class List>
  void collect_parameters(List& out) {
    encoder.collect_parameters(out);
    for (int k = 0; k < tap_count(); ++k) collect_tap_parameters(k, out);
  }

  Encoder<B, P> encoder;
  std::vector<Tap> taps;

 private:
  // The target of every active tap in its head's row layout, all cell sizes from one call; taps of
  // one cell size and lead share their array.
  std::vector<Array> tap_targets(Context& ctx, const ArrayOf<B, M>& images, std::int64_t batch,
                                 const std::vector<int>& active) const {
    std::vector<mim::TargetGeometry> geometry;
    std::vector<Array> arrays, per_tap;
    for (int k : active) {
      const Tap& t = taps[std::size_t(k)];
      const mim::TargetGeometry g{batch, channels_, image_, image_, t.cell, t.head.lead_rows()};
      std::size_t at = 0;
      while (at < geometry.size() && !(geometry[at] == g)) ++at;
      if (at == geometry.size()) {
        geometry.push_back(g);
        arrays.push_back(B::template empty<T>(ctx, Shape{batch * g.rows_per_sample(), Target::values(int(channels_), t.cell)}));
      }
      per_tap.push_back(arrays[at]);
    }
    std::vector<T*> outputs;
    for (auto& a : arrays) outputs.push_back(a.data());
    compute_targets<B, Target>(ctx, images, std::span<const mim::TargetGeometry>(geometry), std::span<T* const>(outputs));
    return per_tap;
  }

  // Tap k's loss weights: the patch mask re-scaled to its grid, in its prediction's rows.
  Tensor<M> tap_weight(std::size_t k, const mim::MaskSet& m, double* sum) const {
    const ScaleHead<B, P>& h = taps[k].head;
    const Tensor<M> cells = mim::rescale_mask<M>(m.mask, grid_, grid_, h.scale_num(), h.scale_den());
    Tensor<M> weight(Shape{m.batch, h.rows_per_sample()});
    *sum = 0;
    for (std::int64_t b = 0; b < m.batch; ++b)
      for (std::int64_t c = 0; c < h.cells(); ++c) {
        const M w = cells[b * h.cells() + c];
        weight[b * h.rows_per_sample() + h.lead_rows() + c] = w;
        *sum += double(w);
      }
    return weight;
  }

  std::int64_t channels_, image_;
  int grid_;
};

}  // namespace vitfreeze::model
