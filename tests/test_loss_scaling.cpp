// The dynamic loss-scaling rule (optim/loss_scaling.hpp) that the GPU's fp16 policy runs in a
// one-thread kernel: growth, backoff, skip counting, the fp32 ceiling and option validation.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "vitfreeze/optim/loss_scaling.hpp"

namespace vf = vitfreeze;
using vf::optim::advance_loss_scale;
using vf::optim::LossScaleOptions;
using vf::optim::LossScaleState;

namespace {
LossScaleState after(LossScaleState s, const LossScaleOptions& o, bool non_finite) {
  s.found_non_finite = non_finite;
  advance_loss_scale(s, o);
  return s;
}
}  // namespace

TEST_CASE("loss scale: starts at the initial scale and grows once per growth_interval clean steps") {
  const LossScaleOptions o{1024.0f, 2.0f, 0.5f, 3, 8};
  LossScaleState s = vf::optim::initial_loss_scale_state(o);
  CHECK(s.scale == 1024.0f);
  s = after(s, o, false);
  s = after(s, o, false);
  CHECK(s.scale == 1024.0f);
  CHECK(s.good_steps == 2);
  s = after(s, o, false);  // the third clean step in a row
  CHECK(s.scale == 2048.0f);
  CHECK(s.good_steps == 0);
  for (int i = 0; i < 3; ++i) s = after(s, o, false);
  CHECK(s.scale == 4096.0f);
  CHECK(s.skipped_steps == 0);
}

TEST_CASE("loss scale: a non-finite step backs off, restarts the growth count and is counted as skipped") {
  const LossScaleOptions o{1024.0f, 2.0f, 0.5f, 3, 8};
  LossScaleState s = vf::optim::initial_loss_scale_state(o);
  s = after(s, o, false);
  s = after(s, o, false);
  s = after(s, o, true);
  CHECK(s.scale == 512.0f);
  CHECK(s.good_steps == 0);
  CHECK(s.consecutive_skips == 1);
  CHECK(s.skipped_steps == 1);
  s = after(s, o, true);
  CHECK(s.scale == 256.0f);
  CHECK(s.consecutive_skips == 2);
  s = after(s, o, false);  // a clean step ends the run of skips but not the total
  CHECK(s.consecutive_skips == 0);
  CHECK(s.skipped_steps == 2);
  CHECK(s.good_steps == 1);
  s = after(s, o, false);
  s = after(s, o, false);
  CHECK(s.scale == 512.0f);  // three clean steps after the last skip
}

TEST_CASE("loss scale: growth stops below fp32's overflow") {
  const float top = std::ldexp(1.0f, 127);
  const LossScaleOptions o{top, 2.0f, 0.5f, 1, 8};
  LossScaleState s = vf::optim::initial_loss_scale_state(o);
  for (int i = 0; i < 4; ++i) s = after(s, o, false);
  CHECK(s.scale == top);
  CHECK(std::isfinite(s.scale));
  CHECK(s.good_steps == 0);
}

TEST_CASE("loss scale: settles just under the overflow threshold and skips about one step per growth interval") {
  // A model whose largest fp16 gradient is g_max * scale: it overflows above 65504 / g_max.
  const LossScaleOptions o{};  // 2^16, x2 / 2000 steps, x0.5
  const float g_max = 0.37f, threshold = 65504.0f / g_max;
  LossScaleState s = vf::optim::initial_loss_scale_state(o);
  const int steps = 100000;
  std::int64_t skipped_late = 0;
  int most_in_a_row = 0;
  for (int i = 0; i < steps; ++i) {
    const bool overflow = s.scale * g_max > 65504.0f;
    if (i >= steps / 2) skipped_late += overflow;
    s = after(s, o, overflow);
    most_in_a_row = std::max(most_in_a_row, int(s.consecutive_skips));
  }
  CHECK(most_in_a_row == 1);  // one backoff always gets back under the threshold
  CHECK(s.scale <= threshold);
  CHECK(s.scale > threshold / 4);
  // In the steady state the scale grows past the threshold once per interval and backs off at once.
  // One cycle: growth_interval clean steps, then one skipped: 50000 / 2001 -> 24 or 25 skips.
  const std::int64_t cycles = (steps / 2) / (o.growth_interval + 1);
  CHECK(skipped_late >= cycles);
  CHECK(skipped_late <= cycles + 1);
}

TEST_CASE("loss scale: options are validated with a ConfigError") {
  CHECK_NOTHROW(vf::optim::validate(LossScaleOptions{}));
  auto bad = [](auto edit) {
    LossScaleOptions o;
    edit(o);
    CHECK_THROWS_AS(vf::optim::validate(o), vf::ConfigError);
  };
  bad([](LossScaleOptions& o) { o.initial_scale = 0.0f; });
  bad([](LossScaleOptions& o) { o.initial_scale = std::numeric_limits<float>::infinity(); });
  bad([](LossScaleOptions& o) { o.initial_scale = std::numeric_limits<float>::quiet_NaN(); });
  bad([](LossScaleOptions& o) { o.growth_factor = 1.0f; });
  bad([](LossScaleOptions& o) { o.backoff_factor = 1.0f; });
  bad([](LossScaleOptions& o) { o.backoff_factor = 0.0f; });
  bad([](LossScaleOptions& o) { o.growth_interval = 0; });
  bad([](LossScaleOptions& o) { o.max_consecutive_skips = 0; });
}
