// Composition at compile time: the Pretraining recipe type and the concepts it checks, a user's own
// freeze schedule and LR policy trained by train::Pretrainer, and the library's cost model
// (per-unit costs of any ViTSpec + objective, static_assert-able savings).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "vitfreeze/mim/localmim.hpp"
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/mim/mae_lite.hpp"
#include "vitfreeze/mim/micl.hpp"
#include "vitfreeze/testing/random_tensor.hpp"
#include "vitfreeze/train/pretrainer.hpp"
#include "vitfreeze/train/pretraining.hpp"

using namespace vitfreeze;

namespace {

constexpr ViTSpec kSmall{.image = 28, .channels = 1, .patch = 4, .dim = 64, .depth = 4, .heads = 4, .mlp_ratio = 2};
using SmallMae = mim::Mae<kSmall, mim::DecoderSpec{.dim = 32, .depth = 1, .heads = 2}>;
// LocalMIM's scale 1/2 needs an even grid.
constexpr ViTSpec kGrid8{.image = 32, .channels = 1, .patch = 4, .dim = 64, .depth = 4, .heads = 4, .mlp_ratio = 2};

// [own-parts]
// A user's freeze schedule: the patch embedding and the first block train for a quarter of the
// post-warmup run, the other units to the end.
struct EarlyStem {
  static constexpr double fraction(int unit, int) { return unit < 2 ? 0.25 : 1.0; }
};

// A user's LR curve, unlike any built-in: a flat tenth of base_lr during warmup (the built-ins start
// at 0), then base_lr * r_i falling linearly to 0 at the unit's freeze point.
struct FlatThenLinear {
  static constexpr const char* name = "flat-then-linear";
  static constexpr double unit_lr(const freeze::LrSettings& lr, const freeze::RunLength& run, double fraction,
                                  std::int64_t g) {
    if (g < run.warmup_iterations()) return 0.1 * lr.base_lr;
    const double j = double(g - run.warmup_iterations());
    return lr.base_lr * fraction * (1.0 - j / freeze::freeze_iteration(run, fraction));
  }
};

using UserRecipe = Pretraining<nn::ViT<kSmall>, SmallMae, mim::Random<750>, EarlyStem, FlatThenLinear>;
// [/own-parts]

// An objective with no explicit model (no `family`): the tape trains it.
struct TapeOnlyObjective {
  static constexpr const char* name = "tape-only";
  using Encoder = nn::ViT<kSmall>;
  struct Output {
    Var<float> loss;
  };
  Output forward(Tape<float>&, Encoder&, const Tensor<float>&, const mim::MaskSet&) { return {}; }
  void collect_parameters(nn::ParameterList<float>&) {}
};
struct NoForward {
  static constexpr const char* name = "no-forward";
  using Encoder = nn::ViT<kSmall>;
  void collect_parameters(nn::ParameterList<float>&) {}
};
struct WrongFamily : TapeOnlyObjective {
  static constexpr int family = 7;
};

// Whether train::Pretrainer accepts these parameters (its requires-clause).
template <class E, class O, class M, class T, class Engine>
concept Trainable = requires { typename train::Pretrainer<E, O, M, T, Engine>; };

std::vector<float> values_of(const Parameter<float>& p) { return {p.value.data(), p.value.data() + p.value.numel()}; }

}  // namespace

TEST_CASE("concepts: objectives, masking policies and step engines the trainer is constrained by") {
  static_assert(mim::Objective<SmallMae, float> && mim::Objective<mim::LocalMim<kGrid8>, float>);
  static_assert(mim::Objective<mim::Micl<kSmall>, float> && mim::Objective<mim::MaeLite<kSmall>, float>);
  static_assert(mim::Objective<mim::Mae<kSmall, {}, mim::Hog<9>, double>, double>);
  static_assert(!mim::Objective<SmallMae, double>);  // a float objective does not train in double
  static_assert(mim::Objective<TapeOnlyObjective, float>);
  static_assert(!mim::Objective<NoForward, float> && !mim::Objective<WrongFamily, float> && !mim::Objective<int, float>);
  static_assert(mim::MaskingPolicy<mim::Random<750>> && mim::MaskingPolicy<mim::RandomRatio>);
  static_assert(!mim::MaskingPolicy<EarlyStem> && !mim::MaskingPolicy<int>);
  using Explicit = train::ExplicitStepEngine<nn::ViT<kSmall>, SmallMae, float>;
  using OnTape = train::TapeStepEngine<nn::ViT<kSmall>, TapeOnlyObjective, float>;
  static_assert(train::StepEngine<Explicit, float> && train::StepEngine<OnTape, float>);
  static_assert(!train::StepEngine<Explicit, double> && !train::StepEngine<SmallMae, float>);
  // The trainer's constraints, as a requires-expression sees them.
  static_assert(Trainable<nn::ViT<kSmall>, TapeOnlyObjective, mim::Random<750>, float, OnTape>);
  static_assert(Trainable<nn::ViT<kSmall>, SmallMae, mim::Random<750>, float, Explicit>);
  static_assert(!Trainable<nn::ViT<kSmall>, NoForward, mim::Random<750>, float, OnTape>);
  static_assert(!Trainable<nn::ViT<kSmall>, SmallMae, EarlyStem, float, Explicit>);
  static_assert(!Trainable<nn::ViT<kSmall>, SmallMae, mim::Random<750>, float, SmallMae>);
  CHECK(true);
}

TEST_CASE("the recipe type: its parts, units, and a controller with its LR policy") {
  static_assert(std::is_same_v<UserRecipe::LrPolicy, FlatThenLinear> && std::is_same_v<UserRecipe::Scalar, float>);
  static_assert(UserRecipe::units() == 5 && UserRecipe::units(true) == 4 && UserRecipe::spec == kSmall);
  using Defaulted = Pretraining<nn::ViT<kSmall>, SmallMae, mim::Random<750>, freeze::ViTTailored<freeze::Spacing::cubic, 800>>;
  static_assert(std::is_same_v<Defaulted::LrPolicy, freeze::ViTTailoredLr>);  // the schedule names it
  const auto controller = Defaulted::controller({10, 2, 5}, 1e-3);
  CHECK(controller.units() == 5);
  CHECK(controller.lr_settings().mode == freeze::LrMode::vit_tailored);
  CHECK(std::string(UserRecipe::controller({10, 2, 5}, 1e-3).lr_policy().name) == "flat-then-linear");
}

TEST_CASE("a user's own schedule and LR policy train: LRs follow the curve, units freeze where the schedule says") {
  // E = 4, W = 1, I = 4: warmup is g < 4, then 12 iterations; r = 0.25 gives J = 3, so units 0 and
  // 1 train through g = 7 (j = 3) and are frozen from g = 8.
  const freeze::RunLength run{4, 1, 4};
  const freeze::LrSettings settings{.base_lr = 1e-3};
  UserRecipe::Encoder encoder(1);
  UserRecipe::Objective objective(2);
  auto controller = UserRecipe::controller(run, settings.base_lr);
  optim::AdamW<float> adamw;
  train::PretrainOptions options;
  options.epochs = run.epochs;
  options.progress = false;
  train::Pretrainer trainer(encoder, objective, UserRecipe::Masking{}, controller, adamw, options);

  Parameter<float>& stem = encoder.patch_embed.proj.weight;  // unit 0
  Parameter<float>& block0_bias = encoder.blocks[0].mlp.fc2.bias;  // unit 1, no weight decay
  Parameter<float>& block1 = encoder.blocks[1].mlp.fc1.weight;  // unit 2
  std::vector<float> stem_at_freeze, block1_at_freeze;
  for (std::int64_t g = 0; g < run.total_iterations(); ++g) {
    CAPTURE(g);
    const auto bias_before = values_of(block0_bias);
    const auto images = testing::random_tensor<float>(Shape{4, 1, 28, 28}, std::uint64_t(g));
    std::vector<float> bias_grad;
    const double loss = trainer.step(images, g);
    REQUIRE(std::isfinite(loss));
    // The controller's LRs are the user's curve, 0 for the frozen units.
    for (int u = 0; u < controller.units(); ++u) {
      const double r = EarlyStem::fraction(u, controller.units());
      const bool frozen = freeze::is_past_freeze_point(run, r, g);
      CHECK(controller.is_active(u) == !frozen);
      CHECK(controller.lr(u) == (frozen ? 0.0 : FlatThenLinear::unit_lr(settings, run, r, g)));
    }
    if (g == 0) {
      // AdamW's first step moves each element by lr * g / (|g| + eps): the policy's 1e-4, where
      // every built-in policy gives 0 at g = 0 (warmup from zero).
      int moved = 0;
      for (std::size_t i = 0; i < bias_before.size(); ++i) {
        const double step = std::abs(double(block0_bias.value[std::int64_t(i)]) - bias_before[i]);
        if (step == 0) continue;
        CHECK(step == doctest::Approx(1e-4).epsilon(1e-3));
        ++moved;
      }
      CHECK(moved > int(bias_before.size()) / 2);
    }
    if (g == 7) CHECK(controller.first_active_unit() == 0);
    if (g == 8) {
      CHECK(controller.first_active_unit() == 2);
      CHECK(stem.grad.empty());
      CHECK_FALSE(adamw.has_state(stem));
      stem_at_freeze = values_of(stem);
      block1_at_freeze = values_of(block1);
    }
  }
  CHECK(values_of(stem) == stem_at_freeze);       // frozen: bit-identical since g = 8
  CHECK(values_of(block1) != block1_at_freeze);    // unit 2 kept training
  CHECK(trainer.recipe().at("lr_policy").as_string() == "flat-then-linear");  // resume checks the policy
}

// ---- the cost model ---------------------------------------------------------------------------------

namespace {
// The LocalMIM recipe of ViTFreeze's published run: ViT-B/16 at 224 px, cubic t0 = 0.8.
using PublishedLocalMim = Pretraining<nn::ViT<specs::base()>, mim::LocalMim<specs::base()>, mim::Random<750>,
                                      freeze::Cubic<800>>;
constexpr train::CostSetting kPublished{.epochs = 100, .warmup_epochs = 10, .semantics = freeze::FreezeSemantics::vitfreeze};

// A user's schedule for the saving check: every block but the last trains for 40 % of the run.
struct MostlyShort {
  static constexpr double fraction(int unit, int units) { return unit + 1 == units ? 1.0 : 0.4; }
};
using ShortMae = Pretraining<nn::ViT<specs::tiny(224, 3, 16)>, mim::Mae<specs::tiny(224, 3, 16)>, mim::Random<750>, MostlyShort>;
}  // namespace

TEST_CASE("cost model: the published LocalMIM setting, as a recipe and as run-time values") {
  constexpr double vitfreeze = predicted_saving<PublishedLocalMim>(kPublished);
  constexpr double truncate = predicted_saving<PublishedLocalMim>({.epochs = 100, .warmup_epochs = 10});
  // The ViTFreeze paper's logged wall-clock saving is 12.6 %; the GEMM-only count sits a little below.
  static_assert(vitfreeze > 0.08 && vitfreeze < 0.13);
  static_assert(truncate > vitfreeze);
  CHECK(vitfreeze == doctest::Approx(0.096).epsilon(0.01));
  // The run-time builder (vitfreeze_schedule's --model flags) gives the same numbers.
  std::array<double, 13> forward{}, dropped{};
  const double untracked = train::localmim_unit_costs(specs::base(), true, forward, dropped);
  constexpr auto table = train::unit_costs<PublishedLocalMim>();
  CHECK(untracked == table.untracked_training);
  for (std::size_t u = 0; u < 13; ++u) {
    CAPTURE(u);
    CHECK(forward[u] == table.forward[u]);
    CHECK(dropped[u] == table.dropped[u]);
  }
  constexpr auto r = freeze::fraction_table<freeze::Cubic<800>, 13>();
  CHECK(freeze::predicted_saving({forward, dropped, untracked}, r, freeze::FreezeSemantics::vitfreeze, 100, 10) == vitfreeze);
}

TEST_CASE("cost model: per-unit costs of MAE, LocalMIM and MiCL by hand") {
  // MAE ViT-Tiny/16 at 224 px, mask 0.75: 49 visible + cls through the blocks; the decoder
  // (embed 192 -> 128 on 50 tokens, 2 blocks of 128 on 197 tokens, pred 128 -> 768 on 196) trains to the end.
  constexpr ViTSpec tiny = specs::tiny(224, 3, 16);
  using Mae = Pretraining<nn::ViT<tiny>, mim::Mae<tiny>, mim::Random<750>, freeze::Cubic<800>>;
  constexpr auto mae = train::unit_costs<Mae>();
  static_assert(mae.units == 13);
  static_assert(mae.forward[0] == 2.0 * 196 * 768 * 192);
  static_assert(mae.forward[1] == 24.0 * 50 * 192 * 192 + 4.0 * 50 * 50 * 192);
  static_assert(mae.dropped[5] == 0.0);
  constexpr double decoder = 2.0 * 50 * 192 * 128 + 2 * (24.0 * 197 * 128 * 128 + 4.0 * 197 * 197 * 128) + 2.0 * 196 * 128 * 768;
  static_assert(mae.untracked_training == 3.0 * decoder);
  // dont_freeze_pe: the blocks are the units, the patch embedding is untracked.
  constexpr auto blocks_only = train::unit_costs<Mae>(true);
  static_assert(blocks_only.units == 12 && blocks_only.forward[0] == mae.forward[1]);
  static_assert(blocks_only.untracked_training == 3.0 * decoder + 3.0 * mae.forward[0]);

  // LocalMIM on a 32 px, 8 x 8 grid (16 visible patches): taps after blocks 1, 3, 1 (depth - 3), 3 at
  // scales 4, 2, 1, 1/2; each tap's decoder and head are dropped with its block's unit.
  using LM = mim::LocalMim<kGrid8>;
  using Local = Pretraining<nn::ViT<kGrid8>, LM, mim::Random<750>, freeze::Cubic<800>>;
  constexpr auto local = train::unit_costs<Local>();
  static_assert(local.dropped[0] == 0.0 && local.dropped[1] == 0.0 && local.untracked_training == 0.0);
  static_assert(local.dropped[2] == 3.0 * (LM::tap_forward_flops(0, 16) + LM::tap_forward_flops(2, 16)));
  static_assert(local.dropped[4] == 3.0 * (LM::tap_forward_flops(1, 16) + LM::tap_forward_flops(3, 16)));
  // Tap 3 by hand: embed 64 -> 256 on 17 tokens, one 256-wide block on 65 tokens, avg-pool to 4 x 4
  // and a 1x1 conv 256 -> 9 (one channel of HOG).
  static_assert(LM::tap_forward_flops(3, 16) ==
                2.0 * 17 * 64 * 256 + 24.0 * 65 * 256 * 256 + 4.0 * 65 * 65 * 256 + 2.0 * 16 * 256 * 9);
  // Tap 0 at scale 4: ConvT 256 -> 128 and 128 -> 64 as linear maps to 4x the channels, then 64 -> 9.
  static_assert(LM::tap_forward_flops(0, 16) - LM::tap_forward_flops(3, 16) + 2.0 * 16 * 256 * 9 ==
                2.0 * 64 * 256 * 512 + 2.0 * 256 * 128 * 256 + 2.0 * 1024 * 64 * 9);

  // MiCL: two views of 8 visible patches, each its own sequence with a cls token; nothing else.
  using Contrastive = Pretraining<nn::ViT<kSmall>, mim::Micl<kSmall>, mim::SplitView<650>, freeze::Cubic<800>>;
  constexpr auto micl = train::unit_costs<Contrastive>();
  static_assert(mim::SplitView<650>::kept(7, 7) == 16);
  static_assert(micl.forward[1] == 2.0 * (16.0 * 9 * 64 * 64 + 4.0 * 9 * 9 * 64));  // mlp_ratio 2: 16 T D^2
  static_assert(micl.untracked_training == 0.0 && micl.dropped[2] == 0.0);
  CHECK(true);
}

TEST_CASE("cost model: a user-defined schedule, static_assert-able in user code") {
  // Blocks and patch embedding frozen for 60 % of the post-warmup run (90 % of it is post-warmup):
  // the encoder's saving dominates; the never-frozen decoder keeps it below the 2/3 of a bare encoder.
  static_assert(predicted_saving<ShortMae>({.epochs = 100, .warmup_epochs = 10}) >= 0.2);
  constexpr auto table = train::unit_costs<ShortMae>();
  double saved = 0, total = table.untracked_training;
  for (int u = 0; u < table.units; ++u) {
    total += 3 * table.forward[std::size_t(u)];
    if (u + 1 < table.units) saved += 0.6 * 0.9 * 2 * table.forward[std::size_t(u)];
  }
  CHECK(predicted_saving<ShortMae>({.epochs = 100, .warmup_epochs = 10}) == doctest::Approx(saved / total).epsilon(1e-12));
  CHECK(predicted_saving<ShortMae>({.epochs = 100, .warmup_epochs = 10}) < 0.6 * 0.9 * 2.0 / 3.0);
  // Keeping the patch embedding training implies vitfreeze semantics: half the saving per block.
  CHECK(predicted_saving<ShortMae>({.epochs = 100, .warmup_epochs = 10, .dont_freeze_pe = true}) <
        0.55 * predicted_saving<ShortMae>({.epochs = 100, .warmup_epochs = 10}));
  static_assert(predicted_saving<Pretraining<nn::ViT<kSmall>, SmallMae, mim::Random<750>, freeze::NoFreeze>>() == 0.0);
}
