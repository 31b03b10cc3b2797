#pragma once
// What the CPU backend's kernels run with: a caching pool for the step's buffers (activations kept
// for the backward, temporaries), so after the first step no buffer is malloc'ed (the counters say
// so; a test checks it), and the OpenMP thread pool every CPU kernel shares.
#include <cstdlib>
#include <memory>
#include <new>

#include "vitfreeze/core/parallel.hpp"
#include "vitfreeze/core/caching_pool.hpp"
#include "vitfreeze/core/tensor.hpp"

namespace vitfreeze::cpu {

// 64-byte aligned host memory (one cache line, one AVX-512 register).
struct AlignedHostMemory {
  static void* allocate(std::size_t bytes) {
    void* p = std::aligned_alloc(vitfreeze::detail::kAlignment, vitfreeze::detail::round_up(bytes, vitfreeze::detail::kAlignment));
    if (!p) throw std::bad_alloc();
    return p;
  }
  static void deallocate(void* p) noexcept { std::free(p); }
};

class CpuContext {
 public:
  CpuContext() : pool_(std::make_shared<CachingPool<AlignedHostMemory>>()) {}

  // Uninitialised [shape] from the cache; the block returns to it when the last view is gone.
  template <class T>
  Tensor<T> array(const Shape& shape) {
    std::shared_ptr<void> block = pool_->allocate(sizeof(T) * std::size_t(shape.numel() > 0 ? shape.numel() : 1));
    T* data = static_cast<T*>(block.get());
    return Tensor<T>::borrow(data, shape, std::move(block));
  }

  PoolStats pool_stats() const { return pool_->stats(); }
  void release_cached() { pool_->release_cached(); }
  int threads() const { return thread_count(); }

 private:
  std::shared_ptr<CachingPool<AlignedHostMemory>> pool_;
};

}  // namespace vitfreeze::cpu
