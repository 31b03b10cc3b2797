#pragma once
// MPI implementation of dist::Communicator. Only translation units built against MPI include this
// header (CMake: the vitfreeze::mpi target, present when find_package(MPI) succeeds).
//
// MpiSession initialises MPI for the process (threads: funneled, since only the training thread
// calls MPI; OpenMP and the loader's workers never do) and finalises it when it goes out of scope.
// MpiCommunicator works on its own duplicate of a communicator, with errors returned rather than
// aborting, so that a failed collective becomes a DistributedError like any other library error.
// The C API only: the deprecated C++ bindings would otherwise come along with mpi.h.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "vitfreeze/dist/communicator.hpp"

namespace vitfreeze::dist {

namespace detail {
inline void mpi_check(int status, const char* call) {
  if (status == MPI_SUCCESS) return;
  char reason[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(status, reason, &length);
  throw DistributedError(std::string(call) + " failed: " + std::string(reason, std::size_t(length)));
}
}  // namespace detail

class MpiSession {
 public:
  MpiSession(int& argc, char**& argv) {
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (initialised) return;  // someone else owns MPI's lifetime
    int provided = 0;
    detail::mpi_check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    owner_ = true;
  }
  ~MpiSession() {
    if (owner_) MPI_Finalize();
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

 private:
  bool owner_ = false;
};

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm parent = MPI_COMM_WORLD) {
    detail::mpi_check(MPI_Comm_dup(parent, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &world_);
  }
  ~MpiCommunicator() override {
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (!finalised) MPI_Comm_free(&comm_);
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world() const override { return world_; }

  void allreduce_sum(std::span<float> values) override { allreduce(values.data(), values.size(), MPI_FLOAT); }
  void allreduce_sum(std::span<double> values) override { allreduce(values.data(), values.size(), MPI_DOUBLE); }

  void broadcast(std::span<std::byte> bytes, int root) override {
    for (std::size_t done = 0; done < bytes.size();) {  // MPI counts are int
      const int n = int(std::min<std::size_t>(bytes.size() - done, INT_MAX));
      detail::mpi_check(MPI_Bcast(bytes.data() + done, n, MPI_BYTE, root, comm_), "MPI_Bcast");
      done += std::size_t(n);
    }
  }

  std::pair<std::uint64_t, std::uint64_t> min_max(std::uint64_t value) override {
    std::uint64_t lo = value, hi = value;
    detail::mpi_check(MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, comm_), "MPI_Allreduce(min)");
    detail::mpi_check(MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, comm_), "MPI_Allreduce(max)");
    return {lo, hi};
  }

 private:
  template <class T>
  void allreduce(T* data, std::size_t count, MPI_Datatype type) {
    for (std::size_t done = 0; done < count;) {
      const int n = int(std::min<std::size_t>(count - done, INT_MAX));
      detail::mpi_check(MPI_Allreduce(MPI_IN_PLACE, data + done, n, type, MPI_SUM, comm_), "MPI_Allreduce(sum)");
      done += std::size_t(n);
    }
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, world_ = 1;
};

}  // namespace vitfreeze::dist
