// A whole MAE step of the explicit model on the CUDA backend (model::Mae<Cuda, P>) against the CPU
// tape, from the same host-initialised weights and the same masks: the loss and the gradient of
// every parameter. Fp32 policy: rounding-level
// agreement (exact-erf GELU, fp32 GEMMs); Bf16Mixed: bf16 tolerances; Fp16Mixed with a loss scale
// (gradients read back divided by it). fp16 dynamic loss scaling in AdamW: the scaled update equals
// the unscaled one bit for bit, a step with a NaN gradient changes nothing (values, moments, step
// counts), the device schedule follows the host rule step by step, and a run whose gradients stay
// non-finite stops with a NumericError. Then freezing (truncate
// semantics): trained gradients unchanged, frozen tensors without gradient or optimizer state and
// bit-identical after AdamW steps, and the allocator in its steady state (no cudaMalloc) from the
// second step on. Freezing with the embedding still training (ViTFreeze's semantics, dont_freeze_pe):
// gradients pass through the frozen blocks. Whole-step CUDA graphs replay the eager steps.
// Exit 0 pass, 1 fail, 77 without a GPU.
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
#include "vitfreeze/backend/cuda/backend.cuh"
#include "vitfreeze/backend/cuda/parameter_adamw.cuh"
#include "vitfreeze/backend/cuda/step_graph.hpp"
#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/model/mae.hpp"
#include "vitfreeze/optim/adamw.hpp"
#include "vitfreeze/optim/loss_scaling.hpp"

namespace {

namespace vf = vitfreeze;
namespace vc = vitfreeze::cuda;
using namespace vitfreeze::testing;  // device_checks.hpp

constexpr vf::ViTSpec kSpec{16, 3, 4, 64, 3, 2, 4};  // 16 patches, 3 blocks, head dim 32
constexpr vf::mim::DecoderSpec kDecoder{.dim = 32, .depth = 2, .heads = 2, .mlp_ratio = 4};
using HostEncoder = vf::nn::ViT<kSpec, float>;
using HostMae = vf::mim::Mae<kSpec, kDecoder, vf::mim::NormalizedPixels, float>;
constexpr int kBatch = 5;

template <class P>
using DeviceMae = vf::model::Mae<vf::Cuda, P>;
template <class P>
using DeviceParameters = vf::model::ParameterRefs<vf::Cuda, P>;

struct HostModel {
  HostEncoder encoder{7};
  HostMae mae{7};
  HostModel() { vf::testing::nudge_off_init(parameters()); }
  std::vector<vf::Parameter<float>*> parameters() { return host_parameters(encoder, mae); }
};

template <class P>
DeviceParameters<P> parameters_of(DeviceMae<P>& m) {
  DeviceParameters<P> out;
  m.collect_parameters(out);
  return out;
}

vc::DeviceTensor<double> loss_buffer(vc::CudaContext& ctx) { return ctx.empty<double>(vf::Shape{2}); }

vf::Tensor<float> random_images(std::uint64_t stream) {
  return vf::testing::random_images(kBatch, kSpec.channels, kSpec.image, stream);
}

// loss_scale != 1: the loss gradient is seeded with it (a device float, as under fp16 loss scaling)
// and the gradients are compared divided by it.
template <vf::PrecisionPolicy P>
void compare_step(DeviceChecker& c, double loss_tol, double grad_tol, float loss_scale = 1.0f) {
  HostModel host;
  const vf::Tensor<float> images = random_images(1);
  const vf::mim::MaskSet masks = vf::mim::Random<750>::make(kBatch, kSpec.grid(), kSpec.grid(), 3, 0);
  const double cpu_loss = host_loss_and_grads(host.mae, host.encoder, images, masks);

  vc::CudaContext ctx;
  DeviceMae<P> model(ctx, host.encoder, host.mae);
  const vc::DeviceTensor<float> images_device = vc::to_device(ctx, images);
  const auto device_masks = model.upload_masks(ctx, masks);
  const vc::DeviceTensor<double> loss = loss_buffer(ctx);
  const vc::DeviceTensor<float> scale = vc::to_device(ctx, vf::Tensor<float>::full(vf::Shape{1}, loss_scale));
  model.forward_backward(ctx, images_device, device_masks, loss.data(), loss_scale != 1.0f ? scale.data() : nullptr);
  const std::string tag = std::string("MAE step ") + P::name +
                          (loss_scale != 1.0f ? " (loss scale " + std::to_string(loss_scale) + ")" : "") + ": ";
  compare_with_host(c, tag, ctx, device_loss(loss), cpu_loss, parameters_of(model), host.parameters(), loss_tol, grad_tol,
                    loss_scale);
}

// ---- fp16 dynamic loss scaling in the optimizer ----------------------------------------------------
// Two copies of one fp16 model: `scaled` with loss scaling on gets every gradient times the current
// scale (a power of two: exact), `plain` without it gets the gradient itself. Steps 2 and 5 carry a
// NaN in one gradient of `scaled` (`plain` sits those steps out).
void check_loss_scaling(DeviceChecker& c) {
  using P = vf::Fp16Mixed;
  using T = typename P::Activation;
  HostModel host;
  vc::CudaContext ctx;
  DeviceMae<P> scaled_model(ctx, host.encoder, host.mae), plain_model(ctx, host.encoder, host.mae);
  const DeviceParameters<P> ps = parameters_of(scaled_model), pp = parameters_of(plain_model);
  vc::ParameterAdamW<P> scaled(ps, vf::optim::AdamWOptions{}), plain(pp, vf::optim::AdamWOptions{});
  const vf::optim::LossScaleOptions options{1024.0f, 2.0f, 0.5f, 2, 3};
  scaled.enable_loss_scaling(ctx, options);
  c.expect(scaled.loss_scale_device() != nullptr && plain.loss_scale_device() == nullptr,
           "loss scaling: the scaled optimizer exposes its device scale, the plain one none");
  vf::optim::LossScaleState expected = vf::optim::initial_loss_scale_state(options);

  // Every float the update touches, of every tensor: master, m, v, then the fp16 working copy's bits.
  auto snapshot = [&](const DeviceParameters<P>& list) {
    std::vector<std::uint32_t> bits;
    for (const auto* p : list) {
      for (const float* buffer : {static_cast<const float*>(p->master()), static_cast<const float*>(p->m()),
                                  static_cast<const float*>(p->v())})
        for (float x : download(ctx, buffer, p->numel())) bits.push_back(std::bit_cast<std::uint32_t>(x));
      for (T x : download(ctx, p->value(), p->numel())) bits.push_back(x.bits);
    }
    return bits;
  };
  auto step_counts = [](const DeviceParameters<P>& list) {
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
  using P = vf::Fp32;
  HostModel host;
  vc::CudaContext ctx;
  vc::DeviceTensor<float> images_device;
  DeviceMae<P> full, frozen;
  DeviceMae<P>::MaskBuffers device_masks;
  vc::DeviceTensor<double> loss;

  FreezeFixture(std::uint64_t images_stream, std::uint64_t mask_seed)
      : images_device(vc::to_device(ctx, random_images(images_stream))),
        full(ctx, host.encoder, host.mae),
        frozen(ctx, host.encoder, host.mae),
        device_masks(full.upload_masks(ctx, vf::mim::Random<750>::make(kBatch, kSpec.grid(), kSpec.grid(), mask_seed, 0))),
        loss(loss_buffer(ctx)) {}

  // One forward/backward of each: every tensor that still trains must have the gradient of the
  // unfrozen model. Returns how many tensors are frozen.
  int compare_trained_grads(DeviceChecker& c, const std::string& label) {
    full.forward_backward(ctx, images_device, device_masks, loss.data());
    frozen.forward_backward(ctx, images_device, device_masks, loss.data());
    const DeviceParameters<P> pf = parameters_of(full), pz = parameters_of(frozen);
    int frozen_count = 0;
    for (std::size_t i = 0; i < pz.size(); ++i) {
      if (!pz[i]->trainable()) {
        ++frozen_count;
        continue;
      }
      c.close(label + ": trained grad " + pz[i]->name() + " as without freezing", to_vector(pz[i]->grad_to_host(ctx)),
              to_vector(pf[i]->grad_to_host(ctx)), 1e-6);
    }
    return frozen_count;
  }
};

std::vector<float> device_values(vc::CudaContext& ctx, const vc::CudaParameter<vf::Fp32>& p) {
  vf::Parameter<float> copy(p.name(), p.shape(), p.decay);
  p.values_to_host(ctx, copy);
  return to_vector(copy.value);
}

// Freezing units [0, n) on the device: same gradients for what still trains, no state for what
// does not, frozen values untouched by AdamW, and no cudaMalloc once the step has run once.
void check_freezing(DeviceChecker& c) {
  FreezeFixture f(2, 4);
  auto& ctx = f.ctx;
  freeze_units(f.frozen.encoder, 2);  // patch embedding + cls, block 0
  const int frozen_count = f.compare_trained_grads(c, "frozen prefix"), frozen_expected = 3 + 12;  // cls, patch_embed w/b; block 0: 12 tensors
  const DeviceParameters<vf::Fp32> pz = parameters_of(f.frozen);
  c.expect(frozen_count == frozen_expected, "frozen prefix: " + std::to_string(frozen_count) +
                                                " tensors without gradient or moments (want " +
                                                std::to_string(frozen_expected) + ")");

  std::vector<std::vector<float>> before;
  for (auto* p : pz) before.push_back(device_values(ctx, *p));
  vc::ParameterAdamW<vf::Fp32> optimizer(pz, vf::optim::AdamWOptions{});
  optimizer.step(ctx, 1e-3);
  std::size_t mallocs = 0;
  for (int step = 1; step < 5; ++step) {  // two steps to settle the cache, two measured
    if (step == 3) mallocs = ctx.allocator().stats().malloc_calls;
    optimizer.zero_grad(ctx);
    f.frozen.forward_backward(ctx, f.images_device, f.device_masks, f.loss.data());
    optimizer.step(ctx, 1e-3);
  }
  ctx.synchronize();
  c.expect(ctx.allocator().stats().malloc_calls == mallocs,
           "steady state: no cudaMalloc in steps 4 and 5 (" +
               std::to_string(ctx.allocator().stats().malloc_calls - mallocs) + " seen)");
  bool frozen_identical = true, trained_moved = false;
  for (std::size_t i = 0; i < pz.size(); ++i) {
    const bool same = device_values(ctx, *pz[i]) == before[i];
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
template <vf::PrecisionPolicy P>
void check_graph_replay(DeviceChecker& c, bool bitwise) {
  HostModel host;
  vc::CudaContext ctx;
  std::vector<vc::DeviceTensor<float>> images;
  std::vector<vf::mim::MaskSet> masks;
  for (int i = 0; i < 3; ++i) {
    images.push_back(vc::to_device(ctx, random_images(10 + i)));
    masks.push_back(vf::mim::Random<750>::make(kBatch, kSpec.grid(), kSpec.grid(), 6, std::uint64_t(i)));
  }
  DeviceMae<P> eager(ctx, host.encoder, host.mae), graphed(ctx, host.encoder, host.mae);
  const DeviceParameters<P> pe = parameters_of(eager), pg = parameters_of(graphed);
  vc::ParameterAdamW<P> opt_eager(pe, vf::optim::AdamWOptions{}), opt_graph(pg, vf::optim::AdamWOptions{});
  const vc::DeviceTensor<double> loss_eager = loss_buffer(ctx), loss_graph = loss_buffer(ctx);
  vc::DeviceTensor<float> static_images = ctx.empty<float>(images[0].shape());
  typename DeviceMae<P>::MaskBuffers static_masks = graphed.upload_masks(ctx, masks[0]);
  vc::StepGraph graph;
  const std::string tag = std::string("graph replay ") + P::name + ": ";
  for (int i = 0; i < 3; ++i) {
    if (i == 2) {  // a unit freezes: the graph must be captured again
      freeze_units(eager.encoder, 2);
      freeze_units(graphed.encoder, 2);
    }
    const double lr = 1e-3 * (i + 1);
    const auto m = eager.upload_masks(ctx, masks[std::size_t(i)]);
    opt_eager.zero_grad(ctx);
    eager.forward_backward(ctx, images[std::size_t(i)], m, loss_eager.data());
    opt_eager.step(ctx, lr);

    vc::check(cudaMemcpyAsync(static_images.data(), images[std::size_t(i)].data(), images[std::size_t(i)].bytes(),
                              cudaMemcpyDeviceToDevice, ctx.stream()),
              "cudaMemcpyAsync(images)");
    graphed.assign_masks(ctx, static_masks, masks[std::size_t(i)]);
    opt_graph.stage(ctx, lr);
    std::uint64_t trained = 0;
    for (const auto* p : pg) trained += p->trainable();
    graph.run(ctx, trained, [&] {
      opt_graph.zero_grad(ctx);
      graphed.forward_backward(ctx, static_images, static_masks, loss_graph.data());
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
    vf::Parameter<float> a(pe[i]->name(), pe[i]->shape(), true), b(pg[i]->name(), pg[i]->shape(), true);
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

// Block 0 frozen with the embedding still training (ViTFreeze's semantics: the cls token;
// dont_freeze_pe: patch embedding and cls token): the gradient passes through the frozen block, so
// every tensor that still trains has exactly the gradient of the unfrozen model.
void check_freeze_prefix(DeviceChecker& c, bool patch_embedding, int frozen_expected, const std::string& label) {
  FreezeFixture f(3, 5);
  freeze_blocks(f.frozen.encoder, 1);
  if (patch_embedding) f.frozen.encoder.patch_embed.weight.freeze(), f.frozen.encoder.patch_embed.bias.freeze();
  const int frozen_count = f.compare_trained_grads(c, label);
  c.expect(frozen_count == frozen_expected,
           label + ": " + std::to_string(frozen_count) + " frozen tensors (want " + std::to_string(frozen_expected) + ")");
}

void device_checks(DeviceChecker& c) {
  compare_step<vf::Fp32>(c, 1e-5, 1e-4);
  compare_step<vf::Bf16Mixed>(c, 2e-2, 4e-2);  // largest seen on an H100 (before the port): 1.9e-2
  compare_step<vf::Fp16Mixed>(c, 1e-2, 2e-2, 1024.0f);  // never run on a GPU: bounds half of bf16's
  section(c, "loss scaling", [&] { check_loss_scaling(c); });
  section(c, "freezing", [&] { check_freezing(c); });
  section(c, "graph replay fp32", [&] { check_graph_replay<vf::Fp32>(c, true); });
  section(c, "graph replay bf16", [&] { check_graph_replay<vf::Bf16Mixed>(c, false); });
  check_freeze_prefix(c, false, 12, "dont_freeze_pe, block 0 frozen");
  check_freeze_prefix(c, true, 14, "vitfreeze semantics, patch embedding and block 0 frozen");
}

}  // namespace

int main() {
  DeviceChecker c;
  return vf::testing::run_device_test(device_checks, c);
}
