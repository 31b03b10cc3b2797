// DevicePretrainer with the LocalMIM objective against train::Pretrainer on the CPU, step by step on
// the same batches (synthetic stripes) and the same freeze schedule: linear 0.5 over 32 steps with
// per-unit LRs, taps after blocks 0, 1 and 3, so the first two taps drop inside the run and the last
// never does. Checked: every device tensor is in the unit the CPU trainer puts it in; each tap is
// dropped at the iteration the CPU trainer drops it, which is when the controller freezes its
// block's unit; frozen and dropped tensors stay bit-identical from their freeze on; the loss falls
// before the first drop and, in fp32, follows the CPU's step by step (a missed drop or a wrong LR
// shows there); the encoder's final norm, unused by LocalMIM, is never changed; download() leaves the
// host models as the CPU trainer leaves its own. Checkpoints: saved on the GPU and resumed, a run ends
// bit-identical to the uninterrupted one, and the CPU trainer loads the GPU's file. Fp32 under truncate semantics, vitfreeze semantics
// (the cls token never freezes) and dont_freeze_pe (the blocks are units 0..3); bf16 and fp16 (with
// dynamic loss scaling: few skipped steps, a settled scale) under truncate.
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
#include "vitfreeze/backend/cuda/nn/localmim.cuh"
#include "vitfreeze/backend/cuda/nn/pretrainer.cuh"
#include "vitfreeze/data/loader.hpp"
#include "vitfreeze/freeze/freeze.hpp"
#include "vitfreeze/mim/localmim.hpp"
#include "vitfreeze/testing/synthetic.hpp"
#include "vitfreeze/train/pretrainer.hpp"

namespace {

namespace vf = vitfreeze;
namespace vc = vitfreeze::cuda;
namespace vn = vitfreeze::cuda::nn;
using vf::testing::DeviceChecker;

constexpr vf::ViTSpec kSpec{.image = 28, .channels = 1, .patch = 2, .dim = 32, .depth = 4, .heads = 4, .mlp_ratio = 2};
// Scales 2, 1 and 1/2 on the 14x14 grid (HOG cells of 1, 2 and 4 pixels).
using Taps = vf::mim::taps<vf::mim::TapSpec{0, 2, 1}, vf::mim::TapSpec{1, 1, 1}, vf::mim::TapSpec{3, 1, 2}>;
using HostObjective = vf::mim::LocalMim<kSpec, Taps, vf::mim::DecoderSpec{.dim = 32, .depth = 1, .heads = 4}>;
using Encoder = vf::nn::ViT<kSpec, float>;
using Masking = vf::mim::RandomRatio;

// The trainer finds the taps through these concepts; a silent mismatch would train LocalMIM as MAE.
static_assert(vn::DeviceObjectiveWithTaps<vn::DeviceLocalMim<vn::Fp32>, float>);
static_assert(vn::DeviceObjectiveWithTaps<vn::DeviceLocalMim<vn::Bf16Mixed>, vn::Bf16Mixed::Activation>);
static_assert(vn::DeviceObjectiveWithTaps<vn::DeviceLocalMim<vn::Fp16Mixed>, vn::Fp16Mixed::Activation>);
static_assert(!vn::DeviceObjectiveWithTaps<vn::DeviceMae<vn::Fp32>, float>);
static_assert(vf::train::ObjectiveWithTaps<HostObjective, float>);

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

template <class T>
std::vector<float> device_values(vc::CudaContext& ctx, const vn::DeviceParameter<T>& p) {
  vf::Parameter<float> host(p.name, p.shape(), false);
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

template <vn::PrecisionPolicy P>
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
  vf::train::Pretrainer cpu(cpu_encoder, cpu_objective, Masking{750}, cpu_controller, cpu_adam, options);

  // The same initial weights (same seeds) in host models of their own, which download() fills.
  Encoder gpu_encoder(1);
  HostObjective gpu_objective(2);
  vf::freeze::FreezeController gpu_controller = make_controller(cs);
  vc::CudaContext ctx;
  vn::DevicePretrainer<Encoder, HostObjective, vn::DeviceLocalMim<P>, Masking, P> gpu(
      ctx, gpu_encoder, gpu_objective, Masking{750}, gpu_controller, kAdam, options);
  auto& model = gpu.model();
  const auto& params = gpu.parameters();
  const std::vector<int>& unit_of = gpu.unit_of_parameter();

  // Units: the CPU trainer's lists (never-frozen tensors: -1) against the device's map, by name.
  std::map<std::string, int> cpu_unit;
  for (auto* p : cpu.all_parameters()) cpu_unit[p->name] = -1;
  for (std::size_t u = 0; u < cpu.units().size(); ++u)
    for (auto* p : cpu.units()[u]) cpu_unit[p->name] = int(u);
  std::string unit_mismatch;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto it = cpu_unit.find(params[i]->name);
    if (unit_mismatch.empty() && (it == cpu_unit.end() || it->second != unit_of[i]))
      unit_mismatch = params[i]->name + " in unit " + std::to_string(unit_of[i]) + ", on the CPU " +
                      (it == cpu_unit.end() ? std::string("absent") : std::to_string(it->second));
  }
  c.expect(params.size() == cpu_unit.size() && unit_mismatch.empty(),
           tag + std::to_string(params.size()) + " device tensors in the CPU trainer's units (" +
               std::to_string(cpu_unit.size()) + " there)" + (unit_mismatch.empty() ? "" : "; first mismatch: " + unit_mismatch));

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
      if (params[i]->name == p->name) norm_kept = norm_kept && bit_identical(device_values(ctx, *params[i]), initial[i]);
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
    const vf::optim::LossScaleState scaling = gpu.loss_scale_state();
    c.expect(scaling.skipped_steps <= 8 && scaling.scale >= 1.0f && std::isfinite(scaling.scale),
             tag + "loss scaling: " + std::to_string(scaling.skipped_steps) + " of " + std::to_string(batches.size()) +
                 " steps skipped, scale now " + std::to_string(scaling.scale));
  }

  gpu.download();
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

// Checkpoints (fp32, deterministic kernels): a run saved at step K and resumed by a fresh trainer
// ends bit-identical to the uninterrupted run; the CPU trainer loads the GPU's checkpoint (same
// format and recipe) and holds the GPU's values at K; a checkpoint of another recipe is refused.
void check_checkpoint_resume(DeviceChecker& c, const std::vector<vf::Tensor<float>>& batches) {
  using P = vn::Fp32;
  using DeviceTrainer = vn::DevicePretrainer<Encoder, HostObjective, vn::DeviceLocalMim<P>, Masking, P>;
  const Case cs{"truncate", vf::freeze::FreezeSemantics::truncate, false};
  const std::int64_t K = 21, N = std::int64_t(batches.size());  // K: after the first tap drop (see above)
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "vitfreeze_test_cuda_checkpoint";
  std::filesystem::remove_all(dir);
  vf::train::PretrainOptions options;
  options.epochs = kEpochs;
  options.progress = false;
  options.checkpoint_dir = dir;
  options.recipe.set("test", "checkpoint resume");
  vc::CudaContext ctx;
  auto values_of = [&](DeviceTrainer& t) {
    std::vector<std::vector<float>> out;
    for (const auto* p : t.parameters()) out.push_back(device_values(ctx, *p));
    return out;
  };

  Encoder e1(1);
  HostObjective o1(2);
  vf::freeze::FreezeController c1 = make_controller(cs);
  DeviceTrainer uninterrupted(ctx, e1, o1, Masking{750}, c1, kAdam, options);
  for (std::int64_t g = 0; g < N; ++g) uninterrupted.step(batches[std::size_t(g)], g);
  const auto want = values_of(uninterrupted);

  Encoder e2(1);
  HostObjective o2(2);
  vf::freeze::FreezeController c2 = make_controller(cs);
  DeviceTrainer first(ctx, e2, o2, Masking{750}, c2, kAdam, options);
  for (std::int64_t g = 0; g < K; ++g) first.step(batches[std::size_t(g)], g);
  const std::filesystem::path file = first.save_checkpoint();
  const auto at_k = values_of(first);

  Encoder e3(5);  // other initial weights: all must come from the checkpoint
  HostObjective o3(6);
  vf::freeze::FreezeController c3 = make_controller(cs);
  DeviceTrainer resumed(ctx, e3, o3, Masking{750}, c3, kAdam, options);
  const auto from = resumed.resume("auto");
  c.expect(from && *from == file && resumed.next_iteration() == K,
           "checkpoint: resume auto finds " + file.filename().string() + " and continues at iteration " +
               std::to_string(resumed.next_iteration()) + " (want " + std::to_string(K) + ")");
  c.expect(values_of(resumed) == at_k, "checkpoint: the resumed device holds the saved values bit for bit");
  c.expect(c3.first_active_unit() == c2.first_active_unit(),
           "checkpoint: frozen units restored (first active unit " + std::to_string(c3.first_active_unit()) + ")");
  for (std::int64_t g = K; g < N; ++g) resumed.step(batches[std::size_t(g)], g);
  c.expect(values_of(resumed) == want, "checkpoint: saved at step " + std::to_string(K) + " and resumed, the run ends "
                                       "bit-identical to the uninterrupted one");

  // The CPU trainer reads the GPU's file: the same values at K.
  Encoder e4(5);
  HostObjective o4(6);
  vf::freeze::FreezeController c4 = make_controller(cs);
  vf::optim::AdamW<float> adam4(kAdam);
  vf::train::Pretrainer cpu(e4, o4, Masking{750}, c4, adam4, options);
  cpu.load_checkpoint(file);
  vf::nn::ParameterList<float> host;
  e4.collect_parameters(host);
  o4.collect_parameters(host);
  bool same = host.size() == at_k.size() && cpu.next_iteration() == K;
  for (std::size_t i = 0; same && i < host.size(); ++i)
    same = bit_identical({host[i]->value.data(), host[i]->value.data() + host[i]->value.numel()}, at_k[i]);
  c.expect(same, "checkpoint: the CPU trainer loads the GPU's checkpoint with the GPU's values at step K");

  // Another recipe (a different seed) is refused with the differences, before anything changes.
  vf::train::PretrainOptions other = options;
  other.seed = 99;
  Encoder e5(5);
  HostObjective o5(6);
  vf::freeze::FreezeController c5 = make_controller(cs);
  DeviceTrainer mismatched(ctx, e5, o5, Masking{750}, c5, kAdam, other);
  bool refused = false;
  try {
    mismatched.resume(file.string());
  } catch (const vf::Error& e) {
    refused = std::string(e.what()).find("seed") != std::string::npos;
  }
  c.expect(refused && mismatched.next_iteration() == 0, "checkpoint: a different recipe (seed) is refused, naming it");
  std::filesystem::remove_all(dir);
}

void device_checks(DeviceChecker& c) {
  const std::vector<vf::Tensor<float>> batches = make_batches();
  section(c, "checkpoint resume", [&] { check_checkpoint_resume(c, batches); });
  using vf::freeze::FreezeSemantics;
  check_against_cpu<vn::Fp32>(c, {"truncate", FreezeSemantics::truncate, false}, batches);
  check_against_cpu<vn::Fp32>(c, {"vitfreeze semantics", FreezeSemantics::vitfreeze, false}, batches);
  check_against_cpu<vn::Fp32>(c, {"dont_freeze_pe", FreezeSemantics::truncate, true}, batches);
  check_against_cpu<vn::Bf16Mixed>(c, {"truncate", FreezeSemantics::truncate, false}, batches);
  check_against_cpu<vn::Fp16Mixed>(c, {"truncate", FreezeSemantics::truncate, false}, batches);  // not yet run on a GPU
}

}  // namespace

int main() {
  DeviceChecker c;
  return vf::testing::run_device_test(device_checks, c);
}
