// A whole MAE step on the GPU against the CPU backend, from the same host-initialised weights and
// the same masks: the loss and the gradient of every parameter. Fp32 policy: rounding-level
// agreement (exact-erf GELU, fp32 GEMMs); Bf16Mixed: bf16 tolerances; Fp16Mixed with a loss scale
// (gradients read back divided by it). fp16 dynamic loss scaling in AdamW: the scaled update equals
// the unscaled one bit for bit, a step with a NaN gradient changes nothing (values, moments, step
// counts), the device schedule follows the host rule step by step, and a run whose gradients stay
// non-finite stops with a NumericError. Then freezing (truncate
// semantics): trained gradients unchanged, frozen tensors without gradient or optimizer state and
// bit-identical after AdamW steps, and the allocator in its steady state (no cudaMalloc) from the
// second step on. Freezing with the embedding still training (freeze_prefix): gradients pass through
// the frozen blocks. Exit 0 pass, 1 fail, 77 without a GPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <vitfreeze/cuda.hpp>

#include "device_checks.hpp"
#include "vitfreeze/backend/cuda/nn/mae.cuh"
#include "vitfreeze/backend/cuda/nn/optimizer.cuh"
#include "vitfreeze/backend/cuda/step_graph.hpp"
#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/mim/mae.hpp"

namespace {

namespace vf = vitfreeze;
namespace vc = vitfreeze::cuda;
namespace vn = vitfreeze::cuda::nn;
using namespace vitfreeze::testing;  // device_checks.hpp

constexpr vf::ViTSpec kSpec{16, 3, 4, 64, 3, 2, 4};  // 16 patches, 3 blocks, head dim 32
constexpr vf::mim::DecoderSpec kDecoder{.dim = 32, .depth = 2, .heads = 2, .mlp_ratio = 4};
using HostEncoder = vf::nn::ViT<kSpec, float>;
using HostMae = vf::mim::Mae<kSpec, kDecoder, vf::mim::NormalizedPixels, float>;
constexpr int kBatch = 5;

struct HostModel {
  HostEncoder encoder{7};
  HostMae mae{7};
  HostModel() { vf::testing::nudge_off_init(parameters()); }
  std::vector<vf::Parameter<float>*> parameters() {
    std::vector<vf::Parameter<float>*> out;
    vf::nn::ParameterList<float> ps;
    encoder.collect_parameters(ps);
    mae.collect_parameters(ps);
    for (auto* p : ps) out.push_back(p);
    return out;
  }
};

vf::Tensor<float> random_images(std::uint64_t stream) {
  return vf::testing::random_images(kBatch, kSpec.channels, kSpec.image, stream);
}

// loss_scale != 1: the loss gradient is seeded with it (a device float, as under fp16 loss scaling)
// and the gradients are compared divided by it.
template <vn::PrecisionPolicy P>
void compare_step(DeviceChecker& c, double loss_tol, double grad_tol, float loss_scale = 1.0f) {
  HostModel host;
  const vf::Tensor<float> images = random_images(1);
  const vf::mim::MaskSet masks = vf::mim::Random<750>::make(kBatch, kSpec.grid(), kSpec.grid(), 3, 0);
  const double cpu_loss = host_loss_and_grads(host.mae, host.encoder, images, masks);

  vc::CudaContext ctx;
  vn::DeviceMae<P> model(ctx, host.encoder, host.mae);
  vn::DeviceParameterList<typename P::Activation> params;
  model.collect_parameters(params);
  const vf::Tensor<float> images_device = vc::to_device(ctx, images);
  const vn::DeviceMasks device_masks = vn::DeviceMasks::upload(ctx, masks);
  vc::DeviceBuffer loss = ctx.allocator().allocate(2 * sizeof(double));
  const vc::DeviceBuffer scale = vn::upload_bytes(ctx, &loss_scale, sizeof(float));
  model.forward_backward(ctx, images_device.data(), device_masks, loss.as<double>(),
                         loss_scale != 1.0f ? vn::data_of<float>(scale) : nullptr);
  const double gpu_loss = device_loss(loss);

  const std::string tag = std::string("MAE step ") + P::name + (loss_scale != 1.0f ? " (loss scale " + std::to_string(loss_scale) + ")" : "") + ": ";
  c.close(tag + "loss", std::vector<double>{gpu_loss}, std::vector<double>{cpu_loss}, loss_tol);
  const auto host_params = host.parameters();
  c.expect(host_params.size() == params.size(), tag + "same parameter list as the CPU model");
  for (std::size_t i = 0; i < params.size() && i < host_params.size(); ++i) {
    c.expect(params[i]->name == host_params[i]->name, tag + "parameter " + std::to_string(i) + " is " + host_params[i]->name);
    std::vector<float> grad = to_vector(params[i]->grad_to_host(ctx));
    for (float& g : grad) g /= loss_scale;
    c.close(tag + "grad " + params[i]->name, grad, to_vector(host_params[i]->grad), grad_tol);
  }
}

// ---- fp16 dynamic loss scaling in the optimizer ----------------------------------------------------
// Two copies of one fp16 model: `scaled` with loss scaling on gets every gradient times the current
// scale (a power of two: exact), `plain` without it gets the gradient itself. Steps 2 and 5 carry a
// NaN in one gradient of `scaled` (`plain` sits those steps out).
void check_loss_scaling(DeviceChecker& c) {
  using P = vn::Fp16Mixed;
  using T = typename P::Activation;
  HostModel host;
  vc::CudaContext ctx;
  vn::DeviceMae<P> scaled_model(ctx, host.encoder, host.mae), plain_model(ctx, host.encoder, host.mae);
  vn::DeviceParameterList<T> ps, pp;
  scaled_model.collect_parameters(ps);
  plain_model.collect_parameters(pp);
  vn::DeviceAdamW<T> scaled(ps, vf::optim::AdamWOptions{}), plain(pp, vf::optim::AdamWOptions{});
  const vf::optim::LossScaleOptions options{1024.0f, 2.0f, 0.5f, 2, 3};
  scaled.enable_loss_scaling(ctx, options);
  c.expect(scaled.loss_scale_device() != nullptr && plain.loss_scale_device() == nullptr,
           "loss scaling: the scaled optimizer exposes its device scale, the plain one none");
  vf::optim::LossScaleState expected = vf::optim::initial_loss_scale_state(options);

  // Every float the update touches, of every tensor: master, m, v, then the fp16 working copy's bits.
  auto snapshot = [&](const vn::DeviceParameterList<T>& list) {
    std::vector<std::uint32_t> bits;
    for (const auto* p : list) {
      for (const float* buffer : {static_cast<const float*>(p->master()), static_cast<const float*>(p->m()),
                                  static_cast<const float*>(p->v())})
        for (float x : download(ctx, buffer, p->numel())) bits.push_back(std::bit_cast<std::uint32_t>(x));
      for (T x : download(ctx, p->value(), p->numel())) bits.push_back(x.bits);
    }
    return bits;
  };
  auto step_counts = [](const vn::DeviceParameterList<T>& list) {
    std::vector<std::int64_t> steps;
    for (const auto* p : list) steps.push_back(p->step);
    return steps;
  };

  for (int step = 0; step < 7; ++step) {
    const bool poison = step == 2 || step == 5;
    const std::string tag = "loss scaling step " + std::to_string(step) + (poison ? " (NaN gradient)" : "") + ": ";
    for (std::size_t i = 0; i < ps.size(); ++i) {
      std::vector<float> g = random_uniform(11, std::uint64_t(100 * step + i), std::size_t(ps[i]->numel()), -0.1f, 0.1f);
      vc::check(cudaMemcpy(pp[i]->grad(), g.data(), g.size() * sizeof(float), cudaMemcpyHostToDevice), "upload grad");
      for (float& x : g) x *= expected.scale;
      if (poison && i == ps.size() / 2) g[g.size() / 2] = std::numeric_limits<float>::quiet_NaN();
      vc::check(cudaMemcpy(ps[i]->grad(), g.data(), g.size() * sizeof(float), cudaMemcpyHostToDevice), "upload grad");
    }
    const auto before = snapshot(ps);
    const double lr = 1e-3 * (step + 1);
    scaled.step(ctx, lr);
    if (!poison) plain.step(ctx, lr);
    const vf::optim::LossScaleState got = scaled.settle_loss_scale();
    expected.found_non_finite = poison;
    vf::optim::advance_loss_scale(expected, options);
    c.expect(got.scale == expected.scale && got.good_steps == expected.good_steps &&
                 got.consecutive_skips == expected.consecutive_skips && got.skipped_steps == expected.skipped_steps &&
                 got.found_non_finite == int(poison),
             tag + "device schedule = host rule (scale " + std::to_string(got.scale) + ", want " +
                 std::to_string(expected.scale) + "; skipped " + std::to_string(got.skipped_steps) + ")");
    if (poison)
      c.expect(snapshot(ps) == before, tag + "no value, moment or working copy changed");
    else
      c.expect(snapshot(ps) == snapshot(pp), tag + "scaled update bit-identical to the unscaled one");
    c.expect(step_counts(ps) == step_counts(pp), tag + "AdamW step counts count applied updates only");
  }

  // Gradients that stay non-finite: more than max_consecutive_skips (3) skips in a row must stop it.
  bool stopped = false;
  for (int step = 0; step < 6 && !stopped; ++step) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    vc::check(cudaMemcpy(ps[0]->grad(), &nan, sizeof(float), cudaMemcpyHostToDevice), "poison grad");
    try {
      scaled.step(ctx, 1e-3);
      (void)scaled.settle_loss_scale();
    } catch (const vf::NumericError& e) {
      stopped = true;
      c.expect(std::string(e.what()).find("in a row") != std::string::npos, std::string("diverged run: ") + e.what());
    }
  }
  c.expect(stopped, "loss scaling: non-finite gradients step after step stop the run with a NumericError");
}

// Two device models from the same host weights and one batch; `frozen` gets a frozen prefix.
struct FreezeFixture {
  using P = vn::Fp32;
  HostModel host;
  vc::CudaContext ctx;
  vf::Tensor<float> images_device;
  vn::DeviceMasks device_masks;
  vc::DeviceBuffer loss;
  vn::DeviceMae<P> full, frozen;

  FreezeFixture(std::uint64_t images_stream, std::uint64_t mask_seed)
      : images_device(vc::to_device(ctx, random_images(images_stream))),
        device_masks(vn::DeviceMasks::upload(ctx, vf::mim::Random<750>::make(kBatch, kSpec.grid(), kSpec.grid(), mask_seed, 0))),
        loss(ctx.allocator().allocate(2 * sizeof(double))),
        full(ctx, host.encoder, host.mae),
        frozen(ctx, host.encoder, host.mae) {}

  // One forward/backward of each: every tensor that still trains must have the gradient of the
  // unfrozen model. Returns how many tensors are frozen.
  int compare_trained_grads(DeviceChecker& c, const std::string& label) {
    full.forward_backward(ctx, images_device.data(), device_masks, loss.as<double>());
    frozen.forward_backward(ctx, images_device.data(), device_masks, loss.as<double>());
    vn::DeviceParameterList<float> pf, pz;
    full.collect_parameters(pf);
    frozen.collect_parameters(pz);
    int frozen_count = 0;
    for (std::size_t i = 0; i < pz.size(); ++i) {
      if (!pz[i]->trainable()) {
        ++frozen_count;
        continue;
      }
      c.close(label + ": trained grad " + pz[i]->name + " as without freezing", to_vector(pz[i]->grad_to_host(ctx)),
              to_vector(pf[i]->grad_to_host(ctx)), 1e-6);
    }
    return frozen_count;
  }
};

// Freezing units [0, n) on the device: same gradients for what still trains, no state for what
// does not, frozen values untouched by AdamW, and no cudaMalloc once the step has run once.
void check_freezing(DeviceChecker& c) {
  FreezeFixture f(2, 4);
  auto& ctx = f.ctx;
  const int n = 2;  // patch embedding + cls, block 0
  f.frozen.encoder.freeze_units(n);
  const int frozen_count = f.compare_trained_grads(c, "frozen prefix"), frozen_expected = 3 + 12;  // cls, patch_embed w/b; block 0: 12 tensors
  vn::DeviceParameterList<float> pz;
  f.frozen.collect_parameters(pz);
  auto& frozen = f.frozen;
  const auto& images_device = f.images_device;
  const auto& device_masks = f.device_masks;
  auto& loss = f.loss;
  c.expect(frozen_count == frozen_expected, "frozen prefix: " + std::to_string(frozen_count) + " tensors without gradient or moments (want " +
                                                std::to_string(frozen_expected) + ")");

  std::vector<std::vector<float>> before;
  for (auto* p : pz) {
    vf::Parameter<float> copy(p->name, p->shape(), p->decay);
    p->values_to_host(ctx, copy);
    before.push_back(to_vector(copy.value));
  }
  vn::DeviceAdamW<float> optimizer(pz, vf::optim::AdamWOptions{});
  optimizer.step(ctx, 1e-3);
  std::size_t mallocs = 0;
  for (int step = 1; step < 5; ++step) {  // two steps to settle the cache, two measured
    if (step == 3) mallocs = ctx.allocator().stats().malloc_calls;
    optimizer.zero_grad(ctx);
    frozen.forward_backward(ctx, images_device.data(), device_masks, loss.as<double>());
    optimizer.step(ctx, 1e-3);
  }
  ctx.synchronize();
  c.expect(ctx.allocator().stats().malloc_calls == mallocs,
           "steady state: no cudaMalloc in steps 4 and 5 (" + std::to_string(ctx.allocator().stats().malloc_calls - mallocs) + " seen)");
  bool frozen_identical = true, trained_moved = false;
  for (std::size_t i = 0; i < pz.size(); ++i) {
    vf::Parameter<float> copy(pz[i]->name, pz[i]->shape(), pz[i]->decay);
    pz[i]->values_to_host(ctx, copy);
    const bool same = std::memcmp(copy.value.data(), before[i].data(), before[i].size() * sizeof(float)) == 0;
    if (!pz[i]->trainable()) frozen_identical = frozen_identical && same;
    else trained_moved = trained_moved || !same;
  }
  c.expect(frozen_identical, "frozen tensors bit-identical after 5 AdamW steps");
  c.expect(trained_moved, "trained tensors changed by AdamW");
}

// The same three steps (a freeze before the third) run eagerly and through StepGraph: one capture,
// replays, a recapture after the freeze. Fp32 runs deterministic kernels only, so losses and every
// parameter must agree bit for bit; Bf16Mixed (cuDNN attention when compiled in, whose backward may
// accumulate in any order) must capture and agree to bf16 rounding.
template <vn::PrecisionPolicy P>
void check_graph_replay(DeviceChecker& c, bool bitwise) {
  using T = typename P::Activation;
  HostModel host;
  vc::CudaContext ctx;
  std::vector<vf::Tensor<float>> images;
  std::vector<vf::mim::MaskSet> masks;
  for (int i = 0; i < 3; ++i) {
    images.push_back(vc::to_device(ctx, random_images(10 + i)));
    masks.push_back(vf::mim::Random<750>::make(kBatch, kSpec.grid(), kSpec.grid(), 6, std::uint64_t(i)));
  }
  vn::DeviceMae<P> eager(ctx, host.encoder, host.mae), graphed(ctx, host.encoder, host.mae);
  vn::DeviceParameterList<T> pe, pg;
  eager.collect_parameters(pe);
  graphed.collect_parameters(pg);
  vn::DeviceAdamW<T> opt_eager(pe, vf::optim::AdamWOptions{}), opt_graph(pg, vf::optim::AdamWOptions{});
  vc::DeviceBuffer loss_eager = ctx.allocator().allocate(2 * sizeof(double));
  vc::DeviceBuffer loss_graph = ctx.allocator().allocate(2 * sizeof(double));
  vf::Tensor<float> static_images = ctx.empty<float>(images[0].shape());
  vn::DeviceMasks static_masks = vn::DeviceMasks::upload(ctx, masks[0]);
  vc::StepGraph graph;
  const std::string tag = std::string("graph replay ") + P::name + ": ";
  for (int i = 0; i < 3; ++i) {
    if (i == 2) {  // a unit freezes: the graph must be captured again
      eager.encoder.freeze_units(2);
      graphed.encoder.freeze_units(2);
    }
    const double lr = 1e-3 * (i + 1);
    const vn::DeviceMasks m = vn::DeviceMasks::upload(ctx, masks[i]);
    opt_eager.zero_grad(ctx);
    eager.forward_backward(ctx, images[i].data(), m, loss_eager.as<double>());
    opt_eager.step(ctx, lr);

    vc::check(cudaMemcpyAsync(static_images.data(), images[i].data(), images[i].bytes(), cudaMemcpyDeviceToDevice, ctx.stream()),
              "cudaMemcpyAsync(images)");
    static_masks.assign(ctx, masks[i]);
    opt_graph.stage(ctx, lr);
    graph.run(ctx, std::uint64_t(graphed.encoder.frozen_units()), [&] {
      opt_graph.zero_grad(ctx);
      graphed.forward_backward(ctx, static_images.data(), static_masks, loss_graph.as<double>());
      opt_graph.launch(ctx);
    });
    double le = 0, lg = 0;
    vc::check(cudaMemcpyAsync(&le, loss_eager.data(), sizeof(double), cudaMemcpyDeviceToHost, ctx.stream()), "loss");
    vc::check(cudaMemcpyAsync(&lg, loss_graph.data(), sizeof(double), cudaMemcpyDeviceToHost, ctx.stream()), "loss");
    ctx.synchronize();
    if (bitwise)
      c.expect(le == lg, tag + "step " + std::to_string(i) + " loss identical (" + std::to_string(le) + ")");
    else
      c.close(tag + "step " + std::to_string(i) + " loss", std::vector<double>{lg}, std::vector<double>{le}, 1e-2);
  }
  c.expect(graph.captures() == 2, tag + "captured twice (before and after the freeze), got " + std::to_string(graph.captures()));
  bool identical = true;
  double worst = 0;
  for (std::size_t i = 0; i < pe.size(); ++i) {
    vf::Parameter<float> a(pe[i]->name, pe[i]->shape(), true), b(pg[i]->name, pg[i]->shape(), true);
    pe[i]->values_to_host(ctx, a);
    pg[i]->values_to_host(ctx, b);
    identical = identical && std::memcmp(a.value.data(), b.value.data(), a.value.bytes()) == 0;
    for (std::int64_t k = 0; k < a.value.numel(); ++k) worst = std::max(worst, double(std::abs(a.value[k] - b.value[k])));
  }
  if (bitwise)
    c.expect(identical, tag + "every parameter bit-identical to the eager run after 3 steps");
  else
    c.expect(worst < 1e-3, tag + "parameters within 1e-3 of the eager run (max diff " + std::to_string(worst) + ")");
}

// freeze_prefix with the embedding still training (ViTFreeze's semantics: the cls token;
// --dont_freeze_pe: patch embedding and cls token): the gradient passes through the frozen block,
// so every tensor that still trains has exactly the gradient of the unfrozen model.
void check_freeze_prefix(DeviceChecker& c, bool patch_embedding, int frozen_expected, const std::string& label) {
  FreezeFixture f(3, 5);
  f.frozen.encoder.freeze_prefix(1, patch_embedding, false);  // block 0 (and maybe the patch embedding)
  const int frozen_count = f.compare_trained_grads(c, label);
  c.expect(frozen_count == frozen_expected,
           label + ": " + std::to_string(frozen_count) + " frozen tensors (want " + std::to_string(frozen_expected) + ")");
}

void device_checks(DeviceChecker& c) {
  compare_step<vn::Fp32>(c, 1e-5, 1e-4);
  compare_step<vn::Bf16Mixed>(c, 2e-2, 4e-2);  // largest seen on an H100: 1.9e-2
  compare_step<vn::Fp16Mixed>(c, 1e-2, 2e-2, 1024.0f);  // not yet run on a GPU: bounds half of bf16's
  check_loss_scaling(c);
  check_freezing(c);
  check_graph_replay<vn::Fp32>(c, true);
  check_graph_replay<vn::Bf16Mixed>(c, false);
  check_freeze_prefix(c, false, 12, "dont_freeze_pe, block 0 frozen");
  check_freeze_prefix(c, true, 14, "vitfreeze semantics, patch embedding and block 0 frozen");
}

}  // namespace

int main() {
  DeviceChecker c;
  return vf::testing::run_device_test(device_checks, c);
}
