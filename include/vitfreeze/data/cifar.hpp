#pragma once
// CIFAR-10 binary batches: each file is a sequence of 3073-byte records, one label byte followed by
// a 32x32 RGB image stored as three 1024-byte planes (already CHW). Train is data_batch_1..5.bin,
// test is test_batch.bin. A file that stops inside a record is a DataError at that record's offset.
#include <filesystem>
#include <string>
#include <vector>

#include "vitfreeze/data/byte_reader.hpp"
#include "vitfreeze/data/dataset.hpp"

namespace vitfreeze::data {

inline constexpr int kCifarSide = 32;
inline constexpr std::size_t kCifarImageBytes = 3 * kCifarSide * kCifarSide;
inline constexpr std::size_t kCifarRecordBytes = 1 + kCifarImageBytes;

// Appends every record of one batch file to `d` (which must be 3x32x32 with 10 classes).
inline void append_cifar_batch(Dataset& d, const std::filesystem::path& file) {
  ByteReader in(file);
  std::uint8_t record[kCifarRecordBytes];
  for (std::int64_t r = 0;; ++r) {
    const std::uint64_t start = in.offset();
    const std::size_t got = in.read_some(record, kCifarRecordBytes);
    if (got == 0) break;
    if (got < kCifarRecordBytes)
      in.fail(start, "truncated record " + std::to_string(r) + ": expected " + std::to_string(kCifarRecordBytes) +
                         " bytes (1 label + 3072 pixels), the file has " + std::to_string(got));
    if (record[0] >= d.num_classes)
      in.fail(start, "label " + std::to_string(record[0]) + " of record " + std::to_string(r) + " outside [0, " +
                         std::to_string(d.num_classes) + ")");
    d.labels.push_back(record[0]);
    d.pixels.insert(d.pixels.end(), record + 1, record + kCifarRecordBytes);
    ++d.count;
  }
}

inline Dataset cifar10(const std::filesystem::path& dir, Split split) {
  Dataset d;
  d.name = std::string("cifar10/") + split_name(split);
  d.channels = 3;
  d.height = d.width = kCifarSide;
  d.num_classes = 10;
  d.class_names = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
  std::vector<std::filesystem::path> files;
  if (split == Split::train)
    for (int i = 1; i <= 5; ++i) files.push_back(dir / ("data_batch_" + std::to_string(i) + ".bin"));
  else
    files.push_back(dir / "test_batch.bin");
  // Reserve from the file sizes (exact for uncompressed files) so the pixels are not copied on growth.
  std::uintmax_t bytes = 0;
  for (const auto& f : files) {
    std::error_code ec;
    const std::uintmax_t n = std::filesystem::file_size(f, ec);
    if (!ec) bytes += n;
  }
  d.pixels.reserve(bytes / kCifarRecordBytes * kCifarImageBytes);
  d.labels.reserve(bytes / kCifarRecordBytes);
  for (const auto& f : files) append_cifar_batch(d, f);
  return d;
}

}  // namespace vitfreeze::data
