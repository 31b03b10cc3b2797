// One full MAE pretraining step on the GPU (forward, backward, fused AdamW, zero_grad) of the
// explicit model on the CUDA backend (model::Mae<Cuda, P>), bf16 activations with fp32 master weights: images/s, achieved TFLOP/s (matrix
// products only, nn/flops.hpp's count, x3 for training) and the time saved by freezing a prefix of
// units (truncate semantics). The PyTorch reference on the same shapes is torch_mim_bench.py.
// After the frozen-prefix variants it times the unfrozen step replayed as a CUDA graph and, when
// cuDNN's fused attention is compiled in, on the GEMM attention path (the A/B of the two paths).
//   mae_step_bench [model=b|ti] [batch=256] [steps per timed block=20] [frozen units list, e.g. 0,4,8,12] [bf16|fp16]
//   (fp16: Fp16Mixed, fp16 activations with dynamic loss scaling)
// With VITFREEZE_PROFILE_ONE_STEP set, one step is bracketed by cudaProfilerStart/Stop (for
// `ncu --profile-from-start off`) and the program ends.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "step_bench.hpp"
#include "vitfreeze/backend/cuda/backend.cuh"
#include "vitfreeze/backend/cuda/parameter_adamw.cuh"
#include "vitfreeze/backend/cuda/step_graph.hpp"
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/model/mae.hpp"
#include "vitfreeze/nn/flops.hpp"
#include "vitfreeze/optim/adamw.hpp"

namespace {

namespace vf = vitfreeze;
namespace vc = vitfreeze::cuda;

constexpr vf::mim::DecoderSpec kMaeDecoder{.dim = 512, .depth = 8, .heads = 16, .mlp_ratio = 4};

// Matrix-product FLOPs of one MAE training step per image (forward x 3).
constexpr std::int64_t mae_training_flops(const vf::ViTSpec& s, const vf::mim::DecoderSpec& d, int keep) {
  const std::int64_t enc_tokens = keep + 1, dec_tokens = s.tokens() + 1;
  std::int64_t f = vf::nn::patch_embed_forward_flops(keep, s.patch_dim(), s.dim);
  f += s.depth * vf::nn::transformer_block_forward_flops(enc_tokens, s.dim, s.mlp_ratio);
  f += vf::nn::linear_forward_flops(enc_tokens, s.dim, d.dim);
  f += d.depth * vf::nn::transformer_block_forward_flops(dec_tokens, d.dim, d.mlp_ratio);
  f += vf::nn::linear_forward_flops(dec_tokens, d.dim, s.patch_dim());
  return 3 * f;
}

template <vf::ViTSpec S, vf::PrecisionPolicy P>
void run(const char* label, int batch, int steps, const std::vector<int>& frozen_list) {
  using Mae = vf::mim::Mae<S, kMaeDecoder, vf::mim::NormalizedPixels, float>;
  using Model = vf::model::Mae<vf::Cuda, P>;
  vc::CudaContext ctx;
  std::printf("== MAE %s/%d at %d px, mask 0.75, batch %d, %s, device %s\n", label, S.patch, S.image, batch, P::name,
              ctx.properties().name);
  auto encoder = std::make_unique<vf::nn::ViT<S, float>>(1);
  auto mae = std::make_unique<Mae>(1);

  const std::vector<vc::DeviceTensor<float>> images = vf::bench::random_device_images(ctx, batch, S.channels, S.image);
  std::vector<vf::mim::MaskSet> host_masks;
  for (int k = 0; k < vf::bench::kInputSets; ++k)
    host_masks.push_back(vf::mim::Random<750>::make(batch, S.grid(), S.grid(), 7, std::uint64_t(k)));
  const int keep = vf::mim::Random<750>::kept(S.grid(), S.grid());
  const double flops_per_image = double(mae_training_flops(S, kMaeDecoder, keep));
  std::printf("matrix-product FLOPs per image and step: %.3f GFLOP (encoder tokens %d, decoder tokens %d)\n",
              flops_per_image / 1e9, keep + 1, S.tokens() + 1);
  const vc::DeviceTensor<double> loss = ctx.empty<double>(vf::Shape{2});

  struct Variant {
    int frozen;
    bool cudnn, graphed;
  };
  std::vector<Variant> variants;
  for (int frozen : frozen_list) variants.push_back({frozen, true, false});
  variants.push_back({0, true, true});
  if (vc::AttentionPaths::cudnn_compiled()) variants.push_back({0, false, false});

  double baseline_ms = 0;
  for (const auto [frozen, cudnn, graphed] : variants) {
    ctx.service<vc::AttentionPaths>().cudnn_enabled = cudnn;
    Model model(ctx, *encoder, *mae);
    vf::testing::freeze_units(model.encoder, frozen);
    vf::model::ParameterRefs<vf::Cuda, P> params;
    model.collect_parameters(params);
    vc::ParameterAdamW<P> optimizer(params, vf::optim::AdamWOptions{});
    if constexpr (P::loss_scaling) optimizer.enable_loss_scaling(ctx, vf::LossScaleOptions{});
    std::vector<typename Model::MaskBuffers> masks;
    for (const auto& m : host_masks) masks.push_back(model.upload_masks(ctx, m));
    vc::DeviceTensor<float> static_images = ctx.empty<float>(images[0].shape());
    typename Model::MaskBuffers static_masks = model.upload_masks(ctx, host_masks[0]);
    vc::StepGraph graph;
    const vf::bench::StepTiming t = vf::bench::time_steps(ctx, steps, [&](int i) {
      const int k = i % vf::bench::kInputSets;
      if (!graphed) {
        optimizer.zero_grad(ctx);
        model.forward_backward(ctx, images[k], masks[k], loss.data(), optimizer.loss_scale_device());
        optimizer.step(ctx, 1.5e-4);
        return;
      }
      // Inputs into the captured addresses and this step's AdamW table, then one graph launch.
      vc::check(cudaMemcpyAsync(static_images.data(), images[k].data(), images[k].bytes(), cudaMemcpyDeviceToDevice,
                                ctx.stream()),
                "cudaMemcpyAsync(images)");
      model.assign_masks(ctx, static_masks, host_masks[k]);
      optimizer.stage(ctx, 1.5e-4);
      graph.run(ctx, std::uint64_t(frozen), [&] {
        optimizer.zero_grad(ctx);
        model.forward_backward(ctx, static_images, static_masks, loss.data(), optimizer.loss_scale_device());
        optimizer.launch(ctx);
      });
    });
    const bool gemm_path = !vc::AttentionPaths::cudnn_compiled() || !cudnn;
    vf::bench::report_step(ctx, frozen, t, batch, flops_per_image, baseline_ms, loss,
                           std::string(gemm_path ? ", GEMM attention" : ", cuDNN attention") + (graphed ? ", CUDA graph" : ""));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string model = argc > 1 ? argv[1] : "b";
  const int batch = argc > 2 ? std::atoi(argv[2]) : 256;
  const int steps = argc > 3 ? std::atoi(argv[3]) : 20;
  const std::vector<int> frozen = vf::bench::parse_int_list(argc > 4 ? argv[4] : "0");
  const std::string precision = argc > 5 ? argv[5] : "bf16";
  try {
    if (model != "b" && model != "ti") {
      std::fprintf(stderr, "model must be b or ti\n");
      return 2;
    }
    if (precision != "bf16" && precision != "fp16") {
      std::fprintf(stderr, "precision must be bf16 or fp16\n");
      return 2;
    }
    const bool base = model == "b", fp16 = precision == "fp16";
    if (base && !fp16) run<vf::specs::base(), vf::Bf16Mixed>("ViT-B", batch, steps, frozen);
    if (base && fp16) run<vf::specs::base(), vf::Fp16Mixed>("ViT-B", batch, steps, frozen);
    if (!base && !fp16) run<vf::specs::tiny(), vf::Bf16Mixed>("ViT-Ti", batch, steps, frozen);
    if (!base && fp16) run<vf::specs::tiny(), vf::Fp16Mixed>("ViT-Ti", batch, steps, frozen);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
