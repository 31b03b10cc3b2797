#pragma once
// The MiCL objective (mim::Micl), explicit: each image's visible patches split into two views run as
// separate sequences through the encoder (frozen prefix included); the final-norm cls outputs of the
// two views of an image are pulled together and pushed from the other images' by the symmetric
// t-vMF InfoNCE. No parameters of its own. Negatives are this process's batch (data parallel: each
// rank contrasts its own shard, as the reference does).
#include <vector>

#include "vitfreeze/mim/micl.hpp"
#include "vitfreeze/model/encoder.hpp"
#include "vitfreeze/model/mae.hpp"

namespace vitfreeze::model {

template <Backend B, PrecisionPolicy P>
  requires BackendFor<B, P>
class Micl {
 public:
  using T = typename P::Activation;
  using M = typename P::Master;
  using Context = typename B::Context;
  using Array = ArrayOf<B, T>;
  static constexpr const char* name = "micl";
  static constexpr int views = 2;

  struct MaskBuffers {
    Masks<B, M> tokens;
    ArrayOf<B, std::int32_t> cls_index;  // [2B] zeros: the cls row of every sequence
  };

  template <class HostEncoder, class HostMicl>
  Micl(Context& ctx, HostEncoder& host_encoder, HostMicl&)
      : encoder(ctx, host_encoder), kappa_(HostMicl::loss_options.kappa), tau_(HostMicl::loss_options.tau) {}

  MaskBuffers upload_masks(Context& ctx, const mim::MaskSet& m) const {
    if (m.views != views || m.images != m.batch)
      throw ConfigError("model::Micl: needs masks with 2 views per image (SplitView), one sequence per image");
    MaskBuffers d{Masks<B, M>::upload(ctx, m), {}};
    assign_from_host<B>(ctx, d.cls_index, Tensor<std::int32_t>(Shape{std::int64_t(m.batch) * views}));
    return d;
  }
  // New masks into buffers from upload_masks, at the same addresses (the cls rows do not change).
  void assign_masks(Context& ctx, MaskBuffers& into, const mim::MaskSet& m) const {
    if (m.views != views || m.images != m.batch)
      throw ConfigError("model::Micl: needs masks with 2 views per image (SplitView), one sequence per image");
    into.tokens.assign(ctx, m);
  }

  void forward_backward(Context& ctx, const ArrayOf<B, M>& images, const MaskBuffers& m, double* loss,
                        const float* loss_scale = nullptr, double weight = 1.0) const {
    const Masks<B, M>& tokens = m.tokens;
    const std::int64_t N = tokens.batch, sequences = N * views, length = tokens.keep / views + 1, D = encoder.dim();
    typename Encoder<B, P>::Saved saved;
    const Array latent =
        encoder.forward(ctx, as_activation<B, P>(ctx, images), tokens.ids_keep.data(), N, tokens.keep, views, &saved);
    Array z = B::template empty<T>(ctx, Shape{sequences, D});
    B::gather_tokens_forward(ctx, latent.data(), m.cls_index.data(), z.data(), sequences, length, 1, D);
    typename B::ContrastiveSaved contrastive;
    B::tvmf_info_nce_forward(ctx, z.data(), N, D, kappa_, tau_, contrastive, loss);
    Array dz = B::template zeros<T>(ctx, Shape{sequences, D});
    B::tvmf_info_nce_backward(ctx, weight, contrastive, kappa_, tau_, dz.data(), N, D, loss_scale);
    Array dlatent = B::template zeros<T>(ctx, latent.shape());
    B::gather_tokens_backward(ctx, dz.data(), m.cls_index.data(), dlatent.data(), sequences, length, 1, D);
    encoder.backward(ctx, saved, dlatent);
  }

  template <class List>
  void collect_parameters(List& out) {
    encoder.collect_parameters(out);
  }
  template <class List>
  void collect_objective_parameters(List&) {}

  Encoder<B, P> encoder;

 private:
  double kappa_, tau_;
};

}  // namespace vitfreeze::model
