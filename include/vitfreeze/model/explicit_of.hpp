#pragma once
// The explicit model of a host objective (its family, mim/objective_family.hpp) on backend B with
// precision P: what a trainer runs each step. This is where a user first pairs an objective with a
// backend and a precision policy, so the checks that name what is wrong with either live here.
#include "vitfreeze/model/localmim.hpp"
#include "vitfreeze/model/lomar.hpp"
#include "vitfreeze/model/mae.hpp"
#include "vitfreeze/model/mae_distill.hpp"
#include "vitfreeze/model/micl.hpp"

namespace vitfreeze::model {

namespace detail {
template <class Host, mim::ObjectiveFamily F, class B, class P>
struct ExplicitOfFamily;
template <class Host, class B, class P>
struct ExplicitOfFamily<Host, mim::ObjectiveFamily::mae, B, P> {
  using type = Mae<B, P, typename Host::TargetType>;
};
template <class Host, class B, class P>
struct ExplicitOfFamily<Host, mim::ObjectiveFamily::localmim, B, P> {
  using type = LocalMim<B, P, typename Host::TargetType>;
};
template <class Host, class B, class P>
struct ExplicitOfFamily<Host, mim::ObjectiveFamily::micl, B, P> {
  using type = Micl<B, P>;
};
template <class Host, class B, class P>
struct ExplicitOfFamily<Host, mim::ObjectiveFamily::lomar, B, P> {
  using type = Lomar<B, P, typename Host::TargetType>;
};
template <class Host, class B, class P>
struct ExplicitOfFamily<Host, mim::ObjectiveFamily::mae_distill, B, P> {
  using type = MaeDistill<B, P>;
};

template <bool Runs, class Host, class B, class P>
struct ExplicitModelIf {
  using type = void;
};
template <class Host, class B, class P>
struct ExplicitModelIf<true, Host, B, P> : ExplicitOfFamily<Host, Host::family, B, P> {};

template <class Host, class B, class P>
struct ExplicitOf {
  static constexpr bool has_family = requires { { Host::family } -> std::convertible_to<mim::ObjectiveFamily>; };
  static_assert(has_family,
                "model::ExplicitOf: the objective has no `family` (mim/objective_family.hpp), so no explicit model "
                "runs it; train it on the tape (train::TapeStepEngine)");
  static_assert(Backend<B>, "model::ExplicitOf: B is not a vitfreeze::Backend (backend/backend.hpp lists what it must provide)");
  static_assert(PrecisionPolicy<P>,
                "model::ExplicitOf: P is not a vitfreeze::PrecisionPolicy (Activation, Master, fused_tanh_gelu, "
                "loss_scaling, name; core/precision.hpp)");
  static_assert(!(Backend<B> && PrecisionPolicy<P>) || BackendFor<B, P>,
                "model::ExplicitOf: backend B does not run precision policy P (B::supports<P> is false)");
  // Named only when every check above holds, so a violation reports nothing but its message.
  using type = typename ExplicitModelIf<has_family && BackendFor<B, P>, Host, B, P>::type;
};
}  // namespace detail

template <class HostObjective, class B, class P>
using ExplicitOf = typename detail::ExplicitOf<HostObjective, B, P>::type;

}  // namespace vitfreeze::model
