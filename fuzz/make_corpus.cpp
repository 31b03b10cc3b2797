// Writes the seed corpus: a few small valid (and a few boundary-case) inputs per fuzz target,
// produced with the library's own writers where it has them, so seeds track the real formats.
// Usage: make_corpus <fuzz/corpus>   (creates <dir>/<target>/<name> files)
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "vitfreeze/io/json.hpp"
#include "vitfreeze/io/safetensors.hpp"
#if __has_include("vitfreeze/io/checkpoint.hpp")
#include "checkpoint_fixture.hpp"
#define VITFREEZE_FUZZ_CHECKPOINT 1
#endif

namespace fs = std::filesystem;
using namespace vitfreeze;
using namespace vitfreeze::io;

namespace {
fs::path root;

void put(const std::string& target, const std::string& name, const void* data, std::size_t size) {
  fs::create_directories(root / target);
  std::ofstream out(root / target / name, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
}
void put(const std::string& target, const std::string& name, const std::string& text) {
  put(target, name, text.data(), text.size());
}
void put(const std::string& target, const std::string& name, const std::vector<std::byte>& bytes) {
  put(target, name, bytes.data(), bytes.size());
}

template <class T>
Tensor<T> ramp(Shape s) {
  Tensor<T> t(s);
  for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<T>(0.5f * static_cast<float>(i % 7));
  return t;
}

void json_seeds() {
  put("json", "object", R"({"a":1,"b":[true,false,null],"c":{"d":"e\"\\\/\b\f\n\r\t"},"e":[]})");
  put("json", "numbers", R"([0,-0,-0.0,1.5e-3,2E+10,9223372036854775807,-9223372036854775808,18446744073709551616,1e-320,0.1])");
  put("json", "unicode", R"(["\u00e9\u4e2d\ud83d\ude00", "é中😀", "\u0000"])");
  put("json", "nested", R"([[[[{"x":[{"y":[[]]}]}]]]])");
  put("json", "pretty", Json::parse(R"({"k":[1,2,{"z":null}],"s":"t"})").dump(2));
  put("json", "scalar", " \t\r\n\"just a string\" ");
}

void metrics_seeds() {
  put("metrics", "log", "{\"step\":1,\"loss\":0.5,\"lr\":1e-4}\n{\"step\":2,\"loss\":null}\n\n{\"epoch\":1,\"acc\":0.25}\n");
  put("metrics", "torn_tail", "{\"step\":1,\"loss\":0.5}\n{\"step\":2,\"lo");
  put("metrics", "empty", "");
}

void safetensors_seeds() {
  {
    SafetensorsWriter w;
    w.add("weight", ramp<float>({2, 3}));
    w.add("bias", ramp<float>({3}));
    put("safetensors", "f32", w.to_bytes());
  }
  {
    SafetensorsWriter w;
    w.add("a.f64", ramp<double>({2}));
    w.add("b.bf16", ramp<bf16>({2, 2}));
    w.add("c.f16", ramp<f16>({3}));
    w.add("d.i64", ramp<std::int64_t>({1}));
    w.add("e.i32", ramp<std::int32_t>({2}));
    w.add("f.u8", ramp<std::uint8_t>({5}));
    w.add_metadata("format", "pt");
    put("safetensors", "dtypes", w.to_bytes());
  }
  {
    SafetensorsWriter w;  // a scalar, an empty tensor, no checksum (as other writers produce)
    w.add("scalar", ramp<float>({}));
    w.add("empty", ramp<float>({0, 4}));
    w.set_checksum(false);
    put("safetensors", "edge", w.to_bytes());
  }
}

void checkpoint_seeds() {
#ifdef VITFREEZE_FUZZ_CHECKPOINT
  {
    fuzz::CheckpointFixture model;  // unsigned: the target re-signs, so mutations reach the checks
    auto w = model.writer();
    w.set_checksum(false);
    put("checkpoint", "unsigned", w.to_bytes());
  }
  {
    fuzz::CheckpointFixture model;  // as a trainer writes it, for the integrity checks
    put("checkpoint", "signed", model.writer().to_bytes());
  }
#endif
}

// Command lines for fuzz_flags: a backend byte (1: GPU), then the words, each after a NUL.
std::string command_line(char backend, std::initializer_list<std::string_view> words) {
  std::string out(1, backend);
  for (auto w : words) out += std::string(1, '\0') + std::string(w);
  return out.substr(0, 1) + out.substr(2);  // the first word follows the backend byte directly
}
void flags_seeds() {
  put("flags", "pretrain", command_line(0, {"--epochs", "3", "--schedule", "linear", "--t0=0.6", "--dont-freeze-pe", "--seed",
                                            "9007199254740993", "--non-finite", "skip:4"}));
  put("flags", "gpu", command_line(1, {"--device", "1", "--precision", "fp16", "--accumulation", "2",
                                       "--checkpoint-every-steps", "4"}));
  put("flags", "schedule", command_line(0, {"--units", "13", "--image", "224", "--patch", "16", "--format", "json", "--tau", "0.2"}));
  put("flags", "help", command_line(0, {"--help"}));
}

// Edit lists for fuzz_checkpoint_semantics: the accumulation byte, then (op, tensor, index, value)
// groups; no edit at all is the control that must load.
void checkpoint_semantics_seeds() {
  using namespace std::string_literals;
  put("checkpoint_semantics", "untouched", "\x00"s);
  put("checkpoint_semantics", "untouched_accumulating", "\x01"s);
  put("checkpoint_semantics", "nan", "\x00\x01\x05\x00\x03\x01"s);
  put("checkpoint_semantics", "negative", "\x00\x02\x07\x00\x03\x03\x05"s);
  put("checkpoint_semantics", "dropped", "\x01\x0f\x03"s);
  put("checkpoint_semantics", "small_integers", "\x01\x00\x09\x00\x00\x00\x07\x00\x0a\x00\x00\x00\x02"s);
}

std::vector<std::uint8_t> idx(std::uint32_t magic, const std::vector<std::uint32_t>& dims) {
  std::vector<std::uint8_t> out;
  auto be32 = [&](std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(v >> s));
  };
  be32(magic);
  std::uint64_t n = 1;
  for (auto d : dims) be32(d), n *= d;
  for (std::uint64_t i = 0; i < n; ++i) out.push_back(static_cast<std::uint8_t>(i * 37 % 256));
  return out;
}

void idx_seeds() {
  const auto images = idx(0x00000803, {2, 4, 4});
  const auto labels = idx(0x00000801, {6});
  put("idx", "images", images.data(), images.size());
  put("idx", "labels", labels.data(), labels.size());
  const auto gz = fuzz::gzip(images.data(), images.size());  // read as gzip by zlib's detection
  put("idx", "images.gz", gz.data(), gz.size());
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus-dir>\n", argv[0]);
    return 2;
  }
  root = argv[1];
  json_seeds();
  metrics_seeds();
  safetensors_seeds();
  idx_seeds();
  checkpoint_seeds();
  flags_seeds();
  checkpoint_semantics_seeds();
  return 0;
}
