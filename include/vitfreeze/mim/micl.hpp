#pragma once
// MiCL objective (peers spec §4): no decoder and no pixel target. Each image's visible patches
// (SplitView masking: an even keep list) are split into two disjoint views, each encoded as its own
// short sequence with its own cls token; the two final-norm cls outputs of an image are pulled
// together and pushed away from the other images' with a symmetric t-vMF InfoNCE (kappa 1/64,
// tau 0.07). Negatives are the batch's other images, on this process only (as the reference, which
// gathers nothing across devices), so under data parallelism each rank contrasts its own shard.
#include "vitfreeze/autograd/ops/contrastive.hpp"
#include "vitfreeze/autograd/ops/tokens.hpp"
#include "vitfreeze/mim/masking.hpp"
#include "vitfreeze/mim/objective_family.hpp"
#include "vitfreeze/nn/vit.hpp"

namespace vitfreeze::mim {

struct MiclLoss {
  double kappa = 1.0 / 64;
  double tau = 0.07;
};

template <ViTSpec S, MiclLoss Loss = MiclLoss{}, CpuScalar T = float>
class Micl {
 public:
  static constexpr const char* name = "micl";
  static constexpr ObjectiveFamily family = ObjectiveFamily::micl;
  static constexpr int views = 2;  // the masking policy must split the keep list in two (SplitView)
  static constexpr MiclLoss loss = Loss;
  using Encoder = nn::ViT<S, T>;
  static_assert(Loss.tau > 0 && Loss.kappa >= 0, "MiCL: need tau > 0 and kappa >= 0");

  explicit Micl(std::uint64_t /*seed*/ = 0) {}  // no parameters of its own

  struct Output {
    Var<T> loss;
    Var<T> embeddings;  // [2B, D] final-norm cls outputs, rows 2b and 2b+1 the views of image b
  };

  Output forward(Tape<T>& tape, Encoder& encoder, const Tensor<T>& images, const MaskSet& masks) {
    if (masks.views != views || masks.batch != images.dim(0) || masks.images != masks.batch)
      throw ConfigError("MiCL: needs masks with 2 views per image (SplitView), one sequence per image");
    auto tokens = encoder.forward(tape, images, &masks.ids_keep, {}, true, views).tokens;
    Var<T> cls = ops::slice_tokens(tape, tokens, 0, 1);
    Var<T> z = ops::reshape(tape, cls, Shape{2 * images.dim(0), S.dim});
    return {ops::tvmf_info_nce(tape, z, Loss.kappa, Loss.tau), z};
  }

  void collect_parameters(nn::ParameterList<T>&) {}
};

}  // namespace vitfreeze::mim
