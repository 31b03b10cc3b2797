#pragma once
// MAE objective (peers spec §1): encode the visible patches, decode all patches, and score the
// prediction of the removed ones against a reconstruction target per patch (mim/targets.hpp):
// per-patch normalised pixels by default (MAE's norm_pix_loss), raw pixels, HOG, or the user's own.
#include "vitfreeze/autograd/ops/loss.hpp"
#include "vitfreeze/mim/flops.hpp"
#include "vitfreeze/mim/mae_decoder.hpp"
#include "vitfreeze/mim/masking.hpp"
#include "vitfreeze/mim/norm_pix.hpp"
#include "vitfreeze/mim/objective_family.hpp"
#include "vitfreeze/mim/targets.hpp"
#include "vitfreeze/mim/patchify.hpp"
#include "vitfreeze/nn/vit.hpp"

namespace vitfreeze::mim {

// Target is checked by a static_assert rather than a constraint, so that a wrong target is reported
// in one line that says what it lacks.
template <ViTSpec S, DecoderSpec Dec = DecoderSpec{}, class Target = NormalizedPixels, CpuScalar T = float>
class Mae {
  static_assert(ReconstructionTarget<Target>,
                "Mae: Target is not a mim::ReconstructionTarget (name, values(channels, cell), compute(images, "
                "geometries, outputs) in float and double; mim/targets.hpp)");

 public:
  static constexpr const char* name = "mae";
  static constexpr ObjectiveFamily family = ObjectiveFamily::mae;
  using TargetType = Target;
  static constexpr DecoderSpec decoder_spec = Dec;
  static constexpr int out_dim = Target::values(S.channels, S.patch);  // target values per patch
  using Encoder = nn::ViT<S, T>;

  explicit Mae(std::uint64_t seed = 0) : decoder("", S.dim, Dec, S.grid(), out_dim) { decoder.init(seed); }

  struct Output {
    Var<T> loss;
    Var<T> prediction;  // [B, L, P] in target space
    Tensor<T> target;   // [B, L, P]
  };

  Output forward(Tape<T>& tape, Encoder& encoder, const Tensor<T>& images, const MaskSet& masks) {
    return decode(tape, encoder.forward(tape, images, &masks.ids_keep).tokens, images, masks);
  }

  // The decoder and the loss on the encoder's latent [B, 1 + K, D].
  Output decode(Tape<T>& tape, Var<T> latent, const Tensor<T>& images, const MaskSet& masks) {
    Var<T> pred = decoder(tape, latent, masks.ids_restore);
    Tensor<T> target = target_values<Target>(images, S.patch);
    Var<T> loss = ops::masked_mse(tape, pred, target, masks.template mask_as<T>());
    return {loss, pred, target};
  }

  // The decoder is trained to the end: the trainer puts it in the last (never frozen) unit.
  void collect_parameters(nn::ParameterList<T>& out) { decoder.collect_parameters(out); }

  // For the cost model (train/cost_model.hpp): forward FLOPs per image that never freeze, with
  // `visible` patches per image reaching the decoder.
  static constexpr double never_frozen_forward_flops(int visible) {
    return mae_decoder_forward_flops(S, Dec, visible, out_dim);
  }

  MaeDecoder<T> decoder;
};

}  // namespace vitfreeze::mim
