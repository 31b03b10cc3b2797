#pragma once
// AdamW over device parameters: one fused launch for every trained tensor (adamw.cuh), fp32
// master weights and moments, the bf16 working copies rewritten in the same pass. Frozen tensors
// (no gradient buffer) are skipped and keep their values bit for bit.
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "vitfreeze/backend/cuda/adamw.cuh"
#include "vitfreeze/backend/cuda/nn/parameter.cuh"
#include "vitfreeze/optim/adamw.hpp"

namespace vitfreeze::cuda::nn {

template <DeviceScalar T>
class DeviceAdamW {
 public:
  DeviceAdamW(DeviceParameterList<T> parameters, optim::AdamWOptions options)
      : parameters_(std::move(parameters)), options_(options) {}

  void zero_grad(CudaContext& ctx) const {
    for (const auto* p : parameters_) p->zero_grad(ctx);
  }

  void step(CudaContext& ctx, double lr) { update(ctx, [lr](std::size_t) { return lr; }); }

  // Per-parameter learning rates (progressive freezing gives every unit its own): lrs[i] for the
  // i-th tensor of the list, still one fused launch. grad_scale multiplies every gradient (1/A
  // after A accumulated micro-batches, the mean the CPU trainer forms by weighting each loss).
  void step(CudaContext& ctx, std::span<const double> lrs, double grad_scale = 1.0) {
    if (lrs.size() != parameters_.size())
      throw ConfigError("DeviceAdamW::step: " + std::to_string(lrs.size()) + " learning rates for " +
                        std::to_string(parameters_.size()) + " parameters");
    update(ctx, [lrs](std::size_t i) { return lrs[i]; }, grad_scale);
  }

  const DeviceParameterList<T>& parameters() const { return parameters_; }
  const optim::AdamWOptions& options() const { return options_; }

 private:
  template <class LrOf>
  void update(CudaContext& ctx, LrOf lr_of, double grad_scale = 1.0) {
    tensors_.clear();
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
      auto* p = parameters_[i];
      if (!p->trainable()) continue;
      ++p->step;
      bf16* working_copy = nullptr;  // fp32 GEMMs read the master directly
      if constexpr (std::is_same_v<T, bf16>) working_copy = p->working_copy();
      tensors_.push_back({p->master(), p->grad(), p->m(), p->v(), working_copy, p->numel(), lr_of(i), p->decay, p->step,
                          static_cast<float>(grad_scale)});
    }
    adamw_step(ctx, tensors_, options_);
  }

  DeviceParameterList<T> parameters_;
  optim::AdamWOptions options_;
  std::vector<AdamWTensor> tensors_;
};

}  // namespace vitfreeze::cuda::nn
