#pragma once
// A pretraining recipe as one type: the encoder, the objective (with its reconstruction target), the
// masking policy, the freeze schedule and the LR policy, each checked against its concept here,
// where a wrong part first shows, with a one-line message naming what it lacks:
//
//   constexpr vf::ViTSpec spec{.image = 28, .channels = 1, .patch = 2, .dim = 192, .depth = 12, .heads = 12};
//   using Recipe = vf::Pretraining<vf::nn::ViT<spec>, vf::mim::Mae<spec, {}, vf::mim::Hog<9>>,
//                                  vf::mim::Random<750>, vf::freeze::Cubic<800>, vf::freeze::ViTTailoredLr>;
//   static_assert(vf::predicted_saving<Recipe>({.epochs = 100, .warmup_epochs = 10}) >= 0.05);
//   Recipe::Encoder encoder(seed);  Recipe::Objective objective(seed);
//   auto controller = Recipe::controller({epochs, warmup, loader.batches_per_epoch()}, base_lr);
//   vf::train::Pretrainer trainer(encoder, objective, Recipe::Masking{}, controller, adamw, options);
//
// The LR policy defaults to the one the schedule names (freeze::DefaultLrPolicy). The recipe is a
// description: it holds no state, and this header does not pull in the trainer (train/pretrainer.hpp)
// or the models, so a planning tool can static_assert on a recipe cheaply. The backend and the
// precision are chosen where the explicit model is named (model::ExplicitOf, which checks them).
#include <concepts>
#include <type_traits>

#include "vitfreeze/freeze/controller.hpp"
#include "vitfreeze/freeze/lr_policy.hpp"
#include "vitfreeze/freeze/schedule.hpp"
#include "vitfreeze/mim/masking.hpp"
#include "vitfreeze/mim/objective.hpp"
#include "vitfreeze/nn/vit_spec.hpp"
#include "vitfreeze/train/cost_model.hpp"

namespace vitfreeze::train {

// The LR-policy argument that means "the one the schedule names".
struct ScheduleLrPolicy {};

namespace detail {
template <class E>
concept ViTEncoder = requires {
  { E::spec } -> std::convertible_to<ViTSpec>;
  typename E::Scalar;
} && CpuScalar<typename E::Scalar>;

template <class E>
struct ScalarOf {
  using type = float;  // only read once the encoder is known to be wrong: keeps the other checks quiet
};
template <ViTEncoder E>
struct ScalarOf<E> {
  using type = typename E::Scalar;
};

template <class Schedule, class Lr, bool ScheduleIsValid = freeze::FreezeSchedule<Schedule>>
struct ResolveLrPolicy {
  using type = Lr;
};
template <class Schedule>
struct ResolveLrPolicy<Schedule, ScheduleLrPolicy, true> {
  using type = freeze::DefaultLrPolicy<Schedule>;
};
template <class Schedule>
struct ResolveLrPolicy<Schedule, ScheduleLrPolicy, false> {
  using type = freeze::ScaledLayerwise;  // the schedule's own error is reported instead
};

template <class O, class E>
constexpr bool reads_encoder() {
  if constexpr (requires { typename O::Encoder; }) return std::is_same_v<typename O::Encoder, E>;
  else return true;  // the Objective check reports it
}
}  // namespace detail

template <class EncoderType, class ObjectiveType, class MaskingType, class ScheduleType,
          class LrPolicyType = ScheduleLrPolicy>
struct Pretraining {
  using Encoder = EncoderType;
  using Objective = ObjectiveType;
  using Masking = MaskingType;
  using Schedule = ScheduleType;
  using LrPolicy = typename detail::ResolveLrPolicy<ScheduleType, LrPolicyType>::type;
  using Scalar = typename detail::ScalarOf<EncoderType>::type;

  static_assert(detail::ViTEncoder<Encoder>, "Pretraining: Encoder must be an nn::ViT<spec, T> (a static ViTSpec `spec` and a Scalar)");
  static_assert(mim::MaskingPolicy<Masking>,
                "Pretraining: Masking is not a mim::MaskingPolicy (make(batch, grid_h, grid_w, seed, step, first_sample) "
                "-> MaskSet and kept(grid_h, grid_w) -> int; mim/masking.hpp)");
  static_assert(mim::Objective<Objective, Scalar>,
                "Pretraining: Objective is not a mim::Objective (name, Encoder, forward(tape, encoder, images, masks) "
                "with a .loss, collect_parameters(list); a TargetType must be a ReconstructionTarget; mim/objective.hpp)");
  static_assert(detail::reads_encoder<Objective, Encoder>(), "Pretraining: the Objective's Encoder is not the recipe's Encoder");
  static_assert(freeze::FreezeSchedule<Schedule>,
                "Pretraining: Schedule is not a freeze::FreezeSchedule (static constexpr double fraction(int unit, int units); "
                "freeze/schedule.hpp)");
  static_assert(freeze::LrPolicy<LrPolicy>,
                "Pretraining: LrPolicy is not a freeze::LrPolicy (name, static double unit_lr(settings, run, fraction, g); "
                "freeze/lr_policy.hpp)");

  static constexpr ViTSpec spec = Encoder::spec;

  // Units of the freeze schedule: patch embedding + blocks, or the blocks alone under dont_freeze_pe.
  static constexpr int units(bool dont_freeze_pe = false) { return unit_count(spec, dont_freeze_pe); }

  // The controller for a run: the schedule's fractions, its tail, and the recipe's LR policy.
  static freeze::FreezeController controller(freeze::RunLength run, double base_lr, double min_lr = 1e-6,
                                             bool dont_freeze_pe = false) {
    return freeze::make_controller<Schedule, LrPolicy>(units(dont_freeze_pe), run, base_lr, min_lr);
  }
};

}  // namespace vitfreeze::train

namespace vitfreeze {
using train::Pretraining;
using train::predicted_saving;
}  // namespace vitfreeze
