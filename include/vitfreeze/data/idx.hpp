#pragma once
// IDX files (MNIST, Fashion-MNIST): a big-endian u32 magic 0x0000TTNN (TT element type, NN number
// of dimensions), one big-endian u32 per dimension, then the row-major data. Only unsigned bytes
// (TT = 0x08) are image or label data; everything else is rejected with the offset of the fault.
#include <filesystem>
#include <string>
#include <vector>

#include "vitfreeze/data/byte_reader.hpp"
#include "vitfreeze/data/dataset.hpp"

namespace vitfreeze::data {

inline constexpr std::uint32_t kIdxImagesMagic = 0x00000803;  // unsigned byte, 3 dimensions
inline constexpr std::uint32_t kIdxLabelsMagic = 0x00000801;  // unsigned byte, 1 dimension

struct IdxArray {
  std::vector<std::uint32_t> dims;
  std::vector<std::uint8_t> data;  // product(dims) bytes
};

namespace detail {
inline std::string hex32(std::uint32_t v) {
  static const char digits[] = "0123456789abcdef";
  std::string s = "0x00000000";
  for (int i = 0; i < 8; ++i) s[9 - i] = digits[(v >> (4 * i)) & 15];
  return s;
}
}  // namespace detail

// Reads a whole uint8 IDX file whose magic must equal `magic` (kIdxImagesMagic or kIdxLabelsMagic).
inline IdxArray read_idx(const std::filesystem::path& path, std::uint32_t magic) {
  ByteReader in(path);
  const std::uint32_t got = in.read_u32_be("IDX magic number");
  if (got != magic)
    in.fail(0, "bad IDX magic: expected " + detail::hex32(magic) + " (unsigned byte, " +
                   std::to_string(magic & 0xff) + " dimensions), got " + detail::hex32(got));
  IdxArray a;
  a.dims.resize(magic & 0xff);
  std::uint64_t total = 1;
  for (std::size_t d = 0; d < a.dims.size(); ++d) {
    const std::uint64_t at = in.offset();
    a.dims[d] = in.read_u32_be("IDX dimension " + std::to_string(d));
    if (a.dims[d] == 0) in.fail(at, "IDX dimension " + std::to_string(d) + " is 0, expected at least 1");
    total *= a.dims[d];
    if (total > (std::uint64_t(1) << 40)) in.fail(at, "IDX dimensions describe more than 2^40 bytes");
  }
  in.read_exact_into(a.data, std::size_t(total), "IDX data");
  in.expect_end("the IDX data");
  return a;
}

// Images from an IDX3 file and labels from an IDX1 file (one grey channel). Labels must lie in
// [0, num_classes) and their count must equal the image count.
inline Dataset idx_dataset(const std::filesystem::path& images, const std::filesystem::path& labels,
                           int num_classes, std::string name) {
  IdxArray im = read_idx(images, kIdxImagesMagic);
  IdxArray lb = read_idx(labels, kIdxLabelsMagic);
  if (lb.dims[0] != im.dims[0])
    throw DataError(labels.string(), 4,
                    "label count " + std::to_string(lb.dims[0]) + " differs from the image count " +
                        std::to_string(im.dims[0]) + " of " + images.string());
  Dataset d;
  d.name = std::move(name);
  d.count = im.dims[0];
  d.channels = 1;
  d.height = int(im.dims[1]);
  d.width = int(im.dims[2]);
  d.num_classes = num_classes;
  d.pixels = std::move(im.data);
  d.labels.resize(lb.data.size());
  for (std::size_t i = 0; i < lb.data.size(); ++i) {
    if (lb.data[i] >= num_classes)
      throw DataError(labels.string(), 8 + i,
                      "label " + std::to_string(lb.data[i]) + " of item " + std::to_string(i) + " outside [0, " +
                          std::to_string(num_classes) + ")");
    d.labels[i] = lb.data[i];
  }
  return d;
}

// The four standard files (train-images-idx3-ubyte[.gz], ...) in `dir`; the .gz name is used when it
// exists, else the uncompressed one.
inline Dataset fashion_mnist(const std::filesystem::path& dir, Split split) {
  const std::string prefix = split == Split::train ? "train" : "t10k";
  auto pick = [&](const std::string& stem) {
    const std::filesystem::path gz = dir / (stem + ".gz");
    return std::filesystem::exists(gz) ? gz : dir / stem;
  };
  Dataset d = idx_dataset(pick(prefix + "-images-idx3-ubyte"), pick(prefix + "-labels-idx1-ubyte"), 10,
                          std::string("fashion-mnist/") + split_name(split));
  d.class_names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return d;
}

// Normalisation constants of the Fashion-MNIST train split, 0..255 scale (machine-facts §1).
inline constexpr double kFashionMnistMean = 72.94;
inline constexpr double kFashionMnistStd = 90.02;

}  // namespace vitfreeze::data
