// Fuzz target: read_metrics (io/metrics.hpp), which reads a metrics.jsonl from a path; the input
// goes through a scratch file. Every record it returns must be a JSON object.
#include <cstdlib>

#include "fuzz_common.hpp"
#include "vitfreeze/io/metrics.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto& path = vitfreeze::fuzz::scratch_path("metrics");
  vitfreeze::fuzz::write_scratch(path, data, size);
  try {
    for (const auto& record : vitfreeze::io::read_metrics(path))
      if (!record.is_object()) std::abort();
  } catch (const vitfreeze::Error&) {
  }
  return 0;
}
