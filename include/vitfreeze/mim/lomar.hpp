#pragma once
// LoMaR (peers spec §2): instead of encoding a sparse global subset, the whole encoder runs on a few
// K x K windows of patches (Window masking: K = 7, M = 4, 80 % masked inside each window) with a
// learned mask token substituted in place of each masked cell, and a linear head (`encoder_pred`,
// D -> values per patch, after the encoder's final norm) predicts the reconstruction target
// (normalised pixels by default, §2.6) of the masked cells. There is no absolute position: the
// encoder must be relative (ViTSpec::position = relative, iRPE in every attention layer), and the
// sequence of a window is [cls, its K*K cells in raster order], a square grid the relative buckets
// read positions from. The loss is the mean over every masked cell of every sequence of the
// per-cell mean squared error.
//
// Freezing: the mask token is an input embedding, like the patch embedding, and freezes with it
// (collect_embedding_parameters: the trainer puts it in the patch embedding's unit); the head trains
// to the end (the last unit), like MAE's decoder.
#include "vitfreeze/autograd/ops/elementwise.hpp"
#include "vitfreeze/autograd/ops/loss.hpp"
#include "vitfreeze/autograd/ops/tokens.hpp"
#include "vitfreeze/mim/masking.hpp"
#include "vitfreeze/mim/objective_family.hpp"
#include "vitfreeze/mim/targets.hpp"
#include "vitfreeze/nn/vit.hpp"

namespace vitfreeze::mim {

namespace detail {
// The masks must come from window masking on this encoder's grid.
inline void check_window_masks(const MaskSet& m, std::int64_t images, std::int64_t patches, const char* who) {
  if (m.source_image.empty() || m.source_patch.empty())
    throw ConfigError(std::string(who) + ": needs window masks (mim::Window / WindowRatio), one sequence per (image, window)");
  if (m.images != images || m.views != 1)
    throw ConfigError(std::string(who) + ": the masks were made for " + std::to_string(m.images) + " images, the batch has " +
                      std::to_string(images));
  for (std::int64_t i = 0; i < m.source_patch.numel(); ++i)
    if (m.source_patch[i] < 0 || m.source_patch[i] >= patches)
      throw ConfigError(std::string(who) + ": a window cell outside the image's grid of " + std::to_string(patches));
}

// For sequence s and its visible cell k: the row image * L + patch of the batch's patches [N * L].
inline Tensor<std::int32_t> visible_patch_rows(const MaskSet& m, std::int64_t patches) {
  Tensor<std::int32_t> rows(Shape{1, std::int64_t(m.batch) * m.keep});
  for (std::int64_t s = 0; s < m.batch; ++s)
    for (std::int64_t k = 0; k < m.keep; ++k)
      rows[s * m.keep + k] = std::int32_t(m.source_image[s] * patches + m.source_patch[s * m.patches + m.ids_keep[s * m.keep + k]]);
  return rows;
}
}  // namespace detail

template <ViTSpec S, ReconstructionTarget Target = NormalizedPixels, CpuScalar T = float>
class Lomar {
 public:
  static_assert(S.relative_position(),
                "LoMaR: the encoder has no absolute positions, use a relative spec (specs::with_relative_position)");
  static constexpr const char* name = "lomar";
  static constexpr ObjectiveFamily family = ObjectiveFamily::lomar;
  using TargetType = Target;
  static constexpr int out_dim = Target::values(S.channels, S.patch);  // target values per patch
  static constexpr bool encodes_mask_tokens = true;  // every window cell enters the encoder (cost model)
  using Encoder = nn::ViT<S, T>;

  explicit Lomar(std::uint64_t seed = 0)
      : mask_token("mask_token", Shape{1, 1, S.dim}, true), pred("encoder_pred", S.dim, out_dim) {
    nn::normal_init(mask_token, 0.02, seed);
    pred.init_xavier(seed);
  }

  struct Output {
    Var<T> loss;
    Var<T> prediction;  // [sequences, cells, values]: every cell of every window, in target space
    Tensor<T> target;   // [sequences, cells, values]
  };

  Output forward(Tape<T>& tape, Encoder& encoder, const Tensor<T>& images, const MaskSet& masks) {
    const std::int64_t N = images.dim(0), L = S.tokens(), D = S.dim, sequences = masks.batch, cells = masks.patches;
    detail::check_window_masks(masks, N, L, "LoMaR");
    // The visible cells' patch embeddings, [cls, visible] per sequence, mask tokens put in place.
    Var<T> patches = ops::reshape(tape, encoder.patch_embed(tape, images), Shape{1, N * L, D});
    Var<T> visible = ops::gather_tokens(tape, patches, detail::visible_patch_rows(masks, L));
    visible = ops::reshape(tape, visible, Shape{sequences, masks.keep, D});
    Var<T> x = ops::prepend_token(tape, tape.parameter(encoder.cls_token), visible);
    x = ops::unshuffle_with_mask_token(tape, x, tape.parameter(mask_token), masks.ids_restore);
    Var<T> latent = encoder.encode(tape, x).tokens;
    Var<T> prediction = pred(tape, ops::slice_tokens(tape, latent, 1, 1 + cells));

    const Tensor<T> image_targets = target_values<Target>(images, S.patch);  // [N, L, V]
    Tensor<T> target(Shape{sequences, cells, out_dim});
    for (std::int64_t s = 0; s < sequences; ++s)
      for (std::int64_t c = 0; c < cells; ++c)
        std::copy_n(image_targets.data() + (masks.source_image[s] * L + masks.source_patch[s * cells + c]) * out_dim,
                    out_dim, target.data() + (s * cells + c) * out_dim);
    Var<T> loss = ops::masked_mse(tape, prediction, target, masks.template mask_as<T>());
    return {loss, prediction, target};
  }

  // The mask token, then the head (the order of LoMaR's state_dict).
  void collect_parameters(nn::ParameterList<T>& out) {
    out.push_back(&mask_token);
    pred.collect_parameters(out);
  }
  // What freezes with the patch embedding: the mask token, an input embedding.
  void collect_embedding_parameters(nn::ParameterList<T>& out) { out.push_back(&mask_token); }

  Parameter<T> mask_token;
  nn::Linear<T> pred;
};

}  // namespace vitfreeze::mim
