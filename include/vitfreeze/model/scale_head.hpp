#pragma once
// LocalMIM's prediction head (mim::ScaleHead), explicit forward and backward: a decoder's normed
// tokens [B, 1 + g*g, Dd] (cls row first, read in place: the map ops skip it) brought to the grid of
// scale s and projected to `out` values per cell, layer for layer as the host head:
//   s = 4    ConvT(Dd -> Dd/2) -> LayerNorm2d -> GELU -> ConvT(Dd/2 -> Dd/4) -> Conv1x1
//   s = 2    ConvT(Dd -> Dd/2) -> Conv1x1
//   s = 1    Conv1x1 (on every row, cls included: the prediction keeps the cls row, lead_rows() = 1)
//   s = 1/2  AvgPool2d(2, 2) -> Conv1x1
// Channels-last maps make LayerNorm2d the row LayerNorm over channels and Conv1x1 a Linear. GELU is
// the exact-erf kernel in every precision policy (the head is a small part of the step).
// Prediction rows: [B, lead_rows() + cells(), out] with row stride prediction_ld(); the targets
// (unpadded) and loss weights use the same rows.
#include <optional>

#include "vitfreeze/model/conv_transpose.hpp"
#include "vitfreeze/model/layer_norm.hpp"
#include "vitfreeze/model/linear.hpp"

namespace vitfreeze::model {

template <Backend B, PrecisionPolicy P>
  requires BackendFor<B, P>
class ScaleHead {
 public:
  using T = typename P::Activation;
  using M = typename P::Master;
  using Context = typename B::Context;
  using Array = ArrayOf<B, T>;
  using Statistics = RowStatistics<B, M>;

  struct Saved {
    Array tokens;              // input [B, 1 + g*g, Dd]
    Array up1_out, norm_out;   // s >= 2: [B, 2g, 2g, Dd/2]; s = 4: LayerNorm2d output
    Array act;                 // s = 4: GELU output
    Array projection_input;    // what the Conv1x1 read
    Statistics norm_stats;
    std::int64_t batch = 0;
  };

  template <class HostHead>
  ScaleHead(Context& ctx, HostHead& host)
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
  Array forward(Context& ctx, const Array& tokens, std::int64_t batch, Saved& k) const {
    k.tokens = tokens;
    k.batch = batch;
    const MapGeometry decoder_map{batch, grid_, grid_, 1};
    expect_rows(tokens, decoder_map.rows(), in_dim_, "model::ScaleHead tokens");
    if (num_ == 1 && den_ == 1) {
      k.projection_input = tokens;
    } else if (den_ == 2) {
      k.projection_input = B::template empty<T>(ctx, Shape{batch * cells(), in_dim_});
      B::avg_pool_2x2_forward(ctx, tokens.data(), k.projection_input.data(), decoder_map, in_dim_);
    } else {
      k.up1_out = upsample1->forward(ctx, tokens.data(), decoder_map);
      k.projection_input = k.up1_out;
      if (norm2d) {
        const std::int64_t rows = batch * 4 * grid_ * grid_, C = upsample1->out_channels();
        k.norm_out = B::template empty<T>(ctx, Shape{rows, C});
        k.norm_stats = Statistics::make(ctx, rows);
        norm2d->forward(ctx, k.up1_out.data(), k.norm_out.data(), k.norm_stats, rows);
        k.act = B::template empty<T>(ctx, Shape{rows, C});
        B::gelu_forward(ctx, k.norm_out.data(), k.act.data(), rows * C);
        k.projection_input = upsample2->forward(ctx, k.act.data(), MapGeometry{batch, 2 * grid_, 2 * grid_, 0});
      }
    }
    const std::int64_t rows = batch * rows_per_sample();
    Array prediction = B::template empty<T>(ctx, Shape{rows, prediction_ld()});
    projection.forward(ctx, k.projection_input.data(), prediction.data(), rows, prediction_ld());
    return prediction;
  }

  // dprediction (rows prediction_ld() apart) -> dtokens [B, 1 + g*g, Dd] (new array; the cls rows
  // get the gradient of their prediction rows, zero under the loss's zero weight).
  Array backward(Context& ctx, const Saved& k, const T* dprediction) const {
    const std::int64_t batch = k.batch, rows = batch * rows_per_sample();
    const MapGeometry decoder_map{batch, grid_, grid_, 1};
    Array dprojection_input = B::template empty<T>(ctx, Shape{rows, projection.in_features()});
    projection.backward(ctx, dprediction, k.projection_input.data(), dprojection_input.data(), rows, false,
                        prediction_ld());
    if (num_ == 1 && den_ == 1) return dprojection_input;
    Array dtokens = B::template empty<T>(ctx, Shape{decoder_map.rows(), in_dim_});
    if (den_ == 2) {
      B::avg_pool_2x2_backward(ctx, dprojection_input.data(), dtokens.data(), decoder_map, in_dim_);
      return dtokens;
    }
    Array dup1_out = dprojection_input;
    if (norm2d) {
      const std::int64_t map_rows = batch * 4 * grid_ * grid_, C = upsample1->out_channels();
      Array dact = B::template empty<T>(ctx, Shape{map_rows, C});
      upsample2->backward(ctx, dprojection_input.data(), k.act.data(), dact.data(),
                          MapGeometry{batch, 2 * grid_, 2 * grid_, 0});
      Array dnorm_out = B::template zeros<T>(ctx, Shape{map_rows, C});  // both backwards below accumulate
      B::gelu_backward(ctx, dact.data(), k.norm_out.data(), dnorm_out.data(), map_rows * C);
      dup1_out = B::template zeros<T>(ctx, Shape{map_rows, C});
      norm2d->backward(ctx, dnorm_out.data(), k.up1_out.data(), k.norm_stats, dup1_out.data(), map_rows);
    }
    upsample1->backward(ctx, dup1_out.data(), k.tokens.data(), dtokens.data(), decoder_map);
    return dtokens;
  }

  // In LocalMIM's order: pred.0, pred.1, ...
  template <class List>
  void collect_parameters(List& out) {
    if (upsample1) upsample1->collect_parameters(out);
    if (norm2d) norm2d->collect_parameters(out);
    if (upsample2) upsample2->collect_parameters(out);
    projection.collect_parameters(out);
  }

  std::optional<ConvTranspose2x2<B, P>> upsample1;
  std::optional<LayerNorm<B, P>> norm2d;
  std::optional<ConvTranspose2x2<B, P>> upsample2;
  Linear<B, P> projection;

 private:
  int grid_, num_, den_;
  std::int64_t in_dim_;
};

}  // namespace vitfreeze::model
