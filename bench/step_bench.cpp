// One full CPU pretraining step (masks, forward, backward, AdamW), the work bench/step_bench_torch.py
// runs in PyTorch, for the two configurations of the CPU-speed issue:
//   mae       MAE ViT-Ti, 32x32x3, patch 4 (64 patches, 16 kept), decoder 128 x 2 blocks x 4 heads
//   localmim  the main job's LocalMIM ViT-Ti, 28x28x1, patch 4 (49 patches, 12 kept), taps after
//             blocks 1, 3, 9, 11 at scales 4, 2, 1, 1, decoders 128 x 1 block x 4 heads, 9-bin HOG
// on random images rotated over 4 pre-generated batches, no freezing.
//   step_bench CONFIG ENGINE [batch=128] [steps=10] [warmup=3]     ENGINE: explicit | tape
// Prints one line: median ms per step over the timed steps (each step timed alone), images/s, and
// the spread (min .. max ms).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "vitfreeze/backend/cpu/gemm.hpp"
#include "vitfreeze/core/parallel.hpp"
#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/freeze/freeze.hpp"
#include "vitfreeze/mim/localmim.hpp"
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/train/pretrainer.hpp"

namespace vf = vitfreeze;

namespace {

constexpr vf::ViTSpec kMaeSpec{.image = 32, .channels = 3, .patch = 4, .dim = 192, .depth = 12, .heads = 3, .mlp_ratio = 4};
using MaeObjective = vf::mim::Mae<kMaeSpec, vf::mim::DecoderSpec{.dim = 128, .depth = 2, .heads = 4}>;
constexpr vf::ViTSpec kLocalMimSpec = vf::specs::tiny(28, 1, 4);
using LocalMimObjective =
    vf::mim::LocalMim<kLocalMimSpec,
                      vf::mim::taps<vf::mim::TapSpec{1, 4, 1}, vf::mim::TapSpec{3, 2, 1}, vf::mim::TapSpec{9, 1, 1},
                                    vf::mim::TapSpec{11, 1, 1}>,
                      vf::mim::DecoderSpec{.dim = 128, .depth = 1, .heads = 4}>;

template <vf::ViTSpec S, class Objective, class Engine>
int run(const char* config, const char* engine_name, int batch, int steps, int warmup) {
  std::vector<vf::Tensor<float>> batches;
  vf::RandomStream rng(3, vf::RngPurpose::test, 0);
  for (int k = 0; k < 4; ++k) {
    batches.emplace_back(vf::Shape{batch, S.channels, S.image, S.image});
    for (std::int64_t i = 0; i < batches.back().numel(); ++i) batches.back()[i] = float(rng.normal());
  }
  const int total = warmup + steps;
  vf::nn::ViT<S, float> encoder(1);
  Objective objective(2);
  vf::optim::AdamW<float> adam({.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.05});
  vf::freeze::FreezeController controller(vf::freeze::RuntimeSchedule{vf::freeze::Spacing::cubic, 0.8, false}.fractions(S.depth + 1),
                                          {1, 0, total}, {.mode = vf::freeze::LrMode::global_hard_freeze, .base_lr = 1.5e-4});
  vf::train::PretrainOptions opt;
  opt.epochs = 1, opt.progress = false;
  vf::train::Pretrainer<vf::nn::ViT<S, float>, Objective, vf::mim::Random<750>, float, Engine> trainer(
      encoder, objective, vf::mim::Random<750>{}, controller, adam, opt);
  std::int64_t g = 0;
  for (; g < warmup; ++g) trainer.step(batches[std::size_t(g % 4)], g);
  std::vector<double> ms;
  for (int s = 0; s < steps; ++s, ++g) {
    const auto start = std::chrono::steady_clock::now();
    trainer.step(batches[std::size_t(g % 4)], g);
    ms.push_back(1e3 * std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  std::printf("vitfreeze  %-8s %-8s threads %d  gemm %s  batch %d  %8.1f ms/step  %7.1f img/s  (min %.1f max %.1f ms, %d steps)\n",
              config, engine_name, vf::cpu::thread_count(), vf::cpu::gemm_library(), batch, median, batch / (median / 1e3),
              ms.front(), ms.back(), steps);
  return 0;
}

template <vf::ViTSpec S, class Objective>
int with_engine(const std::string& engine, const char* config, int batch, int steps, int warmup) {
  using Encoder = vf::nn::ViT<S, float>;
  if (engine == "explicit")
    return run<S, Objective, vf::train::ExplicitStepEngine<Encoder, Objective, float>>(config, "explicit", batch, steps, warmup);
  if (engine == "tape")
    return run<S, Objective, vf::train::TapeStepEngine<Encoder, Objective, float>>(config, "tape", batch, steps, warmup);
  std::fprintf(stderr, "engine: explicit or tape, not %s\n", engine.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: step_bench mae|localmim explicit|tape [batch=128] [steps=10] [warmup=3]\n");
    return 2;
  }
  const std::string config = argv[1], engine = argv[2];
  const int batch = argc > 3 ? std::atoi(argv[3]) : 128, steps = argc > 4 ? std::atoi(argv[4]) : 10;
  const int warmup = argc > 5 ? std::atoi(argv[5]) : 3;
  try {
    if (config == "mae") return with_engine<kMaeSpec, MaeObjective>(engine, "mae", batch, steps, warmup);
    if (config == "localmim") return with_engine<kLocalMimSpec, LocalMimObjective>(engine, "localmim", batch, steps, warmup);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "step_bench: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "config: mae or localmim, not %s\n", config.c_str());
  return 2;
}
