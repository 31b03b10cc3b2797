#pragma once
// The LocalMIM objective on the device (mim::LocalMim, spec §2.2-2.5): the encoder on the visible
// patches up to its deepest active tap, no final norm; per active tap k its LayerNorm, its one-block
// MAE decoder (DeviceMaeDecoder without pred) and its scale head, scored against HOG targets pooled
// to the tap's scale on the patch mask re-scaled to that grid:
//   loss = sum_k  sum_p M_k[p] mean_c (pred_k[p, c] - hog_k[p, c])^2 / sum_p M_k[p]
// One call runs forward and backward; the loss stays on the device. Each tap runs its forward and
// backward before the next tap starts, so only one decoder's activations are alive at a time; the
// taps' gradients then enter the encoder's backward at their blocks.
//
// Row layout: a scale-1 prediction keeps the decoder's cls row (as MAE's), so its HOG target and
// loss weights carry a zero row there; the other scales' maps have no cls row.
//
// Freezing: encoder.freeze_units(n) as for MAE; drop_tap(k) (when tap k's block freezes) stops
// computing the tap and frees its parameters' gradient and optimizer state.
#include <algorithm>
#include <utility>
#include <vector>

#include "vitfreeze/backend/cuda/hog.cuh"
#include "vitfreeze/backend/cuda/nn/mae.cuh"
#include "vitfreeze/backend/cuda/nn/scale_head.cuh"
#include "vitfreeze/mim/localmim.hpp"

namespace vitfreeze::cuda::nn {

// One batch's masks for LocalMIM: the token bookkeeping of DeviceMasks and, per tap, the patch mask
// re-scaled to the tap's grid on the host (mim::rescale_mask) as loss weights in its prediction's rows.
struct DeviceLocalMimMasks {
  DeviceMasks tokens;
  std::vector<DeviceBuffer> tap_weight;  // fp32 [B, lead + cells] per tap
  std::vector<double> tap_weight_sum;
};

template <PrecisionPolicy P>
class DeviceLocalMim {
 public:
  using T = typename P::Activation;

  struct Tap {
    DeviceLayerNorm<P> norm;
    DeviceMaeDecoder<P> decoder;
    DeviceScaleHead<P> head;
    int block;     // the encoder block whose output it reads
    int hog_pool;  // HOG cell side in pixels
    bool active;
  };

  template <ViTSpec S, class Taps, mim::DecoderSpec Dec, int NBins>
  DeviceLocalMim(CudaContext& ctx, const vitfreeze::nn::ViT<S, float>& host_encoder,
                 const mim::LocalMim<S, Taps, Dec, mim::Hog<NBins>, float>& host)
      : encoder(ctx, host_encoder), channels_(S.channels), image_(S.image), grid_(S.grid()), nbins_(NBins) {
    using Host = mim::LocalMim<S, Taps, Dec, mim::Hog<NBins>, float>;
    const Tensor<float> decoder_pos = vitfreeze::nn::sincos_pos_embed_2d<float>(Dec.dim, S.grid(), S.grid(), true);
    taps.reserve(Host::kTaps);  // parameters are handed out by address: the vector never reallocates
    for (int k = 0; k < Host::kTaps; ++k)
      taps.push_back(Tap{DeviceLayerNorm<P>(ctx, host.tap_norm(k)),
                         DeviceMaeDecoder<P>(ctx, host.decoder(k), decoder_pos, /*with_pred=*/false),
                         DeviceScaleHead<P>(ctx, host.head(k)), Host::tap_block(k), Host::cell(k),
                         host.tap_active(k)});
  }

  int tap_count() const { return int(taps.size()); }
  int tap_block(int k) const { return taps.at(std::size_t(k)).block; }
  bool tap_active(int k) const { return taps.at(std::size_t(k)).active; }

  // Tap k is no longer computed; its parameters freeze (gradient and moments released). Idempotent.
  void drop_tap(int k) {
    taps.at(std::size_t(k)).active = false;
    DeviceParameterList<T> ps;
    collect_tap_parameters(k, ps);
    for (auto* p : ps) p->freeze();
  }

  DeviceLocalMimMasks upload_masks(CudaContext& ctx, const mim::MaskSet& m) const {
    DeviceLocalMimMasks d;
    d.tokens = DeviceMasks::upload(ctx, m);
    for (const Tap& t : taps) {
      const DeviceScaleHead<P>& h = t.head;
      const Tensor<float> cells = mim::rescale_mask<float>(m.mask, grid_, grid_, h.scale_num(), h.scale_den());
      std::vector<float> weight(std::size_t(m.batch * h.rows_per_sample()), 0.0f);
      double sum = 0;
      for (std::int64_t b = 0; b < m.batch; ++b)
        for (std::int64_t c = 0; c < h.cells(); ++c) {
          const float w = cells[b * h.cells() + c];
          weight[std::size_t(b * h.rows_per_sample() + h.lead_rows() + c)] = w;
          sum += w;
        }
      d.tap_weight.push_back(upload_bytes(ctx, weight.data(), weight.size() * sizeof(float)));
      d.tap_weight_sum.push_back(sum);
    }
    return d;
  }

  // Forward and backward of one (micro-)batch: images fp32 [B, C, H, W] (normalised) on the device.
  // Gradients accumulate into the trained parameters; loss_device[0] (a device double) receives the
  // loss, loss_device[1] the sum of the taps' mask weights. loss_scale: null, or the device float
  // the loss gradient is multiplied by (fp16 loss scaling).
  void forward_backward(CudaContext& ctx, const float* images, const DeviceLocalMimMasks& m, double* loss_device,
                        const float* loss_scale = nullptr) const {
    const DeviceMasks& tokens = m.tokens;
    const std::int64_t B = tokens.batch, K = tokens.keep, encoder_rows = B * (K + 1), D = encoder.dim();
    std::vector<int> active, blocks;
    for (int k = 0; k < tap_count(); ++k)
      if (taps[k].active) {
        active.push_back(k);
        blocks.push_back(taps[k].block);
      }
    if (active.empty()) throw ConfigError("DeviceLocalMim: every tap has been dropped, there is no loss");
    if (m.tap_weight.size() != taps.size()) throw ConfigError("DeviceLocalMim: masks not from upload_masks");

    DeviceBuffer images_t;
    const T* input = as_activation<T>(ctx, images, B * channels_ * image_ * image_, images_t);
    typename DeviceViT<P>::Saved encoder_saved;
    const std::vector<DeviceBuffer> hidden =
        encoder.forward_taps(ctx, input, data_of<std::int32_t>(tokens.ids_keep), B, K, blocks, &encoder_saved);
    images_t = DeviceBuffer();

    check(cudaMemsetAsync(loss_device, 0, 2 * sizeof(double), ctx.stream()), "cudaMemsetAsync(loss)");
    std::vector<std::pair<int, DeviceBuffer>> targets;  // by HOG pool: taps of one scale share theirs
    std::vector<DeviceBuffer> dhidden;
    std::vector<typename DeviceViT<P>::TapGradient> tap_grads;
    for (std::size_t a = 0; a < active.size(); ++a) {
      const Tap& t = taps[std::size_t(active[a])];
      const DeviceScaleHead<P>& head = t.head;
      DeviceBuffer latent = device_array<T>(ctx, encoder_rows * D);
      const RowStatistics latent_stats = RowStatistics::make(ctx, encoder_rows);
      t.norm.forward(ctx, data_of<T>(hidden[a]), data_of<T>(latent), latent_stats, encoder_rows);
      typename DeviceMaeDecoder<P>::Saved decoder_saved;
      const DeviceBuffer normed = t.decoder.forward_features(ctx, latent, tokens, decoder_saved);
      typename DeviceScaleHead<P>::Saved head_saved;
      const DeviceBuffer prediction = head.forward(ctx, normed, B, head_saved);

      const std::int64_t rows = B * head.rows_per_sample(), values = head.out_dim();
      const T* target = hog_target(ctx, images, B, t.hog_pool, head.lead_rows(), targets);
      const float* weight = data_of<float>(m.tap_weight[std::size_t(active[a])]);
      const std::int64_t ld = head.prediction_ld();
      masked_mse_forward_async<T>(ctx, data_of<T>(prediction), target, weight, rows, values, loss_device, /*accumulate=*/true,
                                  ld);
      DeviceBuffer dprediction = device_zeros<T>(ctx, rows * ld);
      masked_mse_backward<T>(ctx, 1.0, data_of<T>(prediction), target, weight, m.tap_weight_sum[std::size_t(active[a])],
                             data_of<T>(dprediction), rows, values, ld, loss_scale);

      const DeviceBuffer dnormed = head.backward(ctx, head_saved, data_of<T>(dprediction));
      const DeviceBuffer dlatent = t.decoder.backward_features(ctx, decoder_saved, tokens, data_of<T>(dnormed));
      DeviceBuffer dh = device_zeros<T>(ctx, encoder_rows * D);
      t.norm.backward(ctx, data_of<T>(dlatent), data_of<T>(hidden[a]), latent_stats, data_of<T>(dh), encoder_rows);
      tap_grads.push_back({t.block, data_of<T>(dh)});
      dhidden.push_back(std::move(dh));
    }
    encoder.backward_taps(ctx, encoder_saved, tap_grads);
  }

  // norm.K, decoder.K and its head, in LocalMIM's order.
  void collect_tap_parameters(int k, DeviceParameterList<T>& out) {
    Tap& t = taps.at(std::size_t(k));
    t.norm.collect_parameters(out);
    t.decoder.collect_parameters(out);
    t.head.collect_parameters(out);
  }

  // The encoder's (its unused final norm included, as the host lists it), then every tap's.
  void collect_parameters(DeviceParameterList<T>& out) {
    encoder.collect_parameters(out);
    for (int k = 0; k < tap_count(); ++k) collect_tap_parameters(k, out);
  }

  DeviceViT<P> encoder;
  std::vector<Tap> taps;

 private:
  // The HOG target of one pool size in the row layout of its head (computed once per step).
  const T* hog_target(CudaContext& ctx, const float* images, std::int64_t B, int pool, std::int64_t lead,
                      std::vector<std::pair<int, DeviceBuffer>>& cache) const {
    for (const auto& [p, buffer] : cache)
      if (p == pool) return data_of<T>(buffer);
    const HogGeometry g{B, channels_, image_, image_, nbins_, pool, lead};
    DeviceBuffer target = device_array<T>(ctx, B * g.rows_per_sample() * g.row_width());
    hog_targets<T>(ctx, images, data_of<T>(target), g);
    cache.emplace_back(pool, target);
    return data_of<T>(target);
  }

  std::int64_t channels_, image_;
  int grid_, nbins_;
};

}  // namespace vitfreeze::cuda::nn
