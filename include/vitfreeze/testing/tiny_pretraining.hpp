#pragma once
// A whole pretraining run small enough for tests and fuzz targets: 48 noise images of 8x8, a ViT of
// two 16-wide blocks (3 units), MAE with one 8-wide decoder block, 3 epochs of 6 steps on the linear
// 0.5 schedule with 1 warmup epoch (unit 0 freezes at g = 13, unit 1 at g = 16). Every object is
// built afresh from the same recipe each time, so two instances are two runs of one recipe.
#include <filesystem>

#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/data/loader.hpp"
#include "vitfreeze/freeze/freeze.hpp"
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/train/pretrainer.hpp"

namespace vitfreeze::testing {

struct TinyPretraining {
  static constexpr ViTSpec kSpec{.image = 8, .channels = 1, .patch = 4, .dim = 16, .depth = 2, .heads = 2, .mlp_ratio = 2};
  using Objective = mim::Mae<kSpec, mim::DecoderSpec{.dim = 8, .depth = 1, .heads = 2, .mlp_ratio = 2}>;
  using Encoder = nn::ViT<kSpec, float>;
  static constexpr int kEpochs = 3, kStepsPerEpoch = 6, kBatch = 8;

  static data::Dataset noise_images(int count) {
    data::Dataset d;
    d.name = "noise";
    d.count = count, d.channels = 1, d.height = 8, d.width = 8, d.num_classes = 2;
    RandomStream rng(7, RngPurpose::test);
    for (int i = 0; i < count * 64; ++i) d.pixels.push_back(std::uint8_t(rng.below(256)));
    for (int i = 0; i < count; ++i) d.labels.push_back(i % 2);
    return d;
  }

  // The run's options: checkpoints in `dir` when given, no metrics, no progress bar.
  static train::PretrainOptions options(const std::filesystem::path& dir = {}) {
    train::PretrainOptions o;
    o.epochs = kEpochs;
    o.seed = 5;
    o.progress = false;
    o.checkpoint_dir = dir;
    o.recipe = io::Json::object();
    o.recipe.set("batch", kBatch);
    return o;
  }

  data::Dataset data = noise_images(kStepsPerEpoch * kBatch);
  data::Loader loader{data,
                      data::Transform{data::RandomResizedCrop{8, 0.5, 1.0, 3.0 / 4.0, 4.0 / 3.0, data::Interpolation::bilinear},
                                      std::nullopt, 0.5, data::Normalize::fashion_mnist()},
                      {.batch_size = kBatch, .last_batch = data::LastBatch::drop, .seed = 11, .workers = 0}};
  freeze::FreezeController controller{freeze::RuntimeSchedule{freeze::Spacing::linear, 0.5, true}.fractions(3),
                                      {kEpochs, 1, kStepsPerEpoch},
                                      {.mode = freeze::LrMode::scaled_layerwise, .base_lr = 3e-3, .min_lr = 1e-5}};
  Encoder encoder{1};
  Objective objective{2};
  optim::AdamW<float> adam;
  train::Pretrainer<Encoder, Objective, mim::Random<750>> trainer;

  explicit TinyPretraining(train::PretrainOptions opt = options())
      : trainer(encoder, objective, {}, controller, adam, std::move(opt)) {}

  // Steps [from, to) by hand, reading the loader in the same order fit() does.
  void steps(std::int64_t from, std::int64_t to) {
    for (std::int64_t g = from; g < to; ++g) trainer.step(batch(g), g);
  }
  // The batch of global iteration g.
  Tensor<float> batch(std::int64_t g) {
    loader.start_epoch(std::uint64_t(g / kStepsPerEpoch), g % kStepsPerEpoch);
    auto b = loader.next();
    if (!b) throw ConfigError("TinyPretraining: no batch for iteration " + std::to_string(g));
    return b->images;
  }
};

}  // namespace vitfreeze::testing
