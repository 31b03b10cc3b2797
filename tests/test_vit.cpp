// The compile-time ViT encoder: golden values, parameter names and shapes, gradient checks of every
// layer and of the whole encoder, masking, taps, and the frozen prefix.
#include <doctest/doctest.h>

#include <cmath>
#include <map>

#include "vitfreeze/autograd/gradcheck.hpp"
#include "vitfreeze/nn/vit.hpp"
#include "vitfreeze/testing/random_tensor.hpp"

using namespace vitfreeze;
using testing::random_tensor;
using D = double;

namespace {
constexpr ViTSpec kTiny{.image = 8, .channels = 2, .patch = 4, .dim = 8, .depth = 3, .heads = 2, .mlp_ratio = 2};

Var<D> probe(Tape<D>& t, Var<D> out, std::uint64_t seed = 99) {
  return ops::weighted_sum(t, out, random_tensor<D>(t.value(out).shape(), seed));
}

std::vector<GradCheckInput> all_parameters(nn::ParameterList<D> ps) {
  std::vector<GradCheckInput> in;
  for (auto* p : ps) in.push_back(grad_input(*p));
  return in;
}
}  // namespace

TEST_CASE("ViTSpec derived sizes") {
  constexpr ViTSpec tiny28{.image = 28, .channels = 1, .patch = 2, .dim = 192, .depth = 12, .heads = 12};
  static_assert(tiny28.tokens() == 196);
  static_assert(tiny28.patch_dim() == 4);
  static_assert(tiny28.head_dim() == 16);
  static_assert(check_spec<tiny28>());
  CHECK(specs::base().tokens() == 196);
}

TEST_CASE("parameter counts match timm's ViT-Ti/S/B encoders (timm totals less head and pos_embed)") {
  // timm: vit_tiny_patch16_224 5,717,416; vit_small 22,050,664; vit_base 86,567,656 parameters
  // including the 1000-class head and the 197-row position table.
  auto encoder_only = [](std::int64_t total, std::int64_t d) { return total - (d * 1000 + 1000) - 197 * d; };
  CHECK(specs::tiny().parameter_count() == encoder_only(5717416, 192));
  CHECK(specs::small().parameter_count() == encoder_only(22050664, 384));
  CHECK(specs::base().parameter_count() == encoder_only(86567656, 768));

  nn::ViT<specs::tiny(), float> model;
  std::int64_t n = 0;
  for (auto* p : model.parameters()) n += p->value.numel();
  CHECK(n == specs::tiny().parameter_count());
}

TEST_CASE("named parameters have timm names and shapes") {
  nn::ViT<specs::tiny(28, 1, 4), float> model;
  std::map<std::string, Parameter<float>*> by_name;
  for (auto* p : model.parameters()) by_name[p->name] = p;
  CHECK(by_name.size() == 1 + 2 + 12 * 12 + 2);
  CHECK(by_name.at("cls_token")->value.shape() == Shape{1, 1, 192});
  CHECK(by_name.at("patch_embed.proj.weight")->file_shape == Shape{192, 1, 4, 4});
  CHECK(by_name.at("patch_embed.proj.weight")->value.shape() == Shape{192, 16});
  CHECK(by_name.at("patch_embed.proj.bias")->value.shape() == Shape{192});
  CHECK(by_name.at("blocks.0.norm1.weight")->value.shape() == Shape{192});
  CHECK(by_name.at("blocks.0.attn.qkv.weight")->value.shape() == Shape{576, 192});
  CHECK(by_name.at("blocks.0.attn.qkv.bias")->value.shape() == Shape{576});
  CHECK(by_name.at("blocks.0.attn.proj.weight")->value.shape() == Shape{192, 192});
  CHECK(by_name.at("blocks.11.mlp.fc1.weight")->value.shape() == Shape{768, 192});
  CHECK(by_name.at("blocks.11.mlp.fc2.weight")->value.shape() == Shape{192, 768});
  CHECK(by_name.at("norm.bias")->value.shape() == Shape{192});
  // timm's weight-decay rule: no decay on 1-D tensors and biases; cls (3-D) is decayed.
  CHECK(by_name.at("cls_token")->decay);
  CHECK_FALSE(by_name.at("blocks.3.norm2.weight")->decay);
  CHECK_FALSE(by_name.at("blocks.3.mlp.fc1.bias")->decay);
  CHECK(by_name.at("blocks.3.mlp.fc1.weight")->decay);
}

TEST_CASE("sin-cos position table: peers spec §6 test vector") {
  const std::int64_t D = 16, G = 4, q = D / 4;
  auto table = nn::sincos_pos_embed_2d<double>(D, G, G, true);
  CHECK(table.shape() == Shape{1 + G * G, D});
  for (std::int64_t d = 0; d < D; ++d) CHECK(table.at(0, d) == 0.0);  // cls row
  for (std::int64_t i = 0; i < G; ++i)
    for (std::int64_t j = 0; j < G; ++j) {
      const std::int64_t row = 1 + i * G + j;
      CHECK(table.at(row, 0) == doctest::Approx(std::sin(double(j))));
      CHECK(table.at(row, q) == doctest::Approx(std::cos(double(j))));
      CHECK(table.at(row, 2 * q) == doctest::Approx(std::sin(double(i))));
      CHECK(table.at(row, 3 * q) == doctest::Approx(std::cos(double(i))));
      // k = 1: omega = 10000^(-1/4) = 0.1
      CHECK(table.at(row, 1) == doctest::Approx(std::sin(0.1 * double(j))));
    }
}

TEST_CASE("MAE initialisation statistics") {
  nn::ViT<specs::tiny(32, 3, 4), float> model(123);
  auto& w = model.blocks[0].mlp.fc1.weight.value;  // [768, 192]: xavier bound sqrt(6/960)
  double mx = 0, s2 = 0;
  for (std::int64_t i = 0; i < w.numel(); ++i) mx = std::max(mx, double(std::abs(w[i]))), s2 += double(w[i]) * w[i];
  CHECK(mx <= std::sqrt(6.0 / 960.0));
  CHECK(std::sqrt(s2 / w.numel()) == doctest::Approx(std::sqrt(6.0 / 960.0 / 3.0)).epsilon(0.02));
  double c2 = 0;
  for (std::int64_t i = 0; i < 192; ++i) c2 += double(model.cls_token.value[i]) * model.cls_token.value[i];
  CHECK(std::sqrt(c2 / 192) == doctest::Approx(0.02).epsilon(0.15));
  CHECK(model.blocks[0].attn.qkv.bias.value[5] == 0.0f);
  nn::ViT<specs::tiny(32, 3, 4), float> same(123), other(124);
  CHECK(same.blocks[5].attn.qkv.weight.value[77] == model.blocks[5].attn.qkv.weight.value[77]);
  CHECK(other.blocks[5].attn.qkv.weight.value[77] != model.blocks[5].attn.qkv.weight.value[77]);
}

TEST_CASE("gradcheck: each layer (Linear, LayerNorm, Mlp, Attention, Block, PatchEmbed)") {
  auto x = random_tensor<D>({2, 3, 8}, 1);
  Var<D> vx;
  auto check_layer = [&](auto& layer, const char* what) {
    INFO(what);
    nn::ParameterList<D> ps;
    layer.collect_parameters(ps);
    for (auto* p : ps)  // move off the trivial init so every gradient path is exercised
      for (std::int64_t i = 0; i < p->value.numel(); ++i) p->value[i] += 0.1 * std::sin(double(i) + p->name.size());
    auto inputs = all_parameters(ps);
    inputs.push_back(grad_input("x", x, vx));
    auto loss = [&](Tape<D>& t) { return probe(t, layer(t, vx = t.leaf(x))); };
    auto r = check_gradients(loss, inputs);
    INFO(r.worst);
    CHECK(r.max_error < 1e-6);
  };
  nn::Linear<D> linear("fc", 8, 5);
  linear.init_xavier(1);
  check_layer(linear, "Linear");
  nn::LayerNorm<D> ln("ln", 8);
  check_layer(ln, "LayerNorm");
  nn::Mlp<D> mlp("mlp", 8, 16);
  mlp.init_xavier(2);
  check_layer(mlp, "Mlp");
  nn::Attention<D> attn("attn", 8, 2);
  attn.init_xavier(3);
  check_layer(attn, "Attention");
  nn::Block<D> block("block", 8, 2, 16);
  block.init_xavier(4);
  check_layer(block, "Block");

  nn::PatchEmbed<D> pe("patch_embed", 2, 4, 8);
  pe.init(5);
  auto images = random_tensor<D>({2, 2, 8, 8}, 6);
  auto r = check_gradients([&](Tape<D>& t) { return probe(t, pe(t, images)); }, all_parameters(parameters_of<D>(pe)));
  INFO(r.worst);
  CHECK(r.max_error < 1e-6);
}

TEST_CASE("patch embedding equals a stride-p convolution with weight [D][C][p][p]") {
  nn::PatchEmbed<D> pe("patch_embed", 2, 2, 3);
  pe.init(9);
  auto img = random_tensor<D>({1, 2, 4, 4}, 10);
  Tape<D> t;
  auto y = t.value(pe(t, img));  // [1, 4, 3]
  const auto& W = pe.proj.weight.value;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      for (int d = 0; d < 3; ++d) {
        double conv = pe.proj.bias.value[d];
        for (int c = 0; c < 2; ++c)
          for (int u = 0; u < 2; ++u)
            for (int v = 0; v < 2; ++v) conv += W[((d * 2 + c) * 2 + u) * 2 + v] * img.at(0, c, i * 2 + u, j * 2 + v);
        CHECK(y.at(0, i * 2 + j, d) == doctest::Approx(conv));
      }
}

TEST_CASE("gradcheck: whole encoder, full and masked input, with taps") {
  nn::ViT<kTiny, D> model(11);
  for (auto* p : model.parameters())
    for (std::int64_t i = 0; i < p->value.numel(); ++i) p->value[i] += 0.05 * std::cos(double(i) * 1.3 + p->name.size());
  auto images = random_tensor<D>({2, 2, 8, 8}, 12);
  Tensor<std::int32_t> keep(Shape{2, 2});
  keep[0] = 3, keep[1] = 0, keep[2] = 1, keep[3] = 2;
  const int taps[] = {0, 1};
  for (bool masked : {false, true}) {
    INFO("masked = " << masked);
    auto loss = [&](Tape<D>& t) {
      auto out = model.forward(t, images, masked ? &keep : nullptr, taps);
      auto l = probe(t, out.tokens, 1);
      l = ops::add(t, l, probe(t, out.taps[0], 2));
      return ops::add(t, l, probe(t, out.taps[1], 3));
    };
    auto r = check_gradients(loss, all_parameters(model.parameters()), {.max_entries_per_input = 24});
    INFO(r.worst);
    CHECK(r.max_error < 1e-6);
  }
}

TEST_CASE("encoder output shapes with masking and taps") {
  nn::ViT<specs::tiny(28, 1, 4), float> model(1);
  auto images = random_tensor<float>({3, 1, 28, 28}, 2);
  Tensor<std::int32_t> keep(Shape{3, 12});
  for (int b = 0; b < 3; ++b)
    for (int k = 0; k < 12; ++k) keep.at(b, k) = (k * 4 + b) % 49;
  Tape<float> t;
  const int taps[] = {3, 11};
  auto out = model.forward(t, images, &keep, taps);
  CHECK(t.value(out.tokens).shape() == Shape{3, 13, 192});
  CHECK(t.value(out.taps[0]).shape() == Shape{3, 13, 192});
  auto full = model.forward(t, images);
  CHECK(t.value(full.tokens).shape() == Shape{3, 50, 192});
  CHECK_THROWS_AS(model.forward(t, random_tensor<float>({3, 1, 32, 32}, 3)), ShapeError);
}

TEST_CASE("frozen prefix: no nodes, no gradient buffers, identical forward, activations released") {
  nn::ViT<kTiny, float> model(3);
  auto images = random_tensor<float>({2, 2, 8, 8}, 4);
  Tape<float> t;
  auto reference = t.value(model.forward(t, images).tokens).clone();
  const std::size_t full_nodes = t.node_count();
  const std::size_t full_memory = t.arena().in_use();
  t.reset();

  // Truncate semantics: unit 0 (patch embedding + cls) and blocks 0, 1 frozen; block 2 trains.
  model.cls_token.freeze();
  for (auto* p : parameters_of<float>(model.patch_embed)) p->freeze();
  for (int b : {0, 1})
    for (auto* p : parameters_of<float>(model.blocks[b])) p->freeze();
  auto out = model.forward(t, images);
  const auto& y = t.value(out.tokens);
  for (std::int64_t i = 0; i < y.numel(); ++i) REQUIRE(y[i] == reference[i]);
  CHECK(t.node_count() == 11);  // block 2 (10 ops) + final norm; nothing for the frozen prefix
  CHECK(full_nodes > t.node_count());
  CHECK(t.arena().in_use() < full_memory / 2);
  t.backward(ops::weighted_sum(t, out.tokens, random_tensor<float>(y.shape(), 5)));
  CHECK(model.cls_token.grad.empty());
  for (auto* p : parameters_of<float>(model.patch_embed)) CHECK(p->grad.empty());
  for (auto* p : parameters_of<float>(model.blocks[1])) CHECK(p->grad.empty());
  for (auto* p : parameters_of<float>(model.blocks[2])) CHECK_FALSE(p->grad.empty());
}
