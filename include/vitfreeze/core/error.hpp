#pragma once
// Typed errors. Every failure the library reports is one of these, carrying the reason (and, for
// files, the path and byte offset). Library code never calls exit().
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace vitfreeze {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A tensor or layer received a shape it cannot work with.
class ShapeError : public Error {
 public:
  using Error::Error;
};

// An argument or configuration value outside its valid range.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// A problem with a file at a known position: names the file, the byte offset and what was expected.
class FileError : public Error {
 public:
  FileError(std::string file, std::uint64_t offset, const std::string& what)
      : Error(file + " (offset " + std::to_string(offset) + "): " + what),
        file_(std::move(file)),
        offset_(offset) {}
  const std::string& file() const noexcept { return file_; }
  std::uint64_t offset() const noexcept { return offset_; }

 private:
  std::string file_;
  std::uint64_t offset_;
};

class DataError : public FileError {
 public:
  using FileError::FileError;
};

class CheckpointError : public FileError {
 public:
  using FileError::FileError;
};

// A NaN or infinity where a finite value is required (loss, gradients).
class NumericError : public Error {
 public:
  using Error::Error;
};

// A collective operation between ranks failed, or the ranks disagree (replicas drifted apart,
// different recipes, different checkpoints); the message names the operation and the reason.
class DistributedError : public Error {
 public:
  using Error::Error;
};

// A CUDA, cuBLAS, cuDNN or NCCL call failed; the message names the call and the reason.
class CudaError : public Error {
 public:
  using Error::Error;
};

// Text taken from an input (a tensor name, a metadata value, a JSON key) for an error message, cut
// to `max` characters: a file with a 50 MB tensor name gets a short message. quoted_excerpt adds
// the quotes.
inline std::string excerpt(std::string_view text, std::size_t max = 120) {
  if (text.size() <= max) return std::string(text);
  return std::string(text.substr(0, max)) + "... (" + std::to_string(text.size()) + " characters)";
}
inline std::string quoted_excerpt(std::string_view text, std::size_t max = 120) {
  if (text.size() <= max) return "\"" + std::string(text) + "\"";
  return "\"" + std::string(text.substr(0, max)) + "...\" (" + std::to_string(text.size()) + " characters)";
}

}  // namespace vitfreeze
