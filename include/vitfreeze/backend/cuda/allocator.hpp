#pragma once
// Caching device allocator. cudaMalloc and cudaFree synchronise the device and cost tens of
// microseconds, so a training step must not call them: freed blocks go back to a free list per size
// class and the next request of that class reuses them. After the first step every request is served
// from the cache (steady state: no cudaMalloc, no cudaFree).
//
// Size classes: 4 per octave (2^k * {1, 1.25, 1.5, 1.75}), at least 256 bytes, so a block wastes at
// most 25% and a class fits many nearby sizes (activations of the last, partial batch reuse blocks).
//
// Stream rule: a block given back may still be read by queued kernels. Reuse is safe because every
// user of one allocator issues work on one stream (the CudaContext's), which runs in order. Work on
// other streams must synchronise with that stream before its memory is freed.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "vitfreeze/backend/cuda/check.hpp"
#include "vitfreeze/core/tensor.hpp"

namespace vitfreeze::cuda {

// The smallest size class holding `bytes`.
inline std::size_t size_class(std::size_t bytes) {
  constexpr std::size_t kMin = 256;
  if (bytes <= kMin) return kMin;
  std::size_t octave = kMin;
  while (octave * 2 < bytes) octave *= 2;  // octave < bytes <= 2 * octave
  const std::size_t step = octave / 4;
  return (bytes + step - 1) / step * step;  // 1.25, 1.5, 1.75 or 2 octaves
}

struct AllocatorStats {
  std::size_t bytes_in_use = 0;    // handed out and not yet given back (size-class bytes)
  std::size_t bytes_cached = 0;    // in free lists
  std::size_t malloc_calls = 0;    // cudaMalloc calls so far: constant in the steady state
};

namespace detail {
// The pool outlives every block it handed out: blocks hold a shared_ptr to it.
class DevicePool {
 public:
  explicit DevicePool(int device) : device_(device) {}
  DevicePool(const DevicePool&) = delete;
  DevicePool& operator=(const DevicePool&) = delete;
  ~DevicePool() { release_cached(); }

  void* take(std::size_t cls) {
    {
      std::lock_guard lock(mutex_);
      auto& list = free_[cls];
      if (!list.empty()) {
        void* p = list.back();
        list.pop_back();
        stats_.bytes_cached -= cls;
        stats_.bytes_in_use += cls;
        return p;
      }
    }
    void* p = nullptr;
    int previous = 0;
    check(cudaGetDevice(&previous), "cudaGetDevice");
    check(cudaSetDevice(device_), "cudaSetDevice");
    cudaError_t status = cudaMalloc(&p, cls);
    if (status == cudaErrorMemoryAllocation) {  // cached blocks of other classes may make room
      (void)cudaGetLastError();
      release_cached();
      status = cudaMalloc(&p, cls);
    }
    (void)cudaSetDevice(previous);
    check(status, ("cudaMalloc(" + std::to_string(cls) + " bytes)").c_str());
    std::lock_guard lock(mutex_);
    ++stats_.malloc_calls;
    stats_.bytes_in_use += cls;
    return p;
  }

  void give_back(void* p, std::size_t cls) noexcept {
    std::lock_guard lock(mutex_);
    stats_.bytes_in_use -= cls;
    try {
      free_[cls].push_back(p);
      stats_.bytes_cached += cls;
    } catch (...) {
      (void)cudaFree(p);  // no room to remember it: return it to the driver instead
    }
  }

  // Returns every cached block to the driver (blocks in use are untouched).
  void release_cached() noexcept {
    std::lock_guard lock(mutex_);
    for (auto& [cls, list] : free_) {
      for (void* p : list) (void)cudaFree(p);  // at process exit the runtime may already be gone
      stats_.bytes_cached -= cls * list.size();
      list.clear();
    }
  }

  AllocatorStats stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
  }
  int device() const { return device_; }

 private:
  int device_;
  mutable std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  AllocatorStats stats_;
};
}  // namespace detail

// Device memory block; copies share it, and the last copy returns it to the cache.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(std::shared_ptr<void> block, std::size_t bytes) : block_(std::move(block)), bytes_(bytes) {}
  void* data() const { return block_.get(); }
  template <class T>
  T* as() const {
    return static_cast<T*>(block_.get());
  }
  std::size_t bytes() const { return bytes_; }  // as requested (the block may be larger)
  bool empty() const { return !block_; }
  const std::shared_ptr<void>& owner() const { return block_; }

 private:
  std::shared_ptr<void> block_;
  std::size_t bytes_ = 0;
};

class DeviceAllocator {
 public:
  explicit DeviceAllocator(int device) : pool_(std::make_shared<detail::DevicePool>(device)) {}

  DeviceBuffer allocate(std::size_t bytes) {
    const std::size_t cls = size_class(bytes);
    void* p = pool_->take(cls);
    std::shared_ptr<detail::DevicePool> pool = pool_;
    DeviceBuffer buffer;
    try {
      buffer = DeviceBuffer(std::shared_ptr<void>(p, [pool, cls](void* q) { pool->give_back(q, cls); }), bytes);
    } catch (...) {  // the control block could not be allocated
      pool_->give_back(p, cls);
      throw;
    }
    if (holder_) holder_->push_back(buffer);
    return buffer;
  }

  // While a holder is set, every block handed out is also kept in it, so it cannot return to the
  // cache when its users drop it. A captured CUDA graph replays into the addresses it was captured
  // with; holding them for the graph's lifetime keeps anyone else from being given them.
  // (Used by one host thread at a time, like the context that owns this allocator.)
  void hold_allocations_in(std::vector<DeviceBuffer>* holder) { holder_ = holder; }

  // A device tensor (uninitialised) whose buffer returns to this cache when its last view dies.
  template <class T>
  Tensor<T> tensor(const Shape& shape) {
    DeviceBuffer b = allocate(sizeof(T) * static_cast<std::size_t>(shape.numel()));
    return Tensor<T>::borrow(b.as<T>(), shape, b.owner());
  }

  void release_cached() { pool_->release_cached(); }
  AllocatorStats stats() const { return pool_->stats(); }
  int device() const { return pool_->device(); }

 private:
  std::shared_ptr<detail::DevicePool> pool_;
  std::vector<DeviceBuffer>* holder_ = nullptr;
};

}  // namespace vitfreeze::cuda
