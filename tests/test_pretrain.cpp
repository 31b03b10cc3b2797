// End to end on CPU: a short MAE pretraining run on a small subset whose loss falls; freezing keeps
// frozen weights bit-identical, releases their optimiser state and gradient buffers; AdamW matches
// its formula; linear probing beats chance.
#include <doctest/doctest.h>

#include <sstream>

#include <filesystem>

#include "vitfreeze/autograd/gradcheck.hpp"
#include "vitfreeze/data/idx.hpp"
#include "vitfreeze/data/loader.hpp"
#include "vitfreeze/freeze/freeze.hpp"
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/mim/mae_lite.hpp"
#include "vitfreeze/train/linear_probe.hpp"
#include "vitfreeze/testing/synthetic.hpp"
#include "vitfreeze/train/pretrainer.hpp"

using namespace vitfreeze;

namespace {
constexpr ViTSpec kSmall{.image = 28, .channels = 1, .patch = 4, .dim = 64, .depth = 4, .heads = 4, .mlp_ratio = 2};
using Objective = mim::Mae<kSmall, mim::DecoderSpec{.dim = 32, .depth = 1, .heads = 2}>;

}  // namespace

TEST_CASE("AdamW update matches the formula, including decoupled decay and bias correction") {
  Parameter<double> p("w", Shape{2}, true);
  Parameter<double> bias("b", Shape{1}, false);  // no weight decay
  p.value[0] = 1.0, p.value[1] = -2.0;
  bias.value[0] = 0.25;
  optim::AdamW<double> adam({.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1});
  p.ensure_grad();
  bias.ensure_grad();
  // Step 1 alone cannot catch a wrong bias correction (mhat = g and vhat = g^2 whatever it is), so
  // steps 2 and 3 change the gradient (one zero) and the LR. Expected values: torch.optim.AdamW in
  // float64 with the same betas, eps, decay groups, gradients and LRs.
  struct Step {
    double lr, g0, g1, gb, w0, w1, b;
  };
  const Step steps[] = {
      {0.01, 0.5, -1.0, 0.2, 0.9890000002, -1.9880000001, 0.24000000049999998},
      {0.02, -0.25, 3.0, 0.0, 0.9816546113747654, -1.9938099154074218, 0.22642704653608348},
      {0.005, 0.125, -0.5, -0.4, 0.9794303759791354, -1.9942035601384793, 0.22810180308094077},
  };
  int n = 0;
  for (const Step& s : steps) {
    CAPTURE(++n);
    p.grad[0] = s.g0, p.grad[1] = s.g1, bias.grad[0] = s.gb;
    adam.update(p, s.lr);
    adam.update(bias, s.lr);
    CHECK(p.value[0] == doctest::Approx(s.w0).epsilon(1e-13));
    CHECK(p.value[1] == doctest::Approx(s.w1).epsilon(1e-13));
    CHECK(bias.value[0] == doctest::Approx(s.b).epsilon(1e-13));
  }
  CHECK(adam.state(p)->step == 3);
  // Hand check of step 1 for w[0]: decay, then lr * mhat / (sqrt(vhat) + eps) with mhat = g, vhat = g^2.
  CHECK(steps[0].w0 == doctest::Approx(1.0 * (1 - 0.001) - 0.01 * 0.5 / (0.5 + 1e-8)).epsilon(1e-15));
  adam.release(p);
  CHECK_FALSE(adam.has_state(p));
}

TEST_CASE("MAE pretraining on a small subset: loss falls, freezing keeps frozen weights bit-identical") {
  auto train = testing::stripes(256, 1);
  data::Transform augment{data::RandomResizedCrop{28, 0.5, 1.0, 3.0 / 4.0, 4.0 / 3.0, data::Interpolation::bilinear},
                          std::nullopt, 0.5, data::Normalize::fashion_mnist()};
  data::Loader loader(train, augment, {.batch_size = 32, .last_batch = data::LastBatch::drop, .seed = 3, .workers = 0});
  const int epochs = 4;  // 8 steps each, 32 steps in all
  // Linear spacing with t0 = 0.5 over 5 units, warmup 1 epoch: unit 0 freezes at j > 24*0.5 = 12.
  freeze::FreezeController controller(freeze::RuntimeSchedule{freeze::Spacing::linear, 0.5, true}.fractions(5),
                                      {epochs, 1, loader.batches_per_epoch()},
                                      {.mode = freeze::LrMode::global_hard_freeze, .base_lr = 2e-3, .min_lr = 1e-5});
  nn::ViT<kSmall, float> encoder(1);
  Objective objective(2);
  optim::AdamW<float> adam;
  train::PretrainOptions opt;
  opt.epochs = epochs;
  opt.progress = false;
  train::Pretrainer trainer(encoder, objective, mim::Random<750>{}, controller, adam, opt);

  std::vector<double> losses;
  Tensor<float> pe_at_freeze;
  loader.start_epoch(0);
  for (std::int64_t g = 0; g < epochs * loader.batches_per_epoch(); ++g) {
    if (g % loader.batches_per_epoch() == 0) loader.start_epoch(std::uint64_t(g / loader.batches_per_epoch()));
    auto batch = loader.next();
    REQUIRE(batch);
    losses.push_back(trainer.step(batch->images, g));
    if (!controller.is_active(0) && pe_at_freeze.empty()) {
      pe_at_freeze = encoder.patch_embed.proj.weight.value.clone();
      CHECK(encoder.patch_embed.proj.weight.grad.empty());
      CHECK_FALSE(adam.has_state(encoder.patch_embed.proj.weight));
      CHECK_FALSE(adam.has_state(encoder.cls_token));
      CHECK(adam.has_state(encoder.blocks[3].mlp.fc1.weight));
    }
  }
  REQUIRE_FALSE(pe_at_freeze.empty());  // unit 0 froze inside the run
  for (std::int64_t i = 0; i < pe_at_freeze.numel(); ++i)
    REQUIRE(encoder.patch_embed.proj.weight.value[i] == pe_at_freeze[i]);
  auto mean = [&](std::size_t a, std::size_t b) {
    double s = 0;
    for (std::size_t i = a; i < b; ++i) s += losses[i];
    return s / double(b - a);
  };
  INFO("first 4 steps " << mean(0, 4) << ", last 4 steps " << mean(losses.size() - 4, losses.size()));
  CHECK(mean(losses.size() - 4, losses.size()) < 0.9 * mean(0, 4));
}

TEST_CASE("linear probe on encoder features beats chance on a separable task") {
  auto train = testing::stripes(200, 5), test = testing::stripes(80, 6);
  nn::ViT<kSmall, float> encoder(3);
  data::Transform plain{std::nullopt, std::nullopt, 0.0, data::Normalize::fashion_mnist()};
  data::Loader tl(train, plain, {.batch_size = 64, .shuffle = false, .workers = 0});
  data::Loader el(test, plain, {.batch_size = 64, .shuffle = false, .workers = 0});
  std::ostringstream log;  // progress of both phases, as the example prints it (plain lines off a terminal)
  auto ftrain = train::extract_features(encoder, tl, train.count, train::FeaturePool::mean_patches, &log, "features");
  auto ftest = train::extract_features(encoder, el, test.count, train::FeaturePool::mean_patches);
  auto r = train::train_linear_probe(ftrain, ftest, {.epochs = 30, .batch = 50, .lr = 1e-2, .classes = 4, .progress = &log});
  CHECK(r.test.top1 > 0.6);  // chance is 0.25; top-5 of 4 classes is always 1, so it is not checked here
  const std::string text = log.str();
  CHECK(text.find("features 4/4  ") != std::string::npos);       // 200 samples in batches of 64
  CHECK(text.find("probe epoch 30/30 4/4  loss ") != std::string::npos);  // the last epoch's closing line
  CHECK(text.find("probe epoch 1/30 4/4  loss ") != std::string::npos);
}

TEST_CASE("top-k accuracy counts ties against the label") {
  Tensor<float> logits(Shape{2, 3});
  logits.at(0, 0) = 1, logits.at(0, 1) = 1, logits.at(0, 2) = 0;  // tie between 0 and 1
  logits.at(1, 2) = 5;
  train::Accuracy acc;
  train::accumulate_accuracy(logits, {1, 2}, acc);
  CHECK(acc.top1 == doctest::Approx(0.5));
}

TEST_CASE("top-5 accuracy: a label ranked 5th counts, ranked 6th or tied into 6th place does not") {
  // 7 classes, so that top-5 can miss. Scores 6, 5, 4, 3, 2, 1, 0 for classes 0..6.
  Tensor<float> logits(Shape{4, 7});
  for (int n = 0; n < 4; ++n)
    for (int c = 0; c < 7; ++c) logits.at(n, c) = float(6 - c);
  logits.at(3, 5) = 2;  // sample 3: class 5 ties class 4 for 5th place
  train::Accuracy acc;
  train::accumulate_accuracy(logits, {4, 5, 0, 5}, acc);  // 5th, 6th, 1st, tied 5th (counts against)
  CHECK(acc.top1 == doctest::Approx(0.25));
  CHECK(acc.top5 == doctest::Approx(0.5));
}

TEST_CASE("gradient accumulation: 2 micro-batches of 16 make the same update as one batch of 32") {
  auto data = testing::stripes(32, 9);
  data::Transform plain{std::nullopt, std::nullopt, 0.0, data::Normalize::fashion_mnist()};
  data::Loader full(data, plain, {.batch_size = 32, .shuffle = false, .workers = 0});
  data::Loader half(data, plain, {.batch_size = 16, .shuffle = false, .workers = 0});
  auto run = [&](data::Loader& loader, int accumulation) {
    auto encoder = std::make_unique<nn::ViT<kSmall, float>>(1);
    auto objective = std::make_unique<Objective>(2);
    const std::int64_t iters = loader.batches_per_epoch();
    freeze::FreezeController controller(freeze::RuntimeSchedule{freeze::Spacing::cubic, 0.8, false}.fractions(5),
                                        {1, 0, iters}, {.mode = freeze::LrMode::global_hard_freeze, .base_lr = 1e-3});
    optim::AdamW<float> adam;
    train::PretrainOptions opt;
    opt.epochs = 1, opt.progress = false, opt.accumulation = accumulation;
    train::Pretrainer trainer(*encoder, *objective, mim::Random<750>{}, controller, adam, opt);
    loader.start_epoch(0);
    double loss = 0;
    for (std::int64_t g = 0; g < iters; ++g) loss += trainer.step(loader.next()->images, g) / double(iters);
    return std::make_pair(std::move(encoder), loss);
  };
  auto [one, loss_one] = run(full, 1);
  auto [two, loss_two] = run(half, 2);
  CHECK(loss_two == doctest::Approx(loss_one).epsilon(1e-5));
  const auto& a = one->blocks[1].attn.qkv.weight.value;
  const auto& b = two->blocks[1].attn.qkv.weight.value;
  double max_diff = 0, max_step = 0;
  nn::ViT<kSmall, float> initial(1);
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    max_diff = std::max(max_diff, double(std::abs(a[i] - b[i])));
    max_step = std::max(max_step, double(std::abs(a[i] - initial.blocks[1].attn.qkv.weight.value[i])));
  }
  CHECK(max_step > 1e-4);             // the update happened
  CHECK(max_diff < 1e-3 * max_step);  // and is the same up to float summation order
  CHECK_THROWS_AS(([&] {
                    nn::ViT<kSmall, float> e(1);
                    Objective o(2);
                    freeze::FreezeController c(freeze::RuntimeSchedule{freeze::Spacing::cubic, 0.8, false}.fractions(5),
                                               {1, 0, 3}, {.mode = freeze::LrMode::global_hard_freeze});
                    optim::AdamW<float> adam;
                    train::PretrainOptions opt;
                    opt.accumulation = 2;  // 3 iterations per epoch: not a multiple
                    train::Pretrainer t(e, o, mim::Random<750>{}, c, adam, opt);
                  }()),
                  ConfigError);
}

TEST_CASE("gradcheck: the MAE objective (encoder, decoder, norm-pix masked loss) w.r.t. every parameter") {
  constexpr ViTSpec tiny{.image = 8, .channels = 2, .patch = 2, .dim = 8, .depth = 2, .heads = 2, .mlp_ratio = 2};
  nn::ViT<tiny, double> encoder(1);
  mim::Mae<tiny, mim::DecoderSpec{.dim = 8, .depth = 1, .heads = 2, .mlp_ratio = 2}, mim::NormalizedPixels, double> mae(2);
  nn::ParameterList<double> params = encoder.parameters();
  mae.collect_parameters(params);
  for (auto* p : params)  // move off the symmetric init so every path carries gradient
    for (std::int64_t i = 0; i < p->value.numel(); ++i) p->value[i] += 0.05 * std::sin(1.7 * double(i) + p->name.size());
  Tensor<double> images(Shape{2, 2, 8, 8});
  RandomStream rng(3, RngPurpose::test);
  for (std::int64_t i = 0; i < images.numel(); ++i) images[i] = rng.uniform() * 2 - 1;
  const auto masks = mim::Random<750>::make(2, 4, 4, 7, 0);
  std::vector<GradCheckInput> inputs;
  for (auto* p : params) inputs.push_back(grad_input(*p));
  auto r = check_gradients([&](Tape<double>& t) { return mae.forward(t, encoder, images, masks).loss; }, inputs,
                           {.max_entries_per_input = 12});
  INFO(r.worst);
  CHECK(r.max_error < 1e-5);  // bound as for the LocalMIM objective: sums over many small terms
}

TEST_CASE("dont_freeze_pe: blocks are the units, the patch embedding and cls keep training") {
  auto data = testing::stripes(64, 3);
  data::Transform plain{std::nullopt, std::nullopt, 0.0, data::Normalize::fashion_mnist()};
  data::Loader loader(data, plain, {.batch_size = 16, .shuffle = false, .workers = 0});
  nn::ViT<kSmall, float> encoder(1);
  Objective objective(2);
  // 4 units (blocks), linear 0.5, 8 steps, no warmup: block 0 freezes at j > 8 * 0.5 = 4.
  freeze::FreezeController controller(freeze::RuntimeSchedule{freeze::Spacing::linear, 0.5, true}.fractions(4),
                                      {2, 0, 4}, {.mode = freeze::LrMode::global_hard_freeze, .base_lr = 1e-3});
  optim::AdamW<float> adam;
  train::PretrainOptions opt;
  opt.epochs = 2, opt.progress = false, opt.dont_freeze_pe = true;
  train::Pretrainer trainer(encoder, objective, mim::Random<750>{}, controller, adam, opt);
  REQUIRE(trainer.units().size() == 4);
  for (std::int64_t g = 0; g < 8; ++g) {
    if (g % 4 == 0) loader.start_epoch(std::uint64_t(g / 4));
    trainer.step(loader.next()->images, g);
  }
  CHECK_FALSE(controller.is_active(0));
  CHECK(encoder.blocks[0].mlp.fc1.weight.grad.empty());
  CHECK_FALSE(adam.has_state(encoder.blocks[0].mlp.fc1.weight));
  CHECK(adam.has_state(encoder.patch_embed.proj.weight));  // still trained after block 0 froze
  CHECK(adam.state(encoder.patch_embed.proj.weight)->step == 8);
  CHECK(adam.state(encoder.cls_token)->step == 8);
}

TEST_CASE("MAE-lite: ViT-Tiny with 12 heads of 16 keeps the parameter count, decoder 96 wide x 1 block, a step trains") {
  constexpr ViTSpec lite = mim::mae_lite_tiny(28, 1, 4);
  static_assert(lite.heads == 12 && lite.dim == 192 && lite.depth == 12 && lite.dim / lite.heads == 16);
  nn::ViT<lite, float> encoder(1);
  nn::ViT<specs::tiny(28, 1, 4), float> three_heads(1);
  auto count = [](const nn::ParameterList<float>& ps) {
    std::int64_t n = 0;
    for (auto* p : ps) n += p->value.numel();
    return n;
  };
  CHECK(count(encoder.parameters()) == count(three_heads.parameters()));
  CHECK(encoder.blocks[0].attn.heads() == 12);
  mim::MaeLite<lite> objective(2);
  CHECK(std::string(decltype(objective)::name) == "mae-lite");
  CHECK(objective.decoder.blocks.size() == 1);
  CHECK(objective.decoder.embed.weight.value.shape() == Shape{96, 192});
  CHECK(objective.decoder.pred.weight.value.shape() == Shape{16, 96});  // patch 4 x 4 x 1 pixels
  CHECK(mim::MaeLiteRecipe::crop_min_scale == 0.08);
  CHECK(mim::MaeLiteRecipe::finetune_layer_decay == 0.85);

  // One training step through the trainer: finite loss, every parameter moved.
  auto data = testing::stripes(8, 2);
  data::Transform augment{data::RandomResizedCrop{28, mim::MaeLiteRecipe::crop_min_scale, 1.0, 3.0 / 4.0, 4.0 / 3.0,
                                                  mim::MaeLiteRecipe::interpolation},
                          std::nullopt, 0.5, data::Normalize::fashion_mnist()};
  data::Loader loader(data, augment, {.batch_size = 8, .seed = 1, .workers = 0});
  freeze::FreezeController controller(freeze::RuntimeSchedule{freeze::Spacing::cubic, 0.8, false}.fractions(13), {2, 1, 1},
                                      {.mode = freeze::LrMode::global_hard_freeze, .base_lr = 1e-3});
  optim::AdamW<float> adam;
  train::PretrainOptions opt;
  opt.epochs = 2, opt.progress = false;
  train::Pretrainer trainer(encoder, objective, mim::Random<750>{}, controller, adam, opt);
  const nn::ViT<lite, float> before(1);
  loader.start_epoch(1);
  CHECK(std::isfinite(trainer.step(loader.next()->images, 1)));  // iteration 1: past warmup, LR > 0
  CHECK(encoder.blocks[0].attn.qkv.weight.value[0] != before.blocks[0].attn.qkv.weight.value[0]);
}
