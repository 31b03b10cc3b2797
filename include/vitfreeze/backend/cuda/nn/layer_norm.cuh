#pragma once
// nn::LayerNorm on the device over `rows` rows of width D; the statistics (fp32 mean and 1/std per
// row) are what the forward saves. The backward accumulates dx and the fp32 parameter gradients.
#include "vitfreeze/backend/cuda/layernorm.cuh"
#include "vitfreeze/backend/cuda/nn/parameter.cuh"
#include "vitfreeze/backend/cuda/nn/precision.hpp"
#include "vitfreeze/nn/layernorm.hpp"

namespace vitfreeze::cuda::nn {

inline constexpr double kLayerNormEps = 1e-6;  // every LayerNorm of the models here (timm ViTs)

struct RowStatistics {
  DeviceBuffer mean, rstd;  // fp32 [rows]
  static RowStatistics make(CudaContext& ctx, std::int64_t rows) {
    return {device_array<float>(ctx, rows), device_array<float>(ctx, rows)};
  }
};

template <PrecisionPolicy P>
class DeviceLayerNorm {
 public:
  using T = typename P::Activation;

  DeviceLayerNorm() = default;
  DeviceLayerNorm(CudaContext& ctx, const vitfreeze::nn::LayerNorm<float>& host)
      : weight(ctx, host.weight), bias(ctx, host.bias), dim_(host.weight.value.numel()) {}

  std::int64_t dim() const { return dim_; }

  void forward(CudaContext& ctx, const T* x, T* y, const RowStatistics& stats, std::int64_t rows) const {
    layernorm_forward<T>(ctx, x, weight.value(), bias.value(), y, data_of<float>(stats.mean), data_of<float>(stats.rstd), rows,
                         dim_, kLayerNormEps);
  }
  // sum = x + residual (written), y = LayerNorm(sum)
  void forward_residual(CudaContext& ctx, const T* x, const T* residual, T* sum, T* y, const RowStatistics& stats,
                        std::int64_t rows) const {
    residual_layernorm_forward<T>(ctx, x, residual, sum, weight.value(), bias.value(), y, data_of<float>(stats.mean),
                                  data_of<float>(stats.rstd), rows, dim_, kLayerNormEps);
  }
  // x: the forward's input. dx accumulates (may be null).
  void backward(CudaContext& ctx, const T* dy, const T* x, const RowStatistics& stats, T* dx, std::int64_t rows) const {
    const bool train = weight.trainable();
    layernorm_backward<T>(ctx, dy, x, weight.value(), data_of<float>(stats.mean), data_of<float>(stats.rstd), dx,
                          train ? weight.grad() : nullptr, train ? bias.grad() : nullptr, rows, dim_);
  }

  void collect_parameters(DeviceParameterList<T>& out) {
    out.push_back(&weight);
    out.push_back(&bias);
  }

  DeviceParameter<T> weight, bias;

 private:
  std::int64_t dim_ = 0;
};

}  // namespace vitfreeze::cuda::nn
