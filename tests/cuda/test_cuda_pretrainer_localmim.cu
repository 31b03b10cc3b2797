// train::Pretrainer with the GPU engine (train::CudaStepEngine) and the LocalMIM objective against
// the same trainer with its CPU engine, step by step on the same batches (synthetic stripes) and the
// same freeze schedule: linear 0.5 over 32 steps with
// per-unit LRs, taps after blocks 0, 1 and 3, so the first two taps drop inside the run and the last
// never does. Checked: the engine's device tensors are the trainer's parameters one for one (the
// unit map is the trainer's, computed once for both engines); each tap is
// dropped at the iteration the CPU trainer drops it, which is when the controller freezes its
// block's unit; frozen and dropped tensors stay bit-identical from their freeze on; the loss falls
// before the first drop and, in fp32, follows the CPU's step by step (a missed drop or a wrong LR
// shows there); the encoder's final norm, unused by LocalMIM, is never changed; download() leaves the
// host models as the CPU trainer leaves its own. Checkpoints: saved on the GPU and resumed, a run ends
// bit-identical to the uninterrupted one, and the CPU trainer loads the GPU's file. Whole-step CUDA
// graphs: the same run captured and replayed ends bit-identical to the eager one (fp32), recapturing
// as units freeze and taps drop. Fp32 under truncate semantics, vitfreeze semantics (the cls token
// never freezes) and dont_freeze_pe (the blocks are units 0..3); bf16 and fp16 (with dynamic loss
// scaling: few skipped steps, a settled scale) under truncate.
// Exit 0 pass, 1 fail, 77 without a GPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <vitfreeze/cuda.hpp>

#include "device_checks.hpp"
#include "vitfreeze/data/loader.hpp"
#include "vitfreeze/freeze/freeze.hpp"
#include "vitfreeze/mim/localmim.hpp"
#include "vitfreeze/testing/synthetic.hpp"
#include "vitfreeze/train/cuda_step_engine.cuh"
#include "vitfreeze/train/pretrainer.hpp"

namespace {

namespace vf = vitfreeze;
namespace vc = vitfreeze::cuda;
using vf::testing::DeviceChecker;

constexpr vf::ViTSpec kSpec{.image = 28, .channels = 1, .patch = 2, .dim = 32, .depth = 4, .heads = 4, .mlp_ratio = 2};
// Scales 2, 1 and 1/2 on the 14x14 grid (HOG cells of 1, 2 and 4 pixels).
using Taps = vf::mim::taps<vf::mim::TapSpec{0, 2, 1}, vf::mim::TapSpec{1, 1, 1}, vf::mim::TapSpec{3, 1, 2}>;
using HostObjective = vf::mim::LocalMim<kSpec, Taps, vf::mim::DecoderSpec{.dim = 32, .depth = 1, .heads = 4}>;
using Encoder = vf::nn::ViT<kSpec, float>;
using Masking = vf::mim::RandomRatio;

template <class P>
using GpuTrainer = vf::train::Pretrainer<Encoder, HostObjective, Masking, float, vf::train::CudaStepEngine<Encoder, HostObjective, P>>;
using CpuTrainer = vf::train::Pretrainer<Encoder, HostObjective, Masking>;

// The trainer finds the taps through this concept (a silent mismatch would train LocalMIM as MAE),
// and the engine is one of its device engines.
static_assert(vf::train::ObjectiveWithTaps<HostObjective, float>);
static_assert(vf::train::DeviceStepEngine<vf::train::CudaStepEngine<Encoder, HostObjective, vf::Fp32>, float>);
static_assert(vf::train::DeviceStepEngine<vf::train::CudaStepEngine<Encoder, HostObjective, vf::Bf16Mixed>, float>);
static_assert(vf::train::DeviceStepEngine<vf::train::CudaStepEngine<Encoder, HostObjective, vf::Fp16Mixed>, float>);

constexpr int kEpochs = 8;  // of 4 batches of 16: 32 steps
constexpr std::int64_t kBatchesPerEpoch = 4;
constexpr vf::optim::AdamWOptions kAdam{.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.05};

struct Case {
  const char* name;
  vf::freeze::FreezeSemantics semantics;
  bool dont_freeze_pe;
};

// The loader's batches of every epoch, in order, so both trainers see exactly the same images.
std::vector<vf::Tensor<float>> make_batches() {
  const vf::data::Dataset train = vf::testing::stripes(int(16 * kBatchesPerEpoch), 1);
  const vf::data::Transform plain{std::nullopt, std::nullopt, 0.0, vf::data::Normalize::fashion_mnist()};
  vf::data::Loader loader(train, plain, {.batch_size = 16, .seed = 3, .workers = 0});
  std::vector<vf::Tensor<float>> batches;
  for (int epoch = 0; epoch < kEpochs; ++epoch) {
    loader.start_epoch(std::uint64_t(epoch));
    for (std::int64_t b = 0; b < kBatchesPerEpoch; ++b) batches.push_back(loader.next().value().images);
  }
  return batches;
}

vf::freeze::FreezeController make_controller(const Case& cs) {
  const int units = kSpec.depth + (cs.dont_freeze_pe ? 0 : 1);
  return vf::freeze::FreezeController(vf::freeze::RuntimeSchedule{vf::freeze::Spacing::linear, 0.5, true}.fractions(units),
                                      {kEpochs, 0, kBatchesPerEpoch},
                                      {.mode = vf::freeze::LrMode::scaled_layerwise, .base_lr = 2e-3});
}

template <class P>
std::vector<float> device_values(vc::CudaContext& ctx, const vc::CudaParameter<P>& p) {
  vf::Parameter<float> host(p.name(), p.shape(), false);
  p.values_to_host(ctx, host);
  return {host.value.data(), host.value.data() + host.value.numel()};
}

bool bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::string join(const std::vector<std::int64_t>& v) {
  std::string s;
  for (std::int64_t x : v) s += (s.empty() ? "" : " ") + std::to_string(x);
  return s;
}

double mean(const std::vector<double>& v, std::size_t from, std::size_t to) {
  double s = 0;
  for (std::size_t i = from; i < to; ++i) s += v[i];
  return s / double(to - from);
}

// Unit of each of the trainer's parameters (all_parameters() order); -1: never frozen.
template <class Trainer>
std::vector<int> unit_of_parameters(const Trainer& t) {
  std::map<std::string, int> unit;
  for (std::size_t u = 0; u < t.units().size(); ++u)
    for (auto* p : t.units()[u]) unit[p->name] = int(u);
  std::vector<int> out;
  for (auto* p : t.all_parameters()) out.push_back(unit.count(p->name) ? unit[p->name] : -1);
  return out;
}

template <vf::PrecisionPolicy P>
void check_against_cpu(DeviceChecker& c, const Case& cs, const std::vector<vf::Tensor<float>>& batches) {
  constexpr bool fp32 = std::is_same_v<typename P::Activation, float>;
  const std::string tag = std::string(P::name) + " " + cs.name + ": ";
  vf::train::PretrainOptions options;
  options.epochs = kEpochs;
  options.progress = false;
  options.semantics = cs.semantics;
  options.dont_freeze_pe = cs.dont_freeze_pe;

  Encoder cpu_encoder(1);
  HostObjective cpu_objective(2);
  vf::freeze::FreezeController cpu_controller = make_controller(cs);
  vf::optim::AdamW<float> cpu_adam(kAdam);
  CpuTrainer cpu(cpu_encoder, cpu_objective, Masking{750}, cpu_controller, cpu_adam, options);

  // The same initial weights (same seeds) in host models of their own, which download() fills.
  Encoder gpu_encoder(1);
  HostObjective gpu_objective(2);
  vf::freeze::FreezeController gpu_controller = make_controller(cs);
  vf::optim::AdamW<float> gpu_adam(kAdam);
  vc::CudaContext ctx;
  GpuTrainer<P> gpu(gpu_encoder, gpu_objective, Masking{750}, gpu_controller, gpu_adam, options, ctx, kAdam);
  auto& model = gpu.engine().model();
  const auto& params = gpu.engine().parameters();
  const std::vector<int> unit_of = unit_of_parameters(gpu);

  // The engine's tensors are the trainer's parameters, one for one; both trainers have the same units.
  const auto host_list = gpu.all_parameters();
  bool same_list = host_list.size() == params.size();
  for (std::size_t i = 0; same_list && i < params.size(); ++i) same_list = params[i]->name() == host_list[i]->name;
  c.expect(same_list, tag + std::to_string(params.size()) + " device tensors, the trainer's " +
                          std::to_string(host_list.size()) + " parameters in its order");
  c.expect(unit_of == unit_of_parameters(cpu), tag + "the same units as the CPU trainer's");

  std::vector<std::vector<float>> initial;
  for (const auto* p : params) initial.push_back(device_values(ctx, *p));

  const int taps = model.tap_count();
  auto unit_of_block = [&](int b) { return b + (cs.dont_freeze_pe ? 0 : 1); };
  std::vector<std::int64_t> cpu_drop(std::size_t(taps), -1), gpu_drop(std::size_t(taps), -1),
      unit_frozen(std::size_t(taps), -1);
  std::vector<double> cpu_losses, gpu_losses;
  std::map<std::size_t, std::vector<float>> at_freeze;  // device tensor -> its values when its unit froze
  bool released = true;                                  // frozen tensors lost gradient and moments
  for (std::int64_t g = 0; g < std::int64_t(batches.size()); ++g) {
    cpu_losses.push_back(cpu.step(batches[std::size_t(g)], g));
    gpu_losses.push_back(gpu.step(batches[std::size_t(g)], g));
    for (int k = 0; k < taps; ++k) {
      const std::size_t kk = std::size_t(k);
      if (!cpu_objective.tap_active(k) && cpu_drop[kk] < 0) cpu_drop[kk] = g;
      if (!model.tap_active(k) && gpu_drop[kk] < 0) gpu_drop[kk] = g;
      if (!gpu_controller.is_active(unit_of_block(HostObjective::tap_block(k))) && unit_frozen[kk] < 0) unit_frozen[kk] = g;
    }
    // Unit u froze before this step's update, which left it alone: these are its final values.
    for (int u : gpu_controller.froze_at_last_step())
      for (std::size_t i = 0; i < params.size(); ++i)
        if (unit_of[i] == u) {
          at_freeze[i] = device_values(ctx, *params[i]);
          released = released && !params[i]->trainable();
        }
  }

  c.expect(gpu_drop == cpu_drop, tag + "taps dropped at iterations [" + join(gpu_drop) + "], the CPU trainer's [" +
                                     join(cpu_drop) + "] (-1: never)");
  c.expect(gpu_drop == unit_frozen,
           tag + "each tap dropped when its block's unit froze (at [" + join(unit_frozen) + "])");
  c.expect(gpu_drop[0] >= 0 && gpu_drop[1] > gpu_drop[0] && gpu_drop[2] < 0,
           tag + "the schedule drops taps 0 and 1 in the run, in that order, and keeps tap 2 (last unit)");

  std::size_t unchanged = 0, trained_before = 0;
  for (const auto& [i, values] : at_freeze) {
    unchanged += bit_identical(device_values(ctx, *params[i]), values);
    trained_before += !bit_identical(values, initial[i]);
  }
  c.expect(!at_freeze.empty() && unchanged == at_freeze.size() && released,
           tag + std::to_string(unchanged) + " of " + std::to_string(at_freeze.size()) +
               " frozen tensors bit-identical from their freeze to the end, without gradient or moments");
  c.expect(trained_before * 10 >= at_freeze.size() * 9,
           tag + std::to_string(trained_before) + " of them had trained before their freeze (want >= 90%)");

  vf::nn::ParameterList<float> final_norm;
  cpu_encoder.norm.collect_parameters(final_norm);
  bool norm_kept = true;
  for (std::size_t i = 0; i < params.size(); ++i)
    for (auto* p : final_norm)
      if (params[i]->name() == p->name) norm_kept = norm_kept && bit_identical(device_values(ctx, *params[i]), initial[i]);
  c.expect(norm_kept, tag + "the encoder's final norm (no gradient under LocalMIM) keeps its initial values, as on the CPU");

  // Before the first drop the loss has a fixed set of terms: it must fall over these steps.
  const std::size_t first_drop = std::size_t(std::max<std::int64_t>(gpu_drop[0], 8));
  const double early = mean(gpu_losses, 0, 4), late = mean(gpu_losses, first_drop - 4, first_drop);
  c.expect(late < 0.8 * early, tag + "loss falls: steps 0-3 " + std::to_string(early) + ", steps " +
                                   std::to_string(first_drop - 4) + "-" + std::to_string(first_drop - 1) + " " +
                                   std::to_string(late) + " (want < 0.8x)");
  if constexpr (fp32) {
    c.close(tag + "first loss against the CPU's (same weights and masks)", std::vector<double>{gpu_losses[0]},
            std::vector<double>{cpu_losses[0]}, 1e-4);
    double worst = 0;
    std::size_t worst_at = 0;
    for (std::size_t g = 0; g < gpu_losses.size(); ++g) {
      const double rel = std::abs(gpu_losses[g] - cpu_losses[g]) / std::abs(cpu_losses[g]);
      if (!(rel <= worst)) worst = rel, worst_at = g;
    }
    c.expect(worst <= 2e-2, tag + "every step's loss within 2% of the CPU's (worst " + std::to_string(worst) +
                                " at iteration " + std::to_string(worst_at) + ": " + std::to_string(gpu_losses[worst_at]) +
                                " vs " + std::to_string(cpu_losses[worst_at]) + ")");
  }

  if constexpr (P::loss_scaling) {
    // 2^16 may overflow on the first steps; after that the scale must have settled.
    const vf::LossScaleState scaling = gpu.engine().loss_scale_state();
    c.expect(scaling.skipped_steps <= 8 && scaling.scale >= 1.0f && std::isfinite(scaling.scale),
             tag + "loss scaling: " + std::to_string(scaling.skipped_steps) + " of " + std::to_string(batches.size()) +
                 " steps skipped, scale now " + std::to_string(scaling.scale));
  }

  gpu.engine().download(gpu.all_parameters(), gpu_adam);
  bool same_taps = true;
  for (int k = 0; k < taps; ++k) same_taps = same_taps && gpu_objective.tap_active(k) == cpu_objective.tap_active(k);
  vf::nn::ParameterList<float> gpu_host, cpu_host;
  gpu_encoder.collect_parameters(gpu_host);
  gpu_objective.collect_parameters(gpu_host);
  cpu_encoder.collect_parameters(cpu_host);
  cpu_objective.collect_parameters(cpu_host);
  bool same_trainable = gpu_host.size() == cpu_host.size();
  for (std::size_t i = 0; same_trainable && i < gpu_host.size(); ++i)
    same_trainable = gpu_host[i]->name == cpu_host[i]->name && gpu_host[i]->trainable == cpu_host[i]->trainable;
  c.expect(same_taps && same_trainable,
           tag + "download(): the host models' active taps and trainable flags are the CPU trainer's");
}

// One GPU run's host objects and its trainer (which keeps references to them).
struct GpuRun {
  Encoder encoder;
  HostObjective objective;
  vf::freeze::FreezeController controller;
  vf::optim::AdamW<float> adam{kAdam};
  GpuTrainer<vf::Fp32> trainer;

  GpuRun(vc::CudaContext& ctx, std::uint64_t seed, const Case& cs, const vf::train::PretrainOptions& options,
         vf::train::CudaEngineOptions engine = {})
      : encoder(seed), objective(seed + 1), controller(make_controller(cs)),
        trainer(encoder, objective, Masking{750}, controller, adam, options, ctx, kAdam, engine) {}

  std::vector<std::vector<float>> values() {
    std::vector<std::vector<float>> out;
    for (const auto* p : trainer.engine().parameters()) out.push_back(device_values(trainer.engine().context(), *p));
    return out;
  }
};

vf::train::PretrainOptions plain_options() {
  vf::train::PretrainOptions options;
  options.epochs = kEpochs;
  options.progress = false;
  return options;
}

// Checkpoints (fp32, deterministic kernels): a run saved at step K and resumed by a fresh trainer
// ends bit-identical to the uninterrupted run; the CPU trainer loads the GPU's checkpoint (same
// format and recipe) and holds the GPU's values at K; a checkpoint of another recipe is refused.
void check_checkpoint_resume(DeviceChecker& c, const std::vector<vf::Tensor<float>>& batches) {
  const Case cs{"truncate", vf::freeze::FreezeSemantics::truncate, false};
  const std::int64_t K = 21, N = std::int64_t(batches.size());  // K: after the first tap drop (see above)
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "vitfreeze_test_cuda_checkpoint";
  std::filesystem::remove_all(dir);
  vf::train::PretrainOptions options = plain_options();
  options.checkpoint_dir = dir;
  options.recipe.set("test", "checkpoint resume");
  vc::CudaContext ctx;

  GpuRun uninterrupted(ctx, 1, cs, options);
  for (std::int64_t g = 0; g < N; ++g) uninterrupted.trainer.step(batches[std::size_t(g)], g);
  const auto want = uninterrupted.values();

  GpuRun first(ctx, 1, cs, options);
  for (std::int64_t g = 0; g < K; ++g) first.trainer.step(batches[std::size_t(g)], g);
  const std::filesystem::path file = first.trainer.save_checkpoint();
  const auto at_k = first.values();

  GpuRun resumed(ctx, 5, cs, options);  // other initial weights: all must come from the checkpoint
  const auto from = resumed.trainer.resume("auto");
  c.expect(from && *from == file && resumed.trainer.next_iteration() == K,
           "checkpoint: resume auto finds " + file.filename().string() + " and continues at iteration " +
               std::to_string(resumed.trainer.next_iteration()) + " (want " + std::to_string(K) + ")");
  c.expect(resumed.values() == at_k, "checkpoint: the resumed device holds the saved values bit for bit");
  c.expect(resumed.controller.first_active_unit() == first.controller.first_active_unit(),
           "checkpoint: frozen units restored (first active unit " +
               std::to_string(resumed.controller.first_active_unit()) + ")");
  for (std::int64_t g = K; g < N; ++g) resumed.trainer.step(batches[std::size_t(g)], g);
  c.expect(resumed.values() == want, "checkpoint: saved at step " + std::to_string(K) +
                                         " and resumed, the run ends bit-identical to the uninterrupted one");

  // The CPU trainer reads the GPU's file: the same values at K.
  Encoder e4(5);
  HostObjective o4(6);
  vf::freeze::FreezeController c4 = make_controller(cs);
  vf::optim::AdamW<float> adam4(kAdam);
  CpuTrainer cpu(e4, o4, Masking{750}, c4, adam4, options);
  cpu.load_checkpoint(file);
  const auto host = cpu.all_parameters();
  bool same = host.size() == at_k.size() && cpu.next_iteration() == K;
  for (std::size_t i = 0; same && i < host.size(); ++i)
    same = bit_identical({host[i]->value.data(), host[i]->value.data() + host[i]->value.numel()}, at_k[i]);
  c.expect(same, "checkpoint: the CPU trainer loads the GPU's checkpoint with the GPU's values at step K");

  // Another recipe (a different seed) is refused with the differences, before anything changes.
  vf::train::PretrainOptions other = options;
  other.seed = 99;
  GpuRun mismatched(ctx, 5, cs, other);
  bool refused = false;
  try {
    mismatched.trainer.resume(file.string());
  } catch (const vf::Error& e) {
    refused = std::string(e.what()).find("seed") != std::string::npos;
  }
  c.expect(refused && mismatched.trainer.next_iteration() == 0,
           "checkpoint: a different recipe (seed) is refused, naming it");
  std::filesystem::remove_all(dir);
}

// Whole-step CUDA graphs in the engine (fp32, deterministic kernels): the same run captured and
// replayed ends bit-identical to the eager one, loss for loss; a capture per set of trained tensors
// and active taps (units freeze and taps drop in this schedule), not one per step.
void check_step_graphs(DeviceChecker& c, const std::vector<vf::Tensor<float>>& batches) {
  const Case cs{"truncate", vf::freeze::FreezeSemantics::truncate, false};
  vc::CudaContext ctx;
  GpuRun eager(ctx, 1, cs, plain_options()), graphed(ctx, 1, cs, plain_options(), {.step_graphs = true});
  bool same_losses = true;
  for (std::int64_t g = 0; g < std::int64_t(batches.size()); ++g)
    same_losses = same_losses && eager.trainer.step(batches[std::size_t(g)], g) == graphed.trainer.step(batches[std::size_t(g)], g);
  const auto& engine = graphed.trainer.engine();
  c.expect(same_losses, "step graphs: every step's loss identical to the eager run's");
  c.expect(graphed.values() == eager.values(), "step graphs: every parameter bit-identical to the eager run's at the end");
  c.expect(engine.step_captures() >= 2 && engine.step_captures() < batches.size() / 2 && engine.update_captures() >= 2,
           "step graphs: captured again as units froze (" + std::to_string(engine.step_captures()) +
               " forward/backward and " + std::to_string(engine.update_captures()) + " update captures in " +
               std::to_string(batches.size()) + " steps)");
}

void device_checks(DeviceChecker& c) {
  const std::vector<vf::Tensor<float>> batches = make_batches();
  section(c, "checkpoint resume", [&] { check_checkpoint_resume(c, batches); });
  section(c, "step graphs", [&] { check_step_graphs(c, batches); });
  using vf::freeze::FreezeSemantics;
  check_against_cpu<vf::Fp32>(c, {"truncate", FreezeSemantics::truncate, false}, batches);
  check_against_cpu<vf::Fp32>(c, {"vitfreeze semantics", FreezeSemantics::vitfreeze, false}, batches);
  check_against_cpu<vf::Fp32>(c, {"dont_freeze_pe", FreezeSemantics::truncate, true}, batches);
  check_against_cpu<vf::Bf16Mixed>(c, {"truncate", FreezeSemantics::truncate, false}, batches);
  check_against_cpu<vf::Fp16Mixed>(c, {"truncate", FreezeSemantics::truncate, false}, batches);  // never run on a GPU
}

}  // namespace

int main() {
  DeviceChecker c;
  return vf::testing::run_device_test(device_checks, c);
}
