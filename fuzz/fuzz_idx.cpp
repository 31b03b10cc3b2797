// Fuzz target: the IDX reader (data/idx.hpp over data/byte_reader.hpp), which reads from a path.
// The input goes through a scratch file, gzip-compressed in-process when its byte sum is odd
// (deterministic, so a saved crash input replays the same way), to cover both the raw and the
// zlib-decompressing paths. Inputs that are themselves gzip streams exercise corrupt-stream handling.
// The expected magic follows the input's first four bytes: labels (IDX1) or else images (IDX3).
#include <numeric>

#include "fuzz_common.hpp"
#include "vitfreeze/data/idx.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto& path = vitfreeze::fuzz::scratch_path("idx");
  const bool compress = std::accumulate(data, data + size, 0u) & 1u;
  if (compress) {
    const auto gz = vitfreeze::fuzz::gzip(data, size);
    vitfreeze::fuzz::write_scratch(path, gz.data(), gz.size());
  } else {
    vitfreeze::fuzz::write_scratch(path, data, size);
  }
  const bool labels = size >= 4 && data[0] == 0 && data[1] == 0 && data[2] == 8 && data[3] == 1;
  const std::uint32_t magic = labels ? vitfreeze::data::kIdxLabelsMagic : vitfreeze::data::kIdxImagesMagic;
  try {
    const auto a = vitfreeze::data::read_idx(path, magic);
    std::uint64_t total = 1;
    for (auto d : a.dims) total *= d;
    if (a.dims.size() != (magic & 0xff) || a.data.size() != total) std::abort();
  } catch (const vitfreeze::Error&) {
  }
  return 0;
}
