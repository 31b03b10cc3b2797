// The two objectives that had no GPU version before the single model: a whole step of the explicit
// model on the CUDA backend against the CPU tape, from the same host-initialised weights, images and
// masks: the loss and the gradient of every parameter.
//   MiCL (model::Micl<Cuda, P>): two views of the visible patches per image (RandomRatio with 2 views,
//     as the trainer draws them), the contrastive loss on the host (backend/cuda/backend.cuh); and
//     the GPU engine refuses whole-step graphs for it.
//   MAE-lite (model::Mae<Cuda, P> on mim::MaeLite): ViT-Tiny with 12 heads of 16, a 96-wide 1-block
//     decoder.
// Fp32: rounding-level agreement; Bf16Mixed: bf16 bounds; Fp16Mixed seeded with a loss scale of 1024
// (gradients compared divided by it). None of these has run on a GPU yet: the half-precision bounds
// for MiCL are guesses (its normalised, temperature-scaled logits amplify rounding in z).
// Exit 0 pass, 1 fail, 77 without a GPU.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include <vitfreeze/cuda.hpp>

#include "device_checks.hpp"
#include "vitfreeze/mim/mae_lite.hpp"
#include "vitfreeze/mim/masking.hpp"
#include "vitfreeze/mim/micl.hpp"
#include "vitfreeze/model/explicit_of.hpp"
#include "vitfreeze/train/cuda_step_engine.cuh"

namespace {

namespace vf = vitfreeze;
namespace vc = vitfreeze::cuda;
using namespace vitfreeze::testing;  // device_checks.hpp

constexpr int kBatch = 5;

struct MiclConfig {
  static constexpr vf::ViTSpec spec{16, 3, 4, 64, 3, 2, 4};  // 16 patches, head dim 32
  using Objective = vf::mim::Micl<spec>;
  static vf::mim::MaskSet masks(std::uint64_t seed) {
    return vf::mim::RandomRatio{500, 2}.make(kBatch, spec.grid(), spec.grid(), seed, 0);  // 8 kept, 4 per view
  }
};
struct MaeLiteConfig {
  static constexpr vf::ViTSpec spec = vf::mim::mae_lite_tiny(16, 3, 4);  // 12 heads of 16
  using Objective = vf::mim::MaeLite<spec>;
  static vf::mim::MaskSet masks(std::uint64_t seed) {
    return vf::mim::RandomRatio{750}.make(kBatch, spec.grid(), spec.grid(), seed, 0);
  }
};

template <class Config>
struct HostModel {
  vf::nn::ViT<Config::spec, float> encoder{7};
  typename Config::Objective objective{7};
  HostModel() { nudge_off_init(parameters()); }
  std::vector<vf::Parameter<float>*> parameters() { return host_parameters(encoder, objective); }
};

template <class Config, vf::PrecisionPolicy P>
void compare_step(DeviceChecker& c, double loss_tol, double grad_tol, float loss_scale = 1.0f) {
  using Objective = typename Config::Objective;
  HostModel<Config> host;
  const vf::Tensor<float> images = random_images(kBatch, Config::spec.channels, Config::spec.image, 1);
  const vf::mim::MaskSet masks = Config::masks(3);
  const double cpu_loss = host_loss_and_grads(host.objective, host.encoder, images, masks);

  vc::CudaContext ctx;
  vf::model::ExplicitOf<Objective, vf::Cuda, P> model(ctx, host.encoder, host.objective);
  vf::model::ParameterRefs<vf::Cuda, P> params;
  model.collect_parameters(params);
  const vc::DeviceTensor<float> images_device = vc::to_device(ctx, images);
  const auto device_masks = model.upload_masks(ctx, masks);
  const vc::DeviceTensor<double> loss = ctx.empty<double>(vf::Shape{2});
  const vc::DeviceTensor<float> scale = vc::to_device(ctx, vf::Tensor<float>::full(vf::Shape{1}, loss_scale));
  model.forward_backward(ctx, images_device, device_masks, loss.data(), loss_scale != 1.0f ? scale.data() : nullptr);
  const std::string tag = std::string(Objective::name) + " step " + P::name +
                          (loss_scale != 1.0f ? " (loss scale " + std::to_string(loss_scale) + ")" : "") + ": ";
  compare_with_host(c, tag, ctx, device_loss(loss), cpu_loss, params, host.parameters(), loss_tol, grad_tol, loss_scale);
}

// Its contrastive loss waits for the GPU inside the step: no CUDA graph can hold it.
void check_micl_refuses_graphs(DeviceChecker& c) {
  using Objective = MiclConfig::Objective;
  HostModel<MiclConfig> host;
  vc::CudaContext ctx;
  bool refused = false;
  try {
    vf::train::CudaStepEngine<vf::nn::ViT<MiclConfig::spec, float>, Objective, vf::Fp32> engine(
        host.encoder, host.objective, host.parameters(), ctx, vf::optim::AdamWOptions{}, {.step_graphs = true});
  } catch (const vf::ConfigError& e) {
    refused = std::string(e.what()).find("graphs") != std::string::npos;
  }
  c.expect(refused, "MiCL: the GPU engine refuses whole-step graphs, saying why");
}

void device_checks(DeviceChecker& c) {
  section(c, "micl fp32", [&] { compare_step<MiclConfig, vf::Fp32>(c, 1e-5, 1e-4); });
  section(c, "micl bf16", [&] { compare_step<MiclConfig, vf::Bf16Mixed>(c, 3e-2, 1e-1); });
  section(c, "micl fp16", [&] { compare_step<MiclConfig, vf::Fp16Mixed>(c, 1.5e-2, 5e-2, 1024.0f); });
  section(c, "micl graphs", [&] { check_micl_refuses_graphs(c); });
  section(c, "mae-lite fp32", [&] { compare_step<MaeLiteConfig, vf::Fp32>(c, 1e-5, 1e-4); });
  section(c, "mae-lite bf16", [&] { compare_step<MaeLiteConfig, vf::Bf16Mixed>(c, 2e-2, 4e-2); });
  section(c, "mae-lite fp16", [&] { compare_step<MaeLiteConfig, vf::Fp16Mixed>(c, 1e-2, 2e-2, 1024.0f); });
}

}  // namespace

int main() {
  DeviceChecker c;
  return vf::testing::run_device_test(device_checks, c);
}
