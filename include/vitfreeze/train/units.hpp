#pragma once
// Which parameters freeze together (the schedule's units), computed once from the model's own
// structure and the freeze semantics:
//   unit 0 = patch embedding (+ cls token under truncate semantics), unit i = block i-1; the last
//   unit also owns the final norm and the objective's own parameters (MAE's decoder) and never
//   freezes. With dont_freeze_pe the patch embedding and cls token train to the end at the global
//   LR and blocks are units 0..depth-1; under vitfreeze semantics the cls token does.
//   An objective with per-block taps (LocalMIM) puts each tap's norm, decoder and head in its
//   block's unit: the tap is dropped when that unit freezes. An objective's input embeddings
//   (LoMaR's mask token: collect_embedding_parameters) go with the patch embedding.
// freeze/ knows units only by index; this is where indices meet modules.
#include <algorithm>
#include <vector>

#include "vitfreeze/nn/module.hpp"
#include "vitfreeze/train/options.hpp"

namespace vitfreeze::train {

// An objective with per-block taps (LocalMIM): each tap's parameters belong to its block's unit,
// and the tap is dropped (no norm, decoder, head, target or loss term) when that unit freezes.
template <class O, class T>
concept ObjectiveWithTaps = requires(O& o, int k, nn::ParameterList<T>& list) {
  { o.tap_count() } -> std::convertible_to<int>;
  { o.tap_block(k) } -> std::convertible_to<int>;
  { o.tap_active(k) } -> std::convertible_to<bool>;
  o.collect_tap_parameters(k, list);
  o.drop_tap(k);
};

// An objective with parameters that enter the encoder's input (LoMaR's mask token): they freeze with
// the patch embedding, and the rest of its parameters (the head) trains to the end.
template <class O, class T>
concept ObjectiveWithEmbedding = requires(O& o, nn::ParameterList<T>& list) { o.collect_embedding_parameters(list); };

template <class Encoder, class Objective, CpuScalar T>
class UnitMap {
 public:
  UnitMap(Encoder& encoder, Objective& objective, const PretrainOptions& options)
      : objective_(objective), dont_freeze_pe_(options.dont_freeze_pe) {
    const int depth = Encoder::spec.depth;
    units_.assign(std::size_t(unit_of_block(depth - 1)) + 1, {});
    nn::ParameterList<T> embedding;  // the objective's input embeddings
    if constexpr (ObjectiveWithEmbedding<Objective, T>) objective.collect_embedding_parameters(embedding);
    if (dont_freeze_pe_) {
      encoder.patch_embed.collect_parameters(always_trained_);
      always_trained_.push_back(&encoder.cls_token);
      always_trained_.insert(always_trained_.end(), embedding.begin(), embedding.end());
    } else {
      encoder.patch_embed.collect_parameters(units_[0]);
      units_[0].insert(units_[0].end(), embedding.begin(), embedding.end());
      if (options.semantics == freeze::FreezeSemantics::truncate)
        units_[0].push_back(&encoder.cls_token);
      else
        always_trained_.push_back(&encoder.cls_token);
    }
    for (int b = 0; b < depth; ++b) encoder.blocks[std::size_t(b)].collect_parameters(units_[std::size_t(unit_of_block(b))]);
    encoder.norm.collect_parameters(units_.back());
    if constexpr (ObjectiveWithTaps<Objective, T>) {
      // A tap's norm, decoder and head share its block's unit and freeze (are dropped) with it.
      for (int k = 0; k < objective.tap_count(); ++k)
        objective.collect_tap_parameters(k, units_[std::size_t(unit_of_block(objective.tap_block(k)))]);
    } else {
      nn::ParameterList<T> own;
      objective.collect_parameters(own);
      for (auto* p : own)
        if (std::find(embedding.begin(), embedding.end(), p) == embedding.end()) units_.back().push_back(p);
    }
  }

  int count() const { return int(units_.size()); }
  const std::vector<nn::ParameterList<T>>& units() const { return units_; }
  const nn::ParameterList<T>& unit(int u) const { return units_.at(std::size_t(u)); }
  // Parameters that never freeze (trained at the global LR).
  const nn::ParameterList<T>& always_trained() const { return always_trained_; }

  // Every parameter the trainer updates: the units' in order, then the never-frozen ones.
  nn::ParameterList<T> all_parameters() const {
    nn::ParameterList<T> out;
    for (const auto& u : units_) out.insert(out.end(), u.begin(), u.end());
    out.insert(out.end(), always_trained_.begin(), always_trained_.end());
    return out;
  }
  // The unit of each entry of all_parameters(); -1 for the never-frozen ones.
  std::vector<int> unit_of_parameters() const {
    std::vector<int> out;
    for (std::size_t u = 0; u < units_.size(); ++u) out.insert(out.end(), units_[u].size(), int(u));
    out.insert(out.end(), always_trained_.size(), -1);
    return out;
  }

  // Unit of block b: b + 1, or b when the patch embedding is not a unit (dont_freeze_pe).
  int unit_of_block(int b) const { return b + (dont_freeze_pe_ ? 0 : 1); }

  // f(k) for every tap k of the objective that reads a block of unit u.
  template <class F>
  void for_each_tap_of_unit(int u, F&& f) const {
    if constexpr (ObjectiveWithTaps<Objective, T>)
      for (int k = 0; k < objective_.tap_count(); ++k)
        if (unit_of_block(objective_.tap_block(k)) == u) f(k);
  }

 private:
  Objective& objective_;
  bool dont_freeze_pe_;
  std::vector<nn::ParameterList<T>> units_;
  nn::ParameterList<T> always_trained_;
};

}  // namespace vitfreeze::train
