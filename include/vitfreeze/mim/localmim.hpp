#pragma once
// The LocalMIM objective (spec vitfreeze-localmim-freezeout.md §2.2-2.5): the encoder's hidden state
// after block ID[k] of each tap k goes through its own LayerNorm `norm.K`, its own one-block MAE
// decoder `decoder.K` and its scale head `decoder.K.pred`, and is scored against the target (HOG
// features by default, mim/targets.hpp) pooled to that tap's scale, on the tap's re-scaled mask:
//
//   loss = sum_k  sum_p M_k[p] mean_c (pred_k[p, c] - hog_k[p, c])^2 / sum_p M_k[p]
//
// Taps and scales are compile-time values: `taps<TapSpec{block, num, den}, ...>`; an infeasible
// scale for the image, a block outside [0, depth) or a scale without a head is a compile error.
//
// The encoder's final `norm` is not used: LocalMIM has a LayerNorm per tap instead (the reference's
// `self.norm` is that list), so it is not run and not listed here.
//
// Freezing (spec §3.4-3.5): when the block a tap reads freezes, the trainer calls drop_tap(k). A
// dropped tap costs nothing any more: no tap norm, decoder, head, HOG target or loss term, and its
// parameters are frozen (no gradient buffer; values kept so weight files stay complete).
#include <algorithm>
#include <array>
#include <vector>

#include "vitfreeze/autograd/ops/loss.hpp"
#include "vitfreeze/mim/flops.hpp"
#include "vitfreeze/mim/hog.hpp"
#include "vitfreeze/mim/localmim_spec.hpp"
#include "vitfreeze/mim/mae_decoder.hpp"
#include "vitfreeze/mim/mask_rescale.hpp"
#include "vitfreeze/mim/objective_family.hpp"
#include "vitfreeze/mim/targets.hpp"
#include "vitfreeze/mim/masking.hpp"
#include "vitfreeze/mim/scale_head.hpp"
#include "vitfreeze/nn/vit.hpp"

namespace vitfreeze::mim {

namespace detail {
template <class X>
inline constexpr bool is_tap_list = false;
template <TapSpec... Ts>
inline constexpr bool is_tap_list<taps<Ts...>> = true;

template <ViTSpec S, class Taps>
consteval bool taps_in_range() {
  for (const TapSpec& t : Taps::list)
    if (t.block < 0 || t.block >= S.depth) return false;
  return true;
}
template <ViTSpec S, class Taps>
consteval bool scales_have_heads() {
  for (const TapSpec& t : Taps::list)
    if (!scale_head_supports(t.scale_num, t.scale_den)) return false;
  return true;
}
template <ViTSpec S, class Taps>
consteval bool scales_feasible() {
  for (const TapSpec& t : Taps::list)
    if (!scale_is_feasible(S.image, S.patch, t.scale_num, t.scale_den)) return false;
  return true;
}
template <class Taps, DecoderSpec Dec>
consteval bool decoder_fits_heads() {
  for (const TapSpec& t : Taps::list)
    if ((t.scale_num == 4 && Dec.dim % 4 != 0) || (t.scale_num == 2 && Dec.dim % 2 != 0)) return false;
  return true;
}

// Each failing condition names itself.
template <ViTSpec S, class Taps, DecoderSpec Dec>
consteval bool check_localmim() {
  static_assert(is_tap_list<Taps>, "LocalMim: Taps must be mim::taps<TapSpec{block, num, den}, ...>");
  static_assert(Taps::count >= 1, "LocalMim: at least one tap");
  static_assert(taps_in_range<S, Taps>(), "LocalMim: a tap block lies outside [0, depth)");
  static_assert(scales_have_heads<S, Taps>(), "LocalMim: scales must be 4, 2, 1 or 1/2 (as num/den)");
  static_assert(scales_feasible<S, Taps>(),
                "LocalMim: a tap scale is infeasible for this image and patch (HOG cell below one pixel, or "
                "not a whole number of cells per side)");
  static_assert(decoder_fits_heads<Taps, Dec>(), "LocalMim: decoder width must divide by 4 (scale 4) or 2 (scale 2)");
  static_assert(Dec.dim > 0 && Dec.depth > 0 && Dec.heads > 0 && Dec.dim % Dec.heads == 0 && Dec.dim % 4 == 0,
                "LocalMim: decoder width must be positive, a multiple of heads and of 4");
  return true;
}
}  // namespace detail

// Target is checked by a static_assert rather than a constraint, so that a wrong target is reported
// in one line that says what it lacks.
template <ViTSpec S, class Taps = localmim_taps<S.depth>, DecoderSpec Dec = kLocalMimDecoder, class Target = Hog<9>,
          CpuScalar T = float>
class LocalMim {
  static_assert(ReconstructionTarget<Target>,
                "LocalMim: Target is not a mim::ReconstructionTarget (name, values(channels, cell), compute(images, "
                "geometries, outputs) in float and double; mim/targets.hpp)");
  static_assert(detail::check_localmim<S, Taps, Dec>());

 public:
  static constexpr const char* name = "localmim";
  static constexpr ObjectiveFamily family = ObjectiveFamily::localmim;
  using Encoder = nn::ViT<S, T>;
  static constexpr int kTaps = Taps::count;
  static constexpr std::array<TapSpec, kTaps> tap_specs = Taps::list;
  using TargetType = Target;
  static constexpr DecoderSpec decoder_spec = Dec;

  // Target cell side in pixels of tap k (HOG's pool): patch / s.
  static constexpr int cell(int k) {
    return hog_pool_for_scale(S.image, S.patch, tap_specs[k].scale_num, tap_specs[k].scale_den);
  }
  // Target values per cell of tap k (HOG: channels x bins, R G B order).
  static constexpr int out_dim(int k) { return Target::values(S.channels, cell(k)); }

  explicit LocalMim(std::uint64_t seed = 0) {
    taps_.reserve(kTaps);  // parameters are handed out by address: the vector never reallocates
    for (int k = 0; k < kTaps; ++k) {
      const std::string K = std::to_string(k);
      taps_.push_back(Tap{nn::LayerNorm<T>("norm." + K, S.dim),
                          MaeDecoder<T>("decoder." + K + ".", S.dim, Dec, S.grid(), out_dim(k), /*with_pred=*/false,
                                        DecoderNaming::localmim),
                          ScaleHead<T>("decoder." + K + ".pred", Dec.dim, S.grid(), tap_specs[k].scale_num,
                                       tap_specs[k].scale_den, out_dim(k)),
                          true});
    }
    init(seed);
  }
  LocalMim(const LocalMim&) = delete;
  LocalMim& operator=(const LocalMim&) = delete;

  // Tap norms: weight 1, bias 0; decoders: MAE init (Xavier linears, mask token N(0, 0.02));
  // heads: PyTorch's default convolution init.
  void init(std::uint64_t seed) {
    for (Tap& t : taps_) {
      t.norm.init();
      t.decoder.init(seed);
      t.head.init(seed);
    }
  }

  struct Output {
    Var<T> loss;                         // sum of the active taps' terms
    std::vector<Var<T>> tap_losses;      // per tap; invalid for a dropped tap
    std::vector<Var<T>> predictions;     // per tap [B, cells_k, out_dim(k)]; invalid when dropped
    std::vector<Tensor<T>> targets;      // per tap HOG target, same shape; empty when dropped
  };

  // images: normalised [B, C, H, W] (HOG is computed on them, as in the reference); masks: a global
  // masking policy's MaskSet for this batch.
  Output forward(Tape<T>& tape, Encoder& encoder, const Tensor<T>& images, const MaskSet& masks) {
    const std::int64_t B = images.dim(0);
    if (masks.batch != B || masks.images != B || masks.patches != S.tokens() || masks.views != 1 ||
        !masks.source_image.empty())
      throw ConfigError("LocalMim: masks must come from a global policy over " + std::to_string(S.tokens()) +
                        " patches for the " + std::to_string(B) + " images of the batch");
    active_blocks_.clear();
    active_cells_.clear();
    for (int k = 0; k < kTaps; ++k)
      if (taps_[k].active) {
        active_blocks_.push_back(tap_specs[k].block);
        if (std::find(active_cells_.begin(), active_cells_.end(), cell(k)) == active_cells_.end())
          active_cells_.push_back(cell(k));
      }
    if (active_blocks_.empty()) throw ConfigError("LocalMim: every tap has been dropped, there is no loss");

    // Targets: every active cell size from one call (HOG: one pass), in step buffers (no gradient: data).
    targets_.clear();
    std::vector<TargetGeometry> geometry;
    std::vector<T*> outputs;
    for (int c : active_cells_) {
      geometry.push_back({B, S.channels, S.image, S.image, c, 0});
      targets_.push_back(tape.alloc(Shape{B, geometry.back().cells(), Target::values(S.channels, c)}));
      outputs.push_back(targets_.back().data());
    }
    Target::compute(images.data(), std::span<const TargetGeometry>(geometry), std::span<T* const>(outputs));

    // The encoder stops at the taps: no final norm.
    auto encoded = encoder.forward(tape, images, &masks.ids_keep, active_blocks_, /*final_norm=*/false);

    Output out;
    out.tap_losses.resize(kTaps);
    out.predictions.resize(kTaps);
    out.targets.resize(kTaps);
    for (int k = 0, a = 0; k < kTaps; ++k) {
      Tap& tap = taps_[k];
      if (!tap.active) continue;
      const TapSpec& spec = tap_specs[k];
      Var<T> latent = tap.norm(tape, encoded.taps[a++]);
      Var<T> pred = tap.head(tape, tap.decoder(tape, latent, masks.ids_restore));
      const auto cell_at = std::find(active_cells_.begin(), active_cells_.end(), cell(k)) - active_cells_.begin();
      const Tensor<T>& target = targets_[std::size_t(cell_at)];
      Tensor<T> weight = tape.alloc(Shape{B, tap.head.cells()});
      rescale_mask_into(masks.mask, S.grid(), S.grid(), spec.scale_num, spec.scale_den, weight);
      Var<T> term = ops::masked_mse(tape, pred, target, weight);
      out.loss = out.loss.valid() ? ops::add(tape, out.loss, term) : term;
      out.tap_losses[k] = term;
      out.predictions[k] = pred;
      out.targets[k] = target;
    }
    return out;
  }

  // ---- what the trainer needs for freezing -----------------------------------------------------
  static constexpr int tap_count() { return kTaps; }
  static constexpr int tap_block(int k) { return tap_specs.at(std::size_t(k)).block; }
  bool tap_active(int k) const { return taps_.at(std::size_t(k)).active; }
  // For the cost model (train/cost_model.hpp): forward FLOPs per image of tap k, which stop when its
  // block freezes; `visible` patches per image reach the tap.
  static constexpr double tap_forward_flops(int k, int visible) {
    return localmim_tap_forward_flops(S, Dec, tap_specs[std::size_t(k)], visible, out_dim(k));
  }
  int active_tap_count() const {
    return int(std::count_if(taps_.begin(), taps_.end(), [](const Tap& t) { return t.active; }));
  }

  // norm.K, decoder.K and its head, in LocalMIM's order.
  void collect_tap_parameters(int k, nn::ParameterList<T>& out) {
    Tap& t = taps_.at(std::size_t(k));
    t.norm.collect_parameters(out);
    t.decoder.collect_parameters(out);
    t.head.collect_parameters(out);
  }

  // Tap k is no longer computed and its parameters stop training (gradient buffers released; the
  // caller releases their optimiser state). Idempotent.
  void drop_tap(int k) {
    Tap& t = taps_.at(std::size_t(k));
    t.active = false;
    nn::ParameterList<T> ps;
    collect_tap_parameters(k, ps);
    for (auto* p : ps) p->freeze();
  }

  // Every tap's parameters, tap by tap (dropped taps included, frozen: the list is stable, so weight
  // files and optimiser bookkeeping do not depend on when taps were dropped).
  void collect_parameters(nn::ParameterList<T>& out) {
    for (int k = 0; k < kTaps; ++k) collect_tap_parameters(k, out);
  }

  nn::LayerNorm<T>& tap_norm(int k) { return taps_.at(std::size_t(k)).norm; }
  MaeDecoder<T>& decoder(int k) { return taps_.at(std::size_t(k)).decoder; }
  ScaleHead<T>& head(int k) { return taps_.at(std::size_t(k)).head; }
  const nn::LayerNorm<T>& tap_norm(int k) const { return taps_.at(std::size_t(k)).norm; }
  const MaeDecoder<T>& decoder(int k) const { return taps_.at(std::size_t(k)).decoder; }
  const ScaleHead<T>& head(int k) const { return taps_.at(std::size_t(k)).head; }

 private:
  struct Tap {
    nn::LayerNorm<T> norm;
    MaeDecoder<T> decoder;
    ScaleHead<T> head;
    bool active;
  };

  std::vector<Tap> taps_;
  // Per-step scratch, kept to avoid reallocating every step.
  std::vector<int> active_blocks_;
  std::vector<int> active_cells_;
  std::vector<Tensor<T>> targets_;
};

}  // namespace vitfreeze::mim
