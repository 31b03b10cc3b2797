// Tests for vitfreeze::io: JSON, CRC-32C, atomic files, safetensors, PNG, plots, metrics.
#include <doctest/doctest.h>

#include "vitfreeze/testing/temp_dir.hpp"
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>
#include <stdexcept>

#include "vitfreeze/io/atomic_file.hpp"
#include "vitfreeze/io/checksum.hpp"
#include "vitfreeze/io/dir_lock.hpp"
#include "vitfreeze/io/json.hpp"
#include "vitfreeze/io/metrics.hpp"
#include "vitfreeze/io/plot.hpp"
#include "vitfreeze/io/png.hpp"
#include "vitfreeze/io/safetensors.hpp"

// Only this test reads PNGs back; its own static copy of stb_image.
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>

namespace fs = std::filesystem;
using namespace vitfreeze;
using namespace vitfreeze::io;

namespace {

// A fresh directory per test case, removed afterwards.
using vitfreeze::testing::TempDir;

// A safetensors file from a header text and data bytes, with an honest length prefix.
std::vector<std::byte> make_safetensors(const std::string& header, const std::vector<std::uint8_t>& data) {
  std::vector<std::byte> out(8);
  std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
  for (char c : header) out.push_back(static_cast<std::byte>(c));
  for (auto b : data) out.push_back(static_cast<std::byte>(b));
  return out;
}

// Parses and returns the CheckpointError's offset, failing the test if no CheckpointError comes.
std::uint64_t checkpoint_error_offset(std::vector<std::byte> file) {
  try {
    SafetensorsReader r(std::move(file), "corrupt.safetensors");
  } catch (const CheckpointError& e) {
    CHECK(std::string(e.what()).find("corrupt.safetensors") != std::string::npos);
    return e.offset();
  }
  FAIL("expected a CheckpointError");
  return 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
TEST_CASE("json: values, exact integers and insertion order") {
  const Json j = Json::parse(R"( {"b": 1, "a": [true, null, "x", -0.25, 9007199254740993], "c": {}} )");
  REQUIRE(j.is_object());
  CHECK(j.as_object()[0].first == "b");  // insertion order, not sorted
  CHECK(j.at("b").as_int() == 1);
  const Json& a = j.at("a");
  CHECK(a.size() == 5);
  CHECK(a.at(0).as_bool());
  CHECK(a.at(1).is_null());
  CHECK(a.at(2).as_string() == "x");
  CHECK(a.at(3).as_double() == -0.25);
  CHECK_FALSE(a.at(3).is_int());
  // 2^53 + 1 is not a double; it must survive as an exact integer.
  CHECK(a.at(4).is_int());
  CHECK(a.at(4).as_int() == 9007199254740993LL);
  CHECK(j.dump() == R"({"b":1,"a":[true,null,"x",-0.25,9007199254740993],"c":{}})");
  CHECK(j.dump(2) == "{\n  \"b\": 1,\n  \"a\": [\n    true,\n    null,\n    \"x\",\n    -0.25,\n"
                     "    9007199254740993\n  ],\n  \"c\": {}\n}");
  CHECK(Json::parse(j.dump(2)) == j);
  CHECK(Json::parse(j.dump()) == j);
}

TEST_CASE("json: strings, escapes and unicode round trip") {
  const Json s = Json::parse(R"("q\"b\\s\/n\nt\tu\u00e9\ud83d\ude00")");
  CHECK(s.as_string() == "q\"b\\s/n\nt\tu\xc3\xa9\xf0\x9f\x98\x80");  // é is C3 A9, U+1F600 is F0 9F 98 80
  CHECK(Json(std::string("a\"\\\n\x01")).dump() == R"("a\"\\\n\u0001")");
  CHECK(Json::parse(s.dump()) == s);
}

TEST_CASE("json: numbers written in shortest exact form") {
  CHECK(Json(0.1).dump() == "0.1");
  CHECK(Json(1e300).dump() == "1e+300");
  CHECK(Json(-3).dump() == "-3");
  CHECK(Json(std::numeric_limits<std::int64_t>::min()).dump() == "-9223372036854775808");
  CHECK(Json(std::nan("")).dump() == "null");  // no JSON form; logs stay valid
  for (double v : {0.1, 1.0 / 3.0, 6.02214076e23, 5e-324, -1.7976931348623157e308})
    CHECK(Json::parse(Json(v).dump()).as_double() == v);
  CHECK(Json::parse("1e-400").as_double() == 0.0);  // underflow is harmless
  CHECK(Json::parse("18446744073709551616").as_double() == 18446744073709551616.0);  // beyond int64
}

TEST_CASE("json: parse errors name the byte offset") {
  struct Case {
    std::string text;
    std::uint64_t offset;
  };
  const Case cases[] = {
      {"", 0},                     // nothing
      {"{\"a\":1,}", 7},           // trailing comma
      {"[1,2", 4},                 // unterminated array
      {"01", 1},                   // leading zero
      {"1 2", 2},                  // trailing garbage
      {"{} x", 3},                 // trailing garbage after an object
      {"tru", 0},                  // bad literal
      {"\"abc", 4},                // unterminated string
      {"[1.]", 3},                 // no digits after '.'
      {"{\"a\" 1}", 5},            // missing ':'
      {"\"\\x\"", 2},              // bad escape
      {"{\"a\":1,\"a\":2}", 7},    // duplicate key
      {"\"\\ud800\"", 7},          // lone high surrogate
      {"\"\\udc00\"", 1},          // lone low surrogate
      {"[\"\x01\"]", 2},           // raw control character
      {"\"\xff\"", 1},             // invalid UTF-8
      {"\"\xc0\xaf\"", 1},         // overlong UTF-8
      {"1e999", 0},                // overflows a double
      {"-", 1},                    // sign without digits
      {"[1] // comment", 4},       // no comments
      {"NaN", 0},                  // not JSON
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    try {
      (void)Json::parse(c.text, "cfg.json");
      FAIL("expected a JsonParseError");
    } catch (const JsonParseError& e) {
      CHECK(e.offset() == c.offset);
      CHECK(e.file() == "cfg.json");
    }
  }
}

TEST_CASE("json: depth limit") {
  const std::string deep = std::string(200, '[') + std::string(200, ']');
  try {
    (void)Json::parse(deep);
    FAIL("expected a JsonParseError");
  } catch (const JsonParseError& e) {
    CHECK(e.offset() == 128);  // the 129th '[' exceeds the default limit of 128
  }
  CHECK(Json::parse(deep, "x", JsonParseLimits{.max_depth = 200}).is_array());
}

TEST_CASE("json: building values and typed accessors") {
  Json j;
  j["epoch"] = 3;
  j["loss"] = 0.5;
  j.set("name", "run").set("epoch", 4);  // replacing keeps the position
  j["tags"].push_back("a").push_back(Json(nullptr));
  CHECK(j.dump() == R"({"epoch":4,"loss":0.5,"name":"run","tags":["a",null]})");
  CHECK_THROWS_AS((void)j.at("missing"), ConfigError);
  CHECK_THROWS_AS((void)j.at("loss").as_int(), ConfigError);
  CHECK_THROWS_AS((void)j.at("name").as_double(), ConfigError);
  CHECK(Json(2.0).as_int() == 2);
  CHECK(Json(std::uint64_t(1) << 63).is_int() == false);  // above int64: kept as a double
}

// ---------------------------------------------------------------------------------------------
TEST_CASE("crc32c: known answers (CRC-32C / Castagnoli)") {
  CHECK(crc32c(std::string_view("123456789")) == 0xE3069283u);  // the catalogue check value
  CHECK(crc32c(std::string_view("")) == 0u);
  // RFC 3720 (iSCSI) B.4 test vectors: 32 bytes of 0x00, 32 of 0xFF, 32 ascending.
  std::vector<std::byte> zeros(32, std::byte{0}), ones(32, std::byte{0xff}), ascending(32);
  for (int i = 0; i < 32; ++i) ascending[static_cast<std::size_t>(i)] = static_cast<std::byte>(i);
  CHECK(crc32c(zeros) == 0x8A9136AAu);
  CHECK(crc32c(ones) == 0x62A8AB43u);
  CHECK(crc32c(ascending) == 0x46DD794Eu);
}

TEST_CASE("crc32c: running checksum equals one-shot at any split") {
  std::vector<std::byte> data(1000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>((i * 131 + 7) % 251);
  const std::uint32_t whole = crc32c(data);
  for (std::size_t split : {0, 1, 3, 7, 8, 9, 500, 999, 1000}) {
    const std::span<const std::byte> s(data);
    CHECK(crc32c(s.subspan(split), crc32c(s.first(split))) == whole);
  }
}

// ---------------------------------------------------------------------------------------------
TEST_CASE("atomic file: replace, and keep the old file when the writer throws") {
  TempDir dir;
  const fs::path target = dir / "state.bin";
  write_file_atomic(target, std::string_view("old contents"));
  CHECK(read_text_file(target) == "old contents");

  struct WriterFailed : std::runtime_error {
    using std::runtime_error::runtime_error;
  };
  CHECK_THROWS_AS(write_file_atomic(target,
                                    [](FileSink& sink) {
                                      // More than the sink's buffer, so part of it really reaches the disk.
                                      std::vector<std::byte> big(3u << 20, std::byte{0x5a});
                                      sink.write(big);
                                      sink.write(std::string_view("half"));
                                      throw WriterFailed("simulated failure midway");
                                    }),
                  WriterFailed);
  CHECK(read_text_file(target) == "old contents");
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    ++entries;
    CHECK(e.path().filename() == "state.bin");  // no temporary left behind
  }
  CHECK(entries == 1);

  write_file_atomic(target, std::string_view("new"));
  CHECK(read_text_file(target) == "new");
}

TEST_CASE("atomic file: I/O errors name the path") {
  TempDir dir;
  const fs::path nowhere = dir / "missing_dir" / "x.bin";
  try {
    write_file_atomic(nowhere, std::string_view("x"));
    FAIL("expected a FileError");
  } catch (const FileError& e) {
    CHECK(e.file() == nowhere.string());
  }
  try {
    (void)read_file(dir / "absent.bin");
    FAIL("expected a FileError");
  } catch (const FileError& e) {
    CHECK(e.file() == (dir / "absent.bin").string());
  }
  CHECK_THROWS_AS((void)read_file(dir.path()), FileError);  // a directory is not a file
}

TEST_CASE("atomic file: a FIFO, device or directory at the path is refused, never replaced") {
  TempDir dir;
  const fs::path fifo = dir / "pipe";
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  CHECK_THROWS_WITH_AS(write_file_atomic(fifo, std::string_view("x")), doctest::Contains("not a regular file (a FIFO)"),
                       FileError);
  CHECK(fs::is_fifo(fifo));
  fs::create_symlink(fifo, dir / "link");  // followed: the link's target decides
  CHECK_THROWS_AS(write_file_atomic(dir / "link", std::string_view("x")), FileError);
  CHECK(fs::is_symlink(dir / "link"));
  fs::create_directory(dir / "sub");
  CHECK_THROWS_WITH_AS(write_file_atomic(dir / "sub", std::string_view("x")), doctest::Contains("(a directory)"), FileError);
  // Devices are only looked at: the check comes before anything is created.
  CHECK_THROWS_WITH_AS(check_output_file("/dev/null"), doctest::Contains("(a device)"), FileError);
  CHECK_THROWS_WITH_AS(check_output_file(dir / "absent" / "x.bin"), doctest::Contains("does not exist"), FileError);
  CHECK_NOTHROW(check_output_file(dir / "new.bin", true));
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++entries;
  CHECK(entries == 3);  // pipe, link, sub: the probe left nothing
}

TEST_CASE("directory lock: a second holder is refused naming the first, and a killed holder releases it") {
  TempDir dir;
  {
    DirectoryLock first(dir.path());
    CHECK_THROWS_WITH_AS(DirectoryLock(dir.path()), doctest::Contains(("in use by another run (pid " + std::to_string(::getpid())).c_str()),
                         FileError);
  }
  CHECK_NOTHROW(DirectoryLock(dir.path()));

  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    DirectoryLock held(dir.path());
    (void)!::write(ready[1], "x", 1);
    ::pause();
    ::_exit(0);
  }
  char c = 0;
  REQUIRE(::read(ready[0], &c, 1) == 1);
  CHECK_THROWS_WITH_AS(DirectoryLock(dir.path()), doctest::Contains(("(pid " + std::to_string(child) + " on ").c_str()), FileError);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  CHECK_NOTHROW(DirectoryLock(dir.path()));
  ::close(ready[0]), ::close(ready[1]);
}

// ---------------------------------------------------------------------------------------------
TEST_CASE("safetensors: a hand-built file, byte for byte") {
  Tensor<float> a({2});
  a[0] = 1.0f, a[1] = -2.0f;
  SafetensorsWriter w;
  w.set_checksum(false);
  w.add("a", a);
  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  REQUIRE(header.size() == 54);  // 5 + 15 + 12 + 20 + 2
  std::vector<std::uint8_t> expect = {56, 0, 0, 0, 0, 0, 0, 0};  // 54 padded to a multiple of 8
  for (char c : header) expect.push_back(static_cast<std::uint8_t>(c));
  expect.push_back(' ');
  expect.push_back(' ');
  for (std::uint8_t b : {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0}) expect.push_back(b);  // 1.0f, -2.0f LE

  TempDir dir;
  w.write(dir / "a.safetensors");
  for (const auto& got : {w.to_bytes(), read_file(dir / "a.safetensors")}) {
    REQUIRE(got.size() == expect.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
      CAPTURE(i);
      CHECK(std::to_integer<std::uint8_t>(got[i]) == expect[i]);
    }
  }
}

TEST_CASE("safetensors: reads a file from another writer (no padding, any order, metadata)") {
  // Header order differs from data order; extra whitespace; metadata last.
  const std::string header =
      R"({ "w": {"data_offsets": [2, 10], "shape": [2, 1], "dtype": "F32"},
           "b": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
           "__metadata__": {"format": "pt"} })";
  const std::vector<std::uint8_t> data = {7, 9, 0, 0, 0x40, 0x40, 0, 0, 0x80, 0xbf};  // 3.0f, -1.0f
  const SafetensorsReader r(make_safetensors(header, data), "other.safetensors");
  CHECK(r.names() == std::vector<std::string>{"w", "b"});
  CHECK(r.metadata().at("format") == "pt");
  const Tensor<float> w = r.get_f32("w");
  CHECK(w.shape() == Shape{2, 1});
  CHECK(w[0] == 3.0f);
  CHECK(w[1] == -1.0f);
  const Tensor<std::uint8_t> b = r.get<std::uint8_t>("b");
  CHECK(b[0] == 7);
  CHECK(b[1] == 9);
  CHECK_FALSE(r.has("nope"));
  CHECK_THROWS_AS((void)r.get_f32("nope"), CheckpointError);
  CHECK_THROWS_AS((void)r.get_f32("b"), CheckpointError);  // U8 is not a floating dtype
  CHECK_THROWS_AS((void)r.get<float>("b"), CheckpointError);
}

TEST_CASE("safetensors: round trip of every dtype") {
  TempDir dir;
  const float values[] = {0.5f, -2.0f, 1.25f, 3.0f, 0.0f, -0.75f};  // exact in bf16 and f16
  auto fill = [&](auto t) {
    for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<typename decltype(t)::value_type>(values[i]);
    return t;
  };
  const auto f32 = fill(Tensor<float>({2, 3}));
  const auto f64 = fill(Tensor<double>({3, 2}));
  const auto b16 = fill(Tensor<bf16>({6}));
  const auto h16 = fill(Tensor<f16>({1, 2, 3}));
  Tensor<std::int64_t> i64({2});
  i64[0] = -(std::int64_t(1) << 60), i64[1] = 42;
  Tensor<std::int32_t> i32({3});
  i32[0] = -7, i32[1] = 0, i32[2] = 2147483647;
  Tensor<std::uint8_t> u8({2, 2});
  for (int i = 0; i < 4; ++i) u8[i] = static_cast<std::uint8_t>(i * 80);
  const Tensor<float> scalar = Tensor<float>::full(Shape{}, 7.5f);
  const Tensor<float> empty({0, 4});

  SafetensorsWriter w;
  w.add("f32", f32);
  w.add("f64", f64);
  w.add("bf16", b16);
  w.add("f16", h16);
  w.add("i64", i64);
  w.add("i32", i32);
  w.add("u8", u8);
  w.add("scalar", scalar);
  w.add("empty", empty);
  w.add_metadata("epoch", "12");
  w.write(dir / "all.safetensors");

  const SafetensorsReader r(dir / "all.safetensors");
  CHECK(r.names() == std::vector<std::string>{"f32", "f64", "bf16", "f16", "i64", "i32", "u8", "scalar", "empty"});
  CHECK(r.metadata().at("epoch") == "12");
  CHECK(r.metadata().count(std::string(kChecksumKey)) == 1);
  CHECK(r.info("bf16").dtype == DType::bf16);
  CHECK(r.info("f16").shape == std::vector<std::int64_t>{1, 2, 3});
  for (const char* name : {"f32", "f64", "bf16", "f16"}) {
    CAPTURE(name);
    const Tensor<float> t = r.get_f32(name);
    REQUIRE(t.numel() == 6);
    for (int i = 0; i < 6; ++i) CHECK(t[i] == values[i]);
  }
  CHECK(r.get_f32("f32").shape() == Shape{2, 3});
  CHECK(r.get_f64("f64")[2] == 1.25);
  const auto i64r = r.get<std::int64_t>("i64");
  CHECK(i64r[0] == i64[0]);
  CHECK(i64r[1] == 42);
  CHECK(r.get<std::int32_t>("i32")[2] == 2147483647);
  CHECK(r.get<std::uint8_t>("u8")[3] == 240);
  CHECK(r.get<bf16>("bf16")[2].bits == b16[2].bits);
  CHECK(r.get<f16>("f16")[5].bits == h16[5].bits);
  CHECK(r.get_f32("scalar").rank() == 0);
  CHECK(r.get_f32("scalar")[0] == 7.5f);
  CHECK(r.get_f32("empty").shape() == Shape{0, 4});
  const TensorRecord rec = r.record("i32");
  CHECK(rec.dtype == DType::i32);
  CHECK(rec.data.size() == 12);
  // Raw bytes survive exactly.
  CHECK(std::memcmp(r.bytes("f64").data(), f64.data(), f64.bytes()) == 0);
}

TEST_CASE("safetensors: the writer rejects bad input") {
  SafetensorsWriter w;
  w.add("x", Tensor<float>({1}));
  CHECK_THROWS_AS(w.add("x", Tensor<float>({1})), ConfigError);
  CHECK_THROWS_AS(w.add("__metadata__", Tensor<float>({1})), ConfigError);
  CHECK_THROWS_AS(w.add(TensorRecord{"y", DType::f32, {3}, std::vector<std::byte>(8)}), ConfigError);
}

TEST_CASE("safetensors: corrupt files are CheckpointErrors at the right offset") {
  SafetensorsWriter w;
  w.add("a", Tensor<float>::full({4}, 1.0f));
  w.add("b", Tensor<double>::full({2}, -3.0));
  const std::vector<std::byte> good = w.to_bytes();
  const std::uint64_t header_len = w.header().size();
  REQUIRE_NOTHROW(SafetensorsReader(good, "good"));

  SUBCASE("shorter than the length field") {
    CHECK(checkpoint_error_offset({good.begin(), good.begin() + 5}) == 0);
  }
  SUBCASE("header length larger than the file") {
    auto f = good;
    f[0] = std::byte{0xff}, f[1] = std::byte{0x10};
    CHECK(checkpoint_error_offset(f) == 0);
    for (int i = 0; i < 8; ++i) f[static_cast<std::size_t>(i)] = std::byte{0xff};  // 2^64-1: no huge allocation
    CHECK(checkpoint_error_offset(f) == 0);
  }
  SUBCASE("truncated data") {
    CHECK(checkpoint_error_offset({good.begin(), good.end() - 3}) >= 8 + header_len);
  }
  SUBCASE("trailing bytes after the last tensor") {
    auto f = good;
    f.push_back(std::byte{0});
    CHECK(checkpoint_error_offset(f) == good.size());
  }
  SUBCASE("flipped byte in the header JSON") {
    auto f = good;
    const std::size_t colon = 8 + w.header().find(':');
    f[colon] = std::byte{';'};
    CHECK(checkpoint_error_offset(f) == colon);
  }
  SUBCASE("flipped byte in the data fails the checksum") {
    auto f = good;
    f[8 + header_len + 5] ^= std::byte{0x01};
    CHECK(checkpoint_error_offset(f) == 8 + header_len);
  }
  SUBCASE("hand-made headers") {
    const std::vector<std::uint8_t> data12(12, 0);
    const std::uint64_t data_at = 0;  // offsets below are relative to the data section
    auto at = [](const std::string& h) { return 8 + h.size(); };
    std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,800]}})";
    CHECK(checkpoint_error_offset(make_safetensors(h, std::vector<std::uint8_t>(8, 0))) == at(h) + data_at);
    h = R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})";  // shape says 12 bytes
    CHECK(checkpoint_error_offset(make_safetensors(h, std::vector<std::uint8_t>(8, 0))) == at(h));
    h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
    CHECK(checkpoint_error_offset(make_safetensors(h, data12)) == at(h) + 4);  // overlap
    h = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
    CHECK(checkpoint_error_offset(make_safetensors(h, data12)) == at(h) + 4);  // gap
    h = R"({"a":{"dtype":"F8","shape":[4],"data_offsets":[0,4]}})";
    CHECK(checkpoint_error_offset(make_safetensors(h, std::vector<std::uint8_t>(4, 0))) == 8);
    h = R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})";
    CHECK(checkpoint_error_offset(make_safetensors(h, std::vector<std::uint8_t>(4, 0))) == 8);
    h = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})";
    CHECK(checkpoint_error_offset(make_safetensors(h, std::vector<std::uint8_t>(4, 0))) == 8);
    h = R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})";  // numel overflow
    CHECK(checkpoint_error_offset(make_safetensors(h, std::vector<std::uint8_t>(4, 0))) == at(h));
    h = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}})";
    CHECK(checkpoint_error_offset(make_safetensors(h, std::vector<std::uint8_t>(4, 0))) == 8);
    h = R"({"__metadata__":{"k":1}})";
    CHECK(checkpoint_error_offset(make_safetensors(h, {})) == 8);
    h = R"([1,2])";
    CHECK(checkpoint_error_offset(make_safetensors(h, {})) == 8);
  }
}

TEST_CASE("safetensors: a name from the file is cut short in error messages") {
  const std::string name(1 << 20, 'n');
  const std::string h = "{\"" + name + R"(":{"dtype":"F8","shape":[4],"data_offsets":[0,4]}})";
  try {
    SafetensorsReader(make_safetensors(h, std::vector<std::uint8_t>(4, 0)), "long");
    FAIL("expected a CheckpointError");
  } catch (const CheckpointError& e) {
    CHECK(std::string(e.what()).size() < 400);
    CHECK(std::string(e.what()).find("nnn...\" (1048576 characters)") != std::string::npos);
  }
}

TEST_CASE("safetensors: every single-byte corruption and truncation is caught or harmless") {
  SafetensorsWriter w;
  w.add("w", Tensor<float>::full({2, 2}, 0.5f));
  w.add("step", Tensor<std::int64_t>::full({1}, 7));
  const std::vector<std::byte> good = w.to_bytes();
  int rejected = 0;
  for (std::size_t i = 0; i < good.size(); ++i) {
    auto f = good;
    f[i] ^= std::byte{0xff};
    try {
      SafetensorsReader r(std::move(f), "fuzz");
      for (const auto& name : r.names()) (void)r.record(name);
    } catch (const CheckpointError&) {
      ++rejected;
    }  // any other exception type escapes and fails the test
  }
  // Header bytes that stay valid JSON with the same meaning are the only survivors: the padding.
  CHECK(rejected >= static_cast<int>(good.size()) - 8);
  for (std::size_t n = 0; n < good.size(); ++n) {
    CAPTURE(n);
    CHECK_THROWS_AS(SafetensorsReader(std::vector<std::byte>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n)), "cut"),
                    CheckpointError);
  }
}

TEST_CASE("safetensors: a missing file is a CheckpointError naming it") {
  TempDir dir;
  try {
    SafetensorsReader r(dir / "none.safetensors");
    FAIL("expected a CheckpointError");
  } catch (const CheckpointError& e) {
    CHECK(e.file() == (dir / "none.safetensors").string());
  }
}

// ---------------------------------------------------------------------------------------------
TEST_CASE("png: written and read back with stb_image") {
  TempDir dir;
  Image img(3, 2, 3);
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x) {
      std::uint8_t* p = img.at(x, y);
      p[0] = static_cast<std::uint8_t>(x * 100), p[1] = static_cast<std::uint8_t>(y * 200), p[2] = 33;
    }
  const fs::path path = dir / "tiny.png";
  write_png(path, img);
  int w = 0, h = 0, c = 0;
  unsigned char* back = stbi_load(path.c_str(), &w, &h, &c, 0);
  REQUIRE(back != nullptr);
  CHECK(w == 3);
  CHECK(h == 2);
  CHECK(c == 3);
  const unsigned char* p = back + (1 * 3 + 2) * 3;  // pixel (2, 1)
  CHECK(p[0] == 200);
  CHECK(p[1] == 200);
  CHECK(p[2] == 33);
  stbi_image_free(back);
  CHECK_THROWS_AS(write_png(path, 0, 2, 3, img.pixels.data()), ConfigError);
  CHECK_THROWS_AS(write_png(dir / "no_dir" / "x.png", img), FileError);
}

TEST_CASE("png: image grid layout and value mapping") {
  std::vector<Tensor<float>> images;
  for (int k = 0; k < 3; ++k) images.push_back(Tensor<float>::full({1, 4, 4}, 0.25f * static_cast<float>(k)));
  images[2].at(0, 1, 2) = 2.0f;  // clamps to 255
  Tensor<float> rgb({3, 4, 4});
  for (int i = 0; i < 16; ++i) rgb[i] = -1.0f, rgb[16 + i] = 0.0f, rgb[32 + i] = 1.0f;  // blue in [-1, 1]
  images.push_back(rgb);

  const Image g = render_image_grid(images, 2, 1, -1.0f, 1.0f);
  CHECK(g.width == 2 * (4 + 1) + 1);
  CHECK(g.height == 2 * (4 + 1) + 1);
  CHECK(g.channels == 3);  // any RGB image makes the grid RGB
  CHECK(g.at(0, 0)[0] == 255);  // padding is white
  // Image 1 (value 0.25 in [-1, 1] -> 0.625 * 255 = 159.4), at column 1, row 0.
  CHECK(g.at(1 + 5, 1)[0] == 159);
  CHECK(g.at(1 + 5, 1)[2] == 159);  // gray repeated over channels
  CHECK(g.at(1 + 2, 1 + 5 + 1)[1] == 255);  // image 2's clamped pixel at (x 2, y 1)
  const std::uint8_t* blue = g.at(6 + 3, 6 + 3);
  CHECK((blue[0] == 0 && blue[1] == 128 && blue[2] == 255));

  TempDir dir;
  write_image_grid(dir / "grid.png", images, 2, 1, -1.0f, 1.0f);
  int w = 0, h = 0, c = 0;
  CHECK(stbi_info((dir / "grid.png").c_str(), &w, &h, &c) == 1);
  CHECK(w == 11);
  CHECK(h == 11);
  CHECK_THROWS_AS(render_image_grid({Tensor<float>({2, 4, 4})}, 1), ShapeError);
  CHECK_THROWS_AS(render_image_grid({Tensor<float>({1, 4, 4}), Tensor<float>({1, 5, 4})}, 1), ShapeError);
}

// ---------------------------------------------------------------------------------------------
TEST_CASE("plot: tick helpers") {
  CHECK(io::detail::nice_step(10, 5) == 2);
  CHECK(io::detail::nice_step(0.9, 3) == doctest::Approx(0.2));
  CHECK(io::detail::format_tick(0.5, 0.1) == "0.5");
  CHECK(io::detail::format_tick(20, 10) == "20");
  CHECK(io::detail::format_tick(1.5e-4, 5e-5) == "1.5e-4");
  CHECK(io::detail::format_tick(250000, 50000) == "2.5e5");
  CHECK(io::detail::log_tick_label(-3) == "1e-3");
  CHECK(io::detail::log_tick_label(2) == "100");
  const auto a = io::detail::linear_axis(0.3, 9.2, 5);
  CHECK(a.lo == 0);
  CHECK(a.hi == 10);
  CHECK(a.ticks.size() == 6);
}

TEST_CASE("plot: PNG of the requested size with many series") {
  std::vector<PlotSeries> series;
  for (int k = 0; k < 15; ++k) {
    PlotSeries s{"block." + std::to_string(k), {}, {}};
    for (int i = 0; i <= 50; ++i) {
      s.x.push_back(i);
      s.y.push_back(std::exp(-0.05 * i * (k + 1)) + (i == 20 ? std::nan("") : 0.0));  // a gap at i = 20
    }
    series.push_back(s);
  }
  TempDir dir;
  const fs::path path = dir / "lr.png";
  write_line_plot(path.string(), series, {.title = "per-unit lr", .x_label = "epoch", .y_label = "lr", .width = 640, .height = 360, .log_y = true});
  int w = 0, h = 0, c = 0;
  unsigned char* px = stbi_load(path.c_str(), &w, &h, &c, 3);
  REQUIRE(px != nullptr);
  CHECK(w == 640);
  CHECK(h == 360);
  std::set<std::uint32_t> colours;
  for (int i = 0; i < w * h; ++i)
    colours.insert(std::uint32_t(px[3 * i]) << 16 | std::uint32_t(px[3 * i + 1]) << 8 | px[3 * i + 2]);
  stbi_image_free(px);
  CHECK(colours.size() > 15);  // the series are drawn in distinct colours
  for (std::size_t i = 0; i < 15; ++i)
    for (std::size_t j = 0; j < i; ++j) {
      const Rgb a = io::detail::series_colour(i), b = io::detail::series_colour(j);
      CHECK((a.r != b.r || a.g != b.g || a.b != b.b || io::detail::series_dash(i) != io::detail::series_dash(j)));
    }

  const Image empty = render_line_plot({}, {.width = 300, .height = 200});
  CHECK(empty.width == 300);
  CHECK(empty.height == 200);
  CHECK_THROWS_AS(render_line_plot({PlotSeries{"bad", {1, 2}, {1}}}), ConfigError);
}

// ---------------------------------------------------------------------------------------------
TEST_CASE("metrics: JSONL append, resume and torn last line") {
  TempDir dir;
  const fs::path path = dir / "metrics.jsonl";
  {
    MetricsLog log(path);
    for (int step = 1; step <= 3; ++step) log.log(Json::object().set("step", step).set("loss", 1.0 / step));
  }
  {
    MetricsLog log(path);  // resume: appends
    log.log(Json::object().set("step", 4).set("loss", 0.25));
    CHECK_THROWS_AS(log.log(Json(3)), ConfigError);
  }
  auto records = read_metrics(path);
  REQUIRE(records.size() == 4);
  CHECK(records[3].at("step").as_int() == 4);
  CHECK(records[1].at("loss").as_double() == 0.5);
  CHECK(read_text_file(path).substr(0, 21) == "{\"step\":1,\"loss\":1}\n{");

  {
    std::ofstream torn(path, std::ios::app);
    torn << "{\"step\":5,\"lo";  // a crash mid-write
  }
  CHECK(read_metrics(path).size() == 4);
  {
    MetricsLog log(path, MetricsLog::Mode::truncate);
    log.log(Json::object().set("a", 1));
  }
  {
    std::ofstream bad(path, std::ios::app);
    bad << "{\"a\":}\n";
  }
  try {
    (void)read_metrics(path);
    FAIL("expected a DataError");
  } catch (const DataError& e) {
    CHECK(e.offset() == 8 + 5);  // second line starts at 8; the '}' is 5 bytes in
  }
}

TEST_CASE("progress bar: plain lines for logs, carriage returns for terminals") {
  double now = 0;
  ProgressOptions opt;
  opt.interactive = false;
  opt.line_interval_s = 5;
  opt.clock = [&] { return now; };
  std::ostringstream log;
  ProgressBar bar(log, opt);
  bar.begin_epoch(1, 3, 10);
  for (int step = 1; step <= 10; ++step) {
    now += 1;  // one second and 32 images per step
    bar.update(step, 2.0 - 0.1 * step, 32);
  }
  bar.end_epoch();
  const std::string text = log.str();
  CHECK(text.find('\r') == std::string::npos);
  // A line at 5 s and one at 10 s; the epoch's end repeats nothing.
  CHECK(std::count(text.begin(), text.end(), '\n') == 2);
  CHECK(text.find("epoch 1/3 5/10  loss 1.7000  32.0 img/s  eta 0:05 (run 0:25)\n") != std::string::npos);
  CHECK(text.find("epoch 1/3 10/10  loss 1.4500  32.0 img/s  eta 0:00 (run 0:20)\n") != std::string::npos);

  opt.interactive = true;
  opt.redraw_interval_s = 0;
  std::ostringstream tty;
  ProgressBar live(tty, opt);
  live.begin_epoch(3, 3, 4);
  for (int step = 1; step <= 4; ++step) {
    now += 0.5;
    live.update(step, 1.0, 8);
  }
  live.end_epoch();
  CHECK(tty.str().find("\repoch 3/3 [############............] 2/4") != std::string::npos);
  CHECK(tty.str().back() == '\n');
  CHECK(ProgressBar::format_duration(3725) == "1:02:05");
}

TEST_CASE("progress bar: a label of its own, and phases without a loss or epochs") {
  double now = 0;
  ProgressOptions opt;
  opt.interactive = false;
  opt.line_interval_s = 100;  // only the epoch's closing line
  opt.clock = [&] { return now; };
  opt.label = "probe features (test)";
  opt.show_loss = false;
  opt.show_epochs = false;
  std::ostringstream log;
  ProgressBar bar(log, opt);
  bar.begin_epoch(1, 1, 4);
  for (int step = 1; step <= 4; ++step) {
    now += 2;
    bar.update(step, 0.0, 16);
  }
  bar.end_epoch();
  CHECK(log.str() == "probe features (test) 4/4  8.0 img/s  eta 0:00\n");
}
