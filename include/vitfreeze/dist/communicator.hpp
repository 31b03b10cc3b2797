#pragma once
// Communicator: the group of processes ("ranks") that train one model together, data parallel.
// The trainer needs only these collectives; dist/mpi.hpp implements them over MPI (CPU clusters),
// and a test or another transport can implement them too. Every rank must call the same
// collectives in the same order; each returns the same result on every rank.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "vitfreeze/core/error.hpp"

namespace vitfreeze::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;

  // Element-wise sum over the ranks, in place.
  virtual void allreduce_sum(std::span<float> values) = 0;
  virtual void allreduce_sum(std::span<double> values) = 0;
  // The root's bytes replace everyone's.
  virtual void broadcast(std::span<std::byte> bytes, int root) = 0;
  // The smallest and largest of one value over the ranks (agreement checks).
  virtual std::pair<std::uint64_t, std::uint64_t> min_max(std::uint64_t value) = 0;

  bool is_root() const { return rank() == 0; }

  // Throws DistributedError on every rank unless all ranks passed the same `value`.
  void require_agreement(std::uint64_t value, const std::string& what) {
    const auto [lo, hi] = min_max(value);
    if (lo != hi) throw DistributedError("ranks disagree on " + what);
  }
};

// FNV-1a over bytes: cheap fingerprints of parameters and recipes for agreement checks.
inline std::uint64_t fingerprint(std::span<const std::byte> bytes, std::uint64_t hash = 1469598103934665603ull) {
  for (std::byte b : bytes) hash = (hash ^ std::uint64_t(b)) * 1099511628211ull;
  return hash;
}

}  // namespace vitfreeze::dist
