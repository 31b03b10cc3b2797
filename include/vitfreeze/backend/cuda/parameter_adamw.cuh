#pragma once
// AdamW over the CUDA backend's parameters (CudaParameter): one fused launch for every trained
// tensor (adamw.cuh), fp32 master weights and moments, the bf16/fp16 working copies rewritten in the
// same pass. Frozen tensors (no gradient buffer) are skipped and keep their values bit for bit.
// The hyper-parameters come as any struct with beta1, beta2, eps and weight_decay (optim::AdamWOptions
// is one): this backend does not include optim/.
//
// With enable_loss_scaling() (fp16), launch() also checks the gradients for NaN/Inf first, the
// update obeys the device scaler (skip, or divide by the scale) and the scale schedule advances;
// the next stage() learns from the scaler whether the previous update was skipped and then takes
// back the step counts it had given (AdamW's bias correction counts applied updates only).
#include <algorithm>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "vitfreeze/backend/cuda/adamw.cuh"
#include "vitfreeze/backend/cuda/parameter.cuh"

namespace vitfreeze::cuda {

// The hyper-parameters of one optimiser, copied from the caller's options.
struct AdamWConstants {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  template <AdamWHyperParameters O>
  static AdamWConstants of(const O& o) {
    return {double(o.beta1), double(o.beta2), double(o.eps), double(o.weight_decay)};
  }
};

template <PrecisionPolicy P>
class ParameterAdamW {
 public:
  using Parameters = std::vector<CudaParameter<P>*>;

  template <AdamWHyperParameters Options>
  ParameterAdamW(Parameters parameters, const Options& options)
      : parameters_(std::move(parameters)), options_(AdamWConstants::of(options)) {}

  void zero_grad(CudaContext& ctx) const {
    for (const auto* p : parameters_) p->zero_grad(ctx);
  }

  void step(CudaContext& ctx, double lr) {
    stage(ctx, lr);
    launch(ctx);
  }
  // Per-parameter learning rates (progressive freezing gives every unit its own): lrs[i] for the
  // i-th tensor of the list, still one fused launch. grad_scale multiplies every gradient.
  void step(CudaContext& ctx, std::span<const double> lrs, double grad_scale = 1.0) {
    stage(ctx, lrs, grad_scale);
    launch(ctx);
  }

  // The two halves of step(), for CUDA-graph replay: stage() counts the step and uploads this step's
  // table (learning rates, bias corrections) to a buffer whose address stays fixed while the set of
  // trained tensors does; launch() enqueues the update reading it, and is what a graph captures.
  void stage(CudaContext& ctx, double lr) { stage_with(ctx, [lr](std::size_t) { return lr; }, 1.0); }
  void stage(CudaContext& ctx, std::span<const double> lrs, double grad_scale = 1.0) {
    if (lrs.size() != parameters_.size())
      throw ConfigError("cuda::ParameterAdamW: " + std::to_string(lrs.size()) + " learning rates for " +
                        std::to_string(parameters_.size()) + " parameters");
    stage_with(ctx, [lrs](std::size_t i) { return lrs[i]; }, grad_scale);
  }
  void launch(CudaContext& ctx) {
    const auto* table = static_cast<const kernels::AdamWSlice*>(table_.data());
    if (!scaler_) {
      adamw_launch(ctx, table, count_, largest_, options_);
      return;
    }
    scaler_->check_gradients(ctx, table, count_, largest_);
    adamw_launch(ctx, table, count_, largest_, options_, scaler_->device_state());
    scaler_->advance(ctx);
  }
  // A graph that captured launch() was replayed instead: the scaler's verdict is on its way.
  void launched_by_replay() {
    if (scaler_) scaler_->replayed();
  }
  std::size_t trained_tensors() const { return count_; }

  // fp16: gradients arrive multiplied by the scaler's scale (the loss backward's seed is
  // loss_scale_device()); from now on every launch() follows the dynamic loss-scaling rule.
  void enable_loss_scaling(CudaContext& ctx, LossScaleOptions options) { scaler_.emplace(ctx, options); }
  bool loss_scaling() const { return scaler_.has_value(); }
  const float* loss_scale_device() const { return scaler_ ? scaler_->device_scale() : nullptr; }
  // Waits for the last launched update's verdict and settles the step counts (also done by stage());
  // the scaler's state as the host last learnt it (initial state before any step).
  LossScaleState settle_loss_scale() {
    if (!scaler_) throw ConfigError("cuda::ParameterAdamW: loss scaling is not enabled");
    if (const auto state = scaler_->settle(); state && state->found_non_finite)
      for (CudaParameter<P>* p : last_staged_) --p->step;
    return scaler_->last_settled();
  }

  const Parameters& parameters() const { return parameters_; }
  const AdamWConstants& options() const { return options_; }

 private:
  template <class LrOf>
  void stage_with(CudaContext& ctx, LrOf lr_of, double grad_scale) {
    if (scaler_) settle_loss_scale();
    tensors_.clear();
    last_staged_.clear();
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
      auto* p = parameters_[i];
      if (!p->trainable()) continue;
      ++p->step;
      last_staged_.push_back(p);
      // fp32 GEMMs read the master directly: no working copy.
      tensors_.push_back({p->master(), p->grad(), p->m(), p->v(), p->working_copy(), p->numel(), lr_of(i), p->decay,
                          p->step, static_cast<float>(grad_scale), std::is_same_v<typename P::Activation, f16>});
    }
    const std::vector<kernels::AdamWSlice> table = adamw_table(std::span<const AdamWTensor>(tensors_), options_, &largest_);
    count_ = table.size();
    const std::size_t bytes = sizeof(kernels::AdamWSlice) * std::max<std::size_t>(count_, 1);
    if (table_.empty() || table_.bytes() != bytes) table_ = ctx.allocator().allocate(bytes);
    if (count_)
      check(cudaMemcpyAsync(table_.data(), table.data(), sizeof(kernels::AdamWSlice) * count_, cudaMemcpyHostToDevice,
                            ctx.stream()),
            "cudaMemcpyAsync(AdamW table)");  // pageable source: staged before the call returns
  }

  Parameters parameters_;
  AdamWConstants options_;
  std::vector<AdamWTensor> tensors_;
  std::vector<CudaParameter<P>*> last_staged_;  // the tensors the last staged update counted
  std::optional<DeviceLossScaler> scaler_;
  DeviceBuffer table_;
  std::size_t count_ = 0;
  std::int64_t largest_ = 0;
};

}  // namespace vitfreeze::cuda
