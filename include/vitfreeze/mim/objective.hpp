#pragma once
// The Objective concept: what a host objective (MAE, LocalMIM, MiCL, or a user's own) gives a trainer.
//
// What an objective must provide, for the scalar T it trains in:
//   static constexpr const char* name;                 checkpoints and summaries say it
//   using Encoder = ...;                               the encoder it reads (nn::ViT<S, T>)
//   Output forward(Tape<T>&, Encoder&, const Tensor<T>& images, const MaskSet& masks);
//                                                      Output has a `loss` (Var<T>, a scalar on the tape)
//   void collect_parameters(nn::ParameterList<T>&);   its own parameters (none is fine)
// What it may provide, checked when present:
//   static constexpr ObjectiveFamily family;           which explicit model runs it (model/explicit_of.hpp);
//                                                      without one, only the tape trains it
//                                                      (train::TapeStepEngine): a new loss is prototyped so
//   using TargetType = ...;                            a ReconstructionTarget (mim/targets.hpp)
//   tap_count(), tap_block(k), ... (train::ObjectiveWithTaps): per-block taps dropped as blocks freeze
#include <concepts>

#include "vitfreeze/autograd/tape.hpp"
#include "vitfreeze/mim/masking.hpp"
#include "vitfreeze/mim/objective_family.hpp"
#include "vitfreeze/mim/targets.hpp"
#include "vitfreeze/nn/module.hpp"

namespace vitfreeze::mim {

template <class O, class T>
concept Objective =
    requires {
      { O::name } -> std::convertible_to<const char*>;
      typename O::Encoder;
    } &&
    requires(O& objective, Tape<T>& tape, typename O::Encoder& encoder, const Tensor<T>& images, const MaskSet& masks,
             nn::ParameterList<T>& parameters) {
      { objective.forward(tape, encoder, images, masks).loss } -> std::convertible_to<Var<T>>;
      objective.collect_parameters(parameters);
    } &&
    (!requires { O::family; } || requires { { O::family } -> std::convertible_to<ObjectiveFamily>; }) &&
    (!requires { typename O::TargetType; } || ReconstructionTarget<typename O::TargetType>);

}  // namespace vitfreeze::mim
