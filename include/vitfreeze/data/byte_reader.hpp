#pragma once
// ByteReader: sequential reads from a raw or gzip-compressed file (recognised by the gzip magic
// bytes, so "x.gz" and "x" are read the same way). It tracks the byte offset so that every failure
// is a DataError naming the file, the offset and what was expected there. For gzip files the offset
// counts decompressed bytes, and the message says so.
//
// gzip goes through inflate() directly rather than gzread(): zlib's gzread silently ignores
// anything after the last gzip member, so a file with trailing garbage would read as clean. Here
// concatenated members are read in turn (valid gzip), and any other bytes after a member are a
// DataError.
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "vitfreeze/core/error.hpp"

namespace vitfreeze::data {

class ByteReader {
 public:
  explicit ByteReader(const std::filesystem::path& path) : file_(path.string()), input_(kInputBuffer) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) fail(0, "cannot open: not a regular file (or missing)");
    fd_ = ::open(file_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) fail(0, std::string("cannot open: ") + std::strerror(errno));
    try {
      compressed_ = input_at_least(2) && input_[begin_] == 0x1f && input_[begin_ + 1] == 0x8b;
    } catch (...) {
      ::close(fd_);  // no destructor runs for a constructor that throws
      throw;
    }
    if (compressed_ && inflateInit2(&stream_, 16 + MAX_WBITS) != Z_OK) {
      ::close(fd_);
      compressed_ = false;
      fail(0, "cannot start gzip decoding (out of memory)");
    }
    inflating_ = compressed_;
  }
  ~ByteReader() {
    if (compressed_) inflateEnd(&stream_);
    if (fd_ >= 0) ::close(fd_);
  }
  ByteReader(const ByteReader&) = delete;
  ByteReader& operator=(const ByteReader&) = delete;

  const std::string& file() const { return file_; }
  bool compressed() const { return compressed_; }
  std::uint64_t offset() const { return offset_; }

  // Reads up to n bytes; returns how many arrived (fewer only at the end of the data). A corrupt
  // gzip stream is an error, not an early end.
  std::size_t read_some(void* dst, std::size_t n) {
    auto* out = static_cast<unsigned char*>(dst);
    std::size_t got = 0;
    while (got < n) {
      const std::size_t r = compressed_ ? inflate_some(out + got, n - got) : copy_some(out + got, n - got);
      if (r == 0) break;
      got += r;
      offset_ += r;
    }
    return got;
  }

  // Reads exactly n bytes of `what`, or throws a DataError saying how many were expected and how
  // many the file had.
  void read_exact(void* dst, std::size_t n, std::string_view what) {
    const std::uint64_t start = offset_;
    const std::size_t got = read_some(dst, n);
    if (got < n) fail_truncated(start, got, n, what);
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
    if (got < n) fail_truncated(start, got, n, what);
  }

  std::uint32_t read_u32_be(std::string_view what) {
    unsigned char b[4];
    read_exact(b, 4, what);
    return std::uint32_t(b[0]) << 24 | std::uint32_t(b[1]) << 16 | std::uint32_t(b[2]) << 8 | b[3];
  }

  // True when no byte is left (a byte read to find out is kept for the next read).
  bool at_end() {
    if (has_peeked_) return false;
    unsigned char c = 0;
    const std::size_t r = compressed_ ? inflate_some(&c, 1) : copy_some(&c, 1);
    if (r == 0) return true;
    peeked_ = c, has_peeked_ = true;
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
  static constexpr std::size_t kInputBuffer = std::size_t(1) << 17;

  [[noreturn]] void fail_truncated(std::uint64_t start, std::size_t got, std::size_t n, std::string_view what) const {
    fail(start + got, "truncated " + std::string(what) + ": expected " + std::to_string(n) + " bytes from offset " +
                          std::to_string(start) + ", the file has " + std::to_string(got));
  }

  // Makes at least `n` (<= the buffer size) unread input bytes available if the file has them;
  // false when it ends first.
  bool input_at_least(std::size_t n) {
    if (end_ - begin_ >= n) return true;
    std::memmove(input_.data(), input_.data() + begin_, end_ - begin_);
    end_ -= begin_, begin_ = 0;
    while (end_ < n) {
      const ::ssize_t r = ::read(fd_, input_.data() + end_, input_.size() - end_);
      if (r < 0) {
        if (errno == EINTR) continue;
        fail(offset_, std::string("read failed: ") + std::strerror(errno));
      }
      if (r == 0) return false;
      end_ += std::size_t(r);
      file_offset_ += std::uint64_t(r);
    }
    return true;
  }

  // The next bytes of the file as they are (the peeked byte first).
  std::size_t copy_some(unsigned char* out, std::size_t n) {
    if (has_peeked_) return take_peeked(out);
    if (!input_at_least(1)) return 0;
    const std::size_t k = std::min(n, end_ - begin_);
    std::memcpy(out, input_.data() + begin_, k);
    begin_ += k;
    return k;
  }

  // The next decompressed bytes; 0 only at the clean end of the last gzip member.
  std::size_t inflate_some(unsigned char* out, std::size_t n) {
    if (has_peeked_) return take_peeked(out);
    for (;;) {
      if (!inflating_) {  // between members: the file must end or start another member
        if (!input_at_least(1)) return 0;
        if (!input_at_least(2) || input_[begin_] != 0x1f || input_[begin_ + 1] != 0x8b) {
          const std::uint64_t at = file_offset_ - (end_ - begin_);
          fail(offset_, "unexpected bytes after the gzip stream (at compressed byte " + std::to_string(at) +
                            "): expected the file to end there or another gzip member to start");
        }
        if (inflateReset(&stream_) != Z_OK) fail(offset_, "cannot restart gzip decoding");
        inflating_ = true;
      }
      if (begin_ == end_ && !input_at_least(1))
        fail(offset_, "corrupt or truncated gzip stream: the file ends inside it");
      stream_.next_in = input_.data() + begin_;
      stream_.avail_in = uInt(end_ - begin_);
      stream_.next_out = out;
      stream_.avail_out = uInt(std::min<std::size_t>(n, std::size_t(1) << 30));
      const uInt asked = stream_.avail_out;
      const int rc = inflate(&stream_, Z_NO_FLUSH);
      begin_ = end_ - stream_.avail_in;
      const std::size_t produced = asked - stream_.avail_out;
      if (rc == Z_STREAM_END) inflating_ = false;
      else if (rc != Z_OK && rc != Z_BUF_ERROR)
        fail(offset_ + produced, "corrupt or truncated gzip stream: " +
                                     std::string(stream_.msg ? stream_.msg : "zlib error " + std::to_string(rc)));
      if (produced > 0) return produced;
    }
  }

  std::size_t take_peeked(unsigned char* out) {
    out[0] = peeked_, has_peeked_ = false;
    return 1;
  }

  std::string file_;
  int fd_ = -1;
  bool compressed_ = false;
  bool inflating_ = false;  // inside a gzip member (false between members and after the last)
  z_stream stream_{};
  std::vector<unsigned char> input_;  // raw file bytes; [begin_, end_) not consumed yet
  std::size_t begin_ = 0, end_ = 0;
  std::uint64_t file_offset_ = 0;  // raw bytes read from the file so far
  std::uint64_t offset_ = 0;       // bytes handed out (decompressed for gzip)
  unsigned char peeked_ = 0;
  bool has_peeked_ = false;
};

}  // namespace vitfreeze::data
