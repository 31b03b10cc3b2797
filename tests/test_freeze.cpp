#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "vitfreeze/freeze/freeze.hpp"
#include "vitfreeze/nn/flops.hpp"

using namespace vitfreeze;
using namespace vitfreeze::freeze;

namespace {

// The ViTFreeze reference run: ViT-B, E = 100, W = 10, 8 GPUs x 256 -> I = 625 (spec §3.8).
constexpr RunLength reference_run{100, 10, 625};

// Spec tables list values rounded to one decimal (3 for r and 1/r).
void check_rounded(double value, double table, double half_step) { CHECK(std::abs(value - table) <= half_step + 1e-9); }

void check_freeze_epochs(const std::vector<double>& r, const std::vector<double>& table) {
  REQUIRE(r.size() == table.size() + 1);
  for (std::size_t i = 0; i < table.size(); ++i) {
    CAPTURE(i);
    const auto epoch = freeze_epoch(reference_run, r[i]);
    REQUIRE(epoch.has_value());
    check_rounded(*epoch, table[i], 0.05);
  }
  CHECK_FALSE(freeze_epoch(reference_run, r.back()).has_value());  // the last unit never freezes
}

}  // namespace

TEST_CASE("cubic t0 = 0.8: fractions, multipliers and freeze epochs of spec §3.8") {
  const auto r = fractions<Cubic<800>>(13);
  CHECK(r[0] == 0.5120000000000001);  // the spec's float64 value, bit for bit
  CHECK(r[12] == 1.0);
  const std::array<double, 13> table_r{0.5120, 0.5447, 0.5787, 0.6141, 0.6510, 0.6892, 0.7290,
                                       0.7703, 0.8130, 0.8574, 0.9033, 0.9508, 1.0000};
  const std::array<double, 13> table_mult{1.953, 1.836, 1.728, 1.628, 1.536, 1.451, 1.372,
                                          1.298, 1.230, 1.166, 1.107, 1.052, 1.000};
  double mean = 0;
  for (std::size_t i = 0; i < 13; ++i) {
    CAPTURE(i);
    check_rounded(r[i], table_r[i], 0.00005);
    check_rounded(initial_lr_multiplier(LrMode::scaled_layerwise, r[i]), table_mult[i], 0.0005);
    CHECK(initial_lr_multiplier(LrMode::unscaled_layerwise, r[i]) == 1.0);
    mean += r[i] / 13;
  }
  check_rounded(mean, 0.740, 0.0005);  // mean post-warmup training fraction
  check_freeze_epochs(r, {56.1, 59.0, 62.1, 65.3, 68.6, 72.0, 75.6, 79.3, 83.2, 87.2, 91.3, 95.6});
}

TEST_CASE("check values for 8 GPUs: J_i and the first frozen iteration (strict j > J_i)") {
  const auto r = fractions<Cubic<800>>(13);
  CHECK(reference_run.warmup_iterations() == 6250);
  CHECK(freeze_iteration(reference_run, r[0]) == doctest::Approx(28800).epsilon(1e-12));
  CHECK(first_frozen_iteration(reference_run, r[0]) == std::optional<std::int64_t>(35051));
  check_rounded(freeze_iteration(reference_run, r[2]), 32552.08, 0.005);
  CHECK(first_frozen_iteration(reference_run, r[2]) == std::optional<std::int64_t>(38803));
  CHECK(freeze_iteration(reference_run, r[12]) == 56250.0);
  CHECK_FALSE(first_frozen_iteration(reference_run, r[12]).has_value());
  // The same values as constants.
  static_assert(first_frozen_iteration(reference_run, Cubic<800>::fraction(0, 13)) == 35051);
  static_assert(fraction_table<Cubic<800>, 13>()[12] == 1.0);
  // Boundary: an exact-integer J freezes one iteration after it (j = J is still active).
  constexpr RunLength small{10, 2, 100};  // J = 800 * 0.5 = 400
  CHECK(first_frozen_iteration(small, 0.5) == std::optional<std::int64_t>(200 + 401));
  CHECK_FALSE(is_past_freeze_point(small, 0.5, 600));
  CHECK(is_past_freeze_point(small, 0.5, 601));
}

TEST_CASE("freeze epochs for linear 0.5, cubic 0.65 and the other t0 that were run") {
  check_freeze_epochs(fractions<Linear<500>>(13),
                      {55.0, 58.8, 62.5, 66.2, 70.0, 73.8, 77.5, 81.2, 85.0, 88.8, 92.5, 96.2});
  check_freeze_epochs(fractions<Cubic<650>>(13),
                      {34.7, 38.2, 42.0, 46.1, 50.6, 55.4, 60.5, 66.1, 72.0, 78.4, 85.2, 92.4});
  const auto first_and_last = [](const std::vector<double>& r, double first, double last) {
    check_rounded(*freeze_epoch(reference_run, r[0]), first, 0.05);
    check_rounded(*freeze_epoch(reference_run, r[11]), last, 0.05);
  };
  first_and_last(fractions<Cubic<700>>(13), 40.9, 93.4);
  first_and_last(fractions<Cubic<750>>(13), 48.0, 94.5);
  first_and_last(fractions<Cubic<850>>(13), 65.3, 96.7);
  first_and_last(fractions<Cubic<900>>(13), 75.6, 97.8);
  double mean_linear = 0, mean_cubic9 = 0;
  for (double x : fractions<Linear<500>>(13)) mean_linear += x / 13;
  for (double x : fractions<Cubic<900>>(13)) mean_cubic9 += x / 13;
  check_rounded(mean_linear, 0.750, 0.0005);
  check_rounded(mean_cubic9, 0.860, 0.0005);
}

TEST_CASE("dont_freeze_pe: 12 units (L = 11), blocks freeze at 56.1 ... 95.2") {
  check_freeze_epochs(fractions<Cubic<800>>(12),
                      {56.1, 59.3, 62.7, 66.2, 69.8, 73.6, 77.6, 81.8, 86.1, 90.5, 95.2});
}

TEST_CASE("run-time schedule equals the compile-time policies bit for bit") {
  CHECK(RuntimeSchedule{Spacing::cubic, 0.8}.fractions(13) == fractions<Cubic<800>>(13));
  CHECK(RuntimeSchedule{Spacing::linear, 0.5}.fractions(13) == fractions<Linear<500>>(13));
  CHECK(RuntimeSchedule{Spacing::squared, 0.7}.fractions(7) == fractions<Squared<700>>(7));
  CHECK(fractions<ViTTailored<Spacing::cubic, 800, 100>>(13) == fractions<Cubic<800>>(13));
  CHECK(std::isinf(RuntimeSchedule{Spacing::cubic, 0.8, false}.fraction(0, 13)));
  CHECK(RuntimeSchedule{Spacing::cubic, 1.0}.fraction(0, 1) == 1.0);  // one unit: it is the last
  CHECK_THROWS_AS((RuntimeSchedule{Spacing::cubic, 0.0}.fractions(13)), ConfigError);
  CHECK_THROWS_AS((RuntimeSchedule{Spacing::cubic, 1.2}.fractions(13)), ConfigError);
  CHECK_THROWS_AS((RuntimeSchedule{Spacing::cubic, 0.8}.fraction(13, 13)), ConfigError);
}

TEST_CASE("schedule policies: concept, defaults and a user-defined schedule") {
  struct HalfThenAll {  // every unit but the last trains for half the post-warmup run
    static constexpr double fraction(int unit, int units) { return unit + 1 == units ? 1.0 : 0.5; }
  };
  struct NotConstexpr {
    static double fraction(int, int) { return 0.5; }
  };
  struct WrongType {
    static constexpr float fraction(int, int) { return 0.5f; }
  };
  static_assert(FreezeSchedule<Cubic<800>> && FreezeSchedule<Linear<500>> && FreezeSchedule<NoFreeze>);
  static_assert(FreezeSchedule<ViTTailored<Spacing::squared, 700, 50>>);
  static_assert(FreezeSchedule<HalfThenAll>);
  static_assert(!FreezeSchedule<NotConstexpr> && !FreezeSchedule<WrongType> && !FreezeSchedule<int>);

  static_assert(default_lr_mode<Cubic<800>>() == LrMode::scaled_layerwise);
  static_assert(default_lr_mode<ViTTailored<Spacing::cubic, 800, 100>>() == LrMode::vit_tailored);
  static_assert(default_tail<ViTTailored<Spacing::cubic, 800, 250>>() == 0.25);
  static_assert(default_lr_mode<NoFreeze>() == LrMode::global_hard_freeze);
  static_assert(default_lr_mode<HalfThenAll>() == LrMode::scaled_layerwise && default_tail<HalfThenAll>() == 0.1);

  const auto tailored = make_controller<ViTTailored<Spacing::cubic, 800, 250>>(13, reference_run, 1.6e-3);
  CHECK(tailored.lr_settings().mode == LrMode::vit_tailored);
  CHECK(tailored.lr_settings().tail == 0.25);

  // The user schedule drives a controller: units 0 and 1 freeze together, after 800 * 0.5 iterations.
  auto c = make_controller<HalfThenAll>(3, RunLength{10, 2, 100}, 1.0);
  c.step(600);
  CHECK(c.first_active_unit() == 0);
  CHECK(c.step(601) == std::vector<int>{0, 1});
  CHECK(c.first_active_unit() == 2);
  CHECK(c.lr(2) > 0.0);
}

TEST_CASE("controller on the reference run: exact freeze step, events in index order, initial LR") {
  auto c = make_controller<Cubic<800>>(13, reference_run, 1.6e-3);
  c.step(6249);  // last warmup iteration: no per-unit scaling yet
  CHECK(c.lr(0) == doctest::Approx(1.6e-3 * 6249 / 6250).epsilon(1e-12));
  CHECK(c.lr(0) == c.global_lr());
  c.step(6250);  // j = 0: every unit jumps to lr / r_i
  CHECK(c.lr(0) == doctest::Approx(3.125e-3).epsilon(1e-12));
  CHECK(c.lr(12) == doctest::Approx(1.6e-3).epsilon(1e-12));
  CHECK(c.step(35050).empty());
  CHECK(c.is_active(0));
  CHECK(c.lr(0) >= 0.0);
  CHECK(c.step(35051) == std::vector<int>{0});
  CHECK_FALSE(c.is_active(0));
  CHECK(c.lr(0) == 0.0);
  CHECK(c.first_active_unit() == 1);
  CHECK(c.step(35051).empty());  // same g again: nothing new

  auto jump = make_controller<Cubic<800>>(13, reference_run, 1.6e-3);
  jump.step(30000);
  CHECK(jump.step(40000) == std::vector<int>{0, 1, 2});  // unit 3 is due only at g = 40795
  CHECK(jump.first_active_unit() == 3);

  c.step(reference_run.total_iterations() - 1);  // the last unit is still training at the end
  CHECK(c.first_active_unit() == 12);
  CHECK(c.is_active(12));
}

TEST_CASE("LR modes follow their formulas") {
  // E = 10, W = 2, I = 100: W_it = 200, post-warmup 800 iterations; r = {0.5, 1}: J = {400, 800}.
  constexpr RunLength run{10, 2, 100};
  const double lr = 1.0, min_lr = 0.01;
  const auto make = [&](LrMode mode) { return FreezeController({0.5, 1.0}, run, LrSettings{mode, lr, min_lr, 0.1}); };
  const auto c_of = [&](double e) {  // the global recipe (spec §2.6), after warmup
    return min_lr + (lr - min_lr) * 0.5 * (1 + std::cos(detail::pi * (e - 2) / 8));
  };
  const double sqrt_half = std::sqrt(0.5);

  for (LrMode mode : {LrMode::scaled_layerwise, LrMode::unscaled_layerwise, LrMode::global_hard_freeze,
                      LrMode::vit_tailored}) {
    CAPTURE(static_cast<int>(mode));
    auto c = make(mode);
    c.step(50);  // warmup, e = 0.5: lr * e / W for every unit
    CHECK(c.lr(0) == doctest::Approx(0.25));
    CHECK(c.lr(1) == doctest::Approx(0.25));
    CHECK(c.global_lr() == doctest::Approx(0.25));
    c.step(400);  // e = 4: the global cosine is a quarter through
    CHECK(c.global_lr() == doctest::Approx(min_lr + (lr - min_lr) * 0.5 * (1 + sqrt_half)));
    c.step(600);  // j = J_0 = 400: unit 0 still active
    CHECK(c.is_active(0));
    c.step(601);
    CHECK_FALSE(c.is_active(0));
    CHECK(c.lr(0) == 0.0);
    CHECK(c.global_lr() == doctest::Approx(c_of(6.01)));
  }

  auto scaled = make(LrMode::scaled_layerwise);
  scaled.step(200);  // j = 0: jump to lr / r
  CHECK(scaled.lr(0) == doctest::Approx(2.0));
  CHECK(scaled.lr(1) == doctest::Approx(1.0));
  scaled.step(400);  // j = 200 = J_0 / 2: cosine midpoint of unit 0; a quarter of unit 1
  CHECK(scaled.lr(0) == doctest::Approx(1.0));
  CHECK(scaled.lr(1) == doctest::Approx(0.5 * (1 + sqrt_half)));
  scaled.step(600);  // j = J_0
  CHECK(scaled.lr(0) == 0.0);
  scaled.step(999);  // unit 1 ignores min_lr: 0.5 * (1 + cos(pi * 799/800)) < min_lr
  CHECK(scaled.lr(1) == doctest::Approx(0.5 * (1 + std::cos(detail::pi * 799 / 800))));
  CHECK(scaled.lr(1) < min_lr);

  auto unscaled = make(LrMode::unscaled_layerwise);
  unscaled.step(200);
  CHECK(unscaled.lr(0) == doctest::Approx(1.0));
  unscaled.step(400);
  CHECK(unscaled.lr(0) == doctest::Approx(0.5));
  unscaled.step(600);
  CHECK(unscaled.lr(0) == 0.0);

  auto global = make(LrMode::global_hard_freeze);
  global.step(200);
  CHECK(global.lr(0) == doctest::Approx(1.0));
  global.step(600);  // full global LR right up to the freeze
  CHECK(global.lr(0) == doctest::Approx(c_of(6.0)));
  CHECK(global.lr(0) > 0.4);

  // vit_tailored: tail tau = 0.1 of 800 = 80 iterations, so unit 0's tail covers j in [320, 400].
  auto tailored = make(LrMode::vit_tailored);
  tailored.step(200);
  CHECK(tailored.lr(0) == doctest::Approx(1.0));
  tailored.step(520);  // j = 320: tail starts, factor 1
  CHECK(tailored.lr(0) == doctest::Approx(c_of(5.2)));
  tailored.step(560);  // j = 360: halfway through the tail, factor 0.5
  CHECK(tailored.lr(0) == doctest::Approx(0.5 * c_of(5.6)));
  CHECK(tailored.lr(1) == doctest::Approx(c_of(5.6)));  // unit 1's tail starts at j = 720
  tailored.step(600);  // j = J_0: exactly zero, the step before the freeze
  CHECK(tailored.is_active(0));
  CHECK(tailored.lr(0) == 0.0);
  tailored.step(960);  // j = 760: unit 1 halfway through its tail
  CHECK(tailored.lr(1) == doctest::Approx(0.5 * c_of(9.6)));
}

namespace {
// A user's own LR curve: linear warmup, then a straight line from base_lr at the end of warmup down
// to 0 at the unit's freeze point; parameters outside the units stay at min_lr.
struct LinearToFreeze {
  static constexpr const char* name = "linear-to-freeze";
  static constexpr double unit_lr(const LrSettings& lr, const RunLength& run, double fraction, std::int64_t g) {
    if (g < run.warmup_iterations()) return lr.base_lr * double(g) / double(run.warmup_iterations());
    if (!detail::is_finite(fraction)) return lr.base_lr;
    return lr.base_lr * (1.0 - double(g - run.warmup_iterations()) / freeze_iteration(run, fraction));
  }
  static constexpr double global_lr(const LrSettings& lr, const RunLength&, std::int64_t) { return lr.min_lr; }
};
struct NoCurve {
  static constexpr const char* name = "no-curve";
};
struct WrongResult {
  static constexpr const char* name = "wrong-result";
  static constexpr float unit_lr(const LrSettings&, const RunLength&, double, std::int64_t) { return 0.f; }
};
}  // namespace

TEST_CASE("LR policies: the built-in types, the run-time names onto them, and a user's own curve") {
  static_assert(LrPolicy<ScaledLayerwise> && LrPolicy<ViTTailoredLr> && LrPolicy<LinearToFreeze>);
  static_assert(!LrPolicy<NoCurve> && !LrPolicy<WrongResult> && !LrPolicy<Cubic<800>> && !LrPolicy<int>);
  static_assert(std::is_same_v<LrPolicyOf<LrMode::unscaled_layerwise>, UnscaledLayerwise>);
  static_assert(std::is_same_v<DefaultLrPolicy<Cubic<800>>, ScaledLayerwise>);
  static_assert(std::is_same_v<DefaultLrPolicy<ViTTailored<Spacing::cubic, 800, 100>>, ViTTailoredLr>);
  static_assert(std::is_same_v<DefaultLrPolicy<NoFreeze>, GlobalHardFreeze>);
  // --lr-mode's names are the policies' names.
  CHECK(std::string(lr_policy_for(LrMode::scaled_layerwise).name) == "scaled");
  CHECK(std::string(lr_policy_for(LrMode::unscaled_layerwise).name) == "unscaled");
  CHECK(std::string(lr_policy_for(LrMode::global_hard_freeze).name) == "global");
  CHECK(std::string(lr_policy_for(LrMode::vit_tailored).name) == "vit-tailored");

  // The curve is a constant expression, directly and through the controller's function pointer.
  constexpr RunLength run{10, 2, 100};  // W_it = 200; r = 0.5: J = 400
  constexpr LrSettings settings{.base_lr = 1.0, .min_lr = 0.01};
  static_assert(LinearToFreeze::unit_lr(settings, run, 0.5, 100) == 0.5);
  constexpr LrPolicyRef ref = lr_policy_ref<LinearToFreeze>();
  static_assert(ref.unit_lr(settings, run, 0.5, 500) == 0.25 && ref.global_lr(settings, run, 500) == 0.01);
  static_assert(!ref.builtin_mode && lr_policy_ref<ViTTailoredLr>().builtin_mode == LrMode::vit_tailored);
  static_assert(lr_policy_ref<ScaledLayerwise>().global_lr(settings, run, 100) == 0.5);  // the default: c(e)

  // The controller follows the user's curve, freezes where the schedule says, and gives 0 after.
  auto c = make_controller<Linear<500>, LinearToFreeze>(3, run, 1.0, 0.01);  // r = {0.5, 0.75, 1}
  CHECK(c.lr_policy().name == std::string("linear-to-freeze"));
  for (std::int64_t g = 0; g < run.total_iterations(); g += 25) {
    CAPTURE(g);
    c.step(g);
    CHECK(c.global_lr() == 0.01);
    for (int u = 0; u < 3; ++u) {
      const bool frozen = is_past_freeze_point(run, c.fraction(u), g);
      CHECK(c.is_active(u) == !frozen);
      CHECK(c.lr(u) == (frozen ? 0.0 : LinearToFreeze::unit_lr(settings, run, c.fraction(u), g)));
    }
  }
  CHECK(c.first_active_unit() == 2);

  // A built-in policy given as a type overrides the schedule's mode (checkpoints record it).
  const auto global = make_controller<Cubic<800>, GlobalHardFreeze>(13, reference_run, 1.6e-3);
  CHECK(global.lr_settings().mode == LrMode::global_hard_freeze);
  CHECK(make_controller<Cubic<800>, LinearToFreeze>(13, reference_run, 1.6e-3).lr_settings().mode ==
        LrMode::scaled_layerwise);  // a user policy leaves the (unused) mode alone
}

TEST_CASE("a controller from LrSettings::mode equals one from the mode's policy type, bit for bit") {
  const auto same = [](LrMode mode, LrPolicyRef policy) {
    FreezeController by_mode(fractions<Cubic<800>>(13), reference_run, {mode, 1.6e-3, 1e-6, 0.2});
    FreezeController by_type(fractions<Cubic<800>>(13), reference_run, {LrMode::scaled_layerwise, 1.6e-3, 1e-6, 0.2},
                             policy);
    for (std::int64_t g = 0; g < reference_run.total_iterations(); g += 97) {
      by_mode.step(g);
      by_type.step(g);
      for (int u = 0; u < 13; ++u)
        if (by_mode.lr(u) != by_type.lr(u)) return false;
      if (by_mode.global_lr() != by_type.global_lr()) return false;
    }
    return by_type.lr_settings().mode == mode;
  };
  CHECK(same(LrMode::scaled_layerwise, lr_policy_ref<ScaledLayerwise>()));
  CHECK(same(LrMode::unscaled_layerwise, lr_policy_ref<UnscaledLayerwise>()));
  CHECK(same(LrMode::global_hard_freeze, lr_policy_ref<GlobalHardFreeze>()));
  CHECK(same(LrMode::vit_tailored, lr_policy_ref<ViTTailoredLr>()));
  CHECK_FALSE(same(LrMode::vit_tailored, lr_policy_ref<GlobalHardFreeze>()));  // the check can fail
}

TEST_CASE("warmup_cosine is constexpr and the constexpr cosine matches libm") {
  static_assert(warmup_cosine(1.0, 1.0, 0.0, 2.0, 10.0) == 0.5);
  static_assert(warmup_cosine(2.0, 1.0, 0.01, 2.0, 10.0) == 1.0);
  static_assert(warmup_cosine(10.0, 1.0, 0.01, 2.0, 10.0) == 0.01);
  constexpr double midpoint = warmup_cosine(6.0, 1.0, 0.01, 2.0, 10.0);
  static_assert(midpoint > 0.505 - 1e-15 && midpoint < 0.505 + 1e-15);
  // Within one ulp of 1 on [0, pi] (the range the schedules use), two ulps after range reduction.
  for (int k = -400; k <= 1200; ++k) {
    const double x = detail::pi * k / 400.0;
    CAPTURE(x);
    CHECK(std::abs(detail::series_cos(x) - std::cos(x)) <= (k >= 0 && k <= 400 ? 2.3e-16 : 4.5e-16));
  }
}

TEST_CASE("NoFreeze keeps every unit on the global recipe") {
  auto c = make_controller<NoFreeze>(13, reference_run, 1.6e-3);
  for (std::int64_t g : {0, 3000, 6250, 40000, 62499}) {
    CHECK(c.step(g).empty());
    CHECK(c.lr(0) == c.global_lr());
  }
  CHECK(c.first_active_unit() == 0);
}

TEST_CASE("controller state save/restore continues identically") {
  const auto make = [] { return make_controller<ViTTailored<Spacing::cubic, 800, 100>>(13, reference_run, 1.6e-3); };
  const std::int64_t accum = 2, save_at = 37000;
  auto reference = make();
  FreezeController::State saved;
  for (std::int64_t g = 0; g <= save_at; g += accum) reference.step(g);
  saved = reference.state();
  CHECK(saved.last_step == save_at);
  CHECK(saved.frozen == std::vector<bool>{true, true, false, false, false, false, false, false, false, false, false,
                                          false, false});

  auto resumed = make();
  resumed.restore(saved);
  CHECK(resumed.state() == saved);
  CHECK(resumed.first_active_unit() == 2);
  for (int u = 0; u < 13; ++u) CHECK(resumed.lr(u) == reference.lr(u));
  int events = 0;
  for (std::int64_t g = save_at + accum; g < reference_run.total_iterations(); g += accum) {
    const auto a = reference.step(g);
    const auto b = resumed.step(g);
    REQUIRE(a == b);
    events += static_cast<int>(a.size());
    for (int u = 0; u < 13; ++u) REQUIRE(resumed.lr(u) == reference.lr(u));
    REQUIRE(resumed.global_lr() == reference.global_lr());
  }
  CHECK(events == 10);  // units 2..11
  CHECK(resumed.state() == reference.state());

  auto bad = make();
  CHECK_THROWS_AS(bad.restore({10, std::vector<bool>(12, false)}), ConfigError);
  std::vector<bool> gap(13, false);
  gap[1] = true;
  CHECK_THROWS_AS(bad.restore({10, gap}), ConfigError);
  CHECK_THROWS_AS(bad.restore({reference_run.total_iterations(), std::vector<bool>(13, false)}), ConfigError);
}

TEST_CASE("controller rejects impossible configurations and steps") {
  CHECK_THROWS_AS(FreezeController({0.5, 1.0}, RunLength{10, 10, 5}, LrSettings{}), ConfigError);
  CHECK_THROWS_AS(FreezeController({0.5, 1.0}, RunLength{10, 2, 0}, LrSettings{}), ConfigError);
  CHECK_THROWS_AS(FreezeController({0.7, 0.5, 1.0}, RunLength{10, 2, 5}, LrSettings{}), ConfigError);
  CHECK_THROWS_AS(FreezeController({0.0, 1.0}, RunLength{10, 2, 5}, LrSettings{}), ConfigError);
  CHECK_THROWS_AS(FreezeController({}, RunLength{10, 2, 5}, LrSettings{}), ConfigError);
  FreezeController c({0.5, 1.0}, RunLength{10, 2, 5}, LrSettings{});
  CHECK_THROWS_AS(c.step(-1), ConfigError);
  CHECK_THROWS_AS(c.step(50), ConfigError);  // E * I = 50: past the run
  c.step(20);
  CHECK_THROWS_AS(c.step(19), ConfigError);
  CHECK_THROWS_AS(c.lr(2), ConfigError);
}

TEST_CASE("cost model: hand-computed three-unit case, constexpr") {
  // forward {10, 20, 30}, unit 1 drops 6 FLOPs of decoder work, 14 untracked: baseline 3*60 + 6 + 14 = 200.
  // r = {0.5, 0.75, 1}, E = 10, W = 2: post-warmup share 0.8.
  // truncate:  saved {20, 46, 60} x frozen {0.5, 0.25, 0} = 10 + 11.5 -> 21.5 * 0.8 / 200 = 0.086
  // vitfreeze: saved {10, 26, 30} x frozen {0.5, 0.25, 0} = 5 + 6.5  -> 11.5 * 0.8 / 200 = 0.046
  static constexpr std::array<double, 3> forward{10, 20, 30};
  static constexpr std::array<double, 3> dropped{0, 6, 0};
  static constexpr std::array<double, 3> r{0.5, 0.75, 1.0};
  constexpr UnitCosts costs{forward, dropped, 14.0};
  static_assert(baseline_training_flops(costs) == 200.0);
  constexpr double truncate = predicted_saving(costs, r, FreezeSemantics::truncate, 10, 2);
  constexpr double vitfreeze = predicted_saving(costs, r, FreezeSemantics::vitfreeze, 10, 2);
  static_assert(truncate > 0.086 - 1e-15 && truncate < 0.086 + 1e-15);
  CHECK(truncate == doctest::Approx(0.086).epsilon(1e-14));
  CHECK(vitfreeze == doctest::Approx(0.046).epsilon(1e-14));
  // NoFreeze saves nothing.
  constexpr auto never = fraction_table<NoFreeze, 3>();
  static_assert(predicted_saving(costs, never, FreezeSemantics::truncate, 10, 2) == 0.0);
  CHECK_THROWS_AS(predicted_saving(costs, std::array<double, 2>{0.5, 1.0}, FreezeSemantics::truncate, 10, 2),
                  ConfigError);
}

namespace {
// MAE ViT-Tiny of machine-facts §4: encoder on visible + cls tokens, decoder embed 192 -> 128,
// 2 decoder blocks (width 128) on N + 1 tokens, head to p*p*C values.
constexpr std::int64_t mae_tiny_forward(int image, int patch, int channels, int frozen_blocks, bool only_frozen) {
  const ViTSpec spec = specs::tiny(image, channels, patch);
  const std::int64_t n = spec.tokens(), visible = n / 4, t = visible + 1;
  const std::int64_t prefix = nn::patch_embed_forward_flops(spec) + frozen_blocks * nn::encoder_block_forward_flops(spec, t);
  if (only_frozen) return prefix;
  return nn::patch_embed_forward_flops(spec) + spec.depth * nn::encoder_block_forward_flops(spec, t) +
         nn::linear_forward_flops(t, spec.dim, 128) + 2 * nn::transformer_block_forward_flops(n + 1, 128, 4) +
         nn::linear_forward_flops(n + 1, 128, spec.patch_dim());
}
}  // namespace

TEST_CASE("FLOP counts match the machine-facts MAE ViT-Tiny baseline") {
  static_assert(nn::transformer_block_forward_flops(50, 768, 4) == 24LL * 50 * 768 * 768 + 4LL * 50 * 50 * 768);
  // Hand sums: 32 px -> 241,408,000 forward; 224 px -> 847,541,248 forward.
  static_assert(3 * mae_tiny_forward(32, 4, 3, 0, false) == 724'224'000);
  static_assert(3 * mae_tiny_forward(224, 16, 3, 0, false) == 2'542'623'744);
  CHECK(3 * mae_tiny_forward(32, 4, 3, 0, false) == doctest::Approx(0.724e9).epsilon(1e-3));
  CHECK(3 * mae_tiny_forward(224, 16, 3, 0, false) == doctest::Approx(2.543e9).epsilon(1e-3));
  // Patch embedding + 6 blocks frozen (truncate): 0.539 GF/img in the profile.
  const double prefix = static_cast<double>(mae_tiny_forward(32, 4, 3, 6, true));
  const std::array<double, 1> forward{prefix};
  const UnitCosts frozen_prefix{forward, {}, 0.0};
  const double train = 3.0 * mae_tiny_forward(32, 4, 3, 0, false) -
                       saved_flops_while_frozen(frozen_prefix, 0, FreezeSemantics::truncate);
  CHECK(train == 538'715'136.0);
  CHECK(train == doctest::Approx(0.539e9).epsilon(1e-3));
}
