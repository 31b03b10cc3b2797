// Fuzz target: the checkpoint loader (io/checkpoint.hpp) through CheckpointFixture::load. Checkpoints
// carry CRCs of their data and header, so a mutated file almost always stops at the integrity check.
// Each input is therefore loaded twice: as is (integrity checks), and, when it is a well-formed
// safetensors file, re-signed by SafetensorsWriter (fresh CRCs) so that the configuration and
// tensor checks and the restore see the mutation.
#include "checkpoint_fixture.hpp"
#include "fuzz_common.hpp"

namespace {
void load(const std::filesystem::path& path) {
  vitfreeze::fuzz::CheckpointFixture model;
  try {
    model.load(path);
  } catch (const vitfreeze::Error&) {
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace vitfreeze;
  const auto& path = fuzz::scratch_path("checkpoint");
  fuzz::write_scratch(path, data, size);
  load(path);

  std::vector<std::byte> signed_bytes;
  try {
    const auto* p = reinterpret_cast<const std::byte*>(data);
    const io::SafetensorsReader r(std::vector<std::byte>(p, p + size), "fuzz");
    io::SafetensorsWriter w;
    for (const auto& [k, v] : r.metadata()) w.add_metadata(k, v);
    for (const auto& name : r.names()) w.add(r.record(name));
    signed_bytes = w.to_bytes();
  } catch (const Error&) {
    return 0;
  }
  fuzz::write_scratch(path, signed_bytes.data(), signed_bytes.size());
  load(path);

  if (size < 256) (void)io::parse_checkpoint_file_name(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
