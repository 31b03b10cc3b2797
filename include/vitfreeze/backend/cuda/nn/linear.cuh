#pragma once
// nn::Linear on the device: y = x W^T + b over `rows` tokens, weight [out, in] as in timm. The
// backward accumulates dW (fp32, beta = 1 GEMM) and db, and writes or accumulates dx.
// forward_gelu / backward_through_gelu serve the MLP's first layer: with Bf16Mixed the GELU is
// fused into the GEMM epilogues (pre-activation saved as the epilogue's aux; dGELU applied in the
// next layer's dx GEMM); with Fp32 it is the exact-erf kernel after a bias epilogue.
#include <cuda_runtime.h>

#include "vitfreeze/backend/cuda/gelu.cuh"
#include "vitfreeze/backend/cuda/gemm.hpp"
#include "vitfreeze/backend/cuda/nn/parameter.cuh"
#include "vitfreeze/backend/cuda/nn/precision.hpp"
#include "vitfreeze/nn/linear.hpp"

namespace vitfreeze::cuda::nn {

template <PrecisionPolicy P>
class DeviceLinear {
 public:
  using T = typename P::Activation;

  DeviceLinear() = default;
  DeviceLinear(CudaContext& ctx, const vitfreeze::nn::Linear<float>& host)
      : weight(ctx, host.weight), bias(ctx, host.bias), in_(host.in_features()), out_(host.out_features()) {}

  std::int64_t in_features() const { return in_; }
  std::int64_t out_features() const { return out_; }

  // y [rows, out] = x [rows, in] W^T + b; y's rows may be padded (ld_y >= out, 0: out) so that a
  // narrow output (LocalMIM's 27 values) keeps 16-byte aligned rows for cuBLASLt's fast kernels.
  void forward(CudaContext& ctx, const T* x, T* y, std::int64_t rows, std::int64_t ld_y = 0) const {
    GemmEpilogue<T> e;
    e.kind = Epilogue::bias;
    e.bias = bias.value();
    gemm<T, T>(ctx, false, true, rows, out_, in_, 1.0f, x, in_, weight.value(), in_, 0.0f, y, ld_y > 0 ? ld_y : out_, e);
  }

  // pre = x W^T + b (kept for the backward), y = GELU(pre)
  void forward_gelu(CudaContext& ctx, const T* x, T* pre, T* y, std::int64_t rows) const {
    GemmEpilogue<T> e;
    e.bias = bias.value();
    if constexpr (P::fused_tanh_gelu) {
      e.kind = Epilogue::gelu_aux_bias;
      e.aux = pre;
      e.ld_aux = out_;
      gemm<T, T>(ctx, false, true, rows, out_, in_, 1.0f, x, in_, weight.value(), in_, 0.0f, y, out_, e);
    } else {
      e.kind = Epilogue::bias;
      gemm<T, T>(ctx, false, true, rows, out_, in_, 1.0f, x, in_, weight.value(), in_, 0.0f, pre, out_, e);
      gelu_forward<T>(ctx, pre, y, rows * out_);
    }
  }

  // dW += dy^T x, db += column sums of dy (if trainable); dx = dy W (overwritten, or added when
  // accumulate_dx), skipped when dx is null.
  // ld_dy: dy's row stride (0: out), as forward's ld_y.
  void backward(CudaContext& ctx, const T* dy, const T* x, T* dx, std::int64_t rows, bool accumulate_dx = false,
                std::int64_t ld_dy = 0) const {
    const std::int64_t ld = ld_dy > 0 ? ld_dy : out_;
    accumulate_parameter_grads(ctx, dy, x, rows, ld);
    if (dx) gemm<T, T>(ctx, false, false, rows, in_, out_, 1.0f, dy, ld, weight.value(), in_, accumulate_dx ? 1.0f : 0.0f, dx, in_);
  }

  // For the layer after a GELU: x = GELU(pre); writes dpre = (dy W) * GELU'(pre), overwritten.
  void backward_through_gelu(CudaContext& ctx, const T* dy, const T* x, const T* pre, T* dpre, std::int64_t rows) const {
    accumulate_parameter_grads(ctx, dy, x, rows, out_);
    if constexpr (P::fused_tanh_gelu) {
      GemmEpilogue<T> e;
      e.kind = Epilogue::dgelu;
      e.aux = const_cast<T*>(pre);  // read only by this epilogue
      e.ld_aux = in_;
      gemm<T, T>(ctx, false, false, rows, in_, out_, 1.0f, dy, out_, weight.value(), in_, 0.0f, dpre, in_, e);
    } else {
      DeviceBuffer dgelu_out = device_array<T>(ctx, rows * in_);
      gemm<T, T>(ctx, false, false, rows, in_, out_, 1.0f, dy, out_, weight.value(), in_, 0.0f, data_of<T>(dgelu_out), in_);
      check(cudaMemsetAsync(dpre, 0, sizeof(T) * std::size_t(rows * in_), ctx.stream()), "cudaMemsetAsync(dpre)");
      gelu_backward<T>(ctx, data_of<T>(dgelu_out), pre, dpre, rows * in_);
    }
  }

  void collect_parameters(DeviceParameterList<T>& out) {
    out.push_back(&weight);
    out.push_back(&bias);
  }

  DeviceParameter<T> weight, bias;

 private:
  void accumulate_parameter_grads(CudaContext& ctx, const T* dy, const T* x, std::int64_t rows, std::int64_t ld_dy) const {
    if (!weight.trainable()) return;
    // db through the GEMM's bias-gradient epilogue (it overwrites), then added to the running sum.
    DeviceBuffer db = device_array<float>(ctx, out_);
    GemmEpilogue<float> e;
    e.kind = Epilogue::bgradb;
    e.bias_grad = data_of<float>(db);
    gemm<T, float>(ctx, true, false, out_, in_, rows, 1.0f, dy, ld_dy, x, in_, 1.0f, weight.grad(), in_, e);
    add_in_place<float>(ctx, bias.grad(), data_of<float>(db), out_);
  }

  std::int64_t in_ = 0, out_ = 0;
};

}  // namespace vitfreeze::cuda::nn
