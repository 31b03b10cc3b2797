#pragma once
// Crash-safe file replacement and whole-file reads (POSIX).
//
// write_file_atomic writes to `<path>.tmp.<pid>` in the same directory, fsyncs it, renames it over
// `path` and fsyncs the directory. A reader therefore sees either the old file or the complete new
// one, never a torn checkpoint, even after a crash or power loss; a failure at any step (including
// an exception thrown by the caller's producer) removes the temporary and leaves the old file.
// It replaces only regular files: a device, FIFO, socket or directory at `path` (say /dev/null or
// /dev/full given as an output, which a rename as root would replace by a regular file) is a
// FileError before anything is written. check_output_file() makes the same checks, and proves the
// directory writable, for callers that want to refuse a bad output path before hours of work.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vitfreeze/core/error.hpp"

namespace vitfreeze::io {

namespace detail {
inline std::string errno_text(int err) { return std::string(std::strerror(err)); }

// Closes the descriptor unless released; keeps early returns and exceptions leak-free.
class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

inline void write_all(int fd, const std::byte* data, std::size_t n, const std::string& path,
                      std::uint64_t offset) {
  while (n > 0) {
    const ::ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw FileError(path, offset, "write failed: " + errno_text(errno));
    }
    data += w;
    n -= static_cast<std::size_t>(w);
    offset += static_cast<std::uint64_t>(w);
  }
}
}  // namespace detail

// Buffered sink handed to the producer of write_file_atomic.
class FileSink {
 public:
  FileSink(int fd, std::string path) : fd_(fd), path_(std::move(path)) { buffer_.reserve(kBufferSize); }

  void write(std::span<const std::byte> bytes) {
    if (buffer_.size() + bytes.size() > kBufferSize) flush();
    if (bytes.size() >= kBufferSize) {  // large blocks bypass the buffer
      detail::write_all(fd_, bytes.data(), bytes.size(), path_, written_);
    } else {
      buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
    }
    written_ += bytes.size();
  }
  void write(std::string_view text) { write(std::as_bytes(std::span(text.data(), text.size()))); }
  void write(const void* data, std::size_t n) { write(std::span(static_cast<const std::byte*>(data), n)); }

  // Bytes accepted so far (buffered or on disk).
  std::uint64_t bytes_written() const { return written_; }

  void flush() {
    detail::write_all(fd_, buffer_.data(), buffer_.size(), path_, written_ - buffer_.size());
    buffer_.clear();
  }

 private:
  static constexpr std::size_t kBufferSize = std::size_t(1) << 20;
  int fd_;
  std::string path_;
  std::vector<std::byte> buffer_;
  std::uint64_t written_ = 0;
};

// Replaces `path` atomically with what `produce` writes. Throws FileError (naming the path) on an
// I/O failure; an exception from `produce` is rethrown unchanged. Either way the temporary is
// removed and any existing `path` is untouched.
// Throws FileError unless `path` can be written by write_file_atomic: nothing there, or a regular
// file (a link is followed), in an existing directory. `probe`: also create and remove a file in
// that directory, which catches read-only file systems and missing permissions, root's included.
inline void check_output_file(const std::filesystem::path& path, bool probe = false) {
  const std::string target = path.string();
  struct ::stat st {};
  if (::stat(target.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    throw FileError(target, 0, std::string("exists and is not a regular file (") +
                                   (S_ISDIR(st.st_mode) ? "a directory" : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                                                                          : S_ISFIFO(st.st_mode)                      ? "a FIFO"
                                                                                                                      : "a special file") +
                                   "): refusing to replace it");
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw FileError(target, 0, "its directory " + dir.string() + " does not exist");
  if (!probe) return;
  const std::string probe_file = target + ".tmp." + std::to_string(::getpid());
  detail::FdGuard fd(::open(probe_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (fd.get() < 0) throw FileError(target, 0, "cannot create a file in " + dir.string() + ": " + detail::errno_text(errno));
  ::unlink(probe_file.c_str());
}

inline void write_file_atomic(const std::filesystem::path& path, const std::function<void(FileSink&)>& produce) {
  const std::string target = path.string();
  check_output_file(path);
  const std::string temp = target + ".tmp." + std::to_string(::getpid());
  detail::FdGuard fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) throw FileError(target, 0, "cannot create temporary " + temp + ": " + detail::errno_text(errno));
  try {
    FileSink sink(fd.get(), temp);
    produce(sink);
    sink.flush();
    if (::fsync(fd.get()) != 0)
      throw FileError(target, sink.bytes_written(), "fsync of " + temp + " failed: " + detail::errno_text(errno));
    if (::close(fd.release()) != 0)
      throw FileError(target, sink.bytes_written(), "close of " + temp + " failed: " + detail::errno_text(errno));
    if (::rename(temp.c_str(), target.c_str()) != 0)
      throw FileError(target, 0, "rename from " + temp + " failed: " + detail::errno_text(errno));
  } catch (...) {
    ::unlink(temp.c_str());  // fd (if still open) closes in FdGuard's destructor
    throw;
  }
  // Make the rename itself durable. The new file is already in place, so a failure here is
  // reported but nothing is rolled back.
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  detail::FdGuard dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() < 0 || ::fsync(dfd.get()) != 0)
    throw FileError(target, 0, "fsync of directory " + dir.string() + " failed: " + detail::errno_text(errno));
}

inline void write_file_atomic(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  write_file_atomic(path, [&](FileSink& sink) { sink.write(bytes); });
}
inline void write_file_atomic(const std::filesystem::path& path, std::string_view text) {
  write_file_atomic(path, [&](FileSink& sink) { sink.write(text); });
}

// The whole file. Throws FileError naming the path and the offset where reading stopped.
inline std::vector<std::byte> read_file(const std::filesystem::path& path) {
  const std::string name = path.string();
  detail::FdGuard fd(::open(name.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw FileError(name, 0, "cannot open for reading: " + detail::errno_text(errno));
  struct ::stat st {};
  if (::fstat(fd.get(), &st) != 0) throw FileError(name, 0, "cannot stat: " + detail::errno_text(errno));
  if (!S_ISREG(st.st_mode)) throw FileError(name, 0, "expected a regular file");
  const auto size = static_cast<std::size_t>(st.st_size);
  std::vector<std::byte> bytes(size);
  std::size_t done = 0;
  while (done < size) {
    const ::ssize_t r = ::read(fd.get(), bytes.data() + done, size - done);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw FileError(name, done, "read failed: " + detail::errno_text(errno));
    }
    if (r == 0)
      throw FileError(name, done, "file ended early: expected " + std::to_string(size) + " bytes (was it truncated while reading?)");
    done += static_cast<std::size_t>(r);
  }
  return bytes;
}

inline std::string read_text_file(const std::filesystem::path& path) {
  const std::vector<std::byte> bytes = read_file(path);
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

}  // namespace vitfreeze::io
