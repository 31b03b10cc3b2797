#pragma once
// Per-unit training costs of a pretraining recipe, for the cost model of freeze/cost_model.hpp: the
// encoder's units (unit 0 = patch embedding, unit b + 1 = block b, as train::Pretrainer maps them;
// with dont_freeze_pe the blocks are units 0..depth-1 and the patch embedding is untracked), plus
// what the objective adds, read from its static cost hooks (each optional):
//   static constexpr double never_frozen_forward_flops(int visible)  work that trains to the end
//                                                                    (MAE's decoder): untracked
//   static constexpr int tap_count(); static constexpr int tap_block(int k);
//   static constexpr double tap_forward_flops(int k, int visible)     work dropped with block
//                                                                    tap_block(k)'s unit (LocalMIM)
//   static constexpr int views                                        the encoder splits each image's
//                                                                    visible patches into this many
//                                                                    sequences (MiCL: 2)
//   static constexpr bool encodes_mask_tokens                         the encoder sees every cell of a
//                                                                    window, mask tokens in place
//                                                                    (LoMaR), not the visible ones
// `visible` is the masking policy's kept patches per image; a windowed policy (static `windows`,
// `cells`) runs that many sequences per image. An objective without hooks costs only its encoder (MiCL: its
// loss has no GEMM worth counting).
//
// Everything is constexpr, so user code can write
//   static_assert(vitfreeze::predicted_saving<Recipe>({.epochs = 100, .warmup_epochs = 10}) >= 0.2);
// It counts GEMM FLOPs (nn/flops.hpp); for ViT-B LocalMIM cubic 0.8 it predicts 9.6 % where the
// logged wall-clock saving is 12.6 %: treat it as a lower bound (docs/design.md, "Freeze module").
#include <array>
#include <cstddef>
#include <span>

#include "vitfreeze/freeze/cost_model.hpp"
#include "vitfreeze/freeze/schedule.hpp"
#include "vitfreeze/freeze/semantics.hpp"
#include "vitfreeze/mim/flops.hpp"
#include "vitfreeze/mim/masking.hpp"
#include "vitfreeze/nn/flops.hpp"

namespace vitfreeze::train {

// The freeze schedule's units of an encoder: depth + 1, or depth when the patch embedding keeps
// training (dont_freeze_pe).
constexpr int unit_count(const ViTSpec& spec, bool dont_freeze_pe) { return spec.depth + (dont_freeze_pe ? 0 : 1); }
constexpr int unit_of_block(int block, bool dont_freeze_pe) { return block + (dont_freeze_pe ? 0 : 1); }

// The encoder's share: forward FLOPs per image of each unit into `forward` (unit_count entries), for
// `sequences` sequences of `tokens` tokens (cls included) per image. Returns the training FLOPs
// outside every unit: the patch embedding's under dont_freeze_pe, else 0.
constexpr double encoder_unit_costs(const ViTSpec& spec, int sequences, int tokens, bool dont_freeze_pe,
                                    std::span<double> forward) {
  if (forward.size() != std::size_t(unit_count(spec, dont_freeze_pe)))
    throw ConfigError("encoder_unit_costs: one entry per unit needed");
  const double patch_embed = static_cast<double>(nn::patch_embed_forward_flops(spec));
  if (!dont_freeze_pe) forward[0] = patch_embed;
  for (int b = 0; b < spec.depth; ++b)
    forward[std::size_t(unit_of_block(b, dont_freeze_pe))] =
        double(sequences) * static_cast<double>(nn::encoder_block_forward_flops(spec, tokens));
  return dont_freeze_pe ? 3.0 * patch_embed : 0.0;
}

// LocalMIM as published (its four taps, 256-wide one-block decoders, HOG with 9 bins per channel,
// mask ratio 0.75) on an encoder known only at run time (a command line's --model/--image flags).
// Fills forward and dropped (unit_count entries each); returns the untracked training FLOPs.
// Needs depth >= 4 (the taps read blocks 1, 3, depth-3, depth-1).
constexpr double localmim_unit_costs(const ViTSpec& spec, bool patch_embed_is_unit, std::span<double> forward,
                                     std::span<double> dropped) {
  if (spec.depth < 4) throw ConfigError("localmim_unit_costs: LocalMIM's taps need at least 4 blocks");
  const bool dont_freeze_pe = !patch_embed_is_unit;
  const int visible = mim::kept_count(spec.tokens(), 750);
  const double untracked = encoder_unit_costs(spec, 1, visible + 1, dont_freeze_pe, forward);
  for (auto& x : dropped) x = 0.0;
  for (const mim::TapSpec& tap : mim::localmim_tap_list(spec.depth))
    dropped[std::size_t(unit_of_block(tap.block, dont_freeze_pe))] +=
        3.0 * mim::localmim_tap_forward_flops(spec, mim::kLocalMimDecoder, tap, visible, spec.channels * 9);
  return untracked;
}

// Per-unit costs with room for Capacity units (the first `units` are used).
template <std::size_t Capacity>
struct UnitCostTable {
  int units = 0;
  std::array<double, Capacity> forward{};
  std::array<double, Capacity> dropped{};
  double untracked_training = 0.0;

  constexpr freeze::UnitCosts costs() const {
    return {std::span<const double>(forward).first(std::size_t(units)),
            std::span<const double>(dropped).first(std::size_t(units)), untracked_training};
  }
};

// The costs of a recipe: any type naming Encoder (with a static ViTSpec `spec`), Objective and
// Masking (train::Pretraining does).
template <class Recipe>
constexpr auto unit_costs(bool dont_freeze_pe = false) {
  using Objective = typename Recipe::Objective;
  using Masking = typename Recipe::Masking;
  constexpr ViTSpec spec = Recipe::Encoder::spec;
  static_assert(requires { std::bool_constant<(Masking::kept(spec.grid(), spec.grid()), true)>::value; },
                "unit_costs: the compile-time cost model needs a masking policy with a static constexpr kept()");
  constexpr int visible = Masking::kept(spec.grid(), spec.grid());
  constexpr int windows = [] {
    if constexpr (requires { { Masking::windows } -> std::convertible_to<int>; }) return int(Masking::windows);
    else return 1;
  }();
  constexpr int views = [] {
    if constexpr (requires { { Objective::views } -> std::convertible_to<int>; }) return int(Objective::views);
    else return 1;
  }();
  static_assert(visible % views == 0, "unit_costs: the visible patches do not split into the objective's views");
  constexpr int tokens = [] {  // per sequence, cls included
    if constexpr (requires {
                    requires Objective::encodes_mask_tokens;
                    { Masking::cells } -> std::convertible_to<int>;
                  })
      return int(Masking::cells) + 1;
    else
      return visible / views + 1;
  }();

  UnitCostTable<std::size_t(spec.depth) + 1> table;
  table.units = unit_count(spec, dont_freeze_pe);
  table.untracked_training = encoder_unit_costs(spec, windows * views, tokens, dont_freeze_pe,
                                                std::span<double>(table.forward).first(std::size_t(table.units)));
  if constexpr (requires { { Objective::never_frozen_forward_flops(visible) } -> std::convertible_to<double>; })
    table.untracked_training += 3.0 * windows * Objective::never_frozen_forward_flops(visible);
  if constexpr (requires(int k) {
                  { Objective::tap_count() } -> std::convertible_to<int>;
                  { Objective::tap_block(k) } -> std::convertible_to<int>;
                  { Objective::tap_forward_flops(k, visible) } -> std::convertible_to<double>;
                })
    for (int k = 0; k < Objective::tap_count(); ++k)
      table.dropped[std::size_t(unit_of_block(Objective::tap_block(k), dont_freeze_pe))] +=
          3.0 * windows * Objective::tap_forward_flops(k, visible);
  return table;
}

// What the saving depends on besides the recipe.
struct CostSetting {
  int epochs = 100;
  int warmup_epochs = 10;
  freeze::FreezeSemantics semantics = freeze::FreezeSemantics::truncate;
  // The patch embedding keeps training: activation gradients must cross the frozen blocks, so only
  // their weight gradients are saved (vitfreeze semantics, whatever `semantics` says).
  bool dont_freeze_pe = false;
};

// Predicted share of the run's training FLOPs that the recipe's schedule saves.
template <class Recipe>
constexpr double predicted_saving(const CostSetting& setting = {}) {
  using Schedule = typename Recipe::Schedule;
  static_assert(freeze::FreezeSchedule<Schedule>, "predicted_saving: the recipe's Schedule is not a FreezeSchedule");
  const auto table = unit_costs<Recipe>(setting.dont_freeze_pe);
  decltype(table.forward) fractions{};
  for (int i = 0; i < table.units; ++i) fractions[std::size_t(i)] = Schedule::fraction(i, table.units);
  const auto semantics = setting.dont_freeze_pe ? freeze::FreezeSemantics::vitfreeze : setting.semantics;
  return freeze::predicted_saving(table.costs(), std::span<const double>(fractions).first(std::size_t(table.units)),
                                  semantics, setting.epochs, setting.warmup_epochs);
}

}  // namespace vitfreeze::train
