// LocalMIM: the spatial ops (hand values, gradient checks, ConvTranspose2d equivalence with a direct
// loop), the scale heads (layers, names, shapes, PyTorch init), the whole objective's gradient in
// double, geometry on a Fashion-MNIST-like spec, dropping a tap, and a short training run.
#include <doctest/doctest.h>

#include <cmath>
#include <map>

#include "vitfreeze/autograd/gradcheck.hpp"
#include "vitfreeze/freeze/freeze.hpp"
#include "vitfreeze/mim/localmim.hpp"
#include "vitfreeze/testing/random_tensor.hpp"
#include "vitfreeze/train/pretrainer.hpp"

using namespace vitfreeze;
using testing::random_tensor;
using D = double;

namespace {
Var<D> probe(Tape<D>& t, Var<D> out, std::uint64_t seed = 99) {
  return ops::weighted_sum(t, out, random_tensor<D>(t.value(out).shape(), seed));
}

void require_close(const GradCheckReport& r, double bound = 1e-6) {
  INFO(r.worst);
  CHECK(r.entries > 0);
  CHECK(r.max_error < bound);
}

Tensor<float> values(std::initializer_list<float> v, const Shape& shape) {
  Tensor<float> t(shape);
  std::copy(v.begin(), v.end(), t.data());
  return t;
}

template <class T>
std::map<std::string, Shape> shapes_by_name(nn::ParameterList<T>& ps) {
  std::map<std::string, Shape> m;
  for (auto* p : ps) m[p->name] = p->value.shape();
  return m;
}
}  // namespace

// ---- spatial ops -------------------------------------------------------------------------------------

TEST_CASE("pixel_shuffle_2x2: input channel 4c + 2dy + dx goes to pixel (dy, dx) of output channel c") {
  Tape<float> tape;
  // One pixel, 8 channels -> a 2x2 map of 2 channels; bias (10, 20).
  Var<float> x = tape.constant(values({0, 1, 2, 3, 4, 5, 6, 7}, {1, 1, 1, 8}));
  Var<float> b = tape.constant(values({10, 20}, {2}));
  const Tensor<float>& y = tape.value(ops::pixel_shuffle_2x2(tape, x, b));
  REQUIRE(y.shape() == Shape{1, 2, 2, 2});
  CHECK(y.at(0, 0, 0, 0) == 10);
  CHECK(y.at(0, 0, 0, 1) == 24);
  CHECK(y.at(0, 0, 1, 0) == 11);
  CHECK(y.at(0, 0, 1, 1) == 25);
  CHECK(y.at(0, 1, 0, 0) == 12);
  CHECK(y.at(0, 1, 0, 1) == 26);
  CHECK(y.at(0, 1, 1, 0) == 13);
  CHECK(y.at(0, 1, 1, 1) == 27);
  // Two pixels side by side: the second lands in columns 2-3.
  Var<float> x2 = tape.constant(values({1, 2, 3, 4, 5, 6, 7, 8}, {1, 1, 2, 4}));
  const Tensor<float>& y2 = tape.value(ops::pixel_shuffle_2x2(tape, x2));
  REQUIRE(y2.shape() == Shape{1, 2, 4, 1});
  const float want[8] = {1, 2, 5, 6, 3, 4, 7, 8};
  for (int i = 0; i < 8; ++i) CHECK(y2[i] == want[i]);
  CHECK_THROWS_AS(ops::pixel_shuffle_2x2(tape, tape.constant(Tensor<float>(Shape{1, 1, 1, 6}))), ShapeError);
}

TEST_CASE("avg_pool_2x2: mean of each 2x2 block, per channel") {
  Tape<float> tape;
  // [1, 2, 4, 2]: channel 0 = 0..7 row-major, channel 1 = 10 x channel 0.
  Tensor<float> x(Shape{1, 2, 4, 2});
  for (int p = 0; p < 8; ++p) x[2 * p] = float(p), x[2 * p + 1] = 10.0f * float(p);
  const Tensor<float>& y = tape.value(ops::avg_pool_2x2(tape, tape.constant(x)));
  REQUIRE(y.shape() == Shape{1, 1, 2, 2});
  CHECK(y.at(0, 0, 0, 0) == doctest::Approx((0 + 1 + 4 + 5) / 4.0));
  CHECK(y.at(0, 0, 1, 0) == doctest::Approx((2 + 3 + 6 + 7) / 4.0));
  CHECK(y.at(0, 0, 1, 1) == doctest::Approx(45.0));
  CHECK_THROWS_AS(ops::avg_pool_2x2(tape, tape.constant(Tensor<float>(Shape{1, 3, 4, 1}))), ShapeError);
}

TEST_CASE("gradcheck: pixel_shuffle_2x2 (input, bias) and avg_pool_2x2") {
  auto x = random_tensor<D>({2, 2, 3, 12}, 1), b = random_tensor<D>({3}, 2), m = random_tensor<D>({2, 4, 6, 3}, 3);
  Var<D> vx, vb, vm;
  auto shuffle = [&](Tape<D>& t) {
    vx = t.leaf(x), vb = t.leaf(b);
    return probe(t, ops::pixel_shuffle_2x2(t, vx, vb));
  };
  require_close(check_gradients(shuffle, {grad_input("x", x, vx), grad_input("bias", b, vb)}));
  auto pool = [&](Tape<D>& t) { return probe(t, ops::avg_pool_2x2(t, vm = t.leaf(m))); };
  require_close(check_gradients(pool, {grad_input("x", m, vm)}, {.max_entries_per_input = 144}));
}

TEST_CASE("ConvTranspose2x2 equals PyTorch's ConvTranspose2d(k=2, s=2) computed by a direct loop") {
  const int B = 2, Cin = 3, Cout = 2, h = 2, w = 3;
  auto torch_w = random_tensor<D>({Cin, Cout, 2, 2}, 11), bias = random_tensor<D>({Cout}, 12);
  auto input = random_tensor<D>({B, Cin, h, w}, 13);  // NCHW, as PyTorch sees it

  // Direct transposed convolution: stride = kernel, so each input pixel owns a 2x2 output block.
  Tensor<D> want(Shape{B, Cout, 2 * h, 2 * w});
  for (int b = 0; b < B; ++b)
    for (int co = 0; co < Cout; ++co)
      for (int oy = 0; oy < 2 * h; ++oy)
        for (int ox = 0; ox < 2 * w; ++ox) {
          double s = bias[co];
          for (int ci = 0; ci < Cin; ++ci) s += input.at(b, ci, oy / 2, ox / 2) * torch_w.at(ci, co, oy % 2, ox % 2);
          want.at(b, co, oy, ox) = s;
        }

  mim::ConvTranspose2x2<D> conv("up", Cin, Cout);
  conv.load_torch_weight(torch_w);
  conv.bias.value.copy_from(bias);
  // Documented mapping: weight[4co + 2ky + kx][ci] = torch[ci][co][ky][kx].
  CHECK(conv.weight.value.at(4 * 1 + 2 * 1 + 0, 2) == torch_w.at(2, 1, 1, 0));
  const Tensor<D> round_trip = conv.torch_weight();
  for (std::int64_t i = 0; i < torch_w.numel(); ++i) REQUIRE(round_trip[i] == torch_w[i]);

  Tensor<D> nhwc(Shape{B, h, w, Cin});
  for (int b = 0; b < B; ++b)
    for (int ci = 0; ci < Cin; ++ci)
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) nhwc.at(b, y, x, ci) = input.at(b, ci, y, x);
  Tape<D> tape;
  const Tensor<D>& got = tape.value(conv(tape, tape.constant(nhwc)));
  REQUIRE(got.shape() == Shape{B, 2 * h, 2 * w, Cout});
  for (int b = 0; b < B; ++b)
    for (int co = 0; co < Cout; ++co)
      for (int oy = 0; oy < 2 * h; ++oy)
        for (int ox = 0; ox < 2 * w; ++ox) REQUIRE(got.at(b, oy, ox, co) == doctest::Approx(want.at(b, co, oy, ox)).epsilon(1e-12));
}

TEST_CASE("ConvTranspose2x2 default init uses PyTorch's fan_in = 4 * out_channels, not in_channels") {
  mim::ConvTranspose2x2<float> conv("up", 64, 4);  // bound 1/sqrt(16) = 0.25 (1/sqrt(64) would be 0.125)
  conv.init_default(5);
  float wmax = 0, bmax = 0;
  for (std::int64_t i = 0; i < conv.weight.value.numel(); ++i) wmax = std::max(wmax, std::abs(conv.weight.value[i]));
  for (std::int64_t i = 0; i < conv.bias.value.numel(); ++i) bmax = std::max(bmax, std::abs(conv.bias.value[i]));
  CHECK(wmax <= 0.25f);
  CHECK(wmax > 0.24f);  // 1024 uniform draws reach close to the bound
  CHECK(bmax <= 0.25f);
  CHECK(conv.weight.decay);
  CHECK_FALSE(conv.bias.decay);
}

// ---- scale heads ---------------------------------------------------------------------------------------

TEST_CASE("ScaleHead: LocalMIM's layers, names (pred.N = nn.Sequential index) and output grid per scale") {
  const int Dd = 16, g = 4, out = 27, B = 2;
  struct Case {
    int num, den;
    std::map<std::string, Shape> params;
    int grid;
  };
  const std::vector<Case> cases = {
      {4, 1,
       {{"d.pred.0.weight", {32, 16}}, {"d.pred.0.bias", {8}}, {"d.pred.1.weight", {8}}, {"d.pred.1.bias", {8}},
        {"d.pred.3.weight", {16, 8}}, {"d.pred.3.bias", {4}}, {"d.pred.4.weight", {27, 4}}, {"d.pred.4.bias", {27}}},
       16},
      {2, 1, {{"d.pred.0.weight", {32, 16}}, {"d.pred.0.bias", {8}}, {"d.pred.1.weight", {27, 8}}, {"d.pred.1.bias", {27}}}, 8},
      {1, 1, {{"d.pred.0.weight", {27, 16}}, {"d.pred.0.bias", {27}}}, 4},
      {1, 2, {{"d.pred.1.weight", {27, 16}}, {"d.pred.1.bias", {27}}}, 2},
  };
  for (const Case& c : cases) {
    CAPTURE(c.num);
    CAPTURE(c.den);
    mim::ScaleHead<float> head("d.pred", Dd, g, c.num, c.den, out);
    head.init(1);
    nn::ParameterList<float> ps;
    head.collect_parameters(ps);
    CHECK(shapes_by_name(ps) == c.params);
    CHECK(head.output_grid() == c.grid);
    CHECK(head.projection().weight.file_shape == Shape{27, head.projection().in_features(), 1, 1});
    Tape<float> tape;
    Var<float> x = tape.leaf(random_tensor<float>({B, g * g, Dd}, 3));
    CHECK(tape.value(head(tape, x)).shape() == Shape{B, std::int64_t(c.grid) * c.grid, out});
  }
  CHECK_THROWS_AS(mim::ScaleHead<float>("d.pred", Dd, g, 8, 1, out), ConfigError);
  CHECK_THROWS_AS(mim::ScaleHead<float>("d.pred", Dd, 3, 1, 2, out), ConfigError);
}

TEST_CASE("ScaleHead 1/2: each output cell is the 1x1 convolution of the mean of its 2x2 token block") {
  mim::ScaleHead<D> head("p", 3, 4, 1, 2, 2);
  head.init(2);
  auto tokens = random_tensor<D>({1, 16, 3}, 4);
  Tape<D> tape;
  const Tensor<D>& y = tape.value(head(tape, tape.constant(tokens)));
  const auto& W = head.projection().weight.value;
  const auto& bias = head.projection().bias.value;
  // Cell (1, 0) of the 2x2 output covers tokens at rows 2-3, columns 0-1: 8, 9, 12, 13.
  for (int o = 0; o < 2; ++o) {
    double want = bias[o];
    for (int c = 0; c < 3; ++c)
      want += W.at(o, c) * (tokens.at(0, 8, c) + tokens.at(0, 9, c) + tokens.at(0, 12, c) + tokens.at(0, 13, c)) / 4;
    CHECK(y.at(0, 2, o) == doctest::Approx(want).epsilon(1e-12));
  }
}

// ---- the objective ---------------------------------------------------------------------------------------

namespace {
constexpr mim::DecoderSpec kTinyDecoder{.dim = 8, .depth = 1, .heads = 2, .mlp_ratio = 2};

// Every parameter of encoder and objective except the encoder's final norm (unused by LocalMIM).
template <class Encoder, class Objective>
std::vector<GradCheckInput> all_inputs(Encoder& encoder, Objective& objective) {
  nn::ParameterList<D> ps;
  encoder.collect_parameters(ps);
  objective.collect_parameters(ps);
  std::vector<GradCheckInput> inputs;
  for (auto* p : ps)
    if (p != &encoder.norm.weight && p != &encoder.norm.bias) inputs.push_back(grad_input(*p));
  return inputs;
}

template <ViTSpec S, class Objective>
void check_objective_gradient(std::uint64_t seed) {
  nn::ViT<S, D> encoder(seed);
  Objective objective(seed + 1);
  const auto images = random_tensor<D>({2, S.channels, S.image, S.image}, seed + 2, -2, 2);
  const auto masks = mim::Random<500>::make(2, S.grid(), S.grid(), seed, 0);
  auto loss = [&](Tape<D>& t) { return objective.forward(t, encoder, images, masks).loss; };
  auto inputs = all_inputs(encoder, objective);
  nn::ParameterList<D> ps;
  objective.collect_parameters(ps);
  CHECK(inputs.size() > ps.size() + 10);
  require_close(check_gradients(loss, std::move(inputs), {.max_entries_per_input = 4}), 1e-5);
  // The encoder's final norm is never run, so it gets no gradient.
  CHECK(encoder.norm.weight.grad.empty());
}
}  // namespace

TEST_CASE("gradcheck: LocalMIM objective w.r.t. every parameter (scales 2, 1, 1/2 on a 4x4 grid)") {
  constexpr ViTSpec S{.image = 8, .channels = 3, .patch = 2, .dim = 16, .depth = 4, .heads = 2, .mlp_ratio = 2};
  using Taps = mim::taps<mim::TapSpec{1, 2, 1}, mim::TapSpec{2, 1, 1}, mim::TapSpec{3, 1, 2}>;
  check_objective_gradient<S, mim::LocalMim<S, Taps, kTinyDecoder, mim::Hog<4>, D>>(10);
}

TEST_CASE("gradcheck: LocalMIM objective with the scale-4 head (ConvT, LayerNorm2d, GELU, ConvT) on a 2x2 grid") {
  constexpr ViTSpec S{.image = 8, .channels = 1, .patch = 4, .dim = 16, .depth = 2, .heads = 2, .mlp_ratio = 2};
  using Taps = mim::taps<mim::TapSpec{0, 4, 1}, mim::TapSpec{1, 1, 2}>;
  static_assert(mim::LocalMim<S, Taps, kTinyDecoder, mim::Hog<3>, D>::cell(0) == 1);
  check_objective_gradient<S, mim::LocalMim<S, Taps, kTinyDecoder, mim::Hog<3>, D>>(20);
}

TEST_CASE("LocalMIM on a Fashion-MNIST-like spec: 28x28x1, patch 2 -> 14x14, scales 2, 1, 1/2 feasible, 4 not") {
  constexpr ViTSpec S{.image = 28, .channels = 1, .patch = 2, .dim = 32, .depth = 4, .heads = 2, .mlp_ratio = 2};
  static_assert(!mim::scale_is_feasible(S.image, S.patch, 4, 1));  // tests/compile_fail: a compile error
  using Taps = mim::taps<mim::TapSpec{1, 2, 1}, mim::TapSpec{2, 1, 1}, mim::TapSpec{3, 1, 2}>;
  using Objective = mim::LocalMim<S, Taps, mim::DecoderSpec{.dim = 16, .depth = 1, .heads = 2}>;
  static_assert(Objective::out_dim(0) == 9 && Objective::tap_count() == 3 && Objective::tap_block(2) == 3);
  static_assert(Objective::cell(0) == 1 && Objective::cell(1) == 2 && Objective::cell(2) == 4);

  nn::ViT<S, float> encoder(1);
  Objective objective(2);
  auto images = random_tensor<float>({2, 1, 28, 28}, 3, -1, 2);
  auto masks = mim::Random<750>::make(2, 14, 14, 0, 0);
  Tape<float> tape;
  auto out = objective.forward(tape, encoder, images, masks);
  const std::int64_t cells[3] = {28 * 28, 14 * 14, 7 * 7};
  double sum = 0;
  for (int k = 0; k < 3; ++k) {
    CAPTURE(k);
    CHECK(tape.value(out.predictions[k]).shape() == Shape{2, cells[k], 9});
    CHECK(out.targets[k].shape() == Shape{2, cells[k], 9});
    sum += tape.value(out.tap_losses[k])[0];
  }
  CHECK(tape.value(out.loss)[0] == doctest::Approx(sum));
  // Tap 0 (scale 2) by hand: cell (Y, X) of the 28x28 grid lies in patch (Y/2, X/2) and is weighted
  // by that patch's mask bit; loss = sum_p M[p] mean_c (pred - target)^2 / sum_p M[p].
  {
    const Tensor<float>& pred = tape.value(out.predictions[0]);
    double num = 0, den = 0;
    for (int b = 0; b < 2; ++b)
      for (int Y = 0; Y < 28; ++Y)
        for (int X = 0; X < 28; ++X) {
          const double m = masks.mask.at(b, (Y / 2) * 14 + X / 2);
          double se = 0;
          for (int c = 0; c < 9; ++c) se += std::pow(double(pred.at(b, Y * 28 + X, c)) - out.targets[0].at(b, Y * 28 + X, c), 2);
          num += m * se / 9, den += m;
        }
    CHECK(den == 2 * 4 * (196 - 49));
    CHECK(tape.value(out.tap_losses[0])[0] == doctest::Approx(num / den).epsilon(1e-5));
  }
  // The targets are the HOG features of the images at each tap's pool.
  const auto hog2 = mim::hog(images, 9, 2);
  for (std::int64_t i = 0; i < hog2.numel(); ++i) REQUIRE(out.targets[1][i] == hog2[i]);

  // Parameters: tap norms and decoders under LocalMIM's names, no encoder norm.
  nn::ParameterList<float> ps;
  objective.collect_parameters(ps);
  auto names = shapes_by_name(ps);
  CHECK(names.count("norm.0.weight") == 1);
  CHECK(names.count("decoder.2.pred.1.weight") == 1);  // 1/2: pred.0 is the pool
  // LocalMIM's MAE_Decoder names (not facebookresearch/mae's decoder_* ones)
  CHECK(names.count("decoder.0.embed.weight") == 1);
  CHECK(names.count("decoder.0.mask_token") == 1);
  CHECK(names.count("decoder.0.blocks.0.attn.qkv.weight") == 1);
  CHECK(names.count("decoder.0.norm.bias") == 1);
  CHECK(names.count("norm.weight") == 0);
  nn::ParameterList<float> tap1;
  objective.collect_tap_parameters(1, tap1);
  CHECK(tap1.front()->name == "norm.1.weight");
  CHECK(tap1.back()->name == "decoder.1.pred.0.bias");  // scale 1: pred.0 is the Conv1x1
}

TEST_CASE("the ViT-B default: taps after blocks 1, 3, 9, 11 at scales 4, 2, 1, 1/2, decoder 256 wide, 1 block, 8 heads") {
  using Objective = mim::LocalMim<specs::base()>;
  static_assert(Objective::tap_count() == 4);
  static_assert(Objective::tap_block(0) == 1 && Objective::tap_block(1) == 3 && Objective::tap_block(2) == 9 &&
                Objective::tap_block(3) == 11);
  static_assert(Objective::cell(0) == 4 && Objective::cell(1) == 8 && Objective::cell(2) == 16 &&
                Objective::cell(3) == 32);  // spec §2.4: pool_k = [4, 8, 16, 32]
  static_assert(Objective::out_dim(0) == 27 && mim::kLocalMimDecoder.dim == 256 && mim::kLocalMimDecoder.depth == 1 &&
                mim::kLocalMimDecoder.heads == 8);
}

TEST_CASE("drop_tap: the tap's loss term and its nodes leave the tape, its parameters stop training") {
  constexpr ViTSpec S{.image = 8, .channels = 3, .patch = 2, .dim = 16, .depth = 4, .heads = 2, .mlp_ratio = 2};
  using Taps = mim::taps<mim::TapSpec{1, 2, 1}, mim::TapSpec{2, 1, 1}, mim::TapSpec{3, 1, 2}>;
  using Objective = mim::LocalMim<S, Taps, kTinyDecoder, mim::Hog<4>, float>;
  nn::ViT<S, float> encoder(1);
  Objective objective(2);
  const auto images = random_tensor<float>({2, 3, 8, 8}, 3, -2, 2);
  const auto masks = mim::Random<750>::make(2, 4, 4, 0, 0);

  Tape<float> tape;
  auto before = objective.forward(tape, encoder, images, masks);
  const double loss_before = tape.value(before.loss)[0], term0 = tape.value(before.tap_losses[0])[0];
  const std::size_t nodes_before = tape.node_count();

  // The nodes one tap records: norm + decoder + head on its tap, then masked_mse and one add.
  std::size_t tap_nodes = 0;
  {
    Tape<float> t;
    Var<float> hidden = t.leaf(random_tensor<float>({2, 1 + masks.keep, S.dim}, 4));
    objective.head(0)(t, objective.decoder(0)(t, objective.tap_norm(0)(t, hidden), masks.ids_restore));
    tap_nodes = t.node_count() + 2;
  }

  objective.drop_tap(0);
  CHECK_FALSE(objective.tap_active(0));
  CHECK(objective.active_tap_count() == 2);
  tape.reset();
  auto after = objective.forward(tape, encoder, images, masks);
  CHECK_FALSE(after.tap_losses[0].valid());
  CHECK_FALSE(after.predictions[0].valid());
  CHECK(after.targets[0].empty());
  CHECK(tape.value(after.loss)[0] == doctest::Approx(loss_before - term0).epsilon(1e-5));
  CHECK(nodes_before - tape.node_count() == tap_nodes);

  tape.backward(after.loss);
  nn::ParameterList<float> dropped, kept;
  objective.collect_tap_parameters(0, dropped);
  objective.collect_tap_parameters(1, kept);
  for (auto* p : dropped) {
    CHECK_FALSE(p->trainable);
    CHECK(p->grad.empty());
  }
  for (auto* p : kept) CHECK_FALSE(p->grad.empty());

  objective.drop_tap(1);
  objective.drop_tap(2);
  tape.reset();
  CHECK_THROWS_AS(objective.forward(tape, encoder, images, masks), ConfigError);
}

TEST_CASE("LocalMIM pretraining: 20 steps with Random<750> masks on synthetic images, the loss falls") {
  constexpr ViTSpec S{.image = 16, .channels = 1, .patch = 2, .dim = 32, .depth = 4, .heads = 4, .mlp_ratio = 2};
  using Taps = mim::taps<mim::TapSpec{1, 2, 1}, mim::TapSpec{3, 1, 2}>;
  using Objective = mim::LocalMim<S, Taps, mim::DecoderSpec{.dim = 32, .depth = 1, .heads = 4}>;
  // Stripes of four orientations and periods: each image has clear, learnable gradient directions.
  Tensor<float> images(Shape{16, 1, 16, 16});
  RandomStream rng(1, RngPurpose::test);
  for (int n = 0; n < 16; ++n)
    for (int y = 0; y < 16; ++y)
      for (int x = 0; x < 16; ++x) {
        const int cls = n % 4, v = cls == 0 ? x : cls == 1 ? y : cls == 2 ? x + y : x - y + 16;
        images.at(n, 0, y, x) = float(((v / (2 + n % 3)) % 2) * 2.0 - 1.0 + 0.2 * rng.uniform());
      }

  const int steps = 20;
  nn::ViT<S, float> encoder(1);
  Objective objective(2);
  freeze::FreezeController controller(freeze::RuntimeSchedule{freeze::Spacing::linear, 0.5, false}.fractions(S.depth + 1),
                                      {1, 0, steps}, {.mode = freeze::LrMode::global_hard_freeze, .base_lr = 2e-3});
  optim::AdamW<float> adam;
  train::PretrainOptions opt;
  opt.epochs = 1;
  opt.progress = false;
  train::Pretrainer trainer(encoder, objective, mim::Random<750>{}, controller, adam, opt);
  std::vector<double> losses;
  for (int g = 0; g < steps; ++g) losses.push_back(trainer.step(images, g));
  auto mean = [&](int a, int b) {
    double s = 0;
    for (int i = a; i < b; ++i) s += losses[std::size_t(i)];
    return s / (b - a);
  };
  INFO("first 4 steps " << mean(0, 4) << ", last 4 steps " << mean(steps - 4, steps));
  CHECK(mean(steps - 4, steps) < 0.8 * mean(0, 4));
  CHECK(adam.has_state(objective.head(0).upsample1()->weight));
  CHECK_FALSE(adam.has_state(encoder.norm.weight));  // unused by LocalMIM: never updated
}

TEST_CASE("LocalMIM in the trainer: a tap freezes with its block (dropped, no gradients, no optimiser state)") {
  constexpr ViTSpec S{.image = 16, .channels = 1, .patch = 2, .dim = 32, .depth = 4, .heads = 4, .mlp_ratio = 2};
  using Taps = mim::taps<mim::TapSpec{0, 2, 1}, mim::TapSpec{3, 1, 2}>;  // tap 0 after block 0 = unit 1
  using Objective = mim::LocalMim<S, Taps, mim::DecoderSpec{.dim = 32, .depth = 1, .heads = 4}>;
  const auto images = random_tensor<float>({8, 1, 16, 16}, 4);
  const int steps = 24;
  nn::ViT<S, float> encoder(1);
  Objective objective(2);
  // linear 0.5 over 5 units, no warmup: unit 1 (block 0 + tap 0) freezes at j > 24 * 0.625 = 15.
  freeze::FreezeController controller(freeze::RuntimeSchedule{freeze::Spacing::linear, 0.5, true}.fractions(S.depth + 1),
                                      {1, 0, steps}, {.mode = freeze::LrMode::global_hard_freeze, .base_lr = 1e-3});
  optim::AdamW<float> adam;
  train::PretrainOptions opt;
  opt.epochs = 1;
  opt.progress = false;
  train::Pretrainer trainer(encoder, objective, mim::Random<750>{}, controller, adam, opt);
  // the tap's parameters are in its block's unit, the last tap's in the last unit
  nn::ParameterList<float> tap0;
  objective.collect_tap_parameters(0, tap0);
  const auto& unit1 = trainer.units()[1];
  CHECK(std::find(unit1.begin(), unit1.end(), tap0.front()) != unit1.end());
  for (int g = 0; g < 16; ++g) trainer.step(images, g);
  CHECK(objective.tap_active(0));
  CHECK(adam.has_state(*tap0.front()));
  const double before = trainer.step(images, 16);  // j = 16 > 15: unit 1 freezes before this step
  CHECK(std::isfinite(before));
  CHECK_FALSE(controller.is_active(1));
  CHECK_FALSE(objective.tap_active(0));
  for (auto* p : tap0) {
    CHECK(p->grad.empty());
    CHECK_FALSE(adam.has_state(*p));
  }
  CHECK(objective.tap_active(1));
}
