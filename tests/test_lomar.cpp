// LoMaR (spec mae-lomar-maelite-micl.md §2): the relative encoder (iRPE tables per block, no absolute
// position), the objective's loss against its definition written out here, its gradients against
// finite differences (double), the explicit model against the tape (loss and every gradient, 1e-10,
// with the frozen prefixes of both semantics), the trainer's units (the mask token freezes with the
// patch embedding, the head trains to the end), and fine-tuning at a resolution other than the
// pretraining one with the same weights.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <string>

#include "explicit_check.hpp"
#include "vitfreeze/autograd/gradcheck.hpp"
#include "vitfreeze/backend/cpu/backend.hpp"
#include "vitfreeze/data/resize.hpp"
#include "vitfreeze/freeze/freeze.hpp"
#include "vitfreeze/io/weights.hpp"
#include "vitfreeze/mim/lomar.hpp"
#include "vitfreeze/model/lomar.hpp"
#include "vitfreeze/testing/random_tensor.hpp"
#include "vitfreeze/testing/synthetic.hpp"
#include "vitfreeze/testing/temp_dir.hpp"
#include "vitfreeze/train/cost_model.hpp"
#include "vitfreeze/train/finetune.hpp"
#include "vitfreeze/train/pretrainer.hpp"

using namespace vitfreeze;
using testing::random_tensor;

namespace {

// 12x12 images, patch 2: a 6x6 grid; windows of 3x3 (4 positions per axis), 2 per step, 60 %
// masked inside each: 5 of 9 cells masked, 4 visible.
constexpr ViTSpec kSpec = specs::with_relative_position(
    ViTSpec{.image = 12, .channels = 1, .patch = 2, .dim = 8, .depth = 2, .heads = 2, .mlp_ratio = 2});
template <mim::WindowPairing Pairing = mim::WindowPairing::distinct>
using Windows = mim::Window<3, 2, 600, Pairing>;
template <class T>
using HostLomar = mim::Lomar<kSpec, mim::NormalizedPixels, T>;

// Nonzero iRPE tables, so that positions matter in every check (they start at zero).
template <class Encoder>
void randomise_relative_tables(Encoder& encoder, std::uint64_t seed) {
  for (auto& b : encoder.blocks) {
    auto& table = b.attn.rpe_k->value;
    table.copy_from(random_tensor<typename std::remove_cvref_t<decltype(table)>::value_type>(table.shape(), seed++, -0.5, 0.5));
  }
}

}  // namespace

TEST_CASE("WindowRatio draws exactly the windows and masks of Window<K, M, r, pairing>") {
  auto same = [](const mim::MaskSet& a, const mim::MaskSet& b) {
    REQUIRE(a.ids_shuffle.shape() == b.ids_shuffle.shape());
    for (std::int64_t i = 0; i < a.ids_shuffle.numel(); ++i) REQUIRE(a.ids_shuffle[i] == b.ids_shuffle[i]);
    for (std::int64_t i = 0; i < a.source_patch.numel(); ++i) REQUIRE(a.source_patch[i] == b.source_patch[i]);
    for (std::int64_t i = 0; i < a.source_image.numel(); ++i) REQUIRE(a.source_image[i] == b.source_image[i]);
    CHECK(a.keep == b.keep);
  };
  same(mim::Window<7, 4, 800>::make(8, 14, 14, 3, 5, 16), mim::WindowRatio{}.make(8, 14, 14, 3, 5, 16));
  same(mim::Window<7, 4, 800, mim::WindowPairing::lomar_code>::make(8, 14, 14, 3, 5),
       mim::WindowRatio{.pairing = mim::WindowPairing::lomar_code}.make(8, 14, 14, 3, 5));
  CHECK(mim::WindowRatio{}.kept(14, 14) == 10);
  CHECK(mim::WindowRatio{.window = 4}.fits(7, 7));
  CHECK_FALSE(mim::WindowRatio{}.fits(7, 7));
  CHECK_THROWS_AS(mim::WindowRatio{}.make(2, 7, 7, 0, 0), ConfigError);
}

TEST_CASE("a relative ViT: an iRPE table per block (iRPE's name and file shape, zero, decayed), no position table") {
  nn::ViT<kSpec, float> encoder(1);
  const auto params = encoder.parameters();
  std::int64_t total = 0;
  std::vector<std::string> names;
  for (auto* p : params) total += p->value.numel(), names.push_back(p->name);
  CHECK(total == kSpec.parameter_count());
  CHECK(kSpec.parameter_count() == ViTSpec{12, 1, 2, 8, 2, 2, 2}.parameter_count() + 2 * 4 * 50);
  // iRPE's module order inside the attention: qkv, proj, then the table.
  const auto at = std::find(names.begin(), names.end(), "blocks.1.attn.rpe_k.lookup_table_weight");
  REQUIRE(at != names.end());
  CHECK(*(at - 1) == "blocks.1.attn.proj.bias");
  const Parameter<float>& table = *encoder.blocks[1].attn.rpe_k;
  CHECK(table.value.shape() == Shape{4, 50});
  CHECK(table.file_shape == Shape{1, 4, 50});
  CHECK(table.decay);
  for (std::int64_t i = 0; i < table.value.numel(); ++i) REQUIRE(table.value[i] == 0.0f);
  for (std::int64_t i = 0; i < encoder.pos_embed().numel(); ++i) REQUIRE(encoder.pos_embed()[i] == 0.0f);
  // The architecture JSON of an absolute spec is what it was before relative specs existed.
  CHECK_FALSE(io::detail::spec_json(specs::tiny(28, 1, 4)).contains("position"));
  CHECK(io::detail::spec_json(kSpec).at("position").as_string() == "relative");
  CHECK(nn::ViT<specs::tiny(28, 1, 4), float>(1).parameters().size() + 12 ==
        nn::ViT<specs::with_relative_position(specs::tiny(28, 1, 4)), float>(1).parameters().size());
}

TEST_CASE("a relative encoder sees whole grids: a subset of the patches is refused, the identity is not") {
  nn::ViT<kSpec, double> encoder(2);
  randomise_relative_tables(encoder, 3);
  const auto images = random_tensor<double>({2, 1, 12, 12}, 4);
  Tape<double> tape;
  NoGrad<double> no_grad(tape);
  const Tensor<double> full = tape.value(encoder.forward(tape, images).tokens).clone();
  Tensor<std::int32_t> identity(Shape{2, 36}), subset(Shape{2, 9});
  for (std::int64_t i = 0; i < identity.numel(); ++i) identity[i] = std::int32_t(i % 36);
  for (std::int64_t i = 0; i < subset.numel(); ++i) subset[i] = std::int32_t(i % 9);
  const Tensor<double> same = tape.value(encoder.forward(tape, images, &identity).tokens);
  for (std::int64_t i = 0; i < full.numel(); ++i) REQUIRE(same[i] == full[i]);
  CHECK_THROWS_AS(encoder.forward(tape, images, &subset), ConfigError);
  // The tables act: the same weights without them (zero tables) give other tokens.
  for (auto& b : encoder.blocks) b.attn.rpe_k->value.zero();
  const Tensor<double> plain = tape.value(encoder.forward(tape, images).tokens);
  double moved = 0;
  for (std::int64_t i = 0; i < full.numel(); ++i) moved = std::max(moved, std::abs(plain[i] - full[i]));
  CHECK(moved > 1e-3);
}

TEST_CASE("model::Encoder of a relative ViT on the full grid equals the tape, at two resolutions with the same weights") {
  // The linear probe's and fine-tuning's path: the same tables on a 6x6 and a 12x12 grid.
  nn::ViT<kSpec, double> small(5);
  randomise_relative_tables(small, 6);
  nn::ViT<specs::at_image(kSpec, 24), double> large(7);
  const auto from = small.parameters(), to = large.parameters();
  REQUIRE(from.size() == to.size());
  for (std::size_t i = 0; i < from.size(); ++i) to[i]->value.copy_from(from[i]->value);
  auto check = [](auto& encoder, int image) {
    constexpr std::int64_t B = 2;
    const std::int64_t L = (image / 2) * (image / 2);
    const auto images = random_tensor<double>({B, 1, image, image}, std::uint64_t(image));
    Tape<double> tape;
    NoGrad<double> no_grad(tape);
    const Tensor<double> want = tape.value(encoder.forward(tape, images).tokens);
    cpu::CpuContext ctx;
    const model::Encoder<Cpu, Fp64> explicit_encoder(ctx, encoder);
    Tensor<std::int32_t> every_patch(Shape{B, L});
    for (std::int64_t i = 0; i < every_patch.numel(); ++i) every_patch[i] = std::int32_t(i % L);
    const Tensor<double> got = explicit_encoder.forward(ctx, images, every_patch.data(), B, L, 1, nullptr);
    REQUIRE(got.shape() == want.shape());
    double worst = 0;
    for (std::int64_t i = 0; i < got.numel(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]));
    CHECK(worst < 1e-12);
    CHECK_THROWS_AS(explicit_encoder.forward(ctx, images, every_patch.data(), B, L / 2, 1, nullptr), ConfigError);
  };
  check(small, 12);
  check(large, 24);
}

TEST_CASE("LoMaR's loss equals its definition written out: window cells, mask token in place, norm-pix targets") {
  for (const bool quirk : {false, true}) {
    INFO("lomar_code pairing: " << quirk);
    nn::ViT<kSpec, double> encoder(8);
    randomise_relative_tables(encoder, 9);
    HostLomar<double> objective(10);
    constexpr std::int64_t N = 4, D = kSpec.dim, C = 9;
    const auto images = random_tensor<double>({N, 1, 12, 12}, 11);
    const mim::MaskSet masks = quirk ? Windows<mim::WindowPairing::lomar_code>::make(N, 6, 6, 12, 3)
                                     : Windows<>::make(N, 6, 6, 12, 3);
    REQUIRE(masks.batch == 2 * N);
    Tape<double> tape;
    NoGrad<double> no_grad(tape);
    const double loss = tape.value(objective.forward(tape, encoder, images, masks).loss)[0];

    // The sequences by hand: cls, then each cell's patch embedding (conv over its 2x2 pixels) or the mask token.
    const std::int64_t S = masks.batch;
    Tensor<double> x(Shape{S, 1 + C, D});
    const auto& W = encoder.patch_embed.proj.weight.value;
    const auto& bias = encoder.patch_embed.proj.bias.value;
    for (std::int64_t s = 0; s < S; ++s) {
      const std::int64_t n = masks.source_image[s];
      for (std::int64_t d = 0; d < D; ++d) x.at(s, 0, d) = encoder.cls_token.value[d];
      for (std::int64_t c = 0; c < C; ++c) {
        const std::int64_t patch = masks.source_patch.at(s, c), row = patch / 6, col = patch % 6;
        for (std::int64_t d = 0; d < D; ++d) {
          double e = bias[d];
          for (int u = 0; u < 2; ++u)
            for (int v = 0; v < 2; ++v) e += W[d * 4 + u * 2 + v] * images.at(n, 0, row * 2 + u, col * 2 + v);
          x.at(s, 1 + c, d) = masks.mask.at(s, c) ? objective.mask_token.value[d] : e;
        }
      }
    }
    const Tensor<double> latent = tape.value(encoder.encode(tape, tape.constant(x)).tokens);
    double sum = 0, masked = 0;
    for (std::int64_t s = 0; s < S; ++s)
      for (std::int64_t c = 0; c < C; ++c) {
        if (!masks.mask.at(s, c)) continue;
        const std::int64_t n = masks.source_image[s], patch = masks.source_patch.at(s, c), row = patch / 6, col = patch % 6;
        double t[4], mean = 0, var = 0;
        for (int u = 0; u < 2; ++u)
          for (int v = 0; v < 2; ++v) mean += t[u * 2 + v] = images.at(n, 0, row * 2 + u, col * 2 + v);
        mean /= 4;
        for (double& value : t) var += (value - mean) * (value - mean);
        var /= 3;  // unbiased, as MAE's norm_pix_loss
        double e = 0;
        for (int k = 0; k < 4; ++k) {
          double y = objective.pred.bias.value[k];
          for (std::int64_t d = 0; d < D; ++d) y += objective.pred.weight.value[k * D + d] * latent.at(s, 1 + c, d);
          const double target = (t[k] - mean) / std::sqrt(var + 1e-6);
          e += (y - target) * (y - target) / 4;
        }
        sum += e, masked += 1;
      }
    CHECK(masked == double(S * 5));
    CHECK(loss == doctest::Approx(sum / masked).epsilon(1e-12));
  }
}

TEST_CASE("gradcheck: the whole LoMaR objective in double (encoder with iRPE tables, mask token, head)") {
  nn::ViT<kSpec, double> encoder(12);
  randomise_relative_tables(encoder, 13);
  HostLomar<double> objective(14);
  const auto images = random_tensor<double>({2, 1, 12, 12}, 15);
  const auto masks = Windows<>::make(2, 6, 6, 16, 0);
  std::vector<GradCheckInput> inputs;
  auto params = encoder.parameters();
  objective.collect_parameters(params);
  for (auto* p : params) inputs.push_back(grad_input(*p));
  const auto r = check_gradients([&](Tape<double>& t) { return objective.forward(t, encoder, images, masks).loss; },
                                 inputs, {.max_entries_per_input = 12});
  INFO(r.worst);
  CHECK(r.entries > 300);
  CHECK(r.max_error < 1e-6);
}

namespace {
enum class Freezing { none, truncate_two_units, vitfreeze_two_units };

// Unit 0 (patch embedding and mask token, + cls under truncate) and unit 1 (block 0), as the trainer.
template <class T>
void freeze_like_the_trainer(nn::ViT<kSpec, T>& encoder, HostLomar<T>& objective, Freezing f) {
  if (f == Freezing::none) return;
  for (auto* p : parameters_of<T>(encoder.patch_embed)) p->freeze();
  objective.mask_token.freeze();
  if (f == Freezing::truncate_two_units) encoder.cls_token.freeze();
  for (auto* p : parameters_of<T>(encoder.blocks[0])) p->freeze();
}

template <class T, class Policy>
void check_lomar_against_tape(Freezing freezing, double tolerance) {
  nn::ViT<kSpec, T> encoder(16);
  randomise_relative_tables(encoder, 17);
  HostLomar<T> objective(18);
  freeze_like_the_trainer(encoder, objective, freezing);
  const auto images = random_tensor<T>({3, 1, 12, 12}, 19);
  const auto masks = Windows<>::make(3, 6, 6, 20, 1);
  const double weight_sum =
      testing::check_against_tape<model::Lomar<Cpu, Policy>>(encoder, objective, images, masks, tolerance);
  CHECK(weight_sum == double(masks.batch * 5));
  // The frozen prefix keeps no gradient buffer; the first trained block's table has one.
  if (freezing != Freezing::none) {
    CHECK(objective.mask_token.grad.empty());
    CHECK(encoder.blocks[0].attn.rpe_k->grad.empty());
    CHECK_FALSE(encoder.blocks[1].attn.rpe_k->grad.empty());
  }
}
}  // namespace

TEST_CASE("model::Lomar on the CPU equals the tape: loss and every gradient, double") {
  check_lomar_against_tape<double, Fp64>(Freezing::none, 1e-10);
}
TEST_CASE("model::Lomar on the CPU equals the tape with a frozen prefix under truncate semantics") {
  check_lomar_against_tape<double, Fp64>(Freezing::truncate_two_units, 1e-10);
}
TEST_CASE("model::Lomar on the CPU equals the tape with frozen blocks and a training cls token (vitfreeze semantics)") {
  check_lomar_against_tape<double, Fp64>(Freezing::vitfreeze_two_units, 1e-10);
}
TEST_CASE("model::Lomar on the CPU equals the tape in float") {
  check_lomar_against_tape<float, Fp32>(Freezing::none, 1e-5);
}

namespace {
data::Dataset noise_images(int count, int side) {
  data::Dataset d;
  d.name = "noise";
  d.count = count, d.channels = 1, d.height = side, d.width = side, d.num_classes = 2;
  RandomStream rng(7, RngPurpose::test);
  for (int i = 0; i < count * side * side; ++i) d.pixels.push_back(std::uint8_t(rng.below(256)));
  for (int i = 0; i < count; ++i) d.labels.push_back(i % 2);
  return d;
}

// 3 epochs of 4 steps, linear 0.5 spacing, warmup 1: unit 0 freezes within the first 12 steps.
template <class Engine>
struct LomarRun {
  using Encoder = nn::ViT<kSpec, double>;
  data::Dataset data = noise_images(16, 12);
  data::Loader loader{data, data::Transform{std::nullopt, std::nullopt, 0.0, data::Normalize::fashion_mnist()},
                      {.batch_size = 4, .last_batch = data::LastBatch::drop, .seed = 3, .workers = 0}};
  freeze::FreezeController controller;
  Encoder encoder{21};
  HostLomar<double> objective{22};
  optim::AdamW<double> adam;
  train::Pretrainer<Encoder, HostLomar<double>, Windows<>, double, Engine> trainer;

  // Units: the blocks, plus the patch embedding unless it trains to the end.
  explicit LomarRun(train::PretrainOptions opt)
      : controller(freeze::RuntimeSchedule{freeze::Spacing::linear, 0.5, true}.fractions(opt.dont_freeze_pe ? 2 : 3),
                   {3, 1, 4}, {.mode = freeze::LrMode::global_hard_freeze, .base_lr = 3e-3, .min_lr = 1e-5}),
        trainer(encoder, objective, {}, controller, adam, std::move(opt)) {}
  std::vector<double> run(std::int64_t steps) {
    std::vector<double> losses;
    for (std::int64_t g = 0; g < steps; ++g) {
      loader.start_epoch(std::uint64_t(g / 4), g % 4);
      losses.push_back(trainer.step(loader.next()->images.template cast<double>(), g));
    }
    return losses;
  }
};

train::PretrainOptions quiet_options(bool dont_freeze_pe = false) {
  train::PretrainOptions o;
  o.epochs = 3;
  o.progress = false;
  o.dont_freeze_pe = dont_freeze_pe;
  return o;
}

bool holds(const nn::ParameterList<double>& list, const Parameter<double>* p) {
  return std::find(list.begin(), list.end(), p) != list.end();
}
}  // namespace

TEST_CASE("the cost model counts LoMaR's encoder on every window cell, mask tokens included") {
  struct Recipe {
    using Encoder = nn::ViT<kSpec, float>;
    using Objective = HostLomar<float>;
    using Masking = Windows<>;
  };
  constexpr auto table = train::unit_costs<Recipe>();
  static_assert(table.units == kSpec.depth + 1);
  // 2 windows of 3x3 cells + cls per image: 10 tokens each, not the 4 visible + 1.
  CHECK(table.forward[1] == 2.0 * double(nn::encoder_block_forward_flops(kSpec, 10)));
}

TEST_CASE("LoMaR in the trainer: the mask token freezes with the patch embedding, the head trains to the end") {
  using Explicit = train::ExplicitStepEngine<nn::ViT<kSpec, double>, HostLomar<double>, double>;
  using TapeEngine = train::TapeStepEngine<nn::ViT<kSpec, double>, HostLomar<double>, double>;
  LomarRun<Explicit> run(quiet_options());
  const auto& units = run.trainer.units();
  REQUIRE(units.size() == 3);
  CHECK(holds(units[0], &run.objective.mask_token));
  CHECK(holds(units[0], &run.encoder.cls_token));
  CHECK(holds(units.back(), &run.objective.pred.weight));
  CHECK_FALSE(holds(units.back(), &run.objective.mask_token));
  CHECK(run.trainer.all_parameters().size() == run.encoder.parameters().size() + 3);

  const auto losses = run.run(12);
  CHECK_FALSE(run.controller.is_active(0));
  CHECK(run.objective.mask_token.grad.empty());
  CHECK_FALSE(run.adam.has_state(run.objective.mask_token));
  CHECK(run.adam.has_state(run.objective.pred.weight));
  CHECK(run.adam.state(run.objective.pred.weight)->step == 12);
  for (double l : losses) CHECK(std::isfinite(l));

  // The tape engine, the reference, takes the same steps to the same losses and weights.
  LomarRun<TapeEngine> reference(quiet_options());
  const auto reference_losses = reference.run(12);
  for (std::size_t i = 0; i < losses.size(); ++i) CHECK(losses[i] == doctest::Approx(reference_losses[i]).epsilon(1e-10));
  const auto a = run.trainer.all_parameters(), b = reference.trainer.all_parameters();
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::int64_t k = 0; k < a[i]->value.numel(); ++k) worst = std::max(worst, std::abs(a[i]->value[k] - b[i]->value[k]));
  CHECK(worst < 1e-9);

  // With --dont-freeze-pe the mask token trains to the end with the patch embedding.
  LomarRun<Explicit> embedding_trains(quiet_options(true));
  for (const auto& u : embedding_trains.trainer.units()) CHECK_FALSE(holds(u, &embedding_trains.objective.mask_token));
  CHECK(holds(embedding_trains.trainer.all_parameters(), &embedding_trains.objective.mask_token));
}

TEST_CASE("a LoMaR encoder pretrained at 28x28 fine-tunes at 56x56 with the same weights (no interpolation)") {
  constexpr ViTSpec k28 = specs::with_relative_position(
      ViTSpec{.image = 28, .channels = 1, .patch = 4, .dim = 16, .depth = 2, .heads = 2, .mlp_ratio = 2});
  constexpr ViTSpec k56 = specs::at_image(k28, 56);
  using Encoder28 = nn::ViT<k28, float>;
  using Objective = mim::Lomar<k28>;
  // Pretraining at 28x28: windows of 3x3 on the 7x7 grid.
  const auto stripes = testing::stripes(64, 1);
  const data::Normalize norm = data::Normalize::fashion_mnist();
  data::Loader pretrain_loader(stripes, data::Transform{std::nullopt, std::nullopt, 0.5, norm},
                               {.batch_size = 16, .last_batch = data::LastBatch::drop, .seed = 2, .workers = 0});
  freeze::FreezeController controller(freeze::RuntimeSchedule{freeze::Spacing::linear, 0.5, false}.fractions(3), {2, 1, 4},
                                      {.mode = freeze::LrMode::global_hard_freeze, .base_lr = 2e-3, .min_lr = 1e-5});
  Encoder28 encoder(3);
  Objective objective(4);
  optim::AdamW<float> adam;
  train::PretrainOptions opt;
  opt.epochs = 2;
  opt.progress = false;
  train::Pretrainer trainer(encoder, objective, mim::WindowRatio{.window = 3, .windows = 2}, controller, adam, opt);
  const auto reports = trainer.fit(pretrain_loader);
  REQUIRE(reports.size() == 2);
  for (const auto& r : reports) CHECK(std::isfinite(r.mean_loss));

  // The same weights at 56x56: a file written at 28 loads as it is (no position table to resize).
  testing::TempDir dir("lomar-resolution");
  io::export_encoder(encoder, dir.path() / "encoder.safetensors");
  nn::ViT<k56, float> large(99);
  const auto report = io::import_encoder(large, dir.path() / "encoder.safetensors");
  CHECK(report.unused.empty());
  const auto from = encoder.parameters(), to = large.parameters();
  REQUIRE(from.size() == to.size());
  for (std::size_t i = 0; i < from.size(); ++i)
    for (std::int64_t k = 0; k < from[i]->value.numel(); ++k) REQUIRE(to[i]->value[k] == from[i]->value[k]);

  // Fine-tuning at 56x56 on the upsampled images: every loss finite, the last epoch's below the first's.
  const auto upsampled = data::resized(stripes, 56);
  CHECK(upsampled.height == 56);
  data::Loader finetune_loader(upsampled, data::Transform{std::nullopt, std::nullopt, 0.5, norm},
                               {.batch_size = 16, .last_batch = data::LastBatch::drop, .seed = 5, .workers = 0});
  train::Classifier classifier(large, 4, 6);
  const auto losses = train::finetune(classifier, finetune_loader,
                                      {.epochs = 4, .warmup_epochs = 1, .base_lr = 3e-3, .layer_decay = 0.9,
                                       .label_smoothing = 0.1, .progress = false});
  for (double l : losses) CHECK(std::isfinite(l));
  CHECK(losses.back() < losses.front());
}
