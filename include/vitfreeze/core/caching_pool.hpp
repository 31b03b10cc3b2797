#pragma once
// A caching allocator over any raw allocator (host: aligned_alloc; device: cudaMalloc). Freed blocks
// go back to a free list per size class and the next request of that class reuses them, so after the
// first training step every request is served from the cache: no malloc in the steady state (on the
// host, glibc's munmap/page-fault cycle on large temporaries costs 1.3-2x; on the device, cudaMalloc
// synchronises). The counters let tests check exactly that.
//
// Size classes: 4 per octave (2^k * {1, 1.25, 1.5, 1.75}), at least 256 bytes, so a block wastes at
// most 25 % and a class fits many nearby sizes (activations of the last, partial batch reuse blocks).
//
// Raw: `void* allocate(std::size_t bytes)` (throws on failure) and `void deallocate(void* p) noexcept`,
//      static or not: the pool keeps a copy (the device allocator's names its device).
#include <cstddef>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace vitfreeze {

// The smallest size class holding `bytes`.
inline std::size_t size_class(std::size_t bytes) {
  constexpr std::size_t kMin = 256;
  if (bytes <= kMin) return kMin;
  std::size_t octave = kMin;
  while (octave * 2 < bytes) octave *= 2;  // octave < bytes <= 2 * octave
  const std::size_t step = octave / 4;
  return (bytes + step - 1) / step * step;  // 1.25, 1.5, 1.75 or 2 octaves
}

struct PoolStats {
  std::size_t bytes_in_use = 0;  // handed out and not yet given back (size-class bytes)
  std::size_t bytes_cached = 0;  // in free lists
  std::size_t malloc_calls = 0;  // raw allocations so far: constant in the steady state
};

template <class Raw>
class CachingPool : public std::enable_shared_from_this<CachingPool<Raw>> {
 public:
  explicit CachingPool(Raw raw = Raw{}) : raw_(std::move(raw)) {}
  CachingPool(const CachingPool&) = delete;
  CachingPool& operator=(const CachingPool&) = delete;
  ~CachingPool() { release_cached(); }

  // A block of at least `bytes`; it returns to this pool's cache when the last owner lets go. The
  // pool outlives its blocks (each holds a reference to it). Must be owned by a shared_ptr.
  std::shared_ptr<void> allocate(std::size_t bytes) {
    const std::size_t cls = size_class(bytes);
    void* p = take(cls);
    try {
      return std::shared_ptr<void>(p, [pool = this->shared_from_this(), cls](void* q) { pool->give_back(q, cls); });
    } catch (...) {  // the control block could not be allocated
      give_back(p, cls);
      throw;
    }
  }

  // Returns every cached block to the raw allocator (blocks in use are untouched).
  void release_cached() noexcept {
    std::lock_guard lock(mutex_);
    for (auto& [cls, list] : free_) {
      for (void* p : list) raw_.deallocate(p);
      stats_.bytes_cached -= cls * list.size();
      list.clear();
    }
  }

  PoolStats stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
  }

 private:
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
    try {
      p = raw_.allocate(cls);
    } catch (...) {  // cached blocks of other classes may make room
      release_cached();
      p = raw_.allocate(cls);
    }
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
      raw_.deallocate(p);  // no room to remember it: return it instead
    }
  }

  Raw raw_;
  mutable std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  PoolStats stats_;
};

}  // namespace vitfreeze
