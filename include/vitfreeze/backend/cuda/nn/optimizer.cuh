#pragma once
// AdamW over device parameters: one fused launch for every trained tensor (adamw.cuh), fp32
// master weights and moments, the bf16 working copies rewritten in the same pass. Frozen tensors
// (no gradient buffer) are skipped and keep their values bit for bit.
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

  void step(CudaContext& ctx, double lr) {
    tensors_.clear();
    for (auto* p : parameters_) {
      if (!p->trainable()) continue;
      ++p->step;
      bf16* working_copy = nullptr;  // fp32 GEMMs read the master directly
      if constexpr (std::is_same_v<T, bf16>) working_copy = p->working_copy();
      tensors_.push_back({p->master(), p->grad(), p->m(), p->v(), working_copy, p->numel(), lr, p->decay, p->step});
    }
    adamw_step(ctx, tensors_, options_);
  }

  const optim::AdamWOptions& options() const { return options_; }

 private:
  DeviceParameterList<T> parameters_;
  optim::AdamWOptions options_;
  std::vector<AdamWTensor> tensors_;
};

}  // namespace vitfreeze::cuda::nn
