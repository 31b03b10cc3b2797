#pragma once
// The MAE objective (mim::Mae), explicit: encoder on the visible patches, decoder over every
// position, masked MSE against the objective's reconstruction target per patch (normalised pixels
// by default). One call runs forward and backward;
// the loss goes to `loss` (this backend's memory: loss[0] the loss, loss[1] the weight sum), so a
// GPU step never waits for the host.
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/model/encoder.hpp"
#include "vitfreeze/model/mae_decoder.hpp"
#include "vitfreeze/model/targets.hpp"

namespace vitfreeze::model {

// fp32 (master-type) input data as the activation type: the data itself when they agree, else a
// converted copy.
template <Backend B, PrecisionPolicy P>
ArrayOf<B, typename P::Activation> as_activation(typename B::Context& ctx, const ArrayOf<B, typename P::Master>& x) {
  using T = typename P::Activation;
  if constexpr (std::is_same_v<T, typename P::Master>) {
    return x;
  } else {
    ArrayOf<B, T> out = B::template empty<T>(ctx, x.shape());
    B::convert(ctx, x.data(), out.data(), x.numel());
    return out;
  }
}

template <Backend B, PrecisionPolicy P, mim::ReconstructionTarget Target = mim::NormalizedPixels>
  requires BackendFor<B, P>
class Mae {
 public:
  using T = typename P::Activation;
  using M = typename P::Master;
  using Context = typename B::Context;
  using Array = ArrayOf<B, T>;
  using MaskBuffers = Masks<B, M>;
  static constexpr const char* name = "mae";

  template <class HostEncoder, class HostMae>
  Mae(Context& ctx, HostEncoder& host_encoder, HostMae& host)
      : encoder(ctx, host_encoder),
        decoder(ctx, host.decoder,
                nn::sincos_pos_embed_2d<M>(host.decoder.embed.out_features(), HostEncoder::spec.grid(),
                                           HostEncoder::spec.grid(), true)),
        geometry_{0, HostEncoder::spec.channels, HostEncoder::spec.image, HostEncoder::spec.image, HostEncoder::spec.patch,
                  /*lead=*/1} {
    static_assert(std::is_same_v<typename HostMae::TargetType, Target>, "model::Mae: the host objective's target differs");
  }

  MaskBuffers upload_masks(Context& ctx, const mim::MaskSet& m) const {
    if (m.views != 1) throw ConfigError("model::Mae: one view per image (split-view masks are MiCL's)");
    return MaskBuffers::upload(ctx, m);
  }
  // New masks into buffers from upload_masks, at the same addresses (a captured GPU step reads them).
  void assign_masks(Context& ctx, MaskBuffers& into, const mim::MaskSet& m) const {
    if (m.views != 1) throw ConfigError("model::Mae: one view per image (split-view masks are MiCL's)");
    into.assign(ctx, m);
  }

  // What the backward reads.
  struct Step {
    typename Encoder<B, P>::Saved encoder;
    typename MaeDecoder<B, P>::Saved decoder;
    Array prediction, target;  // [B (1 + L), values]
  };

  // images [B, C, H, W] (master type). Gradients accumulate into the trained parameters, scaled by
  // loss_scale (null, or a scalar in this backend's memory: the fp16 loss scale) and by `weight`.
  void forward_backward(Context& ctx, const ArrayOf<B, M>& images, const MaskBuffers& m, double* loss,
                        const float* loss_scale = nullptr, double weight = 1.0) const {
    Step step;
    forward(ctx, images, m, loss, step);
    backward(ctx, m, step, loss_scale, weight);
  }

  // The loss into `loss`; what the backward reads into `step` (the encoder's last block is kept there,
  // qkv included: a loss on its attention can join, see backward).
  void forward(Context& ctx, const ArrayOf<B, M>& images, const MaskBuffers& m, double* loss, Step& step) const {
    const std::int64_t Bn = m.batch, L = m.patches, rows = Bn * (L + 1);
    mim::TargetGeometry g = geometry_;
    g.batch = Bn;
    const std::int64_t values = Target::values(int(g.channels), g.cell);
    Array latent = encoder.forward(ctx, as_activation<B, P>(ctx, images), m.ids_keep.data(), Bn, m.keep, 1, &step.encoder);
    step.prediction = decoder.forward(ctx, latent, m, step.decoder);
    step.target = B::template empty<T>(ctx, Shape{rows, values});
    T* target_rows = step.target.data();
    compute_targets<B, Target>(ctx, images, std::span<const mim::TargetGeometry>(&g, 1), std::span<T* const>(&target_rows, 1));
    B::masked_mse_forward(ctx, step.prediction.data(), step.target.data(), m.loss_weight.data(), rows, values, loss);
  }

  // last_block_dqkv (null: none): the gradient of the encoder's last-block qkv from another loss term.
  void backward(Context& ctx, const MaskBuffers& m, const Step& step, const float* loss_scale, double weight,
                const T* last_block_dqkv = nullptr) const {
    const std::int64_t rows = m.batch * (m.patches + 1), values = step.target.shape().cols();
    Array dprediction = B::template zeros<T>(ctx, Shape{rows, values});
    B::masked_mse_backward(ctx, weight, step.prediction.data(), step.target.data(), m.loss_weight.data(), m.weight_sum,
                           dprediction.data(), rows, values, 0, loss_scale);
    Array dlatent = decoder.backward(ctx, step.decoder, m, dprediction.data());
    encoder.backward(ctx, step.encoder, dlatent, last_block_dqkv);
  }

  // The encoder's, then the decoder's (the host models' order).
  template <class List>
  void collect_parameters(List& out) {
    encoder.collect_parameters(out);
    decoder.collect_parameters(out);
  }
  // The objective's own parameters (the decoder): they train to the end, in the last unit.
  template <class List>
  void collect_objective_parameters(List& out) {
    decoder.collect_parameters(out);
  }

  Encoder<B, P> encoder;
  MaeDecoder<B, P> decoder;

 private:
  mim::TargetGeometry geometry_;  // the batch is set per call
};

}  // namespace vitfreeze::model
