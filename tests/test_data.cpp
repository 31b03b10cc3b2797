// Data pipeline: readers (IDX raw/gz, CIFAR, image folders) with their typed errors, transforms
// against hand-computed values, and the loader's ordering, sharding, prefetch determinism and resume.
// Fixtures are written into a fresh temporary directory by each test.
#include <doctest/doctest.h>

#include "vitfreeze/testing/temp_dir.hpp"
#include <unistd.h>
#include <zlib.h>

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "vitfreeze/data/data.hpp"

using namespace vitfreeze;
using namespace vitfreeze::data;
namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

namespace {

// A directory removed at the end of the test.
using vitfreeze::testing::TempDir;

void write_file(const fs::path& p, const Bytes& b, bool gzip = false) {
  fs::create_directories(p.parent_path());
  if (gzip) {
    gzFile f = gzopen(p.string().c_str(), "wb");
    REQUIRE(f != nullptr);
    if (!b.empty()) REQUIRE(gzwrite(f, b.data(), unsigned(b.size())) == int(b.size()));
    REQUIRE(gzclose(f) == Z_OK);
  } else {
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  }
}

Bytes idx_bytes(std::uint32_t magic, const std::vector<std::uint32_t>& dims, const Bytes& data) {
  Bytes b;
  auto put = [&](std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(std::uint8_t(v >> s));
  };
  put(magic);
  for (auto d : dims) put(d);
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

// 5 images of 2x3 pixels, pixel value 10*image + position; labels 4,3,2,1,0.
Bytes small_pixels() {
  Bytes p;
  for (int i = 0; i < 5; ++i)
    for (int k = 0; k < 6; ++k) p.push_back(std::uint8_t(10 * i + k));
  return p;
}
const Bytes kSmallLabels = {4, 3, 2, 1, 0};

// Runs f, expects a DataError, and returns it for inspection.
template <class F>
DataError expect_data_error(F&& f) {
  try {
    f();
  } catch (const DataError& e) {
    return e;
  }
  FAIL("expected a DataError");
  return DataError("", 0, "");
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// IDX

TEST_CASE("IDX: gzip images and raw labels read back exactly through fashion_mnist()") {
  TempDir dir;
  write_file(dir / "t10k-images-idx3-ubyte.gz", idx_bytes(kIdxImagesMagic, {5, 2, 3}, small_pixels()), true);
  write_file(dir / "t10k-labels-idx1-ubyte", idx_bytes(kIdxLabelsMagic, {5}, kSmallLabels));
  const Dataset d = fashion_mnist(dir.path(), Split::test);
  CHECK(d.count == 5);
  CHECK(d.channels == 1);
  CHECK(d.height == 2);
  CHECK(d.width == 3);
  CHECK(d.num_classes == 10);
  CHECK(d.pixels == small_pixels());
  CHECK(d.labels == std::vector<std::int32_t>{4, 3, 2, 1, 0});
  CHECK(d.image(3)[5] == 35);
  CHECK(d.class_names.at(9) == "Ankle boot");
  d.validate();

  // The raw and the gzip form of one file give the same array.
  write_file(dir / "raw.idx", idx_bytes(kIdxImagesMagic, {5, 2, 3}, small_pixels()));
  const IdxArray raw = read_idx(dir / "raw.idx", kIdxImagesMagic);
  CHECK(raw.dims == std::vector<std::uint32_t>{5, 2, 3});
  CHECK(raw.data == small_pixels());
}

TEST_CASE("IDX: bad magic, truncation, stray bytes and bad labels are DataErrors naming file and offset") {
  TempDir dir;
  const fs::path labels = dir / "labels";
  write_file(labels, idx_bytes(kIdxLabelsMagic, {5}, kSmallLabels));

  SUBCASE("labels file given as images: bad magic at offset 0") {
    const DataError e = expect_data_error([&] { idx_dataset(labels, labels, 10, "x"); });
    CHECK(e.file() == labels.string());
    CHECK(e.offset() == 0);
    CHECK(contains(e.what(), labels.string()));
    CHECK(contains(e.what(), "offset 0"));
    CHECK(contains(e.what(), "expected 0x00000803"));
    CHECK(contains(e.what(), "got 0x00000801"));
  }
  SUBCASE("a header claiming 2^40 bytes with no data: a DataError, not a 1 TiB allocation") {
    for (bool gz : {false, true}) {
      write_file(dir / "huge", idx_bytes(kIdxImagesMagic, {65536, 65536, 256}, {}), gz);
      const DataError e = expect_data_error([&] { read_idx(dir / "huge", kIdxImagesMagic); });
      CHECK(e.offset() == 16);
      CHECK(contains(e.what(), "expected 1099511627776 bytes"));
    }
  }
  SUBCASE("raw image data cut short: offset where the data ends, expected vs actual bytes") {
    Bytes b = idx_bytes(kIdxImagesMagic, {5, 2, 3}, small_pixels());
    b.resize(16 + 20);
    write_file(dir / "img", b);
    const DataError e = expect_data_error([&] { idx_dataset(dir / "img", labels, 10, "x"); });
    CHECK(e.offset() == 36);
    CHECK(contains(e.what(), "(offset 36)"));
    CHECK(contains(e.what(), "expected 30 bytes"));
    CHECK(contains(e.what(), "has 20"));
  }
  SUBCASE("gzip of short data: same offset, counted in decompressed bytes") {
    Bytes b = idx_bytes(kIdxImagesMagic, {5, 2, 3}, small_pixels());
    b.resize(16 + 20);
    write_file(dir / "img.gz", b, true);
    const DataError e = expect_data_error([&] { read_idx(dir / "img.gz", kIdxImagesMagic); });
    CHECK(e.offset() == 36);
    CHECK(contains(e.what(), "decompressed"));
  }
  SUBCASE("gzip stream itself cut off") {
    Bytes data(4000);
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::uint8_t((i * 7919) >> 3);
    write_file(dir / "full.gz", idx_bytes(kIdxImagesMagic, {10, 20, 20}, data), true);
    Bytes gz(fs::file_size(dir / "full.gz"));
    std::ifstream(dir / "full.gz", std::ios::binary)
        .read(reinterpret_cast<char*>(gz.data()), std::streamsize(gz.size()));
    gz.resize(gz.size() / 2);
    write_file(dir / "cut.gz", gz);
    const DataError e = expect_data_error([&] { read_idx(dir / "cut.gz", kIdxImagesMagic); });
    CHECK(e.file() == (dir / "cut.gz").string());
    CHECK(e.offset() < 16 + 4000);
  }
  SUBCASE("gzip with bytes after the stream: refused, naming where the stream ended") {
    write_file(dir / "img.gz", idx_bytes(kIdxImagesMagic, {5, 2, 3}, small_pixels()), true);
    const auto clean = fs::file_size(dir / "img.gz");
    std::ofstream(dir / "img.gz", std::ios::binary | std::ios::app) << "trailing garbage";
    const DataError e = expect_data_error([&] { read_idx(dir / "img.gz", kIdxImagesMagic); });
    CHECK(contains(e.what(), "unexpected bytes after the gzip stream (at compressed byte " + std::to_string(clean) + ")"));
    CHECK(e.offset() == 46);  // all 46 decompressed bytes were read
  }
  SUBCASE("gzip of two concatenated members reads as one file (valid gzip)") {
    const Bytes whole = idx_bytes(kIdxImagesMagic, {5, 2, 3}, small_pixels());
    write_file(dir / "a.gz", Bytes(whole.begin(), whole.begin() + 20), true);
    write_file(dir / "b.gz", Bytes(whole.begin() + 20, whole.end()), true);
    {
      std::ofstream out(dir / "ab.gz", std::ios::binary);
      out << std::ifstream(dir / "a.gz", std::ios::binary).rdbuf() << std::ifstream(dir / "b.gz", std::ios::binary).rdbuf();
    }
    CHECK(read_idx(dir / "ab.gz", kIdxImagesMagic).data == small_pixels());
  }
  SUBCASE("bytes after the data") {
    Bytes b = idx_bytes(kIdxImagesMagic, {5, 2, 3}, small_pixels());
    b.push_back(0);
    b.push_back(0);
    write_file(dir / "img", b);
    const DataError e = expect_data_error([&] { read_idx(dir / "img", kIdxImagesMagic); });
    CHECK(e.offset() == 46);
    CHECK(contains(e.what(), "2 unexpected bytes"));
  }
  SUBCASE("label out of range: offset of that label byte") {
    write_file(dir / "img", idx_bytes(kIdxImagesMagic, {5, 2, 3}, small_pixels()));
    write_file(dir / "bad_labels", idx_bytes(kIdxLabelsMagic, {5}, {1, 2, 3, 12, 0}));
    const DataError e = expect_data_error([&] { idx_dataset(dir / "img", dir / "bad_labels", 10, "x"); });
    CHECK(e.file() == (dir / "bad_labels").string());
    CHECK(e.offset() == 8 + 3);
    CHECK(contains(e.what(), "label 12"));
  }
  SUBCASE("label count differs from image count") {
    write_file(dir / "img", idx_bytes(kIdxImagesMagic, {4, 2, 3}, Bytes(24)));
    const DataError e = expect_data_error([&] { idx_dataset(dir / "img", labels, 10, "x"); });
    CHECK(e.offset() == 4);
  }
  SUBCASE("missing file") {
    const DataError e = expect_data_error([&] { read_idx(dir / "nope", kIdxImagesMagic); });
    CHECK(contains(e.what(), "nope"));
  }
}

// ---------------------------------------------------------------------------------------------
// CIFAR-10

namespace {
// Record r of a fixture: label r % 10, pixel k = (r + k) % 251 (planes R, G, B in order).
Bytes cifar_record(int r) {
  Bytes rec{std::uint8_t(r % 10)};
  for (int k = 0; k < 3072; ++k) rec.push_back(std::uint8_t((r + k) % 251));
  return rec;
}
}  // namespace

TEST_CASE("CIFAR-10: records read back in file order, truncated record and bad label name their offset") {
  TempDir dir;
  int r = 0;
  for (int f = 1; f <= 5; ++f) {
    Bytes b;
    for (int i = 0; i < 2; ++i) {
      const Bytes rec = cifar_record(r++);
      b.insert(b.end(), rec.begin(), rec.end());
    }
    write_file(dir / ("data_batch_" + std::to_string(f) + ".bin"), b);
  }
  const Dataset train = cifar10(dir.path(), Split::train);
  CHECK(train.count == 10);
  CHECK(train.channels == 3);
  CHECK(train.height == 32);
  CHECK(train.width == 32);
  for (int i = 0; i < 10; ++i) {
    CHECK(train.labels[std::size_t(i)] == i);
    const Bytes rec = cifar_record(i);
    CHECK(std::equal(rec.begin() + 1, rec.end(), train.image(i).begin()));
  }
  // Channel c, row y, column x sits at c*1024 + y*32 + x: green plane of image 3 at (1, 2).
  CHECK(train.image(3)[1024 + 32 + 2] == (3 + 1024 + 32 + 2) % 251);

  Bytes test;
  for (int i = 0; i < 2; ++i) {
    const Bytes rec = cifar_record(i);
    test.insert(test.end(), rec.begin(), rec.end());
  }
  SUBCASE("truncated record") {
    test.resize(test.size() + 100, 7);
    write_file(dir / "test_batch.bin", test);
    const DataError e = expect_data_error([&] { cifar10(dir.path(), Split::test); });
    CHECK(e.file() == (dir / "test_batch.bin").string());
    CHECK(e.offset() == 2 * 3073);
    CHECK(contains(e.what(), "truncated record 2"));
    CHECK(contains(e.what(), "expected 3073"));
    CHECK(contains(e.what(), "has 100"));
  }
  SUBCASE("label out of range") {
    test[3073] = 10;
    write_file(dir / "test_batch.bin", test);
    const DataError e = expect_data_error([&] { cifar10(dir.path(), Split::test); });
    CHECK(e.offset() == 3073);
    CHECK(contains(e.what(), "label 10"));
  }
  SUBCASE("gzip-compressed file is read the same") {
    write_file(dir / "test_batch.bin", test, true);
    const Dataset t = cifar10(dir.path(), Split::test);
    CHECK(t.count == 2);
    CHECK(t.labels == std::vector<std::int32_t>{0, 1});
  }
}

// ---------------------------------------------------------------------------------------------
// Image folders

namespace {
// An RGB image w x h whose pixel (x, y) has channels (base + x, base + 10 y, base + 100), HWC.
Bytes rgb_image(int w, int h, int base) {
  Bytes p;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      p.push_back(std::uint8_t(base + x));
      p.push_back(std::uint8_t(base + 10 * y));
      p.push_back(std::uint8_t(base + 100));
    }
  return p;
}
void write_png(const fs::path& p, const Bytes& hwc, int w, int h, int channels) {
  fs::create_directories(p.parent_path());
  REQUIRE(stbi_write_png(p.string().c_str(), w, h, channels, hwc.data(), w * channels) != 0);
}
}  // namespace

TEST_CASE("image_folder: sorted class folders, PNG to CHW, skips reported, bad images rejected") {
  TempDir dir;
  // "dog" sorts after "cat": cat = 0, dog = 1. Files are read in sorted name order.
  write_png(dir / "dog/b.png", rgb_image(4, 3, 20), 4, 3, 3);
  write_png(dir / "dog/a.png", rgb_image(4, 3, 10), 4, 3, 3);
  write_png(dir / "cat/z.PNG", rgb_image(4, 3, 0), 4, 3, 3);
  write_file(dir / "cat/notes.txt", {'h', 'i'});

  Dataset d = image_folder(dir.path());
  CHECK(d.count == 3);
  CHECK(d.num_classes == 2);
  CHECK(d.class_names == std::vector<std::string>{"cat", "dog"});
  CHECK(d.labels == std::vector<std::int32_t>{0, 1, 1});
  CHECK(d.channels == 3);
  CHECK(d.height == 3);
  CHECK(d.width == 4);
  // Image 1 is dog/a.png (base 10). CHW: channel c, row y, column x at c*12 + y*4 + x.
  CHECK(d.image(1)[0 * 12 + 2 * 4 + 3] == 10 + 3);
  CHECK(d.image(1)[1 * 12 + 2 * 4 + 3] == 10 + 20);
  CHECK(d.image(1)[2 * 12 + 0] == 110);
  REQUIRE(d.skipped.size() == 1);  // the .txt file, reported rather than silently dropped
  CHECK(contains(d.skipped[0].file, "notes.txt"));

  SUBCASE("grey conversion") {
    ImageFolderOptions o;
    o.channels = 1;
    const Dataset g = image_folder(dir.path(), o);
    CHECK(g.channels == 1);
    CHECK(g.pixels.size() == 3 * 12);
  }
  SUBCASE("undecodable image: DataError naming the file, or skipped and counted") {
    write_file(dir / "dog/c_broken.png", {0x89, 'P', 'N', 'G', 1, 2, 3, 4, 5});
    const DataError e = expect_data_error([&] { image_folder(dir.path()); });
    CHECK(e.file() == (dir / "dog/c_broken.png").string());
    CHECK(contains(e.what(), "c_broken.png"));
    CHECK(contains(e.what(), "(offset 0)"));
    ImageFolderOptions o;
    o.skip_bad = true;
    const Dataset s = image_folder(dir.path(), o);
    CHECK(s.count == 3);
    REQUIRE(s.skipped.size() == 2);
    CHECK(contains(s.skipped[1].file, "c_broken.png"));
    CHECK(contains(s.skipped[1].reason, "cannot decode"));
  }
  SUBCASE("an image of another size: error, unless a size to resize to is given") {
    Bytes flat(8 * 6 * 3, 77);  // uniform colour survives any normalised resampling
    write_png(dir / "dog/c_big.png", flat, 8, 6, 3);
    const DataError e = expect_data_error([&] { image_folder(dir.path()); });
    CHECK(contains(e.what(), "8x6"));
    ImageFolderOptions o;
    o.height = 3;
    o.width = 4;
    const Dataset r = image_folder(dir.path(), o);
    CHECK(r.count == 4);
    const auto big = r.image(3);
    CHECK(std::all_of(big.begin(), big.end(), [](std::uint8_t v) { return v == 77; }));
    CHECK(r.image(1)[0 * 12 + 2 * 4 + 3] == 13);  // same-size images are not resampled
  }
}

// ---------------------------------------------------------------------------------------------
// Transforms

namespace {
std::vector<float> run_transform(const Transform& t, const Bytes& img, int c, int h, int w, SampleKey key = {}) {
  const auto [oh, ow] = t.output_size(h, w);
  std::vector<float> out(std::size_t(c * oh * ow));
  Resampler ws;
  t.apply({img.data(), c, h, w}, key, out.data(), ws);
  return out;
}
Bytes ramp(std::size_t n, int mul = 37) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = std::uint8_t((i * std::size_t(mul)) % 256);
  return b;
}
}  // namespace

TEST_CASE("RandomResizedCrop with scale (1,1), ratio (1,1) on a same-size image is the identity") {
  const Bytes img = ramp(2 * 5 * 5);
  for (Interpolation m : {Interpolation::bilinear, Interpolation::bicubic}) {
    Transform t;
    t.random_crop = RandomResizedCrop{5, 1.0, 1.0, 1.0, 1.0, m};
    for (std::uint64_t index = 0; index < 4; ++index) {
      const auto out = run_transform(t, img, 2, 5, 5, {7, 1, index});
      for (std::size_t i = 0; i < img.size(); ++i) CHECK(out[i] == doctest::Approx(img[i] / 255.0).epsilon(1e-6));
    }
  }
}

TEST_CASE("RandomResizedCrop geometry: in bounds, within scale/ratio, fallback as torchvision") {
  RandomResizedCrop c{28, 0.2, 1.0, 3.0 / 4.0, 4.0 / 3.0, Interpolation::bicubic};
  for (std::uint32_t s = 0; s < 500; ++s) {
    RandomStream rng(3, RngPurpose::crop, s);
    const PixelRect r = c.sample(28, 28, rng);
    REQUIRE(r.top >= 0);
    REQUIRE(r.left >= 0);
    REQUIRE(r.top + r.height <= 28);
    REQUIRE(r.left + r.width <= 28);
    // Rounding to whole pixels moves area and ratio a little off the sampled values.
    const double area = double(r.height * r.width) / (28.0 * 28.0);
    CHECK(area >= 0.2 * 0.85);
    CHECK(double(r.width) / r.height >= 0.75 * 0.85);
    CHECK(double(r.width) / r.height <= 4.0 / 3.0 / 0.85);
    RandomStream again(3, RngPurpose::crop, s);
    CHECK(c.sample(28, 28, again) == r);
  }
  // Area 2x the image never fits, so the centred fallback applies. A 10x40 (h x w) image has ratio
  // 4 > 4/3: h = 10, w = round(10 * 4/3) = 13, left = (40 - 13) / 2 = 13.
  RandomResizedCrop never{8, 2.0, 2.0, 3.0 / 4.0, 4.0 / 3.0, Interpolation::bilinear};
  RandomStream rng(1, RngPurpose::crop);
  CHECK(never.sample(10, 40, rng) == PixelRect{0, 13, 10, 13});
  // A 40x10 image (ratio 1/4 < 3/4): w = 10, h = round(10 / 0.75) = 13, top = 13.
  CHECK(never.sample(40, 10, rng) == PixelRect{13, 0, 13, 10});
  // A square image is within the ratio range: the whole image.
  CHECK(never.sample(9, 9, rng) == PixelRect{0, 0, 9, 9});
}

TEST_CASE("Resampler matches Pillow's filter arithmetic on a hand-computed 2x downscale") {
  // Row [0, 10, 20, 30] to 2 samples: scale 2, so the filter is stretched 2x.
  // Bilinear, output 0: centre 1, taps 0..2 at (k - 0.5)/2 = -0.25, 0.25, 0.75 -> weights
  // 0.75, 0.75, 0.25 (sum 1.75): (0*0.75 + 10*0.75 + 20*0.25) / 1.75 = 50/7.
  // Output 1: centre 3, taps 1..3 at -0.75, -0.25, 0.25 -> 0.25, 0.75, 0.75: 40/1.75.
  // Bicubic (a = -0.5), output 0: taps 0..3 at -0.25, 0.25, 0.75, 1.25 -> 0.8671875, 0.8671875,
  // 0.2265625, -0.0703125 (sum 1.890625): (8.671875 + 4.53125 - 2.109375) / 1.890625.
  const Bytes row = {0, 10, 20, 30};
  Resampler rs;
  float out[2];
  rs.run({row.data(), 1, 1, 4}, {0, 0, 1, 4}, {0, 0, 1, 4}, Interpolation::bilinear, out, 1, 2);
  CHECK(out[0] == doctest::Approx(50.0 / 7.0).epsilon(1e-6));
  CHECK(out[1] == doctest::Approx(40.0 / 1.75).epsilon(1e-6));
  rs.run({row.data(), 1, 1, 4}, {0, 0, 1, 4}, {0, 0, 1, 4}, Interpolation::bicubic, out, 1, 2);
  CHECK(out[0] == doctest::Approx(11.09375 / 1.890625).epsilon(1e-6));
  // 2x upscale, bilinear: output centres at 0.25, 0.75, ... of the source; output 1 (centre 0.75)
  // mixes pixel 0 (distance 0.25 -> weight 0.75) and pixel 1 (0.25): 2.5.
  float up[8];
  rs.run({row.data(), 1, 1, 4}, {0, 0, 1, 4}, {0, 0, 1, 4}, Interpolation::bilinear, up, 1, 8);
  CHECK(up[0] == doctest::Approx(0.0));  // centre 0.25: only pixel 0 lies within the clipped taps
  CHECK(up[1] == doctest::Approx(2.5));
  CHECK(up[2] == doctest::Approx(7.5));
  CHECK(up[7] == doctest::Approx(30.0));
}

TEST_CASE("ResizeCenterCrop box: resize shorter side, centred crop, in source coordinates") {
  // 28x28 -> resize 32 (scale 28/32), crop 28 at top = left = round(4/2) = 2 resized pixels.
  const CropBox b = ResizeCenterCrop{32, 28, Interpolation::bicubic}.box(28, 28);
  CHECK(b.top == doctest::Approx(2 * 28.0 / 32));
  CHECK(b.height == doctest::Approx(28 * 28.0 / 32));
  // 20x40 (h x w) -> shorter side 10: resized 10x20, crop 10 at left = 5 -> source left 10, width 20.
  const CropBox w = ResizeCenterCrop{10, 10, Interpolation::bilinear}.box(20, 40);
  CHECK(w.top == doctest::Approx(0));
  CHECK(w.left == doctest::Approx(10));
  CHECK(w.width == doctest::Approx(20));
  CHECK(w.height == doctest::Approx(20));
  // resize == crop == source side: identity.
  Transform t;
  t.center_crop = ResizeCenterCrop{6, 6, Interpolation::bicubic};
  const Bytes img = ramp(36);
  const auto out = run_transform(t, img, 1, 6, 6);
  for (std::size_t i = 0; i < img.size(); ++i) CHECK(out[i] == doctest::Approx(img[i] / 255.0).epsilon(1e-6));
}

TEST_CASE("Flip mirrors each row, flip_p 0 never flips, the choice is deterministic per sample") {
  const Bytes img = ramp(2 * 3 * 4);  // C=2, H=3, W=4
  Transform flip;
  flip.flip_p = 1.0;
  const auto f = run_transform(flip, img, 2, 3, 4);
  const auto plain = run_transform(Transform{}, img, 2, 3, 4);
  for (int c = 0; c < 2; ++c)
    for (int y = 0; y < 3; ++y)
      for (int x = 0; x < 4; ++x) {
        const auto at = [&](int col) { return std::size_t((c * 3 + y) * 4 + col); };
        CHECK(f[at(x)] == doctest::Approx(img[at(3 - x)] / 255.0));
        CHECK(plain[at(x)] == doctest::Approx(img[at(x)] / 255.0));
      }
  // p = 0.5: about half of the samples flip, and each sample's choice repeats for the same key.
  Transform half;
  half.flip_p = 0.5;
  int flipped = 0;
  for (std::uint64_t i = 0; i < 400; ++i) {
    const auto a = run_transform(half, img, 2, 3, 4, {5, 2, i});
    CHECK(a == run_transform(half, img, 2, 3, 4, {5, 2, i}));
    flipped += a[0] != plain[0];
  }
  CHECK(flipped > 150);
  CHECK(flipped < 250);
}

TEST_CASE("Normalisation: (x/255 - mean) / std per channel") {
  const Bytes img = {0, 255, 51, 0};  // C=2, H=1, W=2
  Transform t;
  t.normalize = Normalize{{0.5f, 0.2f}, {0.25f, 0.1f}};
  const auto out = run_transform(t, img, 2, 1, 2);
  CHECK(out[0] == doctest::Approx(-2.0));  // (0 - 0.5) / 0.25
  CHECK(out[1] == doctest::Approx(2.0));   // (1 - 0.5) / 0.25
  CHECK(out[2] == doctest::Approx(0.0));   // (0.2 - 0.2) / 0.1
  CHECK(out[3] == doctest::Approx(-2.0));  // (0 - 0.2) / 0.1
  const Bytes grey = {0, 255};
  Transform fm;
  fm.normalize = Normalize::fashion_mnist();
  const auto g = run_transform(fm, grey, 1, 1, 2);
  CHECK(g[0] == doctest::Approx(-72.94 / 90.02).epsilon(1e-5));
  CHECK(g[1] == doctest::Approx((255 - 72.94) / 90.02).epsilon(1e-5));
  Transform bad;
  bad.normalize = Normalize{{0.1f, 0.2f, 0.3f}, {1.0f}};
  CHECK_THROWS_AS(bad.validate(2), ConfigError);
}

// ---------------------------------------------------------------------------------------------
// Loader

namespace {
// n images of C x H x W with random-looking pixels; label = index % classes.
Dataset synthetic(std::int64_t n, int c, int h, int w, int classes = 3) {
  Dataset d;
  d.name = "synthetic";
  d.count = n;
  d.channels = c;
  d.height = h;
  d.width = w;
  d.num_classes = classes;
  d.pixels.resize(std::size_t(n) * d.image_size());
  RandomStream rng(11, RngPurpose::test);
  for (auto& p : d.pixels) p = std::uint8_t(rng.next_u32());
  for (std::int64_t i = 0; i < n; ++i) d.labels.push_back(std::int32_t(i % classes));
  return d;
}

struct Collected {
  std::vector<std::int64_t> indices;
  std::vector<std::int64_t> sizes;
  std::vector<float> values;
};
Collected collect(Loader& l, std::uint64_t epoch, std::int64_t first = 0) {
  Collected c;
  l.start_epoch(epoch, first);
  while (auto b = l.next()) {
    c.indices.insert(c.indices.end(), b->indices.begin(), b->indices.end());
    c.sizes.push_back(b->size());
    c.values.insert(c.values.end(), b->images.data(), b->images.data() + b->images.numel());
  }
  return c;
}
LoaderOptions opts(std::int64_t batch, int workers, std::uint64_t seed = 42) {
  LoaderOptions o;
  o.batch_size = batch;
  o.workers = workers;
  o.seed = seed;
  return o;
}
}  // namespace

TEST_CASE("Loader: every sample once per epoch, seed-determined order, images and labels match") {
  const Dataset d = synthetic(23, 1, 2, 2);
  Loader l(d, Transform{}, opts(5, 1));
  CHECK(l.batches_per_epoch() == 5);
  l.start_epoch(0);
  std::vector<std::int64_t> seen;
  std::int64_t position = 0;
  while (auto b = l.next()) {
    CHECK(b->position == position++);
    CHECK(b->images.shape() == Shape{b->size(), 1, 2, 2});
    for (std::int64_t i = 0; i < b->size(); ++i) {
      const std::int64_t idx = b->indices[std::size_t(i)];
      CHECK(b->labels[std::size_t(i)] == d.labels[std::size_t(idx)]);
      for (int k = 0; k < 4; ++k) CHECK(b->images[i * 4 + k] * 255.0f == doctest::Approx(d.image(idx)[std::size_t(k)]));
    }
    seen.insert(seen.end(), b->indices.begin(), b->indices.end());
  }
  CHECK(!l.next());  // stays finished
  std::vector<std::int64_t> sorted = seen;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::int64_t> all(23);
  std::iota(all.begin(), all.end(), 0);
  CHECK(sorted == all);
  CHECK(seen != all);  // shuffled
  CHECK(seen == l.epoch_indices(0));

  Loader same(d, Transform{}, opts(5, 1));
  CHECK(collect(same, 0).indices == seen);
  CHECK(collect(same, 1).indices != seen);  // another epoch, another order
  Loader other_seed(d, Transform{}, opts(5, 1, 43));
  CHECK(collect(other_seed, 0).indices != seen);
  LoaderOptions ordered = opts(5, 1);
  ordered.shuffle = false;
  Loader in_order(d, Transform{}, ordered);
  CHECK(collect(in_order, 3).indices == all);
}

TEST_CASE("Loader: the last partial batch is kept or dropped as asked") {
  const Dataset d = synthetic(23, 1, 2, 2);
  Loader keep(d, Transform{}, opts(5, 2));
  CHECK(collect(keep, 0).sizes == std::vector<std::int64_t>{5, 5, 5, 5, 3});
  LoaderOptions o = opts(5, 2);
  o.last_batch = LastBatch::drop;
  Loader drop(d, Transform{}, o);
  CHECK(drop.batches_per_epoch() == 4);
  const Collected c = collect(drop, 0);
  CHECK(c.sizes == std::vector<std::int64_t>{5, 5, 5, 5});
  CHECK(std::set<std::int64_t>(c.indices.begin(), c.indices.end()).size() == 20);
}

TEST_CASE("Loader: same batches with 0, 1 and 3 workers (augmented), and exact resume mid-epoch") {
  const Dataset d = synthetic(50, 3, 12, 12);
  Transform t;
  t.random_crop = RandomResizedCrop{8, 0.2, 1.0, 3.0 / 4.0, 4.0 / 3.0, Interpolation::random};
  t.flip_p = 0.5;
  t.normalize = Normalize::imagenet();
  Loader zero(d, t, opts(7, 0)), one(d, t, opts(7, 1)), three(d, t, opts(7, 3));
  for (std::uint64_t epoch : {0u, 4u}) {
    const Collected a = collect(zero, epoch), b = collect(one, epoch), c = collect(three, epoch);
    CHECK(a.indices == b.indices);
    CHECK(a.values == b.values);  // bit-identical
    CHECK(a.values == c.values);
    CHECK(a.values.size() == 50u * 3 * 8 * 8);
    // Resume at batch 3 of the epoch: the remaining batches are the same ones.
    const Collected r = collect(three, epoch, 3);
    CHECK(std::equal(r.indices.begin(), r.indices.end(), a.indices.begin() + 21, a.indices.end()));
    CHECK(std::equal(r.values.begin(), r.values.end(), a.values.begin() + 21 * 3 * 64, a.values.end()));
  }
  // Each epoch crops differently.
  CHECK(collect(one, 0).values != collect(one, 1).values);
  // Restarting an epoch half-way through discards what was prefetched.
  three.start_epoch(0);
  CHECK(three.next()->position == 0);
  CHECK(three.next()->position == 1);
  three.start_epoch(0);
  CHECK(three.next()->position == 0);
}

TEST_CASE("Loader: sharding by (rank, world)") {
  const Dataset d = synthetic(23, 1, 2, 2);
  auto shard = [&](int rank, ShardTail tail) {
    LoaderOptions o = opts(4, 1);
    o.rank = rank;
    o.world = 3;
    o.shard_tail = tail;
    Loader l(d, Transform{}, o);
    return collect(l, 2).indices;
  };
  SUBCASE("uneven: disjoint and covering") {
    std::multiset<std::int64_t> all;
    std::vector<std::size_t> sizes;
    for (int r = 0; r < 3; ++r) {
      const auto s = shard(r, ShardTail::uneven);
      sizes.push_back(s.size());
      all.insert(s.begin(), s.end());
    }
    CHECK(sizes == std::vector<std::size_t>{8, 8, 7});
    CHECK(all.size() == 23);
    CHECK(std::set<std::int64_t>(all.begin(), all.end()).size() == 23);
  }
  SUBCASE("drop: disjoint, equal sizes") {
    std::set<std::int64_t> all;
    for (int r = 0; r < 3; ++r) {
      const auto s = shard(r, ShardTail::drop);
      CHECK(s.size() == 7);
      all.insert(s.begin(), s.end());
    }
    CHECK(all.size() == 21);
  }
  SUBCASE("pad: equal sizes, covering") {
    std::set<std::int64_t> all;
    for (int r = 0; r < 3; ++r) {
      const auto s = shard(r, ShardTail::pad);
      CHECK(s.size() == 8);
      all.insert(s.begin(), s.end());
    }
    CHECK(all.size() == 23);
  }
  SUBCASE("ranks interleave one shared permutation: world 1 order = rank 0, 1, 2 alternating") {
    Loader whole(d, Transform{}, opts(4, 1));
    const auto full = collect(whole, 2).indices;
    const auto r1 = shard(1, ShardTail::uneven);
    for (std::size_t j = 0; j < r1.size(); ++j) CHECK(r1[j] == full[1 + 3 * j]);
  }
}

TEST_CASE("Loader: destroyed mid-epoch without hanging, handed-out batches stay valid, bad options") {
  const Dataset d = synthetic(200, 1, 16, 16);
  Transform t;
  t.random_crop = RandomResizedCrop{16, 0.2, 1.0, 3.0 / 4.0, 4.0 / 3.0, Interpolation::bicubic};
  std::optional<Batch> kept;
  std::vector<float> copy;
  {
    Loader l(d, t, opts(8, 3));
    l.start_epoch(0);
    kept = l.next();
    copy.assign(kept->images.data(), kept->images.data() + kept->images.numel());
  }
  CHECK(std::equal(copy.begin(), copy.end(), kept->images.data()));
  {
    Loader never_started(d, t, opts(8, 3));  // workers idle, destruction must still return
    CHECK_THROWS_AS(never_started.next(), ConfigError);
  }
  CHECK_THROWS_AS(Loader(d, t, opts(0, 1)), ConfigError);
  LoaderOptions o = opts(8, 1);
  o.rank = 3;
  o.world = 3;
  CHECK_THROWS_AS(Loader(d, t, o), ConfigError);
  Loader l(d, t, opts(8, 1));
  CHECK_THROWS_AS(l.start_epoch(0, 26), ConfigError);
}

// ---------------------------------------------------------------------------------------------
// The real Fashion-MNIST, when installed (dataset-fashion-mnist package)

TEST_CASE("Fashion-MNIST test split: 10000 images, 1000 per class, pixel mean 73.15") {
  const fs::path dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir / "t10k-images-idx3-ubyte.gz")) {
    MESSAGE("skipped: " << dir << " not installed (apt-get install dataset-fashion-mnist)");
    return;
  }
  const Dataset d = fashion_mnist(dir, Split::test);
  CHECK(d.count == 10000);
  CHECK(d.height == 28);
  CHECK(d.width == 28);
  CHECK(class_counts(d) == std::vector<std::int64_t>(10, 1000));
  const PixelStats s = pixel_stats(d);
  CHECK(s.mean[0] == doctest::Approx(73.15).epsilon(2e-4));
  CHECK(s.stddev[0] == doctest::Approx(89.87).epsilon(2e-4));
}
