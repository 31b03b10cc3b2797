#pragma once
// The MAE objective on the device (mim::Mae): encoder on the visible patches, decoder (embed, mask
// tokens, unshuffle, fixed positions, blocks, norm, pred) over every position, masked MSE against
// per-patch normalised pixels. One call runs forward and backward; the loss stays on the device
// (no host synchronisation inside a step).
//
// Row layout: the decoder's output keeps its cls row, and the targets and loss weights have a zero
// row there (patch_targets.cuh), so no slicing copies are needed on either side.
#include <cuda_runtime.h>

#include <vector>

#include "vitfreeze/backend/cuda/loss.cuh"
#include "vitfreeze/backend/cuda/nn/vit_encoder.cuh"
#include "vitfreeze/backend/cuda/patch_targets.cuh"
#include "vitfreeze/mim/mae.hpp"

namespace vitfreeze::cuda::nn {

// One batch's masks on the device.
struct DeviceMasks {
  std::int64_t batch = 0, patches = 0, keep = 0;
  DeviceBuffer ids_keep, ids_restore;  // int32 [B, K], [B, L]
  DeviceBuffer loss_weight;            // fp32 [B, 1 + L]: 1 on removed patches, 0 on kept ones and the cls row
  double weight_sum = 0;               // removed patches in the batch

  static DeviceMasks upload(CudaContext& ctx, const mim::MaskSet& m) {
    DeviceMasks d;
    d.assign(ctx, m);
    return d;
  }

  // Copies new masks into these buffers (allocated on first use). Later batches must have the same
  // shape and the same number of removed patches, so that a captured step (StepGraph), which reads
  // these addresses and was built with this weight sum, stays valid.
  void assign(CudaContext& ctx, const mim::MaskSet& m) {
    if (m.views != 1 || !m.source_image.empty())
      throw ConfigError("cuda MAE: only per-image random or block masks (one view, no windows)");
    std::vector<float> weight(std::size_t(m.batch) * std::size_t(m.patches + 1), 0.0f);
    double removed = 0;
    for (std::int64_t b = 0; b < m.batch; ++b)
      for (std::int64_t l = 0; l < m.patches; ++l) {
        const float w = m.mask[b * m.patches + l] ? 1.0f : 0.0f;
        weight[std::size_t(b * (m.patches + 1) + 1 + l)] = w;
        removed += w;
      }
    if (!ids_keep.empty() && (m.batch != batch || m.patches != patches || m.keep != keep || removed != weight_sum))
      throw ShapeError("DeviceMasks::assign: new masks differ in shape or removed count from these buffers");
    if (ids_keep.empty()) {
      ids_keep = ctx.allocator().allocate(m.ids_keep.bytes());
      ids_restore = ctx.allocator().allocate(m.ids_restore.bytes());
      loss_weight = ctx.allocator().allocate(weight.size() * sizeof(float));
    }
    batch = m.batch;
    patches = m.patches;
    keep = m.keep;
    weight_sum = removed;
    // Pageable sources: staged before each call returns, so the host vectors may go.
    check(cudaMemcpyAsync(ids_keep.data(), m.ids_keep.data(), m.ids_keep.bytes(), cudaMemcpyHostToDevice, ctx.stream()),
          "cudaMemcpyAsync(ids_keep)");
    check(cudaMemcpyAsync(ids_restore.data(), m.ids_restore.data(), m.ids_restore.bytes(), cudaMemcpyHostToDevice,
                          ctx.stream()),
          "cudaMemcpyAsync(ids_restore)");
    check(cudaMemcpyAsync(loss_weight.data(), weight.data(), weight.size() * sizeof(float), cudaMemcpyHostToDevice,
                          ctx.stream()),
          "cudaMemcpyAsync(loss weights)");
  }
};

// The MAE decoder; with_pred = false is LocalMIM's per-tap decoder, which ends at the norm (its
// scale head, nn/scale_head.cuh, takes the normed tokens).
template <PrecisionPolicy P>
class DeviceMaeDecoder {
 public:
  using T = typename P::Activation;

  struct Saved {
    DeviceBuffer latent, x_last, normed;
    RowStatistics norm_stats;
    std::vector<typename DeviceBlock<P>::Saved> blocks;
  };

  template <class HostDecoder>
  DeviceMaeDecoder(CudaContext& ctx, const HostDecoder& host, const Tensor<float>& host_pos, bool with_pred = true)
      : embed(ctx, host.embed), mask_token(ctx, host.mask_token), norm(ctx, host.norm),
        pred(with_pred ? DeviceLinear<P>(ctx, host.pred) : DeviceLinear<P>()), dim_(host.embed.out_features()),
        with_pred_(with_pred) {
    for (const auto& b : host.blocks) blocks.emplace_back(ctx, b);
    DeviceBuffer staging = device_array<float>(ctx, host_pos.numel());
    check(cudaMemcpyAsync(staging.data(), host_pos.data(), host_pos.bytes(), cudaMemcpyHostToDevice, ctx.stream()),
          "cudaMemcpyAsync(decoder pos_embed)");
    pos_ = device_array<T>(ctx, host_pos.numel());
    convert<T>(ctx, data_of<float>(staging), data_of<T>(pos_), host_pos.numel());
  }

  std::int64_t dim() const { return dim_; }

  // latent [B, 1 + K, D] -> prediction [B, 1 + L, out] (row 0 of each sample: the cls position)
  DeviceBuffer forward(CudaContext& ctx, const DeviceBuffer& latent, const DeviceMasks& m, Saved& k) const {
    const std::int64_t rows = m.batch * (m.patches + 1);
    forward_features(ctx, latent, m, k);
    DeviceBuffer prediction = device_array<T>(ctx, rows * pred.out_features());
    pred.forward(ctx, data_of<T>(k.normed), data_of<T>(prediction), rows);
    return prediction;
  }

  // dprediction [B, 1 + L, out] -> dlatent [B, 1 + K, D] (new buffer)
  DeviceBuffer backward(CudaContext& ctx, const Saved& k, const DeviceMasks& m, const T* dprediction) const {
    const std::int64_t rows = m.batch * (m.patches + 1);
    DeviceBuffer dnormed = device_array<T>(ctx, rows * dim_);
    pred.backward(ctx, dprediction, data_of<T>(k.normed), data_of<T>(dnormed), rows);
    return backward_features(ctx, k, m, data_of<T>(dnormed));
  }

  // Everything before pred: latent [B, 1 + K, D] -> the normed tokens k.normed [B, 1 + L, Dd] (returned).
  const DeviceBuffer& forward_features(CudaContext& ctx, const DeviceBuffer& latent, const DeviceMasks& m, Saved& k) const {
    const std::int64_t B = m.batch, K = m.keep, L = m.patches, rows = B * (L + 1);
    DeviceBuffer embedded = device_array<T>(ctx, B * (K + 1) * dim_);
    embed.forward(ctx, data_of<T>(latent), data_of<T>(embedded), B * (K + 1));
    DeviceBuffer x = device_array<T>(ctx, rows * dim_);
    unshuffle_forward<T>(ctx, data_of<T>(embedded), mask_token.value(), data_of<std::int32_t>(m.ids_restore), data_of<T>(x), B, K, L, dim_);
    add_broadcast_in_place<T>(ctx, data_of<T>(x), data_of<T>(pos_), (L + 1) * dim_, rows * dim_);
    k.latent = latent;
    k.blocks.assign(blocks.size(), {});
    for (std::size_t i = 0; i < blocks.size(); ++i) x = blocks[i].forward(ctx, x, B, L + 1, &k.blocks[i]);
    k.x_last = x;
    k.normed = device_array<T>(ctx, rows * dim_);
    k.norm_stats = RowStatistics::make(ctx, rows);
    norm.forward(ctx, data_of<T>(x), data_of<T>(k.normed), k.norm_stats, rows);
    return k.normed;
  }

  // dnormed [B, 1 + L, Dd] -> dlatent [B, 1 + K, D] (new buffer)
  DeviceBuffer backward_features(CudaContext& ctx, const Saved& k, const DeviceMasks& m, const T* dnormed) const {
    const std::int64_t B = m.batch, K = m.keep, L = m.patches, rows = B * (L + 1);
    DeviceBuffer grad = device_zeros<T>(ctx, rows * dim_);
    norm.backward(ctx, dnormed, data_of<T>(k.x_last), k.norm_stats, data_of<T>(grad), rows);
    for (std::size_t i = blocks.size(); i-- > 0;) blocks[i].backward(ctx, k.blocks[i], grad, B, L + 1);
    DeviceBuffer dembedded = device_zeros<T>(ctx, B * (K + 1) * dim_);
    unshuffle_backward<T>(ctx, data_of<T>(grad), data_of<std::int32_t>(m.ids_restore), data_of<T>(dembedded), mask_token.grad(), B,
                          K, L, dim_);
    DeviceBuffer dlatent = device_array<T>(ctx, B * (K + 1) * embed.in_features());
    embed.backward(ctx, data_of<T>(dembedded), data_of<T>(k.latent), data_of<T>(dlatent), B * (K + 1));
    return dlatent;
  }

  void collect_parameters(DeviceParameterList<T>& out) {
    embed.collect_parameters(out);
    out.push_back(&mask_token);
    for (auto& b : blocks) b.collect_parameters(out);
    norm.collect_parameters(out);
    if (with_pred_) pred.collect_parameters(out);
  }

  DeviceLinear<P> embed;
  DeviceParameter<T> mask_token;
  std::vector<DeviceBlock<P>> blocks;
  DeviceLayerNorm<P> norm;
  DeviceLinear<P> pred;  // empty without pred

 private:
  std::int64_t dim_;
  bool with_pred_;
  DeviceBuffer pos_;
};

template <PrecisionPolicy P>
class DeviceMae {
 public:
  using T = typename P::Activation;

  template <ViTSpec S, mim::DecoderSpec Dec, bool NormPix>
  DeviceMae(CudaContext& ctx, const vitfreeze::nn::ViT<S, float>& host_encoder,
            const mim::Mae<S, Dec, mim::CellPixels<NormPix>, float>& host)
      : encoder(ctx, host_encoder),
        decoder(ctx, host.decoder, vitfreeze::nn::sincos_pos_embed_2d<float>(Dec.dim, S.grid(), S.grid(), true)),
        geometry_{0, S.channels, S.image, S.image, S.patch},
        norm_pix_(NormPix) {}

  // Forward and backward of one (micro-)batch: images fp32 [B, C, H, W] on the device. Gradients
  // accumulate into the trained parameters; *loss_device (a device double) receives the loss.
  // loss_scale: null, or the device float the loss gradient is multiplied by (fp16 loss scaling).
  void forward_backward(CudaContext& ctx, const float* images, const DeviceMasks& m, double* loss_device,
                        const float* loss_scale = nullptr) const {
    const std::int64_t B = m.batch, L = m.patches, rows = B * (L + 1);
    PatchGeometry g = geometry_;
    g.batch = B;
    const std::int64_t values = g.patch_dim();
    DeviceBuffer images_t;
    const T* input = as_activation<T>(ctx, images, B * g.channels * g.height * g.width, images_t);
    typename DeviceViT<P>::Saved encoder_saved;
    DeviceBuffer latent = encoder.forward(ctx, input, data_of<std::int32_t>(m.ids_keep), B, m.keep, &encoder_saved);
    images_t = DeviceBuffer();
    typename DeviceMaeDecoder<P>::Saved decoder_saved;
    DeviceBuffer prediction = decoder.forward(ctx, latent, m, decoder_saved);

    DeviceBuffer target = device_array<T>(ctx, rows * values);
    patch_targets<T>(ctx, images, data_of<T>(target), g, norm_pix_);
    masked_mse_forward_async<T>(ctx, data_of<T>(prediction), data_of<T>(target), data_of<float>(m.loss_weight), rows, values, loss_device);
    DeviceBuffer dprediction = device_array<T>(ctx, rows * values);
    check(cudaMemsetAsync(dprediction.data(), 0, sizeof(T) * std::size_t(rows * values), ctx.stream()), "cudaMemsetAsync(dpred)");
    masked_mse_backward<T>(ctx, 1.0, data_of<T>(prediction), data_of<T>(target), data_of<float>(m.loss_weight), m.weight_sum,
                           data_of<T>(dprediction), rows, values, 0, loss_scale);
    DeviceBuffer dlatent = decoder.backward(ctx, decoder_saved, m, data_of<T>(dprediction));
    encoder.backward(ctx, encoder_saved, data_of<T>(dlatent));
  }

  void collect_parameters(DeviceParameterList<T>& out) {
    encoder.collect_parameters(out);
    decoder.collect_parameters(out);
  }

  DeviceViT<P> encoder;
  DeviceMaeDecoder<P> decoder;

 private:
  PatchGeometry geometry_;
  bool norm_pix_;
};

}  // namespace vitfreeze::cuda::nn
