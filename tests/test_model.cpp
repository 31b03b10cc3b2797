// The explicit model (model/) on the CPU backend against the tape, the double-precision oracle:
// the same host modules, the same images and masks; the explicit forward/backward must give the
// tape's loss and every parameter gradient (1e-10 relative in double, 1e-5 in float), with the
// frozen prefixes of both freeze semantics. The tape's own ops are checked against finite
// differences in test_ops_gradcheck.cpp, so this chains the explicit model to that check.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <string>

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

template <class T>
using HostMae = mim::Mae<kSpec, kDecoder, true, T>;
// Every scale LocalMIM has (4, 2, 1, 1/2: HOG cells of 1, 2, 4 and 8 pixels), two taps on one block.
using Taps = mim::taps<mim::TapSpec{0, 4, 1}, mim::TapSpec{1, 2, 1}, mim::TapSpec{2, 1, 1}, mim::TapSpec{2, 1, 2}>;
template <class T>
using HostLocalMim = mim::LocalMim<kSpec, Taps, kDecoder, 9, T>;

template <class T>
std::map<std::string, Tensor<T>> take_gradients(const nn::ParameterList<T>& ps) {
  std::map<std::string, Tensor<T>> out;
  for (auto* p : ps) {
    if (!p->grad.empty()) out[p->name] = p->grad.clone();
    p->zero_grad();
  }
  return out;
}

// max |a - b| / max |a| over each tensor, and every name present in both.
template <class T>
double worst_relative_difference(const std::map<std::string, Tensor<T>>& a, const std::map<std::string, Tensor<T>>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (const auto& [name, x] : a) {
    REQUIRE_MESSAGE(b.count(name), name);
    const Tensor<T>& y = b.at(name);
    double scale = 0, diff = 0;
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      scale = std::max(scale, std::abs(double(x[i])));
      diff = std::max(diff, std::abs(double(x[i]) - double(y[i])));
    }
    const double rel = diff / std::max(scale, 1e-30);
    if (rel > worst) INFO(name << " " << rel);
    worst = std::max(worst, rel);
  }
  return worst;
}

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

template <class T, class Policy>
void check_mae_against_tape(Freezing freezing, double tolerance) {
  nn::ViT<kSpec, T> encoder(3);
  HostMae<T> objective(4);
  freeze_like_the_trainer(encoder, freezing);
  const auto images = testing::random_tensor<T>({5, kSpec.channels, kSpec.image, kSpec.image}, 11);
  const auto masks = mim::Random<750>::make(5, kSpec.grid(), kSpec.grid(), 7, 0);
  nn::ParameterList<T> params = encoder.parameters();
  objective.collect_parameters(params);

  Tape<T> tape;
  auto out = objective.forward(tape, encoder, images, masks);
  const double tape_loss = double(tape.value(out.loss)[0]);
  tape.backward(out.loss);
  const auto tape_grads = take_gradients(params);

  cpu::CpuContext ctx;
  model::Mae<Cpu, Policy> explicit_model(ctx, encoder, objective);
  const auto buffers = explicit_model.upload_masks(ctx, masks);
  double loss[2] = {0, 0};
  explicit_model.forward_backward(ctx, images, buffers, loss);
  const auto model_grads = take_gradients(params);

  CHECK(std::abs(loss[0] - tape_loss) <= tolerance * std::abs(tape_loss));
  CHECK(loss[1] == doctest::Approx(double(masks.masked()) * 5));
  CHECK(worst_relative_difference(tape_grads, model_grads) <= tolerance);
}

template <class T, class Policy>
void check_localmim_against_tape(Freezing freezing, bool drop_first_tap, double tolerance) {
  nn::ViT<kSpec, T> encoder(5);
  HostLocalMim<T> objective(6);
  freeze_like_the_trainer(encoder, freezing);
  if (drop_first_tap) objective.drop_tap(0);
  const auto images = testing::random_tensor<T>({3, kSpec.channels, kSpec.image, kSpec.image}, 13);
  const auto masks = mim::Random<750>::make(3, kSpec.grid(), kSpec.grid(), 9, 1);
  nn::ParameterList<T> params = encoder.parameters();
  objective.collect_parameters(params);

  Tape<T> tape;
  auto out = objective.forward(tape, encoder, images, masks);
  const double tape_loss = double(tape.value(out.loss)[0]);
  tape.backward(out.loss);
  const auto tape_grads = take_gradients(params);

  cpu::CpuContext ctx;
  model::LocalMim<Cpu, Policy> explicit_model(ctx, encoder, objective);
  CHECK(explicit_model.tap_active(0) == !drop_first_tap);
  const auto buffers = explicit_model.upload_masks(ctx, masks);
  double loss[2] = {0, 0};
  explicit_model.forward_backward(ctx, images, buffers, loss);
  const auto model_grads = take_gradients(params);

  CHECK(std::abs(loss[0] - tape_loss) <= tolerance * std::abs(tape_loss));
  CHECK(worst_relative_difference(tape_grads, model_grads) <= tolerance);
}

template <class T, class Policy>
void check_micl_against_tape(Freezing freezing, double tolerance) {
  nn::ViT<kSpec, T> encoder(7);
  mim::Micl<kSpec, mim::MiclLoss{}, T> objective;
  freeze_like_the_trainer(encoder, freezing);
  const auto images = testing::random_tensor<T>({4, kSpec.channels, kSpec.image, kSpec.image}, 17);
  const auto masks = mim::RandomRatio{500, 2}.make(4, kSpec.grid(), kSpec.grid(), 5, 2);
  nn::ParameterList<T> params = encoder.parameters();

  Tape<T> tape;
  auto out = objective.forward(tape, encoder, images, masks);
  const double tape_loss = double(tape.value(out.loss)[0]);
  tape.backward(out.loss);
  const auto tape_grads = take_gradients(params);

  cpu::CpuContext ctx;
  model::Micl<Cpu, Policy> explicit_model(ctx, encoder, objective);
  const auto buffers = explicit_model.upload_masks(ctx, masks);
  double loss[2] = {0, 0};
  explicit_model.forward_backward(ctx, images, buffers, loss);
  const auto model_grads = take_gradients(params);

  CHECK(std::abs(loss[0] - tape_loss) <= tolerance * std::abs(tape_loss));
  CHECK(worst_relative_difference(tape_grads, model_grads) <= tolerance);
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
