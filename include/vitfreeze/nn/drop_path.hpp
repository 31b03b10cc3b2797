#pragma once
// Stochastic depth (timm's DropPath, used by every fine-tuning recipe of the peers spec §0.7): in
// block i of `depth`, each sample's residual branch (the attention's and the MLP's, drawn apart) is
// dropped with probability p_i = rate * i / (depth - 1) (timm's linspace(0, rate, depth)), and a
// kept branch is scaled by 1 / (1 - p_i), so its expectation is the branch itself. Evaluation passes
// no StochasticDepth and nothing is dropped.
//
// Determinism: the draw of (block, branch, sample) is uniform number `sample` of
// RandomStream(seed, drop_path, step, 2 * block + branch), a pure function of the step.
#include <cstdint>
#include <string>

#include "vitfreeze/core/error.hpp"
#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/core/tensor.hpp"

namespace vitfreeze::nn {

// The per-sample factors of one block's two residual branches, [B] each (0 or 1 / (1 - p)).
template <CpuScalar T>
struct BranchScales {
  Tensor<T> attention, mlp;
};

struct StochasticDepth {
  double rate = 0.0;  // the last block's drop probability, in [0, 1)
  std::uint64_t seed = 0;
  std::uint64_t step = 0;  // which training step: a new draw each step

  void validate() const {
    if (!(rate >= 0.0 && rate < 1.0)) throw ConfigError("drop path rate must lie in [0, 1), got " + std::to_string(rate));
  }

  double drop_probability(int block, int depth) const {
    return depth > 1 ? rate * double(block) / double(depth - 1) : 0.0;
  }

  template <CpuScalar T>
  BranchScales<T> scales(int block, int depth, std::int64_t batch) const {
    validate();
    const double p = drop_probability(block, depth);
    BranchScales<T> s{Tensor<T>(Shape{batch}), Tensor<T>(Shape{batch})};
    for (int branch = 0; branch < 2; ++branch) {
      Tensor<T>& f = branch == 0 ? s.attention : s.mlp;
      RandomStream rng(seed, RngPurpose::drop_path, step, std::uint32_t(2 * block + branch));
      for (std::int64_t b = 0; b < batch; ++b) f[b] = rng.uniform() < p ? T(0) : T(1.0 / (1.0 - p));
    }
    return s;
  }
};

}  // namespace vitfreeze::nn
