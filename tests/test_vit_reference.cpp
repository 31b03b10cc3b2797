// Forward values from an independent implementation: multi-head attention and the whole ViT-Ti
// encoder written in plain PyTorch (scripts/vit_reference.py, float64) on inputs and weights that
// are closed-form functions both sides compute. The tape, the CPU backend's attention kernel and
// the explicit model::Encoder must reproduce them, so a forward that is wrong the same way in both
// of the project's implementations (which the gradient checks and explicit == tape cannot see)
// fails here.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "vitfreeze/autograd/ops/attention.hpp"
#include "vitfreeze/backend/cpu/backend.hpp"
#include "vitfreeze/model/encoder.hpp"
#include "vitfreeze/nn/vit.hpp"

using namespace vitfreeze;

namespace {

constexpr ViTSpec kSpec = specs::tiny(28, 1, 4);
constexpr std::int64_t kBatch = 2;

struct Reference {
  Shape shape;
  std::int64_t stride = 0;
  std::vector<double> strided, row_sums;
};

std::map<std::string, Reference> read_reference() {
  std::ifstream in(std::string(VITFREEZE_SOURCE_DIR) + "/tests/data/vit_reference.txt");
  REQUIRE_MESSAGE(in.good(), "tests/data/vit_reference.txt is missing (scripts/vit_reference.py writes it)");
  std::map<std::string, Reference> out;
  std::string line, current;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string kind;
    words >> kind;
    if (kind == "tensor") {
      words >> current;
      std::vector<std::int64_t> dims;
      for (std::int64_t d; words >> d;) dims.push_back(d);
      REQUIRE(dims.size() == 3);  // every stored tensor is [B, T, D]
      out[current].shape = Shape{dims[0], dims[1], dims[2]};
    } else if (kind == "stride") {
      words >> out.at(current).stride;
      for (double v; words >> v;) out.at(current).strided.push_back(v);
    } else if (kind == "row_sums") {
      for (double v; words >> v;) out.at(current).row_sums.push_back(v);
    }
  }
  return out;
}

// The script's formula: amplitude sin(0.731 i + 0.017 key(name) + 0.3) + offset, i row-major.
template <class T>
Tensor<T> formula(const std::string& name, const Shape& shape, double amplitude, double offset = 0.0) {
  int key = 0;
  for (std::size_t k = 0; k < name.size(); ++k) key += int(k + 1) * static_cast<unsigned char>(name[k]);
  key %= 1000;
  Tensor<T> t(shape);
  for (std::int64_t i = 0; i < t.numel(); ++i)
    t[i] = T(amplitude * std::sin(0.731 * double(i) + 0.017 * key + 0.3) + offset);
  return t;
}

// Every parameter of the encoder from the script's formula, by its timm name.
template <class T>
void set_reference_weights(nn::ViT<kSpec, T>& encoder) {
  int count = 0;
  for (Parameter<T>* p : encoder.parameters()) {
    const std::string& n = p->name;
    const auto ends_with = [&](const std::string& s) { return n.size() >= s.size() && n.ends_with(s); };
    Tensor<T> v;
    if (n == "cls_token") {
      v = formula<T>(n, p->value.shape(), 0.5);
    } else if (ends_with(".weight") && n.find("norm") != std::string::npos) {
      v = formula<T>(n, p->value.shape(), 0.2, 1.0);
    } else if (ends_with(".bias")) {
      v = formula<T>(n, p->value.shape(), 0.1);
    } else {
      REQUIRE_MESSAGE(ends_with(".weight"), n);
      const std::int64_t fan_in = p->value.numel() / p->value.dim(0);  // [out, in] (patch: [D, C p p])
      v = formula<T>(n, p->value.shape(), 1.0 / std::sqrt(double(fan_in)));
    }
    p->value.copy_from(v);
    ++count;
  }
  REQUIRE(count == 1 + 2 + 12 * kSpec.depth + 2);
}

// The largest difference between a token row's sum and the reference's: absolute, or relative to
// the row's sum of magnitudes (which bounds the rounding of a sum); infinite when not finite.
template <class T>
double worst_row_sum_error(const Tensor<T>& got, const Reference& want, bool relative) {
  const std::int64_t width = got.shape()[got.rank() - 1], rows = got.numel() / width;
  double worst = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    double sum = 0, magnitude = 0;
    for (std::int64_t c = 0; c < width; ++c) {
      sum += double(got[r * width + c]);
      magnitude += std::abs(double(got[r * width + c]));
    }
    const double err = std::abs(sum - want.row_sums[std::size_t(r)]) / (relative ? std::max(1.0, magnitude) : 1.0);
    worst = std::isfinite(err) ? std::max(worst, err) : INFINITY;
  }
  return worst;
}

// Each stored element and each token row's sum within tol x max(1, |reference|) (row sums: tol x
// the row's sum of magnitudes, which bounds the rounding of a sum).
template <class T>
void check_against(const Tensor<T>& got, const Reference& want, double tol, const std::string& what) {
  INFO(what);
  REQUIRE(got.shape() == want.shape);
  double worst = 0;
  std::size_t k = 0;
  for (std::int64_t i = 0; i < got.numel(); i += want.stride, ++k) {
    if (k >= want.strided.size()) break;
    const double err = std::abs(double(got[i]) - want.strided[k]) / std::max(1.0, std::abs(want.strided[k]));
    worst = std::isfinite(err) ? std::max(worst, err) : INFINITY;
  }
  CHECK(k == want.strided.size());  // the file and the tensor agree on the element count
  REQUIRE(std::int64_t(want.row_sums.size()) == got.numel() / got.shape()[got.rank() - 1]);
  const double worst_row = worst_row_sum_error(got, want, true);
  MESSAGE(what << ": worst element error " << worst << ", worst row-sum error " << worst_row);
  CHECK(worst <= tol);
  CHECK(worst_row <= tol);
}

template <class T>
Tensor<T> reference_images() {
  return formula<T>("images", Shape{kBatch, kSpec.channels, kSpec.image, kSpec.image}, 1.5);
}

Tensor<std::int32_t> every_patch() {
  Tensor<std::int32_t> ids(Shape{kBatch, kSpec.tokens()});
  for (std::int64_t i = 0; i < ids.numel(); ++i) ids[i] = std::int32_t(i % kSpec.tokens());
  return ids;
}

}  // namespace

TEST_CASE("attention: the CPU kernel and the tape op reproduce PyTorch's values (2 x 5 tokens, 3 heads of 4)") {
  const auto reference = read_reference();
  const Reference& want = reference.at("attention.out");
  const AttentionShape s{2, 5, 3, 4};
  cpu::CpuContext ctx;
  {
    const Tensor<double> qkv = formula<double>("attention.qkv", Shape{2, 5, 36}, 1.5);
    Tensor<double> out(Shape{2, 5, 12});
    out.fill(std::nan(""));  // poisoned: every element must be written
    Cpu::attention_forward<Fp64>(ctx, qkv.data(), out.data(), s, nullptr);
    check_against(out, want, 1e-12, "Cpu::attention_forward, double");
    Tape<double> tape;
    check_against(tape.value(ops::attention(tape, tape.constant(qkv), 3)), want, 1e-12, "ops::attention, double");
  }
  {
    const Tensor<float> qkv = formula<float>("attention.qkv", Shape{2, 5, 36}, 1.5);
    Tensor<float> out(Shape{2, 5, 12});
    out.fill(std::nanf(""));
    Cpu::attention_forward<Fp32>(ctx, qkv.data(), out.data(), s, nullptr);
    check_against(out, want, 2e-6, "Cpu::attention_forward, float");
  }
}

TEST_CASE("ViT-Ti encoder: the tape and the explicit encoder reproduce PyTorch's block outputs and tokens") {
  const auto reference = read_reference();
  cpu::CpuContext ctx;
  const Tensor<std::int32_t> ids = every_patch();
  const int taps[] = {0, 5};
  {
    nn::ViT<kSpec, double> encoder(1);
    set_reference_weights(encoder);
    const Tensor<double> images = reference_images<double>();
    Tape<double> tape;
    NoGrad<double> no_grad(tape);
    const auto out = encoder.forward(tape, images, nullptr, taps);
    check_against(tape.value(out.taps[0]), reference.at("encoder.block0"), 1e-9, "tape, after block 0");
    check_against(tape.value(out.taps[1]), reference.at("encoder.block5"), 1e-9, "tape, after block 5");
    check_against(tape.value(out.tokens), reference.at("encoder.tokens"), 1e-9, "tape, final tokens");

    const model::Encoder<Cpu, Fp64> explicit_encoder(ctx, encoder);
    const auto hidden = explicit_encoder.forward_taps(ctx, images, ids.data(), kBatch, kSpec.tokens(), taps, nullptr);
    check_against(hidden[0], reference.at("encoder.block0"), 1e-9, "model::Encoder<Cpu, Fp64>, after block 0");
    check_against(hidden[1], reference.at("encoder.block5"), 1e-9, "model::Encoder<Cpu, Fp64>, after block 5");
    check_against(explicit_encoder.forward(ctx, images, ids.data(), kBatch, kSpec.tokens(), 1, nullptr),
                  reference.at("encoder.tokens"), 1e-9, "model::Encoder<Cpu, Fp64>, final tokens");
  }
  {
    nn::ViT<kSpec, float> encoder(1);
    set_reference_weights(encoder);
    const model::Encoder<Cpu, Fp32> explicit_encoder(ctx, encoder);
    // float through 12 blocks: rounding of ~1e-7 per operation grows to ~1e-5 of the values.
    check_against(explicit_encoder.forward(ctx, reference_images<float>(), ids.data(), kBatch, kSpec.tokens(), 1, nullptr),
                  reference.at("encoder.tokens"), 1e-4, "model::Encoder<Cpu, Fp32>, final tokens");
  }
}

TEST_CASE("the reference check fails on a wrong forward: one weight element off by 1e-3") {
  const auto reference = read_reference();
  nn::ViT<kSpec, double> encoder(1);
  set_reference_weights(encoder);
  encoder.parameters().back()->value[7] += 1e-3;  // norm.bias[7]: moves one column of every token
  Tape<double> tape;
  NoGrad<double> no_grad(tape);
  const Tensor<double> tokens = tape.value(encoder.forward(tape, reference_images<double>()).tokens);
  CHECK(worst_row_sum_error(tokens, reference.at("encoder.tokens"), false) > 1e-4);  // the row sums see it, far above the 1e-9 the checks allow
}
