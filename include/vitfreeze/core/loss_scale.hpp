#pragma once
// Dynamic loss scaling for fp16 training. fp16 keeps 5 exponent bits, so the small activation
// gradients of a mean loss over millions of values (~1e-7 per element) would flush to zero; the loss
// gradient is multiplied by a scale S before the backward and the weight gradients are divided by S
// before the update. S adapts:
//   - any non-finite weight gradient: the step is skipped (no parameter or moment changes, the
//     optimiser's step count does not advance) and S <- S * backoff_factor;
//   - growth_interval finite steps in a row: S <- S * growth_factor, unless that overflows fp32;
// the schedule PyTorch's GradScaler follows (defaults 2^16, x2 every 2000 steps, x0.5 on overflow).
// More than max_consecutive_skips skipped steps in a row means the run diverged rather than
// overflowed once: the trainer stops with a NumericError.
//
// The state and its update are plain data and one function so that the GPU keeps the state in
// device memory and runs this very rule in a one-thread kernel (no host round trip per step), while
// the CPU tests check the rule itself. It lives in core/ because both sides include it: the
// optimiser (optim/loss_scaling.hpp) and the CUDA backend's kernels (backend/cuda/loss_scaling.cuh).
#include <cmath>
#include <cstdint>
#include <string>

#include "vitfreeze/core/error.hpp"
#include "vitfreeze/core/host_device.hpp"

namespace vitfreeze {

struct LossScaleOptions {
  float initial_scale = 65536.0f;
  float growth_factor = 2.0f;
  float backoff_factor = 0.5f;
  std::int32_t growth_interval = 2000;
  std::int32_t max_consecutive_skips = 32;
};

inline void validate(const LossScaleOptions& o) {
  const auto bad = [](const std::string& what) { throw ConfigError("loss scaling: " + what); };
  if (!(o.initial_scale > 0.0f) || !std::isfinite(o.initial_scale)) bad("initial_scale must be positive and finite");
  if (!(o.growth_factor > 1.0f) || !std::isfinite(o.growth_factor)) bad("growth_factor must be > 1");
  if (!(o.backoff_factor > 0.0f && o.backoff_factor < 1.0f)) bad("backoff_factor must be in (0, 1)");
  if (o.growth_interval < 1) bad("growth_interval must be >= 1");
  if (o.max_consecutive_skips < 1) bad("max_consecutive_skips must be >= 1");
}

struct LossScaleState {
  float scale = 65536.0f;
  std::int32_t found_non_finite = 0;   // this step's gradients held a NaN or Inf (set by the check)
  std::int32_t good_steps = 0;         // finite steps since the scale last changed
  std::int32_t consecutive_skips = 0;  // skipped steps in a row, up to and including this one
  std::int64_t skipped_steps = 0;      // skipped steps in the whole run
};

inline LossScaleState initial_loss_scale_state(const LossScaleOptions& o) {
  LossScaleState s;
  s.scale = o.initial_scale;
  return s;
}

// After a step's gradients were checked (s.found_non_finite set): moves the schedule on by one step.
VITFREEZE_HOST_DEVICE inline void advance_loss_scale(LossScaleState& s, const LossScaleOptions& o) {
  if (s.found_non_finite) {
    s.scale *= o.backoff_factor;
    s.good_steps = 0;
    s.consecutive_skips += 1;
    s.skipped_steps += 1;
    return;
  }
  s.consecutive_skips = 0;
  if (++s.good_steps < o.growth_interval) return;
  const float grown = s.scale * o.growth_factor;
  if (grown - grown == 0.0f) s.scale = grown;  // finite (inf - inf is NaN): keep S below fp32's range
  s.good_steps = 0;
}

}  // namespace vitfreeze
