#pragma once
// Fused multi-tensor AdamW: one launch updates every parameter tensor, in fp32, with the formula of
// optim::AdamW (PyTorch's decoupled weight decay):
//   p <- p * (1 - lr * wd);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
//   p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// The fp32 values are the master weights; when a tensor has a bf16 or fp16 working copy (what 16-bit
// GEMMs read), it is rewritten from the updated master in the same pass (round to nearest even).
// Under fp16 loss scaling (loss_scaling.cuh) the launch reads the device scaler state: a step whose
// gradients were flagged non-finite changes nothing, and gradients are divided by the loss scale.
// Grid: blockIdx.y picks the tensor, blockIdx.x strides over its elements.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/device_math.cuh"
#include "vitfreeze/backend/cuda/loss_scaling.cuh"

namespace vitfreeze::cuda {

// One parameter tensor's update. step is the tensor's own step count including this update (1 on its
// first update), as optim::AdamW counts per parameter.
struct AdamWTensor {
  float* param = nullptr;
  const float* grad = nullptr;
  float* m = nullptr;
  float* v = nullptr;
  void* working_copy = nullptr;  // optional: bf16, or fp16 when working_is_f16
  std::int64_t numel = 0;
  double lr = 0;
  bool decay = true;             // weight decay applies (false for biases and norms)
  std::int64_t step = 1;
  float grad_scale = 1;          // the gradient is read as grad * grad_scale (1/A after A accumulated micro-batches)
  bool working_is_f16 = false;
};

// The hyper-parameters every tensor shares: optim::AdamWOptions or anything with the same fields.
template <class O>
concept AdamWHyperParameters = requires(const O& o) {
  double(o.beta1);
  double(o.beta2);
  double(o.eps);
  double(o.weight_decay);
};

namespace kernels {
struct AdamWSlice {
  float* param;
  const float* grad;
  float* m;
  float* v;
  void* working_copy;
  std::int64_t numel;
  float decay_factor;  // 1 - lr * wd
  float step_size;     // lr / (1 - b1^t)
  float inv_sqrt_c2;   // 1 / sqrt(1 - b2^t)
  float grad_scale;
  bool working_is_f16;
};

// scaling: null, or the loss scaler's state (skip when flagged, else divide by the scale).
template <class F>
__global__ void adamw(const AdamWSlice* slices, F beta1, F beta2, F eps, const LossScaleState* scaling) {
  float unscale = 1.0f;
  if (scaling) {
    if (scaling->found_non_finite) return;
    unscale = 1.0f / scaling->scale;
  }
  const AdamWSlice s = slices[blockIdx.y];
  const float grad_scale = s.grad_scale * unscale;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < s.numel;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const float g = s.grad[i] * grad_scale;
    const float m = beta1 * s.m[i] + (1.0f - beta1) * g;
    const float v = beta2 * s.v[i] + (1.0f - beta2) * g * g;
    const float w = s.param[i] * s.decay_factor - s.step_size * m / (sqrtf(v) * s.inv_sqrt_c2 + eps);
    s.m[i] = m;
    s.v[i] = v;
    s.param[i] = w;
    if (s.working_copy)
      static_cast<std::uint16_t*>(s.working_copy)[i] = s.working_is_f16 ? from_float<f16>(w).bits : from_float<bf16>(w).bits;
  }
}
}  // namespace kernels

// The per-tensor table of one update (learning rates and bias corrections folded in), built on the
// host; largest_out receives the largest tensor's size (the launch's grid width).
template <AdamWHyperParameters Options>
std::vector<kernels::AdamWSlice> adamw_table(std::span<const AdamWTensor> tensors, const Options& options,
                                             std::int64_t* largest_out) {
  std::vector<kernels::AdamWSlice> slices;
  std::int64_t largest = 0;
  for (const AdamWTensor& t : tensors) {
    if (t.numel <= 0) continue;
    if (t.step < 1) throw ConfigError("cuda::adamw_step: step counts start at 1");
    const double wd = t.decay ? double(options.weight_decay) : 0.0;
    const double c1 = 1 - std::pow(double(options.beta1), double(t.step));
    const double c2 = 1 - std::pow(double(options.beta2), double(t.step));
    slices.push_back({t.param, t.grad, t.m, t.v, t.working_copy, t.numel, static_cast<float>(1 - t.lr * wd),
                      static_cast<float>(t.lr / c1), static_cast<float>(1 / std::sqrt(c2)), t.grad_scale,
                      t.working_is_f16});
    largest = std::max(largest, t.numel);
  }
  *largest_out = largest;
  return slices;
}

// The update itself from a table already on the device: no host copy, so a CUDA graph can capture
// it and later replays read whatever table was uploaded to the same address before each replay.
// scaling: the fp16 loss scaler's device state (the flag and scale the update obeys), or null.
template <AdamWHyperParameters Options>
void adamw_launch(CudaContext& ctx, const kernels::AdamWSlice* device_table, std::size_t count, std::int64_t largest,
                  const Options& options, const LossScaleState* scaling = nullptr) {
  detail::for_each_table_chunk(count, largest, [&](dim3 grid, std::size_t first) {
    kernels::adamw<float><<<grid, detail::kBlock, 0, ctx.stream()>>>(
        device_table + first, static_cast<float>(options.beta1), static_cast<float>(options.beta2),
        static_cast<float>(options.eps), scaling);
    check_launch("adamw");
  });
}

template <AdamWHyperParameters Options>
void adamw_step(CudaContext& ctx, std::span<const AdamWTensor> tensors, const Options& options) {
  std::int64_t largest = 0;
  const std::vector<kernels::AdamWSlice> slices = adamw_table(tensors, options, &largest);
  if (slices.empty()) return;
  DeviceBuffer table = ctx.allocator().allocate(sizeof(kernels::AdamWSlice) * slices.size());
  check(cudaMemcpyAsync(table.data(), slices.data(), table.bytes(), cudaMemcpyHostToDevice, ctx.stream()),
        "cudaMemcpyAsync(AdamW tensor table)");
  adamw_launch(ctx, table.as<kernels::AdamWSlice>(), slices.size(), largest, options);
}

}  // namespace vitfreeze::cuda
