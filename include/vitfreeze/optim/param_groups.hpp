#pragma once
// Parameter groups: each parameter gets an LR multiplier (layer-wise decay for fine-tuning, unit
// scaling for freezing schedules); weight decay follows Parameter::decay (timm's rule).
#include <cmath>
#include <vector>

#include "vitfreeze/nn/module.hpp"

namespace vitfreeze::optim {

template <CpuScalar T>
struct ParamGroup {
  nn::ParameterList<T> params;
  double lr_scale = 1.0;
};

// Layer-wise LR decay (MAE util/lr_decay.py): with n = depth + 1, layer id 0 = patch embedding,
// cls and positions; id b+1 = block b; id n = everything after the blocks (fc_norm, head). Group
// scale = decay^(n - id). `layers[id]` lists the parameters of layer id (size depth + 2).
template <CpuScalar T>
std::vector<ParamGroup<T>> layer_decay_groups(const std::vector<nn::ParameterList<T>>& layers, double decay) {
  const int n = int(layers.size()) - 1;
  std::vector<ParamGroup<T>> groups;
  for (int id = 0; id <= n; ++id) groups.push_back({layers[std::size_t(id)], std::pow(decay, double(n - id))});
  return groups;
}

}  // namespace vitfreeze::optim
