#pragma once
// mim::ConvTranspose2x2 on the device: ConvTranspose2d(in -> out, kernel 2, stride 2) on a
// channels-last map as the CPU computes it: one GEMM x W^T over every pixel (W [4 out, in], one
// output column per output channel and kernel position), then pixel_shuffle_2x2 with the bias.
// The backward un-shuffles the gradient, takes dW (and, through the GEMM's bias-gradient epilogue,
// the per-position column sums that fold into db) and dx from it.
#include "vitfreeze/backend/cuda/gemm.hpp"
#include "vitfreeze/backend/cuda/nn/parameter.cuh"
#include "vitfreeze/backend/cuda/nn/precision.hpp"
#include "vitfreeze/backend/cuda/spatial.cuh"
#include "vitfreeze/mim/scale_head.hpp"

namespace vitfreeze::cuda::nn {

template <PrecisionPolicy P>
class DeviceConvTranspose2x2 {
 public:
  using T = typename P::Activation;

  DeviceConvTranspose2x2(CudaContext& ctx, const mim::ConvTranspose2x2<float>& host)
      : weight(ctx, host.weight), bias(ctx, host.bias), in_(host.in_channels()), out_(host.out_channels()) {}

  std::int64_t in_channels() const { return in_; }
  std::int64_t out_channels() const { return out_; }

  // x: g.rows() rows of `in` channels (map h x w behind g.skip rows per sample) -> new [B, 2h, 2w, out].
  DeviceBuffer forward(CudaContext& ctx, const T* x, const MapGeometry& g) const {
    DeviceBuffer positions = device_array<T>(ctx, g.rows() * 4 * out_);
    gemm<T, T>(ctx, false, true, g.rows(), 4 * out_, in_, 1.0f, x, in_, weight.value(), in_, 0.0f, data_of<T>(positions), 4 * out_);
    DeviceBuffer y = device_array<T>(ctx, g.batch * 4 * g.pixels() * out_);
    pixel_shuffle_2x2_forward<T>(ctx, data_of<T>(positions), bias.value(), data_of<T>(y), g, out_);
    return y;
  }

  // dy [B, 2h, 2w, out]; x: the forward's input. Accumulates dW, db (if trainable); dx is
  // overwritten (skipped rows get 0), or not computed when null.
  void backward(CudaContext& ctx, const T* dy, const T* x, T* dx, const MapGeometry& g) const {
    DeviceBuffer dpositions = device_array<T>(ctx, g.rows() * 4 * out_);
    pixel_shuffle_2x2_backward<T>(ctx, dy, data_of<T>(dpositions), g, out_);
    if (weight.trainable()) {
      DeviceBuffer column_sums = device_array<float>(ctx, 4 * out_);
      GemmEpilogue<float> e;
      e.kind = Epilogue::bgradb;
      e.bias_grad = data_of<float>(column_sums);
      gemm<T, float>(ctx, true, false, 4 * out_, in_, g.rows(), 1.0f, data_of<T>(dpositions), 4 * out_, x, in_, 1.0f,
                     weight.grad(), in_, e);
      fold_kernel_position_sums(ctx, data_of<float>(column_sums), bias.grad(), out_);
    }
    if (dx)
      gemm<T, T>(ctx, false, false, g.rows(), in_, 4 * out_, 1.0f, data_of<T>(dpositions), 4 * out_, weight.value(), in_, 0.0f,
                 dx, in_);
  }

  void collect_parameters(DeviceParameterList<T>& out) {
    out.push_back(&weight);
    out.push_back(&bias);
  }

  DeviceParameter<T> weight;  // [4 out, in]
  DeviceParameter<T> bias;    // [out]

 private:
  std::int64_t in_ = 0, out_ = 0;
};

}  // namespace vitfreeze::cuda::nn
