#pragma once
// Caching device allocator: core/caching_pool.hpp over cudaMalloc. cudaMalloc and cudaFree
// synchronise the device and cost tens of microseconds, so a training step must not call them: after
// the first step every request is served from the cache (steady state: no cudaMalloc, no cudaFree).
//
// Stream rule: a block given back may still be read by queued kernels. Reuse is safe because every
// user of one allocator issues work on one stream (the CudaContext's), which runs in order. Work on
// other streams must synchronise with that stream before its memory is freed.
#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "vitfreeze/backend/cuda/check.hpp"
#include "vitfreeze/core/caching_pool.hpp"
#include "vitfreeze/core/tensor.hpp"

namespace vitfreeze::cuda {

template <class T>
using DeviceTensor = Tensor<T, DeviceMemory>;
using AllocatorStats = PoolStats;

// cudaMalloc / cudaFree on one device, whichever device the calling thread has current.
struct CudaDeviceMemory {
  int device = 0;

  void* allocate(std::size_t bytes) const {
    int previous = 0;
    check(cudaGetDevice(&previous), "cudaGetDevice");
    check(cudaSetDevice(device), "cudaSetDevice");
    void* p = nullptr;
    const cudaError_t status = cudaMalloc(&p, bytes);
    (void)cudaSetDevice(previous);
    if (status != cudaSuccess) (void)cudaGetLastError();  // clear it: the pool may retry after freeing its cache
    check(status, ("cudaMalloc(" + std::to_string(bytes) + " bytes)").c_str());
    return p;
  }
  // At process exit the runtime may already be gone: the status is ignored.
  void deallocate(void* p) const noexcept { (void)cudaFree(p); }
};

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
  explicit DeviceAllocator(int device)
      : pool_(std::make_shared<CachingPool<CudaDeviceMemory>>(CudaDeviceMemory{device})), device_(device) {}

  DeviceBuffer allocate(std::size_t bytes) {
    DeviceBuffer buffer(pool_->allocate(bytes), bytes);
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
  DeviceTensor<T> tensor(const Shape& shape) {
    DeviceBuffer b = allocate(sizeof(T) * static_cast<std::size_t>(shape.numel() > 0 ? shape.numel() : 1));
    return DeviceTensor<T>::borrow(b.as<T>(), shape, b.owner());
  }

  void release_cached() { pool_->release_cached(); }
  AllocatorStats stats() const { return pool_->stats(); }
  int device() const { return device_; }

 private:
  std::shared_ptr<CachingPool<CudaDeviceMemory>> pool_;
  int device_;
  std::vector<DeviceBuffer>* holder_ = nullptr;
};

}  // namespace vitfreeze::cuda
