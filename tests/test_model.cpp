// The explicit model (model/) on the CPU backend against the tape, the double-precision oracle:
// the same host modules, the same images and masks; the explicit forward/backward must give the
// tape's loss and every parameter gradient (1e-10 relative in double, 1e-5 in float), with the
// frozen prefixes of both freeze semantics. The tape's own ops are checked against finite
// differences in test_ops_gradcheck.cpp, so this chains the explicit model to that check.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <span>
#include <map>
#include <string>

#include "explicit_check.hpp"
#include "vitfreeze/backend/cpu/backend.hpp"
#include "vitfreeze/mim/localmim.hpp"
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/model/localmim.hpp"
#include "vitfreeze/model/mae.hpp"
#include "vitfreeze/model/micl.hpp"
#include "vitfreeze/testing/random_tensor.hpp"

using namespace vitfreeze;

namespace {

constexpr ViTSpec kSpec{.image = 16, .channels = 2, .patch = 4, .dim = 32, .depth = 3, .heads = 4, .mlp_ratio = 2};
constexpr mim::DecoderSpec kDecoder{.dim = 16, .depth = 1, .heads = 2};

// A reconstruction target the library does not have, written as a user would: per cell and channel,
// the mean Sobel gradient magnitude (reflect padding at the border).
struct SobelMagnitude {
  static constexpr const char* name = "sobel-magnitude";
  static constexpr int values(int channels, int /*cell*/) { return channels; }
  template <class T>
  static void compute(const T* images, std::span<const mim::TargetGeometry> geometry, std::span<T* const> out) {
    for (std::size_t s = 0; s < geometry.size(); ++s) {
      const mim::TargetGeometry& g = geometry[s];
      const std::int64_t H = g.height, W = g.width, C = g.channels;
      auto at = [&](std::int64_t b, std::int64_t c, std::int64_t r, std::int64_t q) {
        r = r < 0 ? -r : (r >= H ? 2 * H - 2 - r : r);
        q = q < 0 ? -q : (q >= W ? 2 * W - 2 - q : q);
        return double(images[((b * C + c) * H + r) * W + q]);
      };
      std::fill(out[s], out[s] + g.batch * g.rows_per_sample() * C, T(0));
      for (std::int64_t b = 0; b < g.batch; ++b)
        for (std::int64_t c = 0; c < C; ++c)
          for (std::int64_t r = 0; r < H; ++r)
            for (std::int64_t q = 0; q < W; ++q) {
              const double gx = at(b, c, r - 1, q - 1) + 2 * at(b, c, r, q - 1) + at(b, c, r + 1, q - 1) -
                                at(b, c, r - 1, q + 1) - 2 * at(b, c, r, q + 1) - at(b, c, r + 1, q + 1);
              const double gy = at(b, c, r - 1, q - 1) + 2 * at(b, c, r - 1, q) + at(b, c, r - 1, q + 1) -
                                at(b, c, r + 1, q - 1) - 2 * at(b, c, r + 1, q) - at(b, c, r + 1, q + 1);
              const std::int64_t cell = (r / g.cell) * g.cells_w() + q / g.cell;
              out[s][(b * g.rows_per_sample() + g.lead + cell) * C + c] +=
                  T(std::sqrt(gx * gx + gy * gy) / double(g.cell * g.cell));
            }
    }
  }
};
static_assert(mim::ReconstructionTarget<SobelMagnitude>);

template <class T, class Target = mim::NormalizedPixels>
using HostMae = mim::Mae<kSpec, kDecoder, Target, T>;
// Every scale LocalMIM has (4, 2, 1, 1/2: HOG cells of 1, 2, 4 and 8 pixels), two taps on one block.
using Taps = mim::taps<mim::TapSpec{0, 4, 1}, mim::TapSpec{1, 2, 1}, mim::TapSpec{2, 1, 1}, mim::TapSpec{2, 1, 2}>;
template <class T, class Target = mim::Hog<9>>
using HostLocalMim = mim::LocalMim<kSpec, Taps, kDecoder, Target, T>;

enum class Freezing { none, truncate_two_units, vitfreeze_two_units };

template <class T>
void freeze_like_the_trainer(nn::ViT<kSpec, T>& encoder, Freezing f) {
  if (f == Freezing::none) return;
  // Unit 0 (patch embedding, + cls under truncate) and unit 1 (block 0).
  encoder.patch_embed.proj.weight.freeze();
  encoder.patch_embed.proj.bias.freeze();
  if (f == Freezing::truncate_two_units) encoder.cls_token.freeze();
  nn::ParameterList<T> ps;
  encoder.blocks[0].collect_parameters(ps);
  for (auto* p : ps) p->freeze();
}

using testing::check_against_tape;

template <class T, class Policy, class Target = mim::NormalizedPixels>
void check_mae_against_tape(Freezing freezing, double tolerance) {
  nn::ViT<kSpec, T> encoder(3);
  HostMae<T, Target> objective(4);
  freeze_like_the_trainer(encoder, freezing);
  const auto images = testing::random_tensor<T>({5, kSpec.channels, kSpec.image, kSpec.image}, 11);
  const auto masks = mim::Random<750>::make(5, kSpec.grid(), kSpec.grid(), 7, 0);
  const double weight_sum = check_against_tape<model::Mae<Cpu, Policy, Target>>(encoder, objective, images, masks, tolerance);
  CHECK(weight_sum == doctest::Approx(double(masks.masked()) * 5));
}

template <class T, class Policy, class Target = mim::Hog<9>>
void check_localmim_against_tape(Freezing freezing, bool drop_first_tap, double tolerance) {
  nn::ViT<kSpec, T> encoder(5);
  HostLocalMim<T, Target> objective(6);
  freeze_like_the_trainer(encoder, freezing);
  if (drop_first_tap) objective.drop_tap(0);
  const auto images = testing::random_tensor<T>({3, kSpec.channels, kSpec.image, kSpec.image}, 13);
  const auto masks = mim::Random<750>::make(3, kSpec.grid(), kSpec.grid(), 9, 1);
  check_against_tape<model::LocalMim<Cpu, Policy, Target>>(encoder, objective, images, masks, tolerance);
}

template <class T, class Policy>
void check_micl_against_tape(Freezing freezing, double tolerance) {
  nn::ViT<kSpec, T> encoder(7);
  mim::Micl<kSpec, mim::MiclLoss{}, T> objective;
  freeze_like_the_trainer(encoder, freezing);
  const auto images = testing::random_tensor<T>({4, kSpec.channels, kSpec.image, kSpec.image}, 17);
  const auto masks = mim::RandomRatio{500, 2}.make(4, kSpec.grid(), kSpec.grid(), 5, 2);
  check_against_tape<model::Micl<Cpu, Policy>>(encoder, objective, images, masks, tolerance);
}

}  // namespace

TEST_CASE("model::Mae on the CPU equals the tape: loss and every gradient, double") {
  check_mae_against_tape<double, Fp64>(Freezing::none, 1e-10);
}
TEST_CASE("model::Mae on the CPU equals the tape with a frozen prefix under truncate semantics") {
  check_mae_against_tape<double, Fp64>(Freezing::truncate_two_units, 1e-10);
}
TEST_CASE("model::Mae on the CPU equals the tape with frozen blocks and a training cls token (vitfreeze semantics)") {
  check_mae_against_tape<double, Fp64>(Freezing::vitfreeze_two_units, 1e-10);
}
TEST_CASE("model::Mae on the CPU equals the tape in float") {
  check_mae_against_tape<float, Fp32>(Freezing::none, 1e-5);
}

TEST_CASE("model::LocalMim on the CPU equals the tape at every scale (4, 2, 1, 1/2), double") {
  check_localmim_against_tape<double, Fp64>(Freezing::none, false, 1e-10);
}
TEST_CASE("model::LocalMim on the CPU equals the tape with a frozen prefix and a dropped tap") {
  check_localmim_against_tape<double, Fp64>(Freezing::truncate_two_units, true, 1e-10);
}
TEST_CASE("model::LocalMim on the CPU equals the tape under vitfreeze semantics") {
  check_localmim_against_tape<double, Fp64>(Freezing::vitfreeze_two_units, true, 1e-10);
}
TEST_CASE("model::LocalMim on the CPU equals the tape in float") {
  check_localmim_against_tape<float, Fp32>(Freezing::none, false, 1e-5);
}

TEST_CASE("model::Micl on the CPU equals the tape: two views per image through one encoder, double") {
  check_micl_against_tape<double, Fp64>(Freezing::none, 1e-10);
}
TEST_CASE("model::Micl on the CPU equals the tape with a frozen prefix") {
  check_micl_against_tape<double, Fp64>(Freezing::truncate_two_units, 1e-10);
}

TEST_CASE("targets compose with objectives: HOG on the MAE decoder, pixels on LocalMIM's taps, explicit equals tape") {
  check_mae_against_tape<double, Fp64, mim::Hog<9>>(Freezing::none, 1e-10);
  check_localmim_against_tape<double, Fp64, mim::NormalizedPixels>(Freezing::none, false, 1e-10);
  check_localmim_against_tape<double, Fp64, mim::Pixels>(Freezing::truncate_two_units, true, 1e-10);
}
TEST_CASE("a user-defined target (Sobel magnitude, written in this test) trains MAE and LocalMIM, explicit equals tape") {
  check_mae_against_tape<double, Fp64, SobelMagnitude>(Freezing::none, 1e-10);
  check_localmim_against_tape<double, Fp64, SobelMagnitude>(Freezing::none, false, 1e-10);
  // The target's values: a vertical step edge in one channel gives magnitude in the cells along it only.
  Tensor<double> images(Shape{1, 1, 8, 8});
  for (std::int64_t r = 0; r < 8; ++r)
    for (std::int64_t q = 4; q < 8; ++q) images[r * 8 + q] = 1.0;
  const auto t = mim::target_values<SobelMagnitude>(images, 4);  // 2 x 2 cells
  CHECK(t.shape() == Shape{1, 4, 1});
  // |gx| = 4 on columns 3 and 4 (either side of the edge), 0 elsewhere: 4 such pixels per 16-pixel cell.
  for (int c = 0; c < 4; ++c) CHECK(t[c] == doctest::Approx(1.0));
}

TEST_CASE("model::Encoder evaluation on the full sequence (no Saved record) equals the tape encoder's forward") {
  nn::ViT<kSpec, double> encoder(9);
  const auto images = testing::random_tensor<double>({3, kSpec.channels, kSpec.image, kSpec.image}, 19);
  Tape<double> tape;
  NoGrad<double> no_grad(tape);
  const Tensor<double> want = tape.value(encoder.forward(tape, images).tokens);
  cpu::CpuContext ctx;
  const model::Encoder<Cpu, Fp64> explicit_encoder(ctx, encoder);
  Tensor<std::int32_t> every_patch(Shape{3, kSpec.tokens()});
  for (std::int64_t i = 0; i < every_patch.numel(); ++i) every_patch[i] = std::int32_t(i % kSpec.tokens());
  const Tensor<double> got = explicit_encoder.forward(ctx, images, every_patch.data(), 3, kSpec.tokens(), 1, nullptr);
  REQUIRE(got.shape() == want.shape());
  double worst = 0;
  for (std::int64_t i = 0; i < got.numel(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]));
  CHECK(worst < 1e-12);
}

TEST_CASE("the explicit step allocates nothing in the steady state: every buffer comes back from the pool") {
  nn::ViT<kSpec, float> encoder(3);
  HostLocalMim<float> objective(4);
  cpu::CpuContext ctx;
  model::LocalMim<Cpu, Fp32> explicit_model(ctx, encoder, objective);
  const auto images = testing::random_tensor<float>({4, kSpec.channels, kSpec.image, kSpec.image}, 11);
  auto step = [&](std::uint64_t s) {
    const auto masks = mim::Random<750>::make(4, kSpec.grid(), kSpec.grid(), 7, s);
    double loss[2];
    explicit_model.forward_backward(ctx, images, explicit_model.upload_masks(ctx, masks), loss);
  };
  step(0);
  step(1);
  const PoolStats settled = ctx.pool_stats();
  CHECK(settled.malloc_calls > 0);
  for (std::uint64_t s = 2; s < 6; ++s) step(s);
  CHECK(ctx.pool_stats().malloc_calls == settled.malloc_calls);
  CHECK(ctx.pool_stats().bytes_in_use == 0);  // nothing outlives a step
}
