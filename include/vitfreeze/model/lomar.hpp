#pragma once
// The LoMaR objective (mim::Lomar), explicit: each (image, window) sequence is [cls, the window's
// cells in raster order] with the visible cells' patch embeddings and the mask token in place of the
// masked ones (only the visible patches are embedded); the relative encoder's blocks and final norm
// run on it, the linear head predicts every row, and the masked MSE scores the masked cells (cls
// rows and visible cells weigh 0, so no slicing copies are needed on either side).
//
// Freezing: the mask token freezes with the patch embedding. While any of cls token, patch embedding
// or mask token trains, the gradient goes down through every block to the assembled sequences;
// otherwise the blocks before the first trained one keep nothing and the backward stops there.
#include "vitfreeze/mim/lomar.hpp"
#include "vitfreeze/model/encoder.hpp"
#include "vitfreeze/model/mae.hpp"
#include "vitfreeze/model/targets.hpp"

namespace vitfreeze::model {

template <Backend B, PrecisionPolicy P, mim::ReconstructionTarget Target = mim::NormalizedPixels>
  requires BackendFor<B, P>
class Lomar {
 public:
  using T = typename P::Activation;
  using M = typename P::Master;
  using Context = typename B::Context;
  using Array = ArrayOf<B, T>;
  static constexpr const char* name = "lomar";

  // One batch's window masks in this backend's memory.
  struct MaskBuffers {
    std::int64_t images = 0, sequences = 0, cells = 0, keep = 0;
    ArrayOf<B, std::int32_t> ids_keep, ids_restore;  // [S, K], [S, C]: window cells
    ArrayOf<B, std::int32_t> visible_patch;          // [S K]: image * L + patch of each visible cell
    ArrayOf<B, std::int32_t> target_row;             // [S (1 + C)]: its row of the images' targets [N (1 + L)]
    ArrayOf<B, M> loss_weight;                       // [S (1 + C)]: 1 on masked cells
    Array zero_positions;                            // [1 + C, D]: the encoder's inputs carry no position
    double weight_sum = 0;
  };

  template <class HostEncoder, class HostLomar>
  Lomar(Context& ctx, HostEncoder& host_encoder, HostLomar& host)
      : encoder(ctx, host_encoder), mask_token(ctx, host.mask_token), pred(ctx, host.pred),
        geometry_{0, HostEncoder::spec.channels, HostEncoder::spec.image, HostEncoder::spec.image, HostEncoder::spec.patch,
                  /*lead=*/1} {
    static_assert(std::is_same_v<typename HostLomar::TargetType, Target>, "model::Lomar: the host objective's target differs");
  }

  MaskBuffers upload_masks(Context& ctx, const mim::MaskSet& m) const {
    const std::int64_t L = encoder.patches();
    mim::detail::check_window_masks(m, m.images, L, "model::Lomar");
    MaskBuffers d;
    d.images = m.images, d.sequences = m.batch, d.cells = m.patches, d.keep = m.keep;
    const std::int64_t rows = d.sequences * (1 + d.cells);
    Tensor<std::int32_t> target_row(Shape{rows});
    Tensor<M> weight(Shape{rows});
    for (std::int64_t s = 0; s < d.sequences; ++s) {
      const std::int64_t image_row = m.source_image[s] * (1 + L);
      target_row[s * (1 + d.cells)] = std::int32_t(image_row);  // the images' zero lead row
      for (std::int64_t c = 0; c < d.cells; ++c) {
        target_row[s * (1 + d.cells) + 1 + c] = std::int32_t(image_row + 1 + m.source_patch[s * d.cells + c]);
        weight[s * (1 + d.cells) + 1 + c] = m.mask[s * d.cells + c] ? M(1) : M(0);
        d.weight_sum += m.mask[s * d.cells + c] ? 1.0 : 0.0;
      }
    }
    assign_from_host<B>(ctx, d.ids_keep, m.ids_keep);
    assign_from_host<B>(ctx, d.ids_restore, m.ids_restore);
    assign_from_host<B>(ctx, d.visible_patch, mim::detail::visible_patch_rows(m, L));
    assign_from_host<B>(ctx, d.target_row, target_row);
    assign_from_host<B>(ctx, d.loss_weight, weight);
    d.zero_positions = B::template zeros<T>(ctx, Shape{1 + d.cells, encoder.dim()});
    return d;
  }

  // images [N, C, H, W] (master type). Gradients accumulate into the trained parameters, scaled by
  // loss_scale (null, or a scalar in this backend's memory) and by `weight`.
  void forward_backward(Context& ctx, const ArrayOf<B, M>& images_in, const MaskBuffers& m, double* loss,
                        const float* loss_scale = nullptr, double weight = 1.0) const {
    const std::int64_t N = m.images, L = encoder.patches(), D = encoder.dim(), S = m.sequences, C = m.cells, K = m.keep;
    const std::int64_t length = 1 + C, rows = S * length, patch_dim = encoder.patch_dim();
    const Array images = as_activation<B, P>(ctx, images_in);
    expect_rows(images, N * geometry_.channels * geometry_.height, geometry_.width, "model::Lomar images");

    // [cls, visible cells] per sequence, then the mask token in place of every masked cell.
    Array all_patches = B::template empty<T>(ctx, Shape{N, L, patch_dim});
    B::patchify(ctx, images.data(), all_patches.data(),
                PatchGeometry{N, geometry_.channels, geometry_.height, geometry_.width, geometry_.cell},
                PatchLayout::channel_major);
    Array visible = B::template empty<T>(ctx, Shape{S * K, patch_dim});
    B::gather_tokens_forward(ctx, all_patches.data(), m.visible_patch.data(), visible.data(), 1, N * L, S * K, patch_dim);
    all_patches = Array();
    Array embedded = B::template empty<T>(ctx, Shape{S * K, D});
    encoder.patch_embed.forward(ctx, visible.data(), embedded.data(), S * K);
    Array with_cls = B::template empty<T>(ctx, Shape{S, 1 + K, D});
    B::assemble_encoder_tokens(ctx, embedded.data(), encoder.cls_token.value(), m.zero_positions.data(),
                               m.ids_keep.data(), with_cls.data(), S, K, D);
    Array x = B::template empty<T>(ctx, Shape{S, length, D});
    B::unshuffle_forward(ctx, with_cls.data(), mask_token.value(), m.ids_restore.data(), x.data(), S, K, C, D);
    with_cls = Array();

    const bool input_trains = encoder.embedding_trains() || mask_token.trainable();
    typename Encoder<B, P>::Saved saved;
    const Array latent = encoder.forward_tokens(ctx, std::move(x), S, length, input_trains, &saved);
    const std::int64_t values = Target::values(int(geometry_.channels), geometry_.cell);
    Array prediction = B::template empty<T>(ctx, Shape{rows, values});
    pred.forward(ctx, latent.data(), prediction.data(), rows);

    mim::TargetGeometry g = geometry_;
    g.batch = N;
    Array image_targets = B::template empty<T>(ctx, Shape{N * (1 + L), values});
    T* image_target_rows = image_targets.data();
    compute_targets<B, Target>(ctx, images_in, std::span<const mim::TargetGeometry>(&g, 1),
                               std::span<T* const>(&image_target_rows, 1));
    Array target = B::template empty<T>(ctx, Shape{rows, values});
    B::gather_tokens_forward(ctx, image_targets.data(), m.target_row.data(), target.data(), 1, N * (1 + L), rows, values);
    image_targets = Array();

    B::masked_mse_forward(ctx, prediction.data(), target.data(), m.loss_weight.data(), rows, values, loss);
    Array dprediction = B::template zeros<T>(ctx, Shape{rows, values});
    B::masked_mse_backward(ctx, weight, prediction.data(), target.data(), m.loss_weight.data(), m.weight_sum,
                           dprediction.data(), rows, values, 0, loss_scale);
    Array dlatent = B::template empty<T>(ctx, Shape{rows, D});
    pred.backward(ctx, dprediction.data(), latent.data(), dlatent.data(), rows);
    const Array dx = encoder.backward_tokens(ctx, saved, dlatent);
    if (!input_trains) return;

    Array dwith_cls = B::template zeros<T>(ctx, Shape{S, 1 + K, D});
    B::unshuffle_backward(ctx, dx.data(), m.ids_restore.data(), dwith_cls.data(), mask_token.grad(), S, K, C, D);
    Array dembedded = B::template empty<T>(ctx, Shape{S * K, D});
    Array dcls_rows = B::template empty<T>(ctx, Shape{S, D});
    B::split_encoder_token_grads(ctx, dwith_cls.data(), dembedded.data(), dcls_rows.data(), S, K, D);
    if (encoder.cls_token.trainable()) B::add_column_sums(ctx, dcls_rows.data(), S, D, encoder.cls_token.grad());
    if (encoder.patch_embed.weight.trainable())
      encoder.patch_embed.backward(ctx, dembedded.data(), visible.data(), nullptr, S * K);
  }

  // The encoder's, then the objective's (the host models' order).
  template <class List>
  void collect_parameters(List& out) {
    encoder.collect_parameters(out);
    collect_objective_parameters(out);
  }
  template <class List>
  void collect_objective_parameters(List& out) {
    out.push_back(&mask_token);
    pred.collect_parameters(out);
  }

  Encoder<B, P> encoder;
  ParameterOf<B, P> mask_token;
  Linear<B, P> pred;

 private:
  mim::TargetGeometry geometry_;  // the batch is set per call
};

}  // namespace vitfreeze::model
