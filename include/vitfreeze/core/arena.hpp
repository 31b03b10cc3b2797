#pragma once
// Arena: a bump allocator for per-step buffers (activations saved for backward, temporaries).
// reset() at the start of a step makes all of it reusable; after the first step the arena holds one
// chunk large enough for a whole step, so the steady state performs no malloc at all (glibc's
// munmap/page-fault cycle on large temporaries costs 1.3-2x on the reference machine).
#include <cstddef>
#include <memory>
#include <vector>

#include "vitfreeze/core/tensor.hpp"

namespace vitfreeze {

class Arena {
 public:
  explicit Arena(std::size_t initial_bytes = 0) {
    if (initial_bytes) add_chunk(initial_bytes);
  }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  Arena(Arena&&) = default;
  Arena& operator=(Arena&&) = default;

  void* allocate(std::size_t bytes) {
    bytes = detail::round_up(std::max<std::size_t>(bytes, 1), detail::kAlignment);
    if (chunks_.empty() || chunks_.back().used + bytes > chunks_.back().size)
      add_chunk(std::max(bytes, chunks_.empty() ? kMinChunk : chunks_.back().size * 2));
    Chunk& c = chunks_.back();
    void* p = static_cast<std::byte*>(c.memory.get()) + c.used;
    c.used += bytes;
    high_water_ = std::max(high_water_, in_use());
    return p;
  }

  // Uninitialised tensor valid until the next reset().
  template <class T>
  Tensor<T> tensor(const Shape& shape) {
    return Tensor<T>::borrow(static_cast<T*>(allocate(sizeof(T) * shape.numel())), shape);
  }
  template <class T>
  Tensor<T> zeros(const Shape& shape) {
    Tensor<T> t = tensor<T>(shape);
    t.zero();
    return t;
  }

  // A position to return to: everything allocated after mark() is released by rewind(). Used to run
  // frozen blocks forward without keeping their temporaries.
  struct Mark {
    std::size_t chunks = 0;
    std::size_t used = 0;
  };
  Mark mark() const { return chunks_.empty() ? Mark{} : Mark{chunks_.size(), chunks_.back().used}; }
  void rewind(const Mark& m) {
    if (m.chunks == 0) {
      for (auto& c : chunks_) c.used = 0;
      return;
    }
    chunks_[m.chunks - 1].used = m.used;
    // Chunks opened after the mark are dropped (allocation continues in the marked chunk); their
    // capacity is remembered so reset() still sizes one chunk for the whole step.
    for (std::size_t i = m.chunks; i < chunks_.size(); ++i) pending_extra_ += chunks_[i].size;
    chunks_.resize(m.chunks);
  }

  // Forget every allocation. If the last step needed several chunks, merge them into one.
  void reset() {
    if (chunks_.size() > 1 || pending_extra_) {
      std::size_t total = pending_extra_;
      pending_extra_ = 0;
      for (auto& c : chunks_) total += c.size;
      chunks_.clear();
      add_chunk(total);
    } else if (!chunks_.empty()) {
      chunks_.back().used = 0;
    }
  }

  std::size_t in_use() const {
    std::size_t n = 0;
    for (auto& c : chunks_) n += c.used;
    return n;
  }
  std::size_t capacity() const {
    std::size_t n = 0;
    for (auto& c : chunks_) n += c.size;
    return n;
  }
  std::size_t chunk_count() const { return chunks_.size(); }
  std::size_t high_water() const { return high_water_; }

 private:
  static constexpr std::size_t kMinChunk = std::size_t(1) << 20;
  struct Chunk {
    std::shared_ptr<void> memory;
    std::size_t size = 0;
    std::size_t used = 0;
  };
  void add_chunk(std::size_t bytes) { chunks_.push_back({detail::aligned_buffer(bytes), bytes, 0}); }

  std::vector<Chunk> chunks_;
  std::size_t high_water_ = 0;
  std::size_t pending_extra_ = 0;  // capacity of chunks dropped by rewind(), re-added at reset()
};

}  // namespace vitfreeze
