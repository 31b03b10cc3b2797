// One full MAE pretraining step on the GPU (forward, backward, fused AdamW, zero_grad) through the
// device modules, bf16 activations with fp32 master weights: images/s, achieved TFLOP/s (matrix
// products only, nn/flops.hpp's count, x3 for training) and the time saved by freezing a prefix of
// units (truncate semantics). The PyTorch reference on the same shapes is torch_mim_bench.py.
//   mae_step_bench [model=b|ti] [batch=256] [steps=20] [frozen units list, e.g. 0,4,8,12]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "step_bench.hpp"
#include "vitfreeze/backend/cuda/nn/mae.cuh"
#include "vitfreeze/backend/cuda/nn/optimizer.cuh"
#include "vitfreeze/nn/flops.hpp"

namespace {

namespace vf = vitfreeze;
namespace vc = vitfreeze::cuda;
namespace vn = vitfreeze::cuda::nn;

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

template <vf::ViTSpec S>
void run(const char* label, int batch, int steps, const std::vector<int>& frozen_list) {
  using P = vn::Bf16Mixed;
  using Mae = vf::mim::Mae<S, kMaeDecoder, true, float>;
  vc::CudaContext ctx;
  std::printf("== MAE %s/%d at %d px, mask 0.75, batch %d, %s, device %s\n", label, S.patch, S.image, batch, P::name,
              ctx.properties().name);
  auto encoder = std::make_unique<vf::nn::ViT<S, float>>(1);
  auto mae = std::make_unique<Mae>(1);

  const std::vector<vf::Tensor<float>> images = vf::bench::random_device_images(ctx, batch, S.channels, S.image);
  std::vector<vn::DeviceMasks> masks;
  for (int k = 0; k < vf::bench::kInputSets; ++k)
    masks.push_back(vn::DeviceMasks::upload(ctx, vf::mim::Random<750>::make(batch, S.grid(), S.grid(), 7, std::uint64_t(k))));
  const int keep = vf::mim::Random<750>::kept(S.grid(), S.grid());
  const double flops_per_image = double(mae_training_flops(S, kMaeDecoder, keep));
  std::printf("matrix-product FLOPs per image and step: %.3f GFLOP (encoder tokens %d, decoder tokens %d)\n",
              flops_per_image / 1e9, keep + 1, S.tokens() + 1);
  vc::DeviceBuffer loss = ctx.allocator().allocate(sizeof(double) * 2);

  double baseline_ms = 0;
  for (int frozen : frozen_list) {
    vn::DeviceMae<P> model(ctx, *encoder, *mae);
    if (frozen > 0) model.encoder.freeze_units(frozen);
    vn::DeviceParameterList<vf::bf16> params;
    model.collect_parameters(params);
    vn::DeviceAdamW<vf::bf16> optimizer(params, vf::optim::AdamWOptions{});
    const vf::bench::StepTiming t = vf::bench::time_steps(ctx, steps, [&](int i) {
      optimizer.zero_grad(ctx);
      model.forward_backward(ctx, images[i % vf::bench::kInputSets].data(), masks[i % vf::bench::kInputSets], loss.as<double>());
      optimizer.step(ctx, 1.5e-4);
    });
    vf::bench::report_step(ctx, frozen, t, batch, flops_per_image, baseline_ms, loss);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string model = argc > 1 ? argv[1] : "b";
  const int batch = argc > 2 ? std::atoi(argv[2]) : 256;
  const int steps = argc > 3 ? std::atoi(argv[3]) : 20;
  const std::vector<int> frozen = vf::bench::parse_int_list(argc > 4 ? argv[4] : "0");
  try {
    if (model == "b")
      run<vf::specs::base()>("ViT-B", batch, steps, frozen);
    else if (model == "ti")
      run<vf::specs::tiny()>("ViT-Ti", batch, steps, frozen);
    else {
      std::fprintf(stderr, "model must be b or ti\n");
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
