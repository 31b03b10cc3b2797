#pragma once
// Shared helpers for the libFuzzer targets. Each target feeds untrusted bytes to one reader; a typed
// vitfreeze::Error is the reader doing its job, so it is swallowed. Anything else (a sanitizer
// report, an uncaught exception of another type, std::bad_alloc, an allocation above libFuzzer's
// -malloc_limit_mb) escapes and libFuzzer records it as a crash with the input saved.
#include <unistd.h>
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

namespace vitfreeze::fuzz {

// A per-process scratch file through which readers that take a path get the input: in
// $VITFREEZE_FUZZ_SCRATCH (scripts/fuzz.sh points it at a directory it removes afterwards), else in
// /dev/shm when it exists so the fuzzer does not hit the disk.
inline const std::filesystem::path& scratch_path(const char* tag) {
  static const std::filesystem::path path = [tag] {
    const char* env = std::getenv("VITFREEZE_FUZZ_SCRATCH");
    const std::filesystem::path dir = env && *env ? std::filesystem::path(env)
                                      : std::filesystem::is_directory("/dev/shm")
                                          ? std::filesystem::path("/dev/shm")
                                          : std::filesystem::temp_directory_path();
    return dir / ("vitfreeze-fuzz-" + std::string(tag) + "-" + std::to_string(::getpid()));
  }();
  return path;
}

inline void write_scratch(const std::filesystem::path& path, const void* data, std::size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();  // the harness itself failed, not the library
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
}

// `data` as one gzip member (zlib's gzip wrapper: windowBits 15 + 16).
inline std::vector<std::uint8_t> gzip(const std::uint8_t* data, std::size_t size) {
  z_stream z{};
  if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  std::vector<std::uint8_t> out(deflateBound(&z, static_cast<uLong>(size)) + 32);
  z.next_in = const_cast<Bytef*>(data);
  z.avail_in = static_cast<uInt>(size);
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) std::abort();
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// Runs `f`, whose failure (even a typed error) is a finding: prints what failed, then aborts.
template <class F>
auto must_succeed(const char* what, F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: %s threw: %s\n", what, e.what());
    std::abort();
  }
}

}  // namespace vitfreeze::fuzz
