#pragma once
// The explicit model of a host objective (its family, mim/objective_family.hpp) on backend B with
// precision P: what a trainer runs each step.
#include "vitfreeze/model/localmim.hpp"
#include "vitfreeze/model/mae.hpp"
#include "vitfreeze/model/micl.hpp"

namespace vitfreeze::model {

namespace detail {
template <class Host, mim::ObjectiveFamily F, class B, class P>
struct ExplicitOf;
template <class Host, class B, class P>
struct ExplicitOf<Host, mim::ObjectiveFamily::mae, B, P> {
  using type = Mae<B, P, typename Host::TargetType>;
};
template <class Host, class B, class P>
struct ExplicitOf<Host, mim::ObjectiveFamily::localmim, B, P> {
  using type = LocalMim<B, P, typename Host::TargetType>;
};
template <class Host, class B, class P>
struct ExplicitOf<Host, mim::ObjectiveFamily::micl, B, P> {
  using type = Micl<B, P>;
};
}  // namespace detail

template <class HostObjective, class B, class P>
using ExplicitOf = typename detail::ExplicitOf<HostObjective, HostObjective::family, B, P>::type;

}  // namespace vitfreeze::model
