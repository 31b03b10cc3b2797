// Fuzz target: SafetensorsReader from bytes (io/safetensors.hpp). Every accessor is called on each
// tensor it accepts, and an accepted file must survive a round trip through SafetensorsWriter
// (same names, dtypes, shapes, bytes and metadata), since checkpoints are written by one and read
// by the other.
#include <cstdlib>
#include <cstring>

#include "fuzz_common.hpp"
#include "vitfreeze/io/safetensors.hpp"

namespace {
using namespace vitfreeze;
using namespace vitfreeze::io;

template <class T>
void get_as(const SafetensorsReader& r, const std::string& name) {
  try {
    const Tensor<T> t = r.get<T>(name);
    if (t.bytes() != r.bytes(name).size()) std::abort();
  } catch (const Error&) {
  }
}

void touch(const SafetensorsReader& r, const TensorInfo& t) {
  const auto b = r.bytes(t.name);
  if (b.size() != t.end - t.begin) std::abort();
  const TensorRecord rec = r.record(t.name);
  if (rec.data.size() != b.size() || (b.size() && std::memcmp(rec.data.data(), b.data(), b.size()) != 0))
    std::abort();
  try {
    (void)r.get_f32(t.name);
  } catch (const Error&) {
  }
  try {
    (void)r.get_f64(t.name);
  } catch (const Error&) {
  }
  switch (t.dtype) {
    case DType::f32: get_as<float>(r, t.name); break;
    case DType::f64: get_as<double>(r, t.name); break;
    case DType::bf16: get_as<bf16>(r, t.name); break;
    case DType::f16: get_as<f16>(r, t.name); break;
    case DType::i64: get_as<std::int64_t>(r, t.name); break;
    case DType::i32: get_as<std::int32_t>(r, t.name); break;
    case DType::u8: get_as<std::uint8_t>(r, t.name); break;
  }
}

void round_trip(const SafetensorsReader& r) {
  SafetensorsWriter w;
  std::vector<std::byte> written;
  try {
    for (const auto& [k, v] : r.metadata()) w.add_metadata(k, v);
    for (const auto& name : r.names()) w.add(r.record(name));
    written = w.to_bytes();
  } catch (const Error&) {
    return;  // the writer may refuse what the reader tolerates (an empty name, checksum text in a name)
  }
  const SafetensorsReader back = vitfreeze::fuzz::must_succeed("re-reading the writer's output", [&] {
    return SafetensorsReader(std::move(written), "fuzz-roundtrip");
  });
  if (back.names() != r.names()) std::abort();
  for (const auto& name : r.names()) {
    const TensorInfo& a = r.info(name);
    const TensorInfo& b = back.info(name);
    if (a.dtype != b.dtype || a.shape != b.shape) std::abort();
    const auto x = r.bytes(name);
    const auto y = back.bytes(name);
    if (x.size() != y.size() || (x.size() && std::memcmp(x.data(), y.data(), x.size()) != 0)) std::abort();
  }
  for (const auto& [k, v] : r.metadata())
    if (k != kChecksumKey && k != kHeaderChecksumKey && back.metadata().at(k) != v) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto* p = reinterpret_cast<const std::byte*>(data);
  try {
    const SafetensorsReader r(std::vector<std::byte>(p, p + size), "fuzz");
    for (const TensorInfo& t : r.tensors()) touch(r, t);
    round_trip(r);
  } catch (const Error&) {
  }
  return 0;
}
