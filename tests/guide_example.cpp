// A pretraining run composed from the library's parts. docs/guide.md quotes this file (CTest checks
// the copy is exact), and CTest builds it and runs it for two steps per epoch.
#include <cstdio>
#include <filesystem>
#include <string>

#include <vitfreeze/testing/synthetic.hpp>
#include <vitfreeze/vitfreeze.hpp>

namespace vf = vitfreeze;

constexpr vf::ViTSpec spec{.image = 28, .channels = 1, .patch = 4, .dim = 96, .depth = 6, .heads = 3};
constexpr vf::mim::DecoderSpec decoder{.dim = 64, .depth = 1, .heads = 2};
using Recipe = vf::Pretraining<vf::nn::ViT<spec>,                             // the encoder
                               vf::mim::Mae<spec, decoder, vf::mim::Hog<9>>,  // MAE predicting HOG
                               vf::mim::Random<750>,                          // 75 % of patches masked
                               vf::freeze::Cubic<800>,                        // ViTFreeze's schedule
                               vf::freeze::ViTTailoredLr>;                    // LR 0 at each freeze
static_assert(vf::predicted_saving<Recipe>({.epochs = 20, .warmup_epochs = 2}) >= 0.1);

int main(int argc, char** argv) {
  const std::filesystem::path fashion = "/usr/share/datasets/fashion-mnist";
  const vf::data::Dataset images = std::filesystem::exists(fashion) ? vf::data::fashion_mnist(fashion, vf::data::Split::train)
                                                                    : vf::testing::stripes(8192, /*seed=*/1);
  vf::data::Loader loader(images, vf::data::Transform::mae_pretrain(28, vf::data::Normalize::fashion_mnist()),
                          {.batch_size = 128, .last_batch = vf::data::LastBatch::drop, .seed = 1});
  Recipe::Encoder encoder(/*seed=*/1);
  Recipe::Objective objective(/*seed=*/2);
  auto controller = Recipe::controller({.epochs = 20, .warmup_epochs = 2, .iters_per_epoch = loader.batches_per_epoch()},
                                       /*base_lr=*/1.5e-3 * 128 / 256);
  vf::optim::AdamW<float> adamw;
  vf::train::PretrainOptions options;
  options.epochs = 20;
  options.out_dir = "guide_run";                                 // metrics.jsonl
  if (argc > 1) options.max_steps_per_epoch = std::stol(argv[1]);  // a smoke run
  vf::train::Pretrainer trainer(encoder, objective, Recipe::Masking{}, controller, adamw, options);
  for (const vf::train::EpochReport& epoch : trainer.fit(loader))
    std::printf("epoch %d: loss %.4f, training from unit %d\n", epoch.epoch, epoch.mean_loss, epoch.first_active_unit);
}
