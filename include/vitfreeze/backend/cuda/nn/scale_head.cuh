#pragma once
// mim::ScaleHead on the device: a LocalMIM decoder's normed tokens [B, 1 + g*g, Dd] (cls row
// first, read in place: the spatial ops skip it) brought to the grid of scale s and projected to
// `out` values per cell, layer for layer as the CPU head:
//   s = 4    ConvT(Dd -> Dd/2) -> LayerNorm2d -> GELU -> ConvT(Dd/2 -> Dd/4) -> Conv1x1
//   s = 2    ConvT(Dd -> Dd/2) -> Conv1x1
//   s = 1    Conv1x1 (on every row, cls included: the prediction keeps the cls row, lead_rows() = 1)
//   s = 1/2  AvgPool2d(2, 2) -> Conv1x1
// Channels-last maps make LayerNorm2d the row LayerNorm over channels and Conv1x1 a Linear. GELU is
// the exact-erf kernel in both precision policies (the CPU's; the head is a small part of the step).
// Prediction rows: [B, lead_rows() + cells(), out] with row stride prediction_ld(); the targets
// (unpadded) and loss weights use the same rows.
#include <optional>

#include "vitfreeze/backend/cuda/gelu.cuh"
#include "vitfreeze/backend/cuda/nn/conv_transpose.cuh"
#include "vitfreeze/backend/cuda/nn/layer_norm.cuh"
#include "vitfreeze/backend/cuda/nn/linear.cuh"

namespace vitfreeze::cuda::nn {

template <PrecisionPolicy P>
class DeviceScaleHead {
 public:
  using T = typename P::Activation;

  struct Saved {
    DeviceBuffer tokens;              // input [B, 1 + g*g, Dd]
    DeviceBuffer up1_out, norm_out;   // s >= 2: [B, 2g, 2g, Dd/2]; s = 4: LayerNorm2d output
    DeviceBuffer act;                 // s = 4: GELU output
    DeviceBuffer projection_input;    // what the Conv1x1 read
    RowStatistics norm_stats;
    std::int64_t batch = 0;
  };

  DeviceScaleHead(CudaContext& ctx, const mim::ScaleHead<float>& host)
      : projection(ctx, host.projection()), grid_(host.grid()), num_(host.scale_num()), den_(host.scale_den()),
        in_dim_(host.in_dim()) {
    if (host.upsample1()) upsample1.emplace(ctx, *host.upsample1());
    if (host.norm2d()) norm2d.emplace(ctx, *host.norm2d());
    if (host.upsample2()) upsample2.emplace(ctx, *host.upsample2());
  }

  int scale_num() const { return num_; }
  int scale_den() const { return den_; }
  int output_grid() const { return grid_ * num_ / den_; }
  std::int64_t cells() const { return std::int64_t(output_grid()) * output_grid(); }
  std::int64_t lead_rows() const { return num_ == 1 && den_ == 1 ? 1 : 0; }
  std::int64_t rows_per_sample() const { return lead_rows() + cells(); }
  std::int64_t out_dim() const { return projection.out_features(); }
  // Row stride of the prediction and its gradient: out_dim rounded up to 8 values (16 bytes in
  // bf16). With LocalMIM's 27 values per cell, unpadded rows (54 bytes) sent cuBLASLt's weight
  // gradient to a generic kernel: 17 ms per call for the scale-4 head at batch 256 on an H100.
  std::int64_t prediction_ld() const { return (out_dim() + 7) / 8 * 8; }

  // tokens [B, 1 + g*g, Dd] -> prediction [B, lead_rows() + cells(), out], rows prediction_ld() apart
  DeviceBuffer forward(CudaContext& ctx, const DeviceBuffer& tokens, std::int64_t B, Saved& k) const {
    k.tokens = tokens;
    k.batch = B;
    const MapGeometry decoder_map{B, grid_, grid_, 1};
    if (num_ == 1 && den_ == 1) {
      k.projection_input = tokens;
    } else if (den_ == 2) {
      k.projection_input = device_array<T>(ctx, B * cells() * in_dim_);
      avg_pool_2x2_forward<T>(ctx, data_of<T>(tokens), data_of<T>(k.projection_input), decoder_map, in_dim_);
    } else {
      k.up1_out = upsample1->forward(ctx, data_of<T>(tokens), decoder_map);
      k.projection_input = k.up1_out;
      if (norm2d) {
        const std::int64_t rows = B * 4 * grid_ * grid_, C = upsample1->out_channels();
        k.norm_out = device_array<T>(ctx, rows * C);
        k.norm_stats = RowStatistics::make(ctx, rows);
        norm2d->forward(ctx, data_of<T>(k.up1_out), data_of<T>(k.norm_out), k.norm_stats, rows);
        k.act = device_array<T>(ctx, rows * C);
        gelu_forward<T>(ctx, data_of<T>(k.norm_out), data_of<T>(k.act), rows * C);
        k.projection_input = upsample2->forward(ctx, data_of<T>(k.act), MapGeometry{B, 2 * grid_, 2 * grid_, 0});
      }
    }
    const std::int64_t rows = B * rows_per_sample();
    DeviceBuffer prediction = device_array<T>(ctx, rows * prediction_ld());
    projection.forward(ctx, data_of<T>(k.projection_input), data_of<T>(prediction), rows, prediction_ld());
    return prediction;
  }

  // dprediction [B, lead_rows() + cells(), out] (rows prediction_ld() apart) -> dtokens [B, 1 + g*g, Dd] (new buffer; the cls
  // rows get the gradient of their prediction rows, zero under the loss's zero weight).
  DeviceBuffer backward(CudaContext& ctx, const Saved& k, const T* dprediction) const {
    const std::int64_t B = k.batch, rows = B * rows_per_sample();
    const MapGeometry decoder_map{B, grid_, grid_, 1};
    DeviceBuffer dprojection_input = device_array<T>(ctx, rows * projection.in_features());
    projection.backward(ctx, dprediction, data_of<T>(k.projection_input), data_of<T>(dprojection_input), rows, false,
                        prediction_ld());
    if (num_ == 1 && den_ == 1) return dprojection_input;
    DeviceBuffer dtokens = device_array<T>(ctx, decoder_map.rows() * in_dim_);
    if (den_ == 2) {
      avg_pool_2x2_backward<T>(ctx, data_of<T>(dprojection_input), data_of<T>(dtokens), decoder_map, in_dim_);
      return dtokens;
    }
    DeviceBuffer dup1_out = dprojection_input;
    if (norm2d) {
      const std::int64_t map_rows = B * 4 * grid_ * grid_, C = upsample1->out_channels();
      DeviceBuffer dact = device_array<T>(ctx, map_rows * C);
      upsample2->backward(ctx, data_of<T>(dprojection_input), data_of<T>(k.act), data_of<T>(dact),
                          MapGeometry{B, 2 * grid_, 2 * grid_, 0});
      DeviceBuffer dnorm_out = device_zeros<T>(ctx, map_rows * C);  // both backwards below accumulate
      gelu_backward<T>(ctx, data_of<T>(dact), data_of<T>(k.norm_out), data_of<T>(dnorm_out), map_rows * C);
      dup1_out = device_zeros<T>(ctx, map_rows * C);
      norm2d->backward(ctx, data_of<T>(dnorm_out), data_of<T>(k.up1_out), k.norm_stats, data_of<T>(dup1_out), map_rows);
    }
    upsample1->backward(ctx, data_of<T>(dup1_out), data_of<T>(k.tokens), data_of<T>(dtokens), decoder_map);
    return dtokens;
  }

  // In LocalMIM's order: pred.0, pred.1, ...
  void collect_parameters(DeviceParameterList<T>& out) {
    if (upsample1) upsample1->collect_parameters(out);
    if (norm2d) norm2d->collect_parameters(out);
    if (upsample2) upsample2->collect_parameters(out);
    projection.collect_parameters(out);
  }

  std::optional<DeviceConvTranspose2x2<P>> upsample1;
  std::optional<DeviceLayerNorm<P>> norm2d;
  std::optional<DeviceConvTranspose2x2<P>> upsample2;
  DeviceLinear<P> projection;

 private:
  int grid_, num_, den_;
  std::int64_t in_dim_;
};

}  // namespace vitfreeze::cuda::nn
