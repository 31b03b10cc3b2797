#pragma once
// ReplicaGroup: what a data-parallel trainer does with its Communicator. Every rank holds a full
// replica of the model and optimiser; the replicas stay identical because every rank applies the
// same summed gradients. This class
//   - starts every rank from rank 0's parameters, after checking that the ranks run one recipe;
//   - sums the gradients of the parameters still training, in one flat bucket per update (frozen
//     parameters are not in it: a frozen unit costs no gradient traffic), together with the
//     window's sample count, loss and a "something was not finite" flag, so that every rank takes
//     the same decision about a step;
//   - turns a failure on one rank into an exception on all (settle), so that no rank waits forever
//     in a collective the others have left;
//   - checks that the replicas are still identical (a fingerprint of every parameter value).
#include <chrono>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "vitfreeze/dist/communicator.hpp"
#include "vitfreeze/nn/module.hpp"

namespace vitfreeze::dist {

template <CpuScalar T>
class ReplicaGroup {
 public:
  explicit ReplicaGroup(Communicator& communicator) : comm_(communicator) {}

  int rank() const { return comm_.rank(); }
  int world() const { return comm_.world(); }
  bool is_root() const { return comm_.is_root(); }

  // What one rank contributes to an update: the samples of its accumulation window (the backward
  // was seeded with samples / accumulation per micro-batch), and its last micro-batch's loss.
  struct Contribution {
    double window_samples = 0;
    double last_samples = 0;
    double last_loss = 0;  // ignored when !finite
    bool finite = true;    // every loss of this rank's window was finite
  };
  struct Outcome {
    double loss = 0;     // the last micro-batch's loss over all ranks (sample-weighted mean)
    bool failed = false; // some rank saw a non-finite loss; gradients are then meaningless
  };

  // Checks that every rank runs `recipe` (a canonical text), then gives every rank rank 0's values.
  void join(const nn::ParameterList<T>& params, const std::string& recipe) {
    comm_.require_agreement(fingerprint(std::as_bytes(std::span(recipe.data(), recipe.size()))),
                            "the recipe (architecture, schedule, seed, optimiser, data): start every rank with the "
                            "same flags");
    for (auto* p : params) comm_.broadcast(std::as_writable_bytes(p->value.span()), 0);
  }

  // Sums the gradients of the trainable parameters in `params` over the ranks and divides them by
  // the total window samples over `accumulation` (so that seeds of samples / accumulation give the
  // sample-weighted mean over ranks and micro-batches). Returns the ranks' common verdict.
  Outcome allreduce_gradients(const nn::ParameterList<T>& params, const Contribution& c, int accumulation) {
    std::size_t n = 0;
    for (auto* p : params)
      if (p->trainable) n += std::size_t(p->ensure_grad().numel());  // a rank whose backward was skipped has none yet
    bucket_.resize(n + 4);
    std::size_t at = 0;
    for (auto* p : params)
      if (p->trainable) {
        std::memcpy(bucket_.data() + at, p->grad.data(), p->grad.bytes());
        at += std::size_t(p->grad.numel());
      }
    bucket_[n] = T(c.window_samples);
    bucket_[n + 1] = T(c.last_samples);
    bucket_[n + 2] = c.finite ? T(c.last_samples * c.last_loss) : T(0);
    bucket_[n + 3] = c.finite ? T(0) : T(1);
    const auto start = std::chrono::steady_clock::now();
    comm_.allreduce_sum(std::span<T>(bucket_));
    allreduce_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    gradient_elements_sent_ += std::int64_t(n);
    ++updates_;

    const T scale = T(double(accumulation) / double(bucket_[n]));
    at = 0;
    for (auto* p : params)
      if (p->trainable) {
        T* g = p->grad.data();
        for (std::int64_t i = 0; i < p->grad.numel(); ++i) g[i] = bucket_[at + std::size_t(i)] * scale;
        at += std::size_t(p->grad.numel());
      }
    return {double(bucket_[n + 2]) / double(bucket_[n + 1]), bucket_[n + 3] > T(0)};
  }

  // Collective: call on every rank after a piece of work that may have failed on some. Rethrows
  // this rank's own failure; a rank that succeeded throws DistributedError when another failed.
  void settle(std::exception_ptr failure, const std::string& what) {
    const auto [lo, hi] = comm_.min_max(failure ? 1 : 0);
    (void)lo;
    if (failure) std::rethrow_exception(failure);
    if (hi != 0) throw DistributedError(what + " failed on another rank (see its message)");
  }

  // Throws DistributedError on every rank unless all replicas hold bit-identical parameter values
  // and agree on `position` (the next iteration).
  void check_identical(const nn::ParameterList<T>& params, std::int64_t position, const std::string& when) {
    std::uint64_t h = fingerprint(std::as_bytes(std::span(&position, 1)));
    for (auto* p : params) h = fingerprint(std::as_bytes(p->value.span()), h);
    comm_.require_agreement(h, "the model state " + when + " (replicas differ: diverged arithmetic, or ranks "
                                   "loaded different checkpoints)");
  }

  // Traffic accounting: gradient elements each rank contributed to allreduces, how many allreduces,
  // and the seconds spent in them (waiting for slower ranks included).
  std::int64_t gradient_elements_sent() const { return gradient_elements_sent_; }
  std::int64_t updates() const { return updates_; }
  double allreduce_seconds() const { return allreduce_seconds_; }

 private:
  Communicator& comm_;
  std::vector<T> bucket_;
  std::int64_t gradient_elements_sent_ = 0, updates_ = 0;
  double allreduce_seconds_ = 0;
};

}  // namespace vitfreeze::dist
