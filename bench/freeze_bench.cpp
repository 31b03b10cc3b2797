// Measured against predicted saving of a frozen prefix on the CPU, per training step (as the GPU
// table of bench/RESULTS.md): MAE pretraining steps of ViT-Ti (28x28x1, patch 4, decoder 128 x 2,
// mask 0.75) on the same Fashion-MNIST batches, with units 0..k-1 frozen from the first step on
// (unit 0 = patch embedding + cls, unit i = block i - 1), against k = 0.
//
// A shared machine drifts by 10-20 % between runs, so one run per configuration shows nothing:
// every repeat times each k once, in an order rotated from repeat to repeat, each k's saving is
// paired with the k = 0 time of its own repeat, and the repeats give a mean and a 95 % confidence
// interval (Student t, n - 1 degrees of freedom) for the saving and for measured / predicted.
// A repeat's step time for one k is the median of its timed steps (after untimed steps that let the
// caches settle on the switch). Predicted = the cost model (freeze/cost_model.hpp) on nn/flops.hpp:
// a frozen unit saves 2x its forward FLOPs under truncate semantics, 1x under vitfreeze semantics.
//   freeze_bench [repeats=10] [steps=20] [frozen=0,4,8,12] [batch=64] [semantics=truncate|vitfreeze] [data_dir]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "vitfreeze/data/idx.hpp"
#include "vitfreeze/data/loader.hpp"
#include "vitfreeze/freeze/freeze.hpp"
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/nn/flops.hpp"
#include "vitfreeze/train/pretrainer.hpp"

namespace {

namespace vf = vitfreeze;
constexpr vf::ViTSpec kSpec = vf::specs::tiny(28, 1, 4);
constexpr vf::mim::DecoderSpec kDecoder{.dim = 128, .depth = 2, .heads = 4};
using Objective = vf::mim::Mae<kSpec, kDecoder>;
using Trainer = vf::train::Pretrainer<vf::nn::ViT<kSpec, float>, Objective, vf::mim::Random<750>>;
constexpr int kUnits = kSpec.depth + 1;
constexpr int kSettleSteps = 2;  // untimed steps after switching to a configuration

// Two-sided 95 % quantile of Student's t with df degrees of freedom (table to 30, then the
// Cornish-Fisher expansion, within 1e-3 of the exact value).
double t975(int df) {
  static constexpr double table[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                                     2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                                     2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
  if (df >= 1 && df <= 30) return table[df - 1];
  const double z = 1.959964, n = df;
  return z + (z * z * z + z) / (4 * n) + (5 * std::pow(z, 5) + 16 * z * z * z + 3 * z) / (96 * n * n);
}

struct Interval {
  double mean = 0, sd = 0, half = 0;  // mean +- half is the 95 % confidence interval of the mean
};
Interval mean_ci(const std::vector<double>& x) {  // needs two values or more
  const double n = double(x.size()), mean = std::accumulate(x.begin(), x.end(), 0.0) / n;
  double ss = 0;
  for (double v : x) ss += (v - mean) * (v - mean);
  const double sd = std::sqrt(ss / (n - 1));
  return {mean, sd, t975(int(x.size()) - 1) * sd / std::sqrt(n)};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// Forward FLOPs per image of each unit (patch embedding, blocks on 1 + K tokens) and the decoder's
// training FLOPs (never saved).
vf::freeze::UnitCosts unit_costs(int kept, std::vector<double>& forward) {
  forward.assign(1, double(vf::nn::patch_embed_forward_flops(kSpec)));
  for (int b = 0; b < kSpec.depth; ++b) forward.push_back(double(vf::nn::encoder_block_forward_flops(kSpec, kept + 1)));
  const double dec = double(vf::nn::linear_forward_flops(kept + 1, kSpec.dim, kDecoder.dim)) +
                     kDecoder.depth * double(vf::nn::transformer_block_forward_flops(kSpec.tokens() + 1, kDecoder.dim, 4)) +
                     double(vf::nn::linear_forward_flops(kSpec.tokens(), kDecoder.dim, kSpec.patch_dim()));
  return {forward, {}, 3 * dec};
}

// One configuration: its own models, optimiser and a controller that freezes units 0..k-1 at the
// first step it can (fraction ~0, no warmup) and never any other.
struct Config {
  int frozen;
  vf::nn::ViT<kSpec, float> encoder{1};
  Objective objective{2};
  vf::optim::AdamW<float> adam;
  vf::freeze::FreezeController controller;
  Trainer trainer;
  std::int64_t next = 0;  // the trainer's next global iteration

  Config(int k, std::int64_t total_steps, vf::freeze::FreezeSemantics semantics)
      : frozen(k),
        controller(fractions(k), {1, 0, total_steps}, {.mode = vf::freeze::LrMode::global_hard_freeze, .base_lr = 1e-3}),
        trainer(encoder, objective, vf::mim::Random<750>{}, controller, adam, options(semantics)) {}

  static std::vector<double> fractions(int k) {
    std::vector<double> r(kUnits, std::numeric_limits<double>::infinity());
    for (int u = 0; u < k; ++u) r[std::size_t(u)] = 1e-12;  // frozen from iteration 1 on
    return r;
  }
  static vf::train::PretrainOptions options(vf::freeze::FreezeSemantics semantics) {
    vf::train::PretrainOptions o;
    o.epochs = 1, o.progress = false, o.semantics = semantics;
    return o;
  }
  double step(const vf::Tensor<float>& images) { return trainer.step(images, next++); }
};

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stoi(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 10, steps = argc > 2 ? std::atoi(argv[2]) : 20;
  const std::vector<int> frozen = parse_list(argc > 3 ? argv[3] : "0,4,8,12");
  const std::int64_t batch = argc > 4 ? std::atoll(argv[4]) : 64;
  const std::string semantics_name = argc > 5 ? argv[5] : "truncate";
  const std::string dir = argc > 6 ? argv[6] : "/usr/share/datasets/fashion-mnist";
  if (repeats < 2 || steps < 1 || frozen.empty() || frozen.front() != 0 ||
      !std::all_of(frozen.begin(), frozen.end(), [](int k) { return k >= 0 && k < kUnits; }) ||
      (semantics_name != "truncate" && semantics_name != "vitfreeze")) {
    std::fprintf(stderr, "usage: freeze_bench [repeats>=2] [steps] [frozen list starting with 0, each < %d] [batch] "
                         "[truncate|vitfreeze] [data_dir]\n", kUnits);
    return 2;
  }
  const auto semantics = semantics_name == "truncate" ? vf::freeze::FreezeSemantics::truncate
                                                      : vf::freeze::FreezeSemantics::vitfreeze;
  // The same few augmented batches for every configuration, made before any timing.
  auto data = vf::data::fashion_mnist(dir, vf::data::Split::train);
  const vf::data::Transform augment{vf::data::RandomResizedCrop{28, 0.2, 1.0, 0.75, 4.0 / 3.0, vf::data::Interpolation::bicubic},
                                    std::nullopt, 0.5, vf::data::Normalize::fashion_mnist()};
  vf::data::Loader loader(data, augment, {.batch_size = batch, .last_batch = vf::data::LastBatch::drop, .seed = 5});
  loader.start_epoch(0);
  std::vector<vf::Tensor<float>> batches;
  for (int i = 0; i < 4; ++i) batches.push_back(loader.next()->images);

  std::vector<double> forward;
  const vf::freeze::UnitCosts costs = unit_costs(vf::mim::kept_count(kSpec.tokens(), 750), forward);
  auto predicted = [&](int k) {
    double saved = 0;
    for (int u = 0; u < k; ++u) saved += vf::freeze::saved_flops_while_frozen(costs, std::size_t(u), semantics);
    return saved / vf::freeze::baseline_training_flops(costs);
  };

  const int warm = 3;  // first steps of each trainer: unit freezing (iteration 1), allocations
  const std::int64_t total = warm + std::int64_t(repeats) * (kSettleSteps + steps);
  std::vector<std::unique_ptr<Config>> configs;
  for (int k : frozen) configs.push_back(std::make_unique<Config>(k, total, semantics));
  for (auto& c : configs) {
    for (int i = 0; i < warm; ++i) c->step(batches[std::size_t(i) % batches.size()]);
    if (c->controller.first_active_unit() != c->frozen) {
      std::fprintf(stderr, "frozen prefix %d: the controller froze %d units\n", c->frozen, c->controller.first_active_unit());
      return 1;
    }
  }
  std::printf("MAE ViT-Ti 28x28x1 p4, decoder 128x2, mask 0.75, batch %lld, %s semantics, threads %d: "
              "%d repeats x %d timed steps (%d untimed after each switch), configurations interleaved\n",
              (long long)batch, semantics_name.c_str(), vf::cpu::thread_count(), repeats, steps, kSettleSteps);

  // ms[c][r]: configuration c's median step time in repeat r.
  std::vector<std::vector<double>> ms(configs.size());
  for (int r = 0; r < repeats; ++r) {
    std::printf("repeat %d:", r + 1);
    for (std::size_t j = 0; j < configs.size(); ++j) {
      const std::size_t c = (j + std::size_t(r)) % configs.size();  // rotated order
      Config& cfg = *configs[c];
      for (int i = 0; i < kSettleSteps; ++i) cfg.step(batches[std::size_t(i) % batches.size()]);
      std::vector<double> times;
      for (int s = 0; s < steps; ++s) {
        const auto t0 = std::chrono::steady_clock::now();
        cfg.step(batches[std::size_t(s) % batches.size()]);
        times.push_back(1e3 * std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      ms[c].push_back(median(times));
      std::printf("  k=%d %.1f ms", cfg.frozen, ms[c].back());
    }
    std::printf("\n");
  }

  const Interval base = mean_ci(ms[0]);
  std::printf("\nno freezing: %.1f ms a step (95 %% CI +- %.1f), repeat-to-repeat spread %.1f %% (SD / mean)\n", base.mean,
              base.half, 100 * base.sd / base.mean);
  std::printf("\n| frozen units | step ms (95 %% CI) | measured saving (95 %% CI) | predicted saving | measured / predicted (95 %% CI) |\n");
  std::printf("|---:|---:|---:|---:|---:|\n");
  for (std::size_t c = 0; c < configs.size(); ++c) {
    const Interval t = mean_ci(ms[c]);
    std::printf("| %d | %.1f (%.1f to %.1f) |", configs[c]->frozen, t.mean, t.mean - t.half, t.mean + t.half);
    if (configs[c]->frozen == 0) {
      std::printf(" - | - | - |\n");
      continue;
    }
    std::vector<double> saving, ratio;
    const double p = predicted(configs[c]->frozen);
    for (int r = 0; r < repeats; ++r) {
      saving.push_back(1 - ms[c][std::size_t(r)] / ms[0][std::size_t(r)]);
      ratio.push_back(saving.back() / p);
    }
    const Interval s = mean_ci(saving), q = mean_ci(ratio);
    std::printf(" %.1f %% (%.1f to %.1f) | %.1f %% | %.2f (%.2f to %.2f) |\n", 100 * s.mean, 100 * (s.mean - s.half),
                100 * (s.mean + s.half), 100 * p, q.mean, q.mean - q.half, q.mean + q.half);
  }
}
