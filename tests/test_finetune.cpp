// Fine-tuning: classifier head on pooled tokens, layer-wise LR decay, SGD/Nesterov, mixup sampling.
#include <doctest/doctest.h>

#include <map>

#include "vitfreeze/autograd/gradcheck.hpp"
#include "vitfreeze/autograd/ops/batchnorm.hpp"
#include "vitfreeze/optim/lars.hpp"
#include "vitfreeze/train/linear_probe.hpp"
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
    const double a = data::sample_gamma(rng, 0.8), b = data::sample_gamma(rng, 0.8);
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

// ---- the fine-tuning recipes' parts (peers spec §0.7, §2.7, §3.4) -------------------------------

TEST_CASE("drop path: p_i = rate i / (depth - 1), kept branches scaled by 1 / (1 - p_i), the same draw for the same step") {
  const nn::StochasticDepth drop{.rate = 0.3, .seed = 4, .step = 7};
  CHECK(drop.drop_probability(0, 4) == 0.0);
  CHECK(drop.drop_probability(3, 4) == doctest::Approx(0.3));
  CHECK(drop.drop_probability(1, 4) == doctest::Approx(0.1));
  const auto first = drop.scales<double>(0, 4, 64);
  for (std::int64_t b = 0; b < 64; ++b) CHECK(first.attention[b] == 1.0);  // block 0 never drops
  // The last block: dropped samples are 0, kept ones 1 / 0.7, about 30 % dropped over many draws.
  int dropped = 0, total = 0;
  for (std::uint64_t step = 0; step < 50; ++step) {
    const auto s = nn::StochasticDepth{0.3, 4, step}.scales<double>(3, 4, 64);
    for (const Tensor<double>* f : {&s.attention, &s.mlp})
      for (std::int64_t b = 0; b < 64; ++b) {
        CHECK((f->at(b) == 0.0 || f->at(b) == doctest::Approx(1.0 / 0.7)));
        dropped += f->at(b) == 0.0, ++total;
      }
  }
  CHECK(double(dropped) / total == doctest::Approx(0.3).epsilon(0.1));
  const auto again = drop.scales<double>(3, 4, 64), other = nn::StochasticDepth{0.3, 5, 7}.scales<double>(3, 4, 64);
  int same = 0, differ = 0;
  for (std::int64_t b = 0; b < 64; ++b) {
    same += again.mlp[b] == drop.scales<double>(3, 4, 64).mlp[b];
    differ += again.mlp[b] != other.mlp[b];
  }
  CHECK(same == 64);
  CHECK(differ > 0);
  CHECK_THROWS_AS((nn::StochasticDepth{1.0, 0, 0}.scales<double>(3, 4, 2)), ConfigError);
}

TEST_CASE("drop path in a block: a sample whose two branches are dropped passes through unchanged, and a gradcheck") {
  nn::Block<double> block("block", 8, 2, 16);
  block.init_xavier(3);
  const auto x = testing::random_tensor<double>({3, 5, 8}, 4);
  nn::BranchScales<double> drop{Tensor<double>(Shape{3}), Tensor<double>(Shape{3})};
  drop.attention[0] = 0, drop.mlp[0] = 0;      // sample 0: both dropped
  drop.attention[1] = 2, drop.mlp[1] = 0;      // sample 1: attention kept at 1 / (1 - 0.5)
  drop.attention[2] = 2, drop.mlp[2] = 2;
  Tape<double> tape;
  const Tensor<double> y = tape.value(block(tape, tape.constant(x), nullptr, &drop));
  for (std::int64_t i = 0; i < 40; ++i) CHECK(y[i] == x[i]);
  const Tensor<double> plain = tape.value(block(tape, tape.constant(x)));
  double moved = 0;
  for (std::int64_t i = 40; i < 120; ++i) moved = std::max(moved, std::abs(y[i] - plain[i]));
  CHECK(moved > 1e-3);
  Var<double> vx;
  const auto probe = testing::random_tensor<double>({3, 5, 8}, 5);
  auto r = check_gradients(
      [&](Tape<double>& t) { return ops::weighted_sum(t, block(t, vx = t.leaf(x), nullptr, &drop), probe); },
      {grad_input("x", x, vx)});
  INFO(r.worst);
  CHECK(r.max_error < 1e-6);
}

TEST_CASE("cutmix box and lam: timm's rand_bbox, clipped at the border, lam = the uncovered share") {
  // lam 0.75: side 28 * 0.5 = 14; centred at (0, 0) the box keeps only its lower-right quarter.
  const data::MixBox corner = data::cutmix_box(0.75, 0, 0, 28, 28);
  CHECK(corner.top == 0);
  CHECK(corner.bottom == 7);
  CHECK(corner.right == 7);
  const data::MixBox middle = data::cutmix_box(0.75, 14, 14, 28, 28);
  CHECK(middle.area() == 14 * 14);
  CHECK(data::cutmix_box(0.0, 5, 5, 28, 28).area() == 19 * 19);  // side 28 from 5 - 14 to 5 + 14, clipped

  // Draws: cutmix alone always cuts, lam the uncovered share of the box it reports.
  const data::MixSettings cutmix_only{.mixup_alpha = 0, .cutmix_alpha = 1.0};
  const data::MixSettings both{.mixup_alpha = 0.8, .cutmix_alpha = 1.0, .switch_probability = 0.5};
  int cut = 0;
  for (std::uint32_t step = 0; step < 200; ++step) {
    const data::MixDraw d = cutmix_only.draw(3, 0, step, 28, 28);
    REQUIRE(d.kind == data::MixDraw::Kind::cutmix);
    CHECK(d.lam == doctest::Approx(1.0 - d.box.area() / 784.0));
    cut += both.draw(3, 0, step, 28, 28).kind == data::MixDraw::Kind::cutmix;
  }
  CHECK(cut == doctest::Approx(100).epsilon(0.2));  // switch probability 0.5
  CHECK(data::MixSettings{.mixup_alpha = 0.2}.draw(3, 1, 2, 28, 28).kind == data::MixDraw::Kind::mixup);
  CHECK(data::MixSettings{}.draw(3, 1, 2, 28, 28).kind == data::MixDraw::Kind::none);
  const auto a = both.draw(9, 2, 5, 28, 28), b = both.draw(9, 2, 5, 28, 28);
  CHECK((a.kind == b.kind && a.lam == b.lam && a.box.area() == b.box.area()));
}

TEST_CASE("mixing a batch: cutmix pastes the reversed batch's box, mixup blends, partners are the reversed labels") {
  const auto images = testing::random_tensor<float>({4, 2, 6, 6}, 8);
  const std::vector<std::int32_t> labels{0, 1, 2, 3};
  std::vector<std::int32_t> partner;
  data::MixDraw cut{data::MixDraw::Kind::cutmix, 1.0 - 6.0 / 36.0, {1, 3, 2, 5}};
  const Tensor<float> mixed = data::apply_mix(cut, images, labels, partner);
  CHECK(partner == std::vector<std::int32_t>{3, 2, 1, 0});
  for (std::int64_t i = 0; i < 4; ++i)
    for (std::int64_t c = 0; c < 2; ++c)
      for (std::int64_t y = 0; y < 6; ++y)
        for (std::int64_t x = 0; x < 6; ++x) {
          const bool inside = y >= 1 && y < 3 && x >= 2 && x < 5;
          CHECK(mixed.at(i, c, y, x) == images.at(inside ? 3 - i : i, c, y, x));
        }
  const Tensor<float> blend = data::apply_mix({data::MixDraw::Kind::mixup, 0.25, {}}, images, labels, partner);
  for (std::int64_t k = 0; k < 72; ++k)
    CHECK(blend[k] == doctest::Approx(0.25 * images[k] + 0.75 * images[3 * 72 + k]));
}

TEST_CASE("fine-tuning's weight decay: none on the cls token, biases and norms (timm rule), and AdamW applies the choice") {
  nn::ViT<kSmall, float> enc(1);
  train::Classifier cls(enc, 4, 2);
  std::map<std::string, bool> decays;
  for (auto& layer : cls.layers())
    for (auto* p : layer) decays[p->name] = train::finetune_weight_decay(*p);
  CHECK_FALSE(decays.at("cls_token"));  // decayed in pretraining (MAE's rule: it is 3-D), not here
  CHECK(enc.cls_token.decay);
  CHECK_FALSE(decays.at("blocks.0.attn.qkv.bias"));
  CHECK_FALSE(decays.at("blocks.1.norm2.weight"));
  CHECK_FALSE(decays.at("fc_norm.weight"));
  CHECK_FALSE(decays.at("head.bias"));
  CHECK(decays.at("patch_embed.proj.weight"));
  CHECK(decays.at("blocks.1.mlp.fc2.weight"));
  CHECK(decays.at("head.weight"));
  // A zero gradient: with decay the weight shrinks by lr * wd, without it stays.
  Parameter<double> p("w", Shape{2, 1}, true);
  p.value[0] = 2.0, p.value[1] = -1.0;
  p.ensure_grad();
  optim::AdamW<double> adam({.weight_decay = 0.1});
  adam.update(p, 0.5, false);
  CHECK(p.value[0] == 2.0);
  adam.update(p, 0.5, true);
  CHECK(p.value[0] == doctest::Approx(2.0 * (1 - 0.05)));
}

TEST_CASE("BatchNorm without affine (MAE's probe head): values from a loop written here, gradients by finite differences") {
  const auto x = testing::random_tensor<double>({5, 3}, 9, -2.0, 3.0);
  Tape<double> tape;
  ops::BatchStatistics<double> stats;
  const Tensor<double> y = tape.value(ops::batch_norm(tape, tape.constant(x), 1e-6, &stats));
  for (std::int64_t d = 0; d < 3; ++d) {
    double mean = 0, var = 0;
    for (std::int64_t n = 0; n < 5; ++n) mean += x.at(n, d) / 5;
    for (std::int64_t n = 0; n < 5; ++n) var += (x.at(n, d) - mean) * (x.at(n, d) - mean) / 5;
    CHECK(stats.mean[d] == doctest::Approx(mean).epsilon(1e-14));
    CHECK(stats.variance[d] == doctest::Approx(var).epsilon(1e-12));
    for (std::int64_t n = 0; n < 5; ++n) CHECK(y.at(n, d) == doctest::Approx((x.at(n, d) - mean) / std::sqrt(var + 1e-6)));
  }
  Var<double> vx;
  const auto probe = testing::random_tensor<double>({5, 3}, 10);
  const auto r = check_gradients([&](Tape<double>& t) { return ops::weighted_sum(t, ops::batch_norm(t, vx = t.leaf(x), 1e-6), probe); },
                                 {grad_input("x", x, vx)});
  INFO(r.worst);
  CHECK(r.max_error < 1e-7);
}

TEST_CASE("LARS: MAE's update by hand (trust ratio on matrices, plain momentum on biases)") {
  Parameter<double> w("w", Shape{1, 2}, true), b("b", Shape{1}, false);
  w.value[0] = 3.0, w.value[1] = 4.0;  // |w| = 5
  b.value[0] = 1.0;
  w.ensure_grad(), b.ensure_grad();
  w.grad[0] = 0.6, w.grad[1] = 0.8;    // |g| = 1
  b.grad[0] = 0.5;
  optim::Lars<double> lars({.momentum = 0.9, .weight_decay = 0.0, .trust_coefficient = 0.001});
  lars.update(w, 0.1);
  lars.update(b, 0.1);
  // Step 1: direction g * 0.001 * 5 / 1 = (0.003, 0.004); mu = direction; w -= 0.1 mu.
  CHECK(w.value[0] == doctest::Approx(3.0 - 0.0003).epsilon(1e-14));
  CHECK(w.value[1] == doctest::Approx(4.0 - 0.0004).epsilon(1e-14));
  CHECK(b.value[0] == doctest::Approx(1.0 - 0.05).epsilon(1e-14));
  lars.update(b, 0.1);  // mu = 0.9 * 0.5 + 0.5 = 0.95
  CHECK(b.value[0] == doctest::Approx(0.95 - 0.095).epsilon(1e-14));
  lars.update(w, 0.1);  // |w| = 4.9995, mu = 0.9 * 0.003 + 0.6 * 0.001 * 4.9995
  CHECK(w.value[0] == doctest::Approx(2.9997 - 0.1 * (0.9 * 0.003 + 0.6 * 0.001 * 4.9995)).epsilon(1e-14));
}

TEST_CASE("MAE's linear probe (BatchNorm + LARS, warmup + cosine) beats chance and repeats per seed") {
  auto train_set = testing::stripes(200, 5), test_set = testing::stripes(80, 6);
  nn::ViT<kSmall, float> encoder(3);
  data::Transform plain{std::nullopt, std::nullopt, 0.0, data::Normalize::fashion_mnist()};
  data::Loader tl(train_set, plain, {.batch_size = 64, .shuffle = false, .workers = 0});
  data::Loader el(test_set, plain, {.batch_size = 64, .shuffle = false, .workers = 0});
  const auto ftrain = train::extract_features(encoder, tl, train_set.count, train::FeaturePool::mean_patches);
  const auto ftest = train::extract_features(encoder, el, test_set.count, train::FeaturePool::mean_patches);
  // LARS moves a matrix by lr x 0.001 of its norm per step: MAE's 7000 steps at lr 6.4 are a few
  // hundred here at a larger LR.
  const train::ProbeOptions opt{.epochs = 40, .batch = 50, .classes = 4, .method = train::ProbeMethod::mae, .blr = 200.0,
                                .warmup_epochs = 3};
  const auto r = train::train_linear_probe(ftrain, ftest, opt);
  CHECK(r.test.top1 > 0.6);  // chance 0.25
  const auto again = train::train_linear_probe(ftrain, ftest, opt);
  CHECK(again.test.top1 == r.test.top1);
  CHECK(again.train.top1 == r.train.top1);
}

TEST_CASE("fine-tuning with MAE's regularisation (drop path, mixup + cutmix switching) trains and repeats per seed") {
  auto train_set = testing::stripes(128, 1);
  data::Transform augment{std::nullopt, std::nullopt, 0.5, data::Normalize::fashion_mnist()};
  augment.random_erasing = data::RandomErasing{.probability = 0.25};
  auto run = [&] {
    data::Loader loader(train_set, augment, {.batch_size = 32, .last_batch = data::LastBatch::drop, .seed = 1, .workers = 0});
    nn::ViT<kSmall, float> enc(1);
    train::Classifier cls(enc, 4, 2);
    return train::finetune(cls, loader,
                           {.epochs = 4, .warmup_epochs = 1, .base_lr = 3e-3, .layer_decay = 0.9, .label_smoothing = 0.1,
                            .mixup_alpha = 0.8, .cutmix_alpha = 1.0, .drop_path = 0.1, .progress = false});
  };
  const auto losses = run();
  for (double l : losses) CHECK(std::isfinite(l));
  CHECK(losses.back() < losses.front());
  CHECK(run() == losses);
}
