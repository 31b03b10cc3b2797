// One full LocalMIM pretraining step on the GPU (forward, backward, fused AdamW, zero_grad) of the
// explicit model on the CUDA backend (model::LocalMim<Cuda, P>), bf16 activations with fp32 master
// weights: LocalMIM ViT-B/16 at 224 px, mask 0.75, taps [1, 3, 9, 11] at scales [4, 2, 1, 1/2],
// 256-wide one-block decoders, 9-bin HOG targets computed inside the step. Prints images/s,
// achieved TFLOP/s (matrix products only, x3 for training) and the time saved by freezing a prefix
// of units; as the trainer does, a tap whose block is frozen is dropped. The PyTorch reference on
// the same shapes is torch_mim_bench.py (localmim-b).
//   localmim_step_bench [batch=256] [steps per timed block=20] [frozen units list, e.g. 0,4,8,12]
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "step_bench.hpp"
#include "vitfreeze/backend/cuda/backend.cuh"
#include "vitfreeze/backend/cuda/parameter_adamw.cuh"
#include "vitfreeze/mim/localmim.hpp"
#include "vitfreeze/model/localmim.hpp"
#include "vitfreeze/nn/flops.hpp"
#include "vitfreeze/optim/adamw.hpp"

namespace {

namespace vf = vitfreeze;
namespace vc = vitfreeze::cuda;

// The paper's taps, decoders and 9 bins. (The spec is a template parameter throughout: nvcc's host
// code generation rejects a namespace-scope ViTSpec constant as a template argument.)
template <vf::ViTSpec S>
using HostLocalMim = vf::mim::LocalMim<S>;

// Forward matrix-product FLOPs of scale head (num/den) per image: transposed convolutions and 1x1
// convolutions as GEMMs over their input pixels (a 2x2 stride-2 ConvT to c channels = 4c outputs).
constexpr std::int64_t scale_head_forward_flops(int grid, std::int64_t dd, int num, int den, std::int64_t out) {
  const std::int64_t cells = std::int64_t(grid) * grid;
  if (num == 4)
    return vf::nn::linear_forward_flops(cells, dd, 2 * dd) + vf::nn::linear_forward_flops(4 * cells, dd / 2, dd) +
           vf::nn::linear_forward_flops(16 * cells, dd / 4, out);
  if (num == 2) return vf::nn::linear_forward_flops(cells, dd, 2 * dd) + vf::nn::linear_forward_flops(4 * cells, dd / 2, out);
  if (den == 2) return vf::nn::linear_forward_flops(cells / 4, dd, out);
  return vf::nn::linear_forward_flops(cells, dd, out);
}

// Matrix-product FLOPs of one LocalMIM training step per image (forward x 3): the encoder on the
// visible tokens up to the deepest tap, every tap's decoder embedding and blocks over all positions,
// and its head. embedded_patches: the patches the patch embedding runs on (K here, where the
// embedding runs after masking; L in the PyTorch reference, which embeds before masking).
template <vf::ViTSpec S>
constexpr std::int64_t localmim_training_flops(int keep, int embedded_patches) {
  constexpr vf::mim::DecoderSpec d = vf::mim::kLocalMimDecoder;
  const std::int64_t enc_tokens = keep + 1, dec_tokens = S.tokens() + 1;
  int deepest = 0;
  for (const auto& t : HostLocalMim<S>::tap_specs) deepest = std::max(deepest, t.block);
  std::int64_t f = vf::nn::patch_embed_forward_flops(embedded_patches, S.patch_dim(), S.dim);
  f += (deepest + 1) * vf::nn::transformer_block_forward_flops(enc_tokens, S.dim, S.mlp_ratio);
  for (const auto& t : HostLocalMim<S>::tap_specs) {
    f += vf::nn::linear_forward_flops(enc_tokens, S.dim, d.dim);
    f += d.depth * vf::nn::transformer_block_forward_flops(dec_tokens, d.dim, d.mlp_ratio);
    f += scale_head_forward_flops(S.grid(), d.dim, t.scale_num, t.scale_den, HostLocalMim<S>::out_dim(0));
  }
  return 3 * f;
}

template <vf::ViTSpec S>
void run(int batch, int steps, const std::vector<int>& frozen_list) {
  using P = vf::Bf16Mixed;
  vc::CudaContext ctx;
  std::printf("== LocalMIM ViT-B/%d at %d px, mask 0.75, batch %d, %s, device %s\n", S.patch, S.image, batch, P::name,
              ctx.properties().name);
  auto encoder = std::make_unique<vf::nn::ViT<S, float>>(1);
  auto mim = std::make_unique<HostLocalMim<S>>(1);

  const std::vector<vc::DeviceTensor<float>> images = vf::bench::random_device_images(ctx, batch, S.channels, S.image);
  std::vector<vf::mim::MaskSet> masks;
  for (int k = 0; k < vf::bench::kInputSets; ++k)
    masks.push_back(vf::mim::Random<750>::make(batch, S.grid(), S.grid(), 7, std::uint64_t(k)));
  const int keep = vf::mim::Random<750>::kept(S.grid(), S.grid());
  const double flops_per_image = double(localmim_training_flops<S>(keep, keep));
  std::printf("matrix-product FLOPs per image and step: %.3f GFLOP executed (patch embedding on the %d visible patches); "
              "%.3f GFLOP in the PyTorch reference's count (embedding all %d patches)\n",
              flops_per_image / 1e9, keep, double(localmim_training_flops<S>(keep, S.tokens())) / 1e9, S.tokens());
  const vc::DeviceTensor<double> loss = ctx.empty<double>(vf::Shape{2});

  double baseline_ms = 0;
  for (int frozen : frozen_list) {
    vf::model::LocalMim<vf::Cuda, P> model(ctx, *encoder, *mim);
    std::vector<typename vf::model::LocalMim<vf::Cuda, P>::MaskBuffers> device_masks;
    for (const auto& m : masks) device_masks.push_back(model.upload_masks(ctx, m));
    std::string dropped;
    if (frozen > 0) {
      vf::testing::freeze_units(model.encoder, frozen);
      for (int k = 0; k < model.tap_count(); ++k)
        if (model.taps[std::size_t(k)].block + 1 < frozen) {  // block b is unit b + 1
          model.drop_tap(k);
          dropped += (dropped.empty() ? " (dropped taps " : ",") + std::to_string(k);
        }
      if (!dropped.empty()) dropped += ")";
    }
    vf::model::ParameterRefs<vf::Cuda, P> params;
    model.collect_parameters(params);
    vc::ParameterAdamW<P> optimizer(params, vf::optim::AdamWOptions{});
    const vf::bench::StepTiming t = vf::bench::time_steps(ctx, steps, [&](int i) {
      optimizer.zero_grad(ctx);
      model.forward_backward(ctx, images[i % vf::bench::kInputSets], device_masks[i % vf::bench::kInputSets], loss.data());
      optimizer.step(ctx, 1.5e-4);
    });
    vf::bench::report_step(ctx, frozen, t, batch, flops_per_image, baseline_ms, loss, dropped);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // The PyTorch reference's count for LocalMIM ViT-B (torch_mim_bench.py flops_per_image): 31.40 GFLOP.
  static_assert(localmim_training_flops<vf::specs::base()>(49, 196) == 31'402'928'640LL);
  const int batch = argc > 1 ? std::atoi(argv[1]) : 256;
  const int steps = argc > 2 ? std::atoi(argv[2]) : 20;
  const std::vector<int> frozen = vf::bench::parse_int_list(argc > 3 ? argv[3] : "0");
  try {
    run<vf::specs::base()>(batch, steps, frozen);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
