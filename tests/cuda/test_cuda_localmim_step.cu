// A whole LocalMIM step of the explicit model on the CUDA backend (model::LocalMim<Cuda, P>) against
// the CPU tape, from the same host-initialised weights
// and the same masks: the loss and the gradient of every parameter, for a 3-channel model whose
// taps cover the scales 4, 2, 1 and 1/2 (two taps share a block) and a 1-channel model (HOG on
// one channel). Fp32 policy: rounding-level agreement; Bf16Mixed: bf16 tolerances. Then freezing as
// the trainer does it: a frozen encoder prefix plus a dropped tap on both sides give the same loss
// and gradients, the frozen and dropped tensors have no gradient or optimizer state, and the step
// allocates nothing from the second step on. Exit 0 pass, 1 fail, 77 without a GPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <vitfreeze/cuda.hpp>

#include "device_checks.hpp"
#include "vitfreeze/backend/cuda/backend.cuh"
#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/mim/localmim.hpp"
#include "vitfreeze/model/localmim.hpp"

namespace {

namespace vf = vitfreeze;
namespace vc = vitfreeze::cuda;
using vf::mim::TapSpec;
using namespace vitfreeze::testing;  // device_checks.hpp

// 8x8 patches; taps after blocks 0, 1, 3, 3 at scales 4 (HOG cell 1 px), 2, 1, 1/2 (cell 8 px).
struct RgbConfig {
  static constexpr vf::ViTSpec spec{32, 3, 4, 64, 4, 2, 4};
  static constexpr vf::mim::DecoderSpec decoder{.dim = 32, .depth = 1, .heads = 2, .mlp_ratio = 4};
  using Taps = vf::mim::taps<TapSpec{0, 4, 1}, TapSpec{1, 2, 1}, TapSpec{3, 1, 1}, TapSpec{3, 1, 2}>;
  static constexpr const char* name = "rgb";
};
// 4x4 patches of a 1-channel image; scales 4 and 1/2.
struct GreyConfig {
  static constexpr vf::ViTSpec spec{16, 1, 4, 32, 2, 2, 4};
  static constexpr vf::mim::DecoderSpec decoder{.dim = 16, .depth = 1, .heads = 2, .mlp_ratio = 4};
  using Taps = vf::mim::taps<TapSpec{0, 4, 1}, TapSpec{1, 1, 2}>;
  static constexpr const char* name = "grey";
};
constexpr int kBatch = 17;  // 17 x 16 x 16 = 4352 LayerNorm2d rows: its chunked parameter-gradient path runs

template <class Config>
struct HostModel {
  vf::nn::ViT<Config::spec, float> encoder{7};
  vf::mim::LocalMim<Config::spec, typename Config::Taps, Config::decoder, vf::mim::Hog<9>, float> mim{7};
  HostModel() { vf::testing::nudge_off_init(parameters()); }
  std::vector<vf::Parameter<float>*> parameters() { return host_parameters(encoder, mim); }
};

template <class P>
using DeviceLocalMim = vf::model::LocalMim<vf::Cuda, P>;
template <class P>
vf::model::ParameterRefs<vf::Cuda, P> parameters_of(DeviceLocalMim<P>& m) {
  vf::model::ParameterRefs<vf::Cuda, P> out;
  m.collect_parameters(out);
  return out;
}

template <class Config>
vf::Tensor<float> random_images(std::uint64_t stream) {
  return vf::testing::random_images(kBatch, Config::spec.channels, Config::spec.image, stream);
}

template <class Config, vf::PrecisionPolicy P>
void compare_step(DeviceChecker& c, double loss_tol, double grad_tol) {
  constexpr vf::ViTSpec s = Config::spec;
  HostModel<Config> host;
  const vf::Tensor<float> images = random_images<Config>(1);
  const vf::mim::MaskSet masks = vf::mim::Random<750>::make(kBatch, s.grid(), s.grid(), 3, 0);
  const double cpu_loss = host_loss_and_grads(host.mim, host.encoder, images, masks);

  vc::CudaContext ctx;
  DeviceLocalMim<P> model(ctx, host.encoder, host.mim);
  const vc::DeviceTensor<float> images_device = vc::to_device(ctx, images);
  const auto device_masks = model.upload_masks(ctx, masks);
  const vc::DeviceTensor<double> loss = ctx.empty<double>(vf::Shape{2});
  model.forward_backward(ctx, images_device, device_masks, loss.data());
  compare_with_host(c, std::string("LocalMIM ") + Config::name + " " + P::name + ": ", ctx, device_loss(loss), cpu_loss,
                    parameters_of(model), host.parameters(), loss_tol, grad_tol);
}

// The trainer's freezing, on both sides: units 0-1 (patch embedding + cls, block 0) frozen and the
// tap reading block 0 dropped. Same loss and gradients as the CPU; no state for what does not train;
// no cudaMalloc once the step has run once.
void check_freezing(DeviceChecker& c) {
  using Config = RgbConfig;
  using P = vf::Fp32;
  constexpr vf::ViTSpec s = Config::spec;
  HostModel<Config> host;
  vf::nn::ParameterList<float> prefix;
  prefix.push_back(&host.encoder.cls_token);
  host.encoder.patch_embed.collect_parameters(prefix);
  host.encoder.blocks[0].collect_parameters(prefix);
  for (auto* p : prefix) p->freeze();
  host.mim.drop_tap(0);

  const vf::Tensor<float> images = random_images<Config>(2);
  const vf::mim::MaskSet masks = vf::mim::Random<750>::make(kBatch, s.grid(), s.grid(), 4, 0);
  const double cpu_loss = host_loss_and_grads(host.mim, host.encoder, images, masks);

  vc::CudaContext ctx;
  HostModel<Config> fresh;  // unfrozen host weights: the device freezes on its own
  DeviceLocalMim<P> model(ctx, fresh.encoder, fresh.mim);
  freeze_units(model.encoder, 2);
  model.drop_tap(0);
  const auto params = parameters_of(model);
  const vc::DeviceTensor<float> images_device = vc::to_device(ctx, images);
  const auto device_masks = model.upload_masks(ctx, masks);
  const vc::DeviceTensor<double> loss = ctx.empty<double>(vf::Shape{2});
  model.forward_backward(ctx, images_device, device_masks, loss.data());
  compare_with_host(c, "LocalMIM frozen prefix + dropped tap: ", ctx, device_loss(loss), cpu_loss, params,
                    host.parameters(), 1e-5, 1e-4);

  vf::model::ParameterRefs<vf::Cuda, P> dropped;
  model.collect_tap_parameters(0, dropped);
  bool none_trains = !model.tap_active(0);
  for (auto* p : dropped) none_trains = none_trains && !p->trainable();
  c.expect(none_trains && !dropped.empty(), "dropped tap: inactive, its " + std::to_string(dropped.size()) +
                                                " tensors without gradient or moments");
  int frozen = 0;
  for (auto* p : params) frozen += !p->trainable();
  const int want = 3 + 12 + int(dropped.size());
  c.expect(frozen == want, "frozen prefix + dropped tap: " + std::to_string(frozen) + " tensors without state (want " +
                               std::to_string(want) + ")");

  const std::size_t mallocs = ctx.allocator().stats().malloc_calls;
  for (int step = 0; step < 2; ++step) model.forward_backward(ctx, images_device, device_masks, loss.data());
  ctx.synchronize();
  c.expect(ctx.allocator().stats().malloc_calls == mallocs,
           "steady state: no cudaMalloc in steps 2 and 3 (" + std::to_string(ctx.allocator().stats().malloc_calls - mallocs) +
               " seen)");
}

void device_checks(DeviceChecker& c) {
  compare_step<RgbConfig, vf::Fp32>(c, 1e-5, 1e-4);
  compare_step<RgbConfig, vf::Bf16Mixed>(c, 2e-2, 4e-2);
  compare_step<GreyConfig, vf::Fp32>(c, 1e-5, 1e-4);
  compare_step<GreyConfig, vf::Bf16Mixed>(c, 2e-2, 4e-2);
  section(c, "freezing", [&] { check_freezing(c); });
}

}  // namespace

int main() {
  DeviceChecker c;
  return vf::testing::run_device_test(device_checks, c);
}
