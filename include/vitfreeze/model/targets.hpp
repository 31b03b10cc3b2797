#pragma once
// A reconstruction target (mim/targets.hpp) computed where backend B keeps the images: host
// backends run the target's host code; other backends must know the target (the CUDA backend has
// kernels for pixels and HOG), or the objective does not compile for them.
#include <span>
#include <vector>

#include "vitfreeze/mim/targets.hpp"
#include "vitfreeze/model/module.hpp"

namespace vitfreeze::model {

// images [B, C, H, W] in the master type; out[s]: [B, g[s].lead + cells, Target::values] in T.
template <Backend B, mim::ReconstructionTarget Target, class T, class M>
void compute_targets(typename B::Context& ctx, const ArrayOf<B, M>& images, std::span<const mim::TargetGeometry> g,
                     std::span<T* const> out) {
  if constexpr (std::is_same_v<typename B::Space, HostMemory> && std::is_same_v<T, M>) {
    Target::compute(images.data(), g, out);
  } else if constexpr (std::is_same_v<typename B::Space, HostMemory>) {
    std::vector<Tensor<M>> exact;
    std::vector<M*> exact_out;
    for (const auto& x : g) {
      exact.emplace_back(Shape{x.batch * x.rows_per_sample(), Target::values(int(x.channels), x.cell)});
      exact_out.push_back(exact.back().data());
    }
    Target::compute(images.data(), g, std::span<M* const>(exact_out));
    for (std::size_t s = 0; s < g.size(); ++s) B::convert(ctx, exact[s].data(), out[s], exact[s].numel());
  } else {
    static_assert(requires { B::template compute_target<Target>(ctx, images.data(), g, out); },
                  "this reconstruction target has no kernel on this backend");
    B::template compute_target<Target>(ctx, images.data(), g, out);
  }
}

}  // namespace vitfreeze::model
