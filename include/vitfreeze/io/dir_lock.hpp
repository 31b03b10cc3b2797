#pragma once
// An advisory lock on a directory, held while the DirectoryLock lives: flock() on DIR/.vitfreeze.lock.
// Two runs writing one output directory would interleave their metrics logs and overwrite each
// other's checkpoints and summaries; with the lock the second one stops at once with a FileError
// naming the holder, whose pid and host the holder writes into the file. The kernel releases the
// lock when the holder's process ends in any way (SIGKILL included), so a lock is never stale; the
// file itself stays. (flock over NFS depends on the server.)
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <utility>

#include "vitfreeze/core/error.hpp"
#include "vitfreeze/io/atomic_file.hpp"

namespace vitfreeze::io {

class DirectoryLock {
 public:
  static constexpr const char* kFileName = ".vitfreeze.lock";

  // Locks `dir` (which must exist) or throws FileError: held by another process (named), or the
  // lock file cannot be created.
  explicit DirectoryLock(const std::filesystem::path& dir) : file_(dir / kFileName) {
    const std::string name = file_.string();
    detail::FdGuard fd(::open(name.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (fd.get() < 0) throw FileError(name, 0, "cannot create the lock file: " + detail::errno_text(errno));
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK) throw FileError(name, 0, "cannot lock: " + detail::errno_text(errno));
      char holder[256] = {};
      const ::ssize_t n = ::pread(fd.get(), holder, sizeof holder - 1, 0);
      std::string who = n > 0 ? std::string(holder, std::size_t(n)) : std::string();
      while (!who.empty() && (who.back() == '\n' || who.back() == ' ')) who.pop_back();
      throw FileError(name, 0, dir.string() + " is in use by another run (" +
                                   (who.empty() ? std::string("holder not recorded yet") : excerpt(who, 200)) +
                                   "); wait for it to end or choose another directory");
    }
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) host[0] = '?';
    const std::string who = "pid " + std::to_string(::getpid()) + " on " + host + "\n";
    // Best effort: the lock holds without the note, which only serves the message above.
    if (::ftruncate(fd.get(), 0) == 0) (void)!::pwrite(fd.get(), who.data(), who.size(), 0);
    fd_ = fd.release();
  }
  ~DirectoryLock() {
    if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the lock
  }
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;
  DirectoryLock(DirectoryLock&& other) noexcept : file_(std::move(other.file_)), fd_(std::exchange(other.fd_, -1)) {}
  DirectoryLock& operator=(DirectoryLock&&) = delete;

  const std::filesystem::path& file() const { return file_; }

 private:
  std::filesystem::path file_;
  int fd_ = -1;
};

}  // namespace vitfreeze::io
