#pragma once
// ByteReader: sequential reads from a raw or gzip-compressed file (zlib detects which from the
// content, so "x.gz" and "x" are read the same way). It tracks the byte offset so that every
// failure is a DataError naming the file, the offset and what was expected there. For gzip files
// the offset counts decompressed bytes, and the message says so.
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>
#include <system_error>

#include "vitfreeze/core/error.hpp"

namespace vitfreeze::data {

class ByteReader {
 public:
  explicit ByteReader(const std::filesystem::path& path) : file_(path.string()) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) fail(0, "cannot open: not a regular file (or missing)");
    errno = 0;
    handle_ = gzopen(file_.c_str(), "rb");
    if (!handle_) fail(0, std::string("cannot open: ") + (errno ? std::strerror(errno) : "out of memory"));
    gzbuffer(handle_, 1u << 17);
    compressed_ = gzdirect(handle_) == 0;
  }
  ~ByteReader() {
    if (handle_) gzclose(handle_);
  }
  ByteReader(const ByteReader&) = delete;
  ByteReader& operator=(const ByteReader&) = delete;

  const std::string& file() const { return file_; }
  bool compressed() const { return compressed_; }
  std::uint64_t offset() const { return offset_; }

  // Reads up to n bytes; returns how many arrived (fewer only at the end of the data). A corrupt
  // gzip stream is an error, not an early end.
  std::size_t read_some(void* dst, std::size_t n) {
    std::size_t got = 0;
    auto* out = static_cast<unsigned char*>(dst);
    while (got < n) {
      const unsigned chunk = unsigned(std::min<std::size_t>(n - got, std::size_t(1) << 30));
      const int r = gzread(handle_, out + got, chunk);
      if (r < 0) fail(offset_ + got, "read failed: " + stream_error());
      if (r == 0) break;
      got += std::size_t(r);
    }
    offset_ += got;
    if (got < n) check_stream();
    return got;
  }

  // Reads exactly n bytes of `what`, or throws a DataError saying how many were expected and how
  // many the file had.
  void read_exact(void* dst, std::size_t n, std::string_view what) {
    const std::uint64_t start = offset_;
    const std::size_t got = read_some(dst, n);
    if (got < n)
      fail(start + got, "truncated " + std::string(what) + ": expected " + std::to_string(n) + " bytes from offset " +
                            std::to_string(start) + ", the file has " + std::to_string(got));
  }

  // Reads exactly n bytes of `what` into `out`, growing it as the data arrives (doubling from 1 MiB),
  // so a header that claims more data than the file holds costs at most twice the real size in
  // memory before the "truncated" DataError, never the claimed size.
  void read_exact_into(std::vector<std::uint8_t>& out, std::size_t n, std::string_view what) {
    const std::uint64_t start = offset_;
    out.clear();
    std::size_t got = 0;
    while (got < n) {
      const std::size_t want = std::min(n, std::max<std::size_t>(got * 2, std::size_t(1) << 20));
      out.resize(want);
      const std::size_t r = read_some(out.data() + got, want - got);
      got += r;
      if (got < want) break;
    }
    out.resize(got);
    if (got < n)
      fail(start + got, "truncated " + std::string(what) + ": expected " + std::to_string(n) + " bytes from offset " +
                            std::to_string(start) + ", the file has " + std::to_string(got));
  }

  std::uint32_t read_u32_be(std::string_view what) {
    unsigned char b[4];
    read_exact(b, 4, what);
    return std::uint32_t(b[0]) << 24 | std::uint32_t(b[1]) << 16 | std::uint32_t(b[2]) << 8 | b[3];
  }

  // True when no byte is left.
  bool at_end() {
    const int c = gzgetc(handle_);
    if (c < 0) {
      check_stream();
      return true;
    }
    gzungetc(c, handle_);
    return false;
  }

  // Throws when bytes follow the expected content: a longer file usually means a wrong header.
  void expect_end(std::string_view after) {
    if (at_end()) return;
    std::uint64_t extra = 0;
    unsigned char buf[4096];
    for (std::size_t r; (r = read_some(buf, sizeof buf)) > 0;) extra += r;
    fail(offset_ - extra, std::to_string(extra) + " unexpected bytes after " + std::string(after) +
                              " (expected the file to end here)");
  }

  // A DataError at `offset` of this file.
  [[noreturn]] void fail(std::uint64_t offset, const std::string& what) const {
    throw DataError(file_, offset, compressed_ ? what + " [offsets count decompressed bytes]" : what);
  }

 private:
  std::string stream_error() const {
    int code = Z_OK;
    const char* msg = gzerror(handle_, &code);
    return code == Z_ERRNO ? std::strerror(errno) : std::string(msg ? msg : "unknown zlib error");
  }
  // A gzip stream that ends early or has a bad checksum reports it only through gzerror.
  void check_stream() const {
    int code = Z_OK;
    gzerror(handle_, &code);
    if (code != Z_OK && code != Z_STREAM_END) fail(offset_, "corrupt or truncated gzip stream: " + stream_error());
  }

  std::string file_;
  gzFile handle_ = nullptr;
  bool compressed_ = false;
  std::uint64_t offset_ = 0;
};

}  // namespace vitfreeze::data
