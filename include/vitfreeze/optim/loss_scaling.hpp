#pragma once
// Dynamic loss scaling for fp16 training, as the optimiser's API: the rule itself is in
// core/loss_scale.hpp, where the CUDA backend's kernels read it too.
#include "vitfreeze/core/loss_scale.hpp"

namespace vitfreeze::optim {

using vitfreeze::advance_loss_scale;
using vitfreeze::initial_loss_scale_state;
using vitfreeze::LossScaleOptions;
using vitfreeze::LossScaleState;
using vitfreeze::validate;

}  // namespace vitfreeze::optim
