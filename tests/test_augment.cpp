// The fine-tuning recipes' image augmentations: Pillow's operations against Pillow itself
// (tests/data/pil_reference.txt, written by scripts/pil_reference.py with Debian's Pillow 9.4),
// RandAugment's configuration strings, operation set and determinism, colour jitter, random erasing
// (timm's geometry), and the Transform that strings them together in timm's order.
#include <doctest/doctest.h>

#include <array>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "vitfreeze/data/dataset.hpp"
#include "vitfreeze/data/transform.hpp"

using namespace vitfreeze;
using namespace vitfreeze::data;

namespace {

// The formula of scripts/pil_reference.py's test_image.
std::vector<std::uint8_t> test_image(int channels, int height, int width) {
  std::vector<std::uint8_t> v;
  for (int c = 0; c < channels; ++c)
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < width; ++x) v.push_back(std::uint8_t((c * 71 + y * 37 + x * 11 + (y * x * 13) % 29 * 5) % 256));
  return v;
}

std::map<std::string, std::vector<int>> pil_reference() {
  std::ifstream in(std::string(VITFREEZE_SOURCE_DIR) + "/tests/data/pil_reference.txt");
  REQUIRE(in);
  std::map<std::string, std::vector<int>> out;
  std::string line;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    std::istringstream values(line.substr(colon + 1));
    std::vector<int>& v = out[line.substr(0, colon)];
    for (int x; values >> x;) v.push_back(x);
  }
  return out;
}

}  // namespace

TEST_CASE("Pillow's operations: every pixel as Pillow 9.4 leaves it (grey and RGB)") {
  const auto reference = pil_reference();
  REQUIRE(reference.size() == 40);
  const Interpolation bilinear = Interpolation::bilinear, bicubic = Interpolation::bicubic;
  using Op = std::function<void(const pil::Image&, std::span<const std::uint8_t>)>;
  const std::vector<std::pair<std::string, Op>> ops = {
      {"autocontrast", [](auto& im, auto) { pil::autocontrast(im); }},
      {"equalize", [](auto& im, auto) { pil::equalize(im); }},
      {"invert", [](auto& im, auto) { pil::invert(im); }},
      {"posterize1", [](auto& im, auto) { pil::posterize(im, 1); }},
      {"posterize3", [](auto& im, auto) { pil::posterize(im, 3); }},
      {"solarize26", [](auto& im, auto) { pil::solarize(im, 26); }},
      {"solarize_add99", [](auto& im, auto) { pil::solarize_add(im, 99); }},
      {"brightness1.7", [](auto& im, auto) { pil::brightness(im, 1.7); }},
      {"brightness0.4", [](auto& im, auto) { pil::brightness(im, 0.4); }},
      {"contrast1.9", [](auto& im, auto) { pil::contrast(im, 1.9); }},
      {"contrast0.1", [](auto& im, auto) { pil::contrast(im, 0.1); }},
      {"color1.6", [](auto& im, auto) { pil::color(im, 1.6); }},
      {"sharpness1.9", [](auto& im, auto) { pil::sharpness(im, 1.9); }},
      {"sharpness0.1", [](auto& im, auto) { pil::sharpness(im, 0.1); }},
      {"shear_x0.3_bilinear", [&](auto& im, auto fill) { pil::affine(im, {1, 0.3, 0, 0, 1, 0}, bilinear, fill); }},
      {"shear_y-0.27_bicubic", [&](auto& im, auto fill) { pil::affine(im, {1, 0, 0, -0.27, 1, 0}, bicubic, fill); }},
      {"translate_x2.5_bilinear", [&](auto& im, auto fill) { pil::affine(im, {1, 0, 2.5, 0, 1, 0}, bilinear, fill); }},
      {"translate_y-3_bicubic", [&](auto& im, auto fill) { pil::affine(im, {1, 0, 0, 0, 1, -3}, bicubic, fill); }},
      {"rotate27.3_bicubic", [&](auto& im, auto fill) { pil::rotate(im, 27.3, bicubic, fill); }},
      {"rotate-13_bilinear", [&](auto& im, auto fill) { pil::rotate(im, -13, bilinear, fill); }},
  };
  const std::uint8_t fill = 73;
  for (const auto& [channels, height, width] : {std::array{1, 9, 11}, std::array{3, 6, 7}})
    for (const auto& [name, op] : ops) {
      const std::string key = std::to_string(channels) + "x" + std::to_string(height) + "x" + std::to_string(width) + " " + name;
      INFO(key);
      REQUIRE(reference.count(key));
      std::vector<std::uint8_t> image = test_image(channels, height, width);
      op(pil::Image{image.data(), channels, height, width}, std::span<const std::uint8_t>(&fill, 1));
      const std::vector<int>& want = reference.at(key);
      REQUIRE(want.size() == image.size());
      int differ = 0;
      for (std::size_t i = 0; i < image.size(); ++i) differ += int(image[i]) != want[i];
      CHECK(differ == 0);
    }
}

TEST_CASE("RandAugment's configuration strings: MAE's and MAE-lite's, and errors") {
  const RandAugment mae = RandAugment::parse("rand-m9-mstd0.5-inc1");
  CHECK(mae.magnitude == 9.0);
  CHECK(mae.magnitude_std == 0.5);
  CHECK(mae.increasing);
  CHECK(mae.layers == 2);
  CHECK(mae.probability == 0.5);
  const RandAugment lite = RandAugment::parse("rand-m10-mstd0.5-inc1");
  CHECK(lite.magnitude == 10.0);
  CHECK(RandAugment::parse("rand-n3-m5").layers == 3);
  CHECK_FALSE(RandAugment::parse("rand-m5").increasing);
  CHECK_THROWS_AS(RandAugment::parse("auto-m9"), ConfigError);
  CHECK_THROWS_AS(RandAugment::parse("rand-x9"), ConfigError);
  CHECK_THROWS_AS(RandAugment::parse("rand-m"), ConfigError);
  CHECK_THROWS_AS(RandAugment::parse("rand-mnan"), ConfigError);
  CHECK_THROWS_AS(RandAugment::parse("rand-p2"), ConfigError);
  // Color is an identity on one channel and is not drawn there; on RGB it is.
  const auto grey = RandAugment::operations(1), rgb = RandAugment::operations(3);
  CHECK(grey.size() == 14);
  CHECK(rgb.size() == 15);
  CHECK(std::find(grey.begin(), grey.end(), AugmentOp::color) == grey.end());
}

TEST_CASE("RandAugment: the same key augments the same way, other keys otherwise, and at magnitude 0 geometry is the identity") {
  const RandAugment ra = RandAugment::parse("rand-m9-mstd0.5-inc1");
  const std::uint8_t fill = 73;
  auto augmented = [&](std::uint64_t seed, std::uint64_t index) {
    std::vector<std::uint8_t> image = test_image(1, 28, 28);
    RandomStream rng(seed, RngPurpose::rand_augment, index);
    ra.apply(pil::Image{image.data(), 1, 28, 28}, rng, std::span<const std::uint8_t>(&fill, 1));
    return image;
  };
  const auto original = test_image(1, 28, 28);
  CHECK(augmented(1, 5) == augmented(1, 5));
  int changed = 0, distinct = 0;
  for (std::uint64_t i = 0; i < 20; ++i) {
    changed += augmented(1, i) != original;
    distinct += augmented(1, i) != augmented(2, i);
  }
  CHECK(changed >= 12);   // each of two operations applies with p 0.5: most images change
  CHECK(distinct >= 12);
  // Level 0 of a geometric operation maps every pixel centre onto itself.
  std::vector<std::uint8_t> image = original;
  RandomStream rng(3, RngPurpose::rand_augment);
  for (AugmentOp op : {AugmentOp::rotate, AugmentOp::shear_x, AugmentOp::shear_y, AugmentOp::translate_x, AugmentOp::translate_y})
    ra.run(op, 0.0, pil::Image{image.data(), 1, 28, 28}, rng, std::span<const std::uint8_t>(&fill, 1));
  CHECK(image == original);
  // Translation by a whole number of pixels is a shift with the fill colour coming in.
  pil::affine(pil::Image{image.data(), 1, 28, 28}, {1, 0, 3, 0, 1, 0}, Interpolation::bilinear,
              std::span<const std::uint8_t>(&fill, 1));
  for (int y = 0; y < 28; ++y)
    for (int x = 0; x < 28; ++x) REQUIRE(image[std::size_t(y * 28 + x)] == (x + 3 < 28 ? original[std::size_t(y * 28 + x + 3)] : 73));
}

TEST_CASE("colour jitter: factors within [1 - j, 1 + j], deterministic per key, saturation a no-op on grey") {
  const auto original = test_image(1, 9, 11);
  const ColorJitter jitter = ColorJitter::uniform(0.3);
  auto run = [&](std::uint64_t index) {
    std::vector<std::uint8_t> image = original;
    RandomStream rng(4, RngPurpose::color_jitter, index);
    jitter.apply(pil::Image{image.data(), 1, 9, 11}, rng);
    return image;
  };
  CHECK(run(1) == run(1));
  CHECK(run(1) != run(2));
  // Brightness alone at its extremes bounds every pixel: 0.7 x <= y <= 1.3 x (truncated, clipped).
  for (std::uint64_t i = 0; i < 10; ++i) {
    std::vector<std::uint8_t> image = original;
    RandomStream rng(5, RngPurpose::color_jitter, i);
    ColorJitter{0.3, 0, 0}.apply(pil::Image{image.data(), 1, 9, 11}, rng);
    for (std::size_t k = 0; k < image.size(); ++k) {
      CHECK(image[k] >= std::uint8_t(0.7f * float(original[k])) - 1);
      CHECK(image[k] <= std::min(255, int(1.3f * float(original[k])) + 1));
    }
  }
  std::vector<std::uint8_t> grey = original;
  pil::color(pil::Image{grey.data(), 1, 9, 11}, 1.8);
  CHECK(grey == original);
}

TEST_CASE("random erasing: timm's area and aspect ranges, strictly inside, N(0, 1) noise, deterministic per key") {
  const RandomErasing erasing{.probability = 1.0};
  int erased = 0;
  for (std::uint64_t i = 0; i < 200; ++i) {
    RandomStream rng(6, RngPurpose::random_erasing, i);
    const auto box = erasing.draw(28, 28, rng);
    if (box.height == 0) continue;
    ++erased;
    CHECK(box.height < 28);
    CHECK(box.width < 28);
    CHECK(box.top + box.height <= 28);
    CHECK(box.left + box.width <= 28);
    const double area = double(box.height) * box.width / 784.0;
    CHECK(area >= 0.02 * 0.8);  // rounding of the sides
    CHECK(area <= (1.0 / 3.0) * 1.25);
  }
  CHECK(erased >= 190);
  int never = 0;
  for (std::uint64_t i = 0; i < 50; ++i) {
    RandomStream rng(6, RngPurpose::random_erasing, i);
    never += RandomErasing{.probability = 0.0}.draw(28, 28, rng).height == 0;
  }
  CHECK(never == 50);
  // The noise: mean ~0, variance ~1 over many erased pixels; the rest untouched.
  std::vector<float> image(784, 5.0f);
  RandomStream rng(7, RngPurpose::random_erasing, 0);
  erasing.apply(image.data(), 1, 28, 28, rng);
  double sum = 0, sq = 0;
  int n = 0;
  for (float v : image)
    if (v != 5.0f) sum += v, sq += double(v) * v, ++n;
  REQUIRE(n > 15);
  CHECK(std::abs(sum / n) < 4.0 / std::sqrt(double(n)) + 0.05);
}

TEST_CASE("Transform with RandAugment, colour jitter and erasing: deterministic per sample, and without them unchanged") {
  data::Dataset d;
  d.count = 1, d.channels = 1, d.height = 28, d.width = 28, d.num_classes = 1;
  d.pixels = test_image(1, 28, 28);
  d.labels = {0};
  const ImageView src{d.pixels.data(), 1, 28, 28};
  const Transform plain{RandomResizedCrop{28, 0.5, 1.0, 0.75, 4.0 / 3.0, Interpolation::bicubic}, std::nullopt, 0.5,
                        Normalize::fashion_mnist()};
  Transform full = plain;
  full.rand_augment = RandAugment::parse("rand-m9-mstd0.5-inc1");
  full.color_jitter = ColorJitter::uniform(0.3);  // ignored under RandAugment, as timm
  full.random_erasing = RandomErasing{.probability = 0.25};
  full.validate(1);
  Transform jitter_only = plain;
  jitter_only.color_jitter = ColorJitter::uniform(0.3);
  Resampler ws;
  auto run = [&](const Transform& t, std::uint64_t index) {
    std::vector<float> out(784);
    t.apply(src, SampleKey{9, 0, index}, out.data(), ws);
    return out;
  };
  CHECK(run(full, 3) == run(full, 3));
  CHECK(run(jitter_only, 3) == run(jitter_only, 3));
  int differs = 0;
  for (std::uint64_t i = 0; i < 10; ++i) differs += run(full, i) != run(plain, i);
  CHECK(differs >= 5);
  // RandAugment on: colour jitter plays no part (timm skips it).
  Transform ra_only = full;
  ra_only.color_jitter.reset();
  CHECK(run(ra_only, 4) == run(full, 4));
  // The plain path is the pipeline as it was: crop, flip, normalise, nothing rounded.
  Transform rounded = plain;
  rounded.color_jitter = ColorJitter{0, 0, 0};  // the uint8 round trip alone
  double worst = 0;
  for (std::uint64_t i = 0; i < 5; ++i) {
    const auto a = run(plain, i), b = run(rounded, i);
    for (std::size_t k = 0; k < a.size(); ++k) worst = std::max(worst, double(std::abs(a[k] - b[k])));
  }
  CHECK(worst <= 0.5f * Normalize::fashion_mnist().scale(0) + 1e-6);
}
