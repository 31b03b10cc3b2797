// Measured saving of progressive freezing: MAE pretraining of ViT-Ti (28x28x1, patch 4) on the same
// Fashion-MNIST images, seed and step count, without freezing and with a freeze schedule under both
// semantics, in one run. Prints per-epoch wall clock, total time, and measured vs predicted saving
// (the constexpr cost model of freeze/cost_model.hpp on FLOP counts of nn/flops.hpp).
//   freeze_bench [epochs=6] [warmup=1] [steps_per_epoch=30] [batch=64] [data_dir]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "vitfreeze/data/idx.hpp"
#include "vitfreeze/data/loader.hpp"
#include "vitfreeze/freeze/freeze.hpp"
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/nn/flops.hpp"
#include "vitfreeze/train/pretrainer.hpp"

namespace vf = vitfreeze;
constexpr vf::ViTSpec kSpec = vf::specs::tiny(28, 1, 4);
constexpr vf::mim::DecoderSpec kDecoder{.dim = 128, .depth = 2, .heads = 4};
using Objective = vf::mim::Mae<kSpec, kDecoder>;

struct Config {
  const char* name;
  vf::freeze::RuntimeSchedule schedule;
  vf::freeze::FreezeSemantics semantics;
};

// Forward FLOPs per image of each unit (patch embedding, blocks on 1 + K tokens) and of the decoder.
std::vector<double> unit_forward_flops(int kept, double* decoder_training) {
  std::vector<double> f;
  f.push_back(double(vf::nn::patch_embed_forward_flops(kSpec)));
  for (int b = 0; b < kSpec.depth; ++b) f.push_back(double(vf::nn::encoder_block_forward_flops(kSpec, kept + 1)));
  const double dec = double(vf::nn::linear_forward_flops(kept + 1, kSpec.dim, kDecoder.dim)) +
                     kDecoder.depth * double(vf::nn::transformer_block_forward_flops(kSpec.tokens() + 1, kDecoder.dim, 4)) +
                     double(vf::nn::linear_forward_flops(kSpec.tokens(), kDecoder.dim, kSpec.patch_dim()));
  *decoder_training = 3 * dec;
  return f;
}

int main(int argc, char** argv) {
  const int epochs = argc > 1 ? std::atoi(argv[1]) : 6, warmup = argc > 2 ? std::atoi(argv[2]) : 1;
  const std::int64_t steps = argc > 3 ? std::atoll(argv[3]) : 30, batch = argc > 4 ? std::atoll(argv[4]) : 64;
  const std::string dir = argc > 5 ? argv[5] : "/usr/share/datasets/fashion-mnist";
  auto data = vf::data::fashion_mnist(dir, vf::data::Split::train);
  const vf::data::Transform augment{vf::data::RandomResizedCrop{28, 0.2, 1.0, 0.75, 4.0 / 3.0, vf::data::Interpolation::bicubic},
                                    std::nullopt, 0.5, vf::data::Normalize::fashion_mnist()};
  const int kept = vf::mim::kept_count(kSpec.tokens(), 750);
  double decoder_training = 0;
  const std::vector<double> forward = unit_forward_flops(kept, &decoder_training);

  const Config configs[] = {
      {"no freezing", {vf::freeze::Spacing::cubic, 0.8, false}, vf::freeze::FreezeSemantics::truncate},
      {"cubic 0.8, truncate", {vf::freeze::Spacing::cubic, 0.8, true}, vf::freeze::FreezeSemantics::truncate},
      {"cubic 0.8, vitfreeze", {vf::freeze::Spacing::cubic, 0.8, true}, vf::freeze::FreezeSemantics::vitfreeze},
      {"linear 0.5, truncate", {vf::freeze::Spacing::linear, 0.5, true}, vf::freeze::FreezeSemantics::truncate},
  };
  std::printf("MAE ViT-Ti 28x28x1 p4, decoder 128x2, batch %lld, %d epochs x %lld steps (warmup %d), threads %d\n",
              (long long)batch, epochs, (long long)steps, warmup, vf::cpu::thread_count());
  double baseline = 0;
  for (const Config& c : configs) {
    vf::data::Loader loader(data, augment, {.batch_size = batch, .last_batch = vf::data::LastBatch::drop, .seed = 5});
    const auto fractions = c.schedule.fractions(kSpec.depth + 1);
    vf::freeze::FreezeController controller(fractions, {epochs, warmup, steps},
                                            {.mode = vf::freeze::LrMode::global_hard_freeze, .base_lr = 1.5e-4 * batch / 256 * 10});
    vf::nn::ViT<kSpec, float> encoder(1);
    Objective objective(2);
    vf::optim::AdamW<float> adam;
    vf::train::PretrainOptions opt;
    opt.epochs = epochs, opt.progress = false, opt.semantics = c.semantics;
    vf::train::Pretrainer trainer(encoder, objective, vf::mim::Random<750>{}, controller, adam, opt);
    std::printf("%-22s", c.name);
    double total = 0;
    for (int e = 0; e < epochs; ++e) {
      loader.start_epoch(std::uint64_t(e));
      const auto t0 = std::chrono::steady_clock::now();
      for (std::int64_t s = 0; s < steps; ++s) trainer.step(loader.next()->images, e * steps + s);
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      total += sec;
      std::printf(" %6.2f", sec);
    }
    if (baseline == 0) baseline = total;
    const double predicted = c.schedule.freezes ? vf::freeze::predicted_saving({forward, {}, decoder_training}, fractions,
                                                                               c.semantics, epochs, warmup)
                                                : 0.0;
    const double measured = 1 - total / baseline;
    std::printf("  | total %7.2f s  measured saving %5.1f %%  predicted %5.1f %%  ratio %s\n", total, 100 * measured,
                100 * predicted, predicted > 0 ? std::to_string(measured / predicted).substr(0, 4).c_str() : "-");
  }
}
