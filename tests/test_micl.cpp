// MiCL (peers spec §4): the t-vMF kernel's test vectors, the symmetric InfoNCE against a plain
// re-computation, the encoder's split views against encoding each view alone, a gradient check of
// the whole objective, and a short pretraining run whose loss falls.
#include <doctest/doctest.h>

#include <cmath>

#include "vitfreeze/autograd/gradcheck.hpp"
#include "vitfreeze/data/loader.hpp"
#include "vitfreeze/freeze/freeze.hpp"
#include "vitfreeze/mim/micl.hpp"
#include "vitfreeze/testing/random_tensor.hpp"
#include "vitfreeze/testing/synthetic.hpp"
#include "vitfreeze/train/pretrainer.hpp"

using namespace vitfreeze;
using testing::random_tensor;

namespace {

// The loss written out with loops, straight from the formulas (no shared code with the kernel).
double reference_loss(const Tensor<double>& z, double kappa, double tau) {
  const std::int64_t N = z.dim(0) / 2, D = z.dim(1);
  auto unit = [&](std::int64_t row, std::int64_t k) {
    double norm = 0;
    for (std::int64_t j = 0; j < D; ++j) norm += z.at(row, j) * z.at(row, j);
    return z.at(row, k) / std::sqrt(norm);
  };
  std::vector<double> S(std::size_t(N * N));
  for (std::int64_t i = 0; i < N; ++i)
    for (std::int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (std::int64_t k = 0; k < D; ++k) s += unit(2 * i, k) * unit(2 * j + 1, k);
      S[std::size_t(i * N + j)] = 0.5 * (1 + s) / (1 + kappa * (1 - s)) / tau;
    }
  double loss = 0;
  for (std::int64_t i = 0; i < N; ++i) {
    double row = 0, column = 0;
    for (std::int64_t j = 0; j < N; ++j) row += std::exp(S[std::size_t(i * N + j)]), column += std::exp(S[std::size_t(j * N + i)]);
    loss += 0.5 * (std::log(row) - S[std::size_t(i * N + i)]) + 0.5 * (std::log(column) - S[std::size_t(i * N + i)]);
  }
  return loss / double(N);
}

}  // namespace

TEST_CASE("t-vMF kernel: phi(1) = 1, phi(0) = 0.4923, phi(-1) = 0 (kappa 1/64)") {
  CHECK(cpu::tvmf_phi(1.0, 1.0 / 64) == doctest::Approx(1.0).epsilon(1e-15));
  CHECK(cpu::tvmf_phi(0.0, 1.0 / 64) == doctest::Approx(0.5 / (1 + 1.0 / 64)).epsilon(1e-15));
  CHECK(cpu::tvmf_phi(0.0, 1.0 / 64) == doctest::Approx(0.4923).epsilon(1e-4));
  CHECK(cpu::tvmf_phi(-1.0, 1.0 / 64) == 0.0);
  // The derivative against a central difference.
  for (double s : {-0.9, 0.0, 0.7}) {
    const double h = 1e-6, fd = (cpu::tvmf_phi(s + h, 0.3) - cpu::tvmf_phi(s - h, 0.3)) / (2 * h);
    CHECK(cpu::tvmf_phi_derivative(s, 0.3) == doctest::Approx(fd).epsilon(1e-8));
  }
}

TEST_CASE("symmetric InfoNCE: the kernel equals the formula computed with loops, and one image gives 0") {
  for (std::int64_t images : {1, 3, 6}) {
    CAPTURE(images);
    const auto z = random_tensor<double>({2 * images, 7}, std::uint64_t(40 + images), -1, 1);
    Tape<double> tape;
    const double got = double(tape.value(ops::tvmf_info_nce(tape, tape.leaf(z), 1.0 / 64, 0.07))[0]);
    CHECK(got == doctest::Approx(reference_loss(z, 1.0 / 64, 0.07)).epsilon(1e-12));
    if (images == 1) CHECK(got == doctest::Approx(0.0).scale(1.0));
  }
  // Views that agree score lower than views that do not.
  Tensor<double> agree(Shape{4, 2}), swapped(Shape{4, 2});
  const double rows[4][2] = {{1, 0}, {1, 0.1}, {0, 1}, {0.1, 1}};
  for (int r = 0; r < 4; ++r)
    for (int k = 0; k < 2; ++k) agree.at(r, k) = rows[r][k], swapped.at(r, k) = rows[r ^ (r % 2 ? 3 : 0)][k];
  CHECK(reference_loss(agree, 1.0 / 64, 0.07) < reference_loss(swapped, 1.0 / 64, 0.07));
  Tape<double> tape;
  CHECK_THROWS_AS(ops::tvmf_info_nce(tape, tape.leaf(random_tensor<double>({3, 4}, 1)), 1.0 / 64, 0.07), ShapeError);
}

TEST_CASE("encoder views: each view is encoded as if it were the only visible set") {
  constexpr ViTSpec spec{.image = 8, .channels = 1, .patch = 2, .dim = 8, .depth = 2, .heads = 2, .mlp_ratio = 2};
  nn::ViT<spec, double> encoder(3);
  Tensor<double> images = random_tensor<double>({2, 1, 8, 8}, 5);
  const auto masks = mim::SplitView<500>::make(2, 4, 4, 11, 0);  // 8 kept, 4 per view
  REQUIRE(masks.keep == 8);
  Tape<double> tape;
  NoGrad<double> no_grad(tape);
  const Tensor<double> both = tape.value(encoder.forward(tape, images, &masks.ids_keep, {}, true, 2).tokens);
  REQUIRE(both.shape() == Shape{4, 5, 8});
  for (int v = 0; v < 2; ++v) {
    Tensor<std::int32_t> ids(Shape{2, 4});
    for (int b = 0; b < 2; ++b)
      for (int k = 0; k < 4; ++k) ids.at(b, k) = masks.ids_keep.at(b, v * 4 + k);
    const Tensor<double> alone = tape.value(encoder.forward(tape, images, &ids).tokens);
    for (int b = 0; b < 2; ++b)
      for (std::int64_t i = 0; i < 5 * 8; ++i) CHECK(both[(b * 2 + v) * 40 + i] == doctest::Approx(alone[b * 40 + i]).epsilon(1e-12));
  }
  CHECK_THROWS_AS(encoder.forward(tape, images, &masks.ids_keep, {}, true, 3), ShapeError);
}

TEST_CASE("gradcheck: the MiCL objective (two views, encoder, InfoNCE) w.r.t. every encoder parameter") {
  constexpr ViTSpec spec{.image = 8, .channels = 2, .patch = 2, .dim = 8, .depth = 2, .heads = 2, .mlp_ratio = 2};
  nn::ViT<spec, double> encoder(1);
  mim::Micl<spec, mim::MiclLoss{.kappa = 0.25, .tau = 0.5}, double> micl;
  nn::ParameterList<double> params = encoder.parameters();
  for (auto* p : params)  // move off the symmetric init so every path carries gradient
    for (std::int64_t i = 0; i < p->value.numel(); ++i) p->value[i] += 0.05 * std::sin(1.3 * double(i) + p->name.size());
  Tensor<double> images = random_tensor<double>({3, 2, 8, 8}, 9);
  const auto masks = mim::SplitView<750>::make(3, 4, 4, 7, 0);  // 4 kept, 2 per view
  std::vector<GradCheckInput> inputs;
  for (auto* p : params) inputs.push_back(grad_input(*p));
  auto r = check_gradients([&](Tape<double>& t) { return micl.forward(t, encoder, images, masks).loss; }, inputs,
                           {.max_entries_per_input = 12});
  INFO(r.worst);
  CHECK(r.entries > 0);
  CHECK(r.max_error < 1e-5);
  Tape<double> tape;
  CHECK_THROWS_AS(micl.forward(tape, encoder, images, mim::Random<750>::make(3, 4, 4, 7, 0)), ConfigError);
}

TEST_CASE("MiCL pretraining on a small subset: the loss falls") {
  constexpr ViTSpec spec{.image = 28, .channels = 1, .patch = 4, .dim = 64, .depth = 4, .heads = 4, .mlp_ratio = 2};
  auto train = testing::stripes(256, 4);
  data::Transform augment{data::RandomResizedCrop{28, 0.5, 1.0, 3.0 / 4.0, 4.0 / 3.0, data::Interpolation::bilinear},
                          std::nullopt, 0.5, data::Normalize::fashion_mnist()};
  data::Loader loader(train, augment, {.batch_size = 32, .last_batch = data::LastBatch::drop, .seed = 3, .workers = 0});
  const int epochs = 4;
  freeze::FreezeController controller(freeze::RuntimeSchedule{freeze::Spacing::cubic, 0.8, false}.fractions(spec.depth + 1),
                                      {epochs, 1, loader.batches_per_epoch()},
                                      {.mode = freeze::LrMode::global_hard_freeze, .base_lr = 1e-3, .min_lr = 1e-5});
  nn::ViT<spec, float> encoder(1);
  mim::Micl<spec> objective;
  optim::AdamW<float> adam;
  train::PretrainOptions opt;
  opt.epochs = epochs;
  opt.progress = false;
  train::Pretrainer trainer(encoder, objective, mim::RandomRatio{750, 2}, controller, adam, opt);
  const auto reports = trainer.fit(loader);
  REQUIRE(reports.size() == std::size_t(epochs));
  INFO(reports.front().mean_loss << " -> " << reports.back().mean_loss);
  CHECK(std::isfinite(reports.back().mean_loss));
  CHECK(reports.back().mean_loss < reports.front().mean_loss - 0.05);
}
