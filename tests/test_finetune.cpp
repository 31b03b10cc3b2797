// Fine-tuning: classifier head on pooled tokens, layer-wise LR decay, SGD/Nesterov, mixup sampling.
#include <doctest/doctest.h>

#include "vitfreeze/autograd/gradcheck.hpp"
#include "vitfreeze/optim/sgd.hpp"
#include "vitfreeze/testing/random_tensor.hpp"
#include "vitfreeze/testing/synthetic.hpp"
#include "vitfreeze/train/finetune.hpp"

using namespace vitfreeze;

namespace {
constexpr ViTSpec kSmall{.image = 28, .channels = 1, .patch = 4, .dim = 32, .depth = 2, .heads = 2, .mlp_ratio = 2};
}

TEST_CASE("layer-wise decay scales: decay^(n - id), head at 1") {
  nn::ViT<kSmall, float> enc(1);
  train::Classifier cls(enc, 4, 2);
  auto groups = optim::layer_decay_groups<float>(cls.layers(), 0.5);
  REQUIRE(groups.size() == 4);
  CHECK(groups[0].lr_scale == doctest::Approx(0.125));  // patch embedding + cls
  CHECK(groups[1].lr_scale == doctest::Approx(0.25));   // block 0
  CHECK(groups[3].lr_scale == doctest::Approx(1.0));    // fc_norm + head
  CHECK(groups[3].params.size() == 4);
}

TEST_CASE("SGD with Nesterov momentum matches PyTorch's update") {
  Parameter<double> p("w", Shape{1}, true);
  p.value[0] = 1.0;
  optim::Sgd<double> sgd({.momentum = 0.9, .weight_decay = 0.1, .nesterov = true});
  p.ensure_grad()[0] = 0.5;
  sgd.update(p, 0.1);  // g = 0.5 + 0.1 = 0.6, b = 0.6, step = 0.6 + 0.54 = 1.14
  CHECK(p.value[0] == doctest::Approx(1.0 - 0.114));
  p.grad[0] = 0.5;
  sgd.update(p, 0.1);  // g = 0.5 + 0.1*0.886 = 0.5886, b = 0.54 + 0.5886 = 1.1286, step = 0.5886 + 1.01574
  CHECK(p.value[0] == doctest::Approx(0.886 - 0.1 * (0.5886 + 0.9 * 1.1286)));
}

TEST_CASE("Beta(a, a) mixup weights have mean 1/2 and the right spread") {
  RandomStream rng(3, RngPurpose::mixup);
  double sum = 0, sq = 0;
  const int n = 4000;
  for (int i = 0; i < n; ++i) {
    const double a = train::sample_gamma(rng, 0.8), b = train::sample_gamma(rng, 0.8);
    const double lam = a / (a + b);
    sum += lam, sq += lam * lam;
  }
  const double mean = sum / n, var = sq / n - mean * mean;
  CHECK(mean == doctest::Approx(0.5).epsilon(0.03));
  CHECK(var == doctest::Approx(0.25 / (2 * 0.8 + 1)).epsilon(0.1));  // Var Beta(a,a) = 1 / (4 (2a + 1))
}

TEST_CASE("gradcheck: classifier (pool, fc_norm, head) through the encoder") {
  constexpr ViTSpec tiny{.image = 8, .channels = 1, .patch = 4, .dim = 8, .depth = 1, .heads = 2, .mlp_ratio = 2};
  nn::ViT<tiny, double> enc(1);
  train::Classifier<nn::ViT<tiny, double>, double> cls(enc, 3, 2);
  for (std::int64_t i = 0; i < cls.head.weight.value.numel(); ++i) cls.head.weight.value[i] = 0.1 * std::sin(double(i));
  auto images = testing::random_tensor<double>({2, 1, 8, 8}, 3);
  std::vector<GradCheckInput> inputs;
  for (auto& layer : cls.layers())
    for (auto* p : layer) inputs.push_back(grad_input(*p));
  auto r = check_gradients([&](Tape<double>& t) { return ops::cross_entropy(t, cls(t, images), {0, 2}, 0.1); }, inputs,
                           {.max_entries_per_input = 16});
  INFO(r.worst);
  // Cross-entropy through an encoder leaves some entries at ~1e-5 of the largest gradient, where
  // central differences in double carry ~1e-6 relative noise: bound 1e-5.
  CHECK(r.max_error < 1e-5);
}

TEST_CASE("fine-tuning a small ViT on a separable synthetic task reaches high accuracy") {
  auto train_set = testing::stripes(256, 1), test_set = testing::stripes(64, 2);
  data::Transform plain{std::nullopt, std::nullopt, 0.5, data::Normalize::fashion_mnist()};
  data::Transform eval{std::nullopt, std::nullopt, 0.0, data::Normalize::fashion_mnist()};
  data::Loader loader(train_set, plain, {.batch_size = 32, .last_batch = data::LastBatch::drop, .seed = 1, .workers = 0});
  data::Loader test_loader(test_set, eval, {.batch_size = 64, .shuffle = false, .workers = 0});
  nn::ViT<kSmall, float> enc(1);
  train::Classifier cls(enc, 4, 2);
  auto losses = train::finetune(cls, loader,
                                {.epochs = 6, .warmup_epochs = 1, .base_lr = 3e-3, .layer_decay = 0.9,
                                 .label_smoothing = 0.1, .mixup_alpha = 0.2, .progress = false});
  CHECK(losses.back() < losses.front());
  auto acc = train::evaluate_classifier(cls, test_loader);
  CHECK(acc.count == 64);
  CHECK(acc.top1 > 0.8);
}
