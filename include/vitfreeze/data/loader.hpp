#pragma once
// Loader: batches of transformed images, [B, C, H, W] floats plus labels and dataset indices.
//
// Determinism: the epoch's order is a Fisher-Yates shuffle drawn from RandomStream(seed, shuffle,
// epoch); each sample's augmentation is drawn from (seed, epoch, dataset index) (transform.hpp).
// So batch k of an epoch depends only on (seed, epoch, k) and the options, never on the number of
// worker threads or on timing, and start_epoch(epoch, k) resumes exactly at batch k.
//
// Sharding: every rank draws the same permutation and takes positions rank, rank + world, ...;
// ShardTail says what happens to the N % world samples left over (see below).
//
// Prefetching: `workers` threads build batches ahead of the consumer, at most `capacity()` batches
// ahead, and next() hands them out in order. With workers = 0 next() builds the batch itself, its
// samples spread over the OpenMP threads: on a small machine this keeps one thread pool (the
// training step's) instead of a loader thread preempting the step's spinning threads. Batch images live in buffers recycled through a pool:
// a buffer returns to the pool when the last copy of the batch's tensor is gone, so holding on to a
// batch is always safe, and in the steady state no image memory is allocated. Destroying the loader
// mid-epoch stops the workers after the batch each is building; batches already handed out stay
// valid.
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "vitfreeze/core/parallel.hpp"
#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/core/tensor.hpp"
#include "vitfreeze/data/dataset.hpp"
#include "vitfreeze/data/transform.hpp"

namespace vitfreeze::data {

enum class LastBatch {
  keep,  // the last batch of an epoch may be smaller than batch_size
  drop,  // only full batches
};

enum class ShardTail {
  drop,    // every rank gets floor(N / world) samples: disjoint, equal step counts, up to world-1
           // samples (different ones each epoch when shuffling) left out of the epoch
  uneven,  // ranks below N % world get one more: disjoint and covering, but step counts may differ
  pad,     // every rank gets ceil(N / world), wrapping round to the start of the permutation
           // (torch DistributedSampler): covering, up to world-1 duplicates
};

struct LoaderOptions {
  std::int64_t batch_size = 256;
  bool shuffle = true;
  LastBatch last_batch = LastBatch::keep;
  std::uint64_t seed = 0;
  int rank = 0;
  int world = 1;
  ShardTail shard_tail = ShardTail::drop;
  int workers = 1;   // 0 builds batches inside next()
  int prefetch = 2;  // batches that may be ready ahead of the consumer
};

struct Batch {
  Tensor<float> images;               // [B, C, H, W]
  std::vector<std::int32_t> labels;   // B
  std::vector<std::int64_t> indices;  // B dataset indices
  std::uint64_t epoch = 0;
  std::int64_t position = 0;          // batch number within the epoch (on this rank)
  std::int64_t size() const { return std::int64_t(labels.size()); }
};

namespace detail {

// Fixed-size float buffers handed out as tensors; a buffer comes back when its last tensor dies.
class BatchBufferPool : public std::enable_shared_from_this<BatchBufferPool> {
 public:
  explicit BatchBufferPool(std::size_t floats) : bytes_(floats * sizeof(float)) {}

  Tensor<float> acquire(const Shape& shape) {
    std::shared_ptr<void> buffer;
    {
      std::lock_guard lock(mutex_);
      if (!free_.empty()) {
        buffer = std::move(free_.back());
        free_.pop_back();
      }
    }
    if (!buffer) buffer = vitfreeze::detail::aligned_buffer(bytes_);
    auto* data = static_cast<float*>(buffer.get());
    std::shared_ptr<void> lease(data, [buffer, home = weak_from_this()](void*) mutable {
      if (auto pool = home.lock()) pool->give_back(std::move(buffer));
    });
    return Tensor<float>::borrow(data, shape, std::move(lease));
  }

  std::size_t free_buffers() {
    std::lock_guard lock(mutex_);
    return free_.size();
  }

 private:
  void give_back(std::shared_ptr<void> buffer) {
    std::lock_guard lock(mutex_);
    free_.push_back(std::move(buffer));
  }

  std::size_t bytes_;
  std::mutex mutex_;
  std::vector<std::shared_ptr<void>> free_;
};

}  // namespace detail

class Loader {
 public:
  // `data` must outlive the loader (it is read, never copied).
  Loader(const Dataset& data, Transform transform, LoaderOptions options)
      : data_(data), transform_(std::move(transform)), opt_(options) {
    data_.validate();
    transform_.validate(data_.channels);
    if (opt_.batch_size <= 0 || opt_.world <= 0 || opt_.rank < 0 || opt_.rank >= opt_.world || opt_.workers < 0 ||
        opt_.prefetch < 1)
      throw ConfigError("Loader: need batch_size > 0, 0 <= rank < world, workers >= 0, prefetch >= 1");
    if (data_.count >= (std::int64_t(1) << 32)) throw ConfigError("Loader: at most 2^32 - 1 samples");
    const auto [h, w] = transform_.output_size(data_.height, data_.width);
    out_h_ = h;
    out_w_ = w;
    const std::int64_t n = data_.count, world = opt_.world;
    switch (opt_.shard_tail) {
      case ShardTail::drop: per_rank_ = n / world; break;
      case ShardTail::uneven: per_rank_ = n / world + (opt_.rank < n % world ? 1 : 0); break;
      case ShardTail::pad: per_rank_ = (n + world - 1) / world; break;
    }
    batches_ = opt_.last_batch == LastBatch::keep ? (per_rank_ + opt_.batch_size - 1) / opt_.batch_size
                                                  : per_rank_ / opt_.batch_size;
    pool_ = std::make_shared<detail::BatchBufferPool>(std::size_t(batch_shape().numel()));
    ring_.resize(std::size_t(capacity()));
    for (int i = 0; i < opt_.workers; ++i) threads_.emplace_back([this] { worker_main(); });
  }

  ~Loader() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  const LoaderOptions& options() const { return opt_; }
  std::int64_t samples_per_epoch() const { return per_rank_; }  // on this rank
  std::int64_t batches_per_epoch() const { return batches_; }
  std::int64_t capacity() const { return std::max<std::int64_t>(opt_.prefetch, opt_.workers); }
  Shape batch_shape() const { return {opt_.batch_size, data_.channels, out_h_, out_w_}; }

  // This rank's dataset indices for `epoch`, in the order the batches deliver them.
  std::vector<std::int64_t> epoch_indices(std::uint64_t epoch) const {
    std::vector<std::int64_t> permutation, shard;
    compute_shard(epoch, permutation, shard);
    return shard;
  }

  // Begins `epoch` at batch `first_batch` (0 for a fresh epoch; k to resume after k batches).
  // Batches of a previous epoch not yet taken are discarded.
  void start_epoch(std::uint64_t epoch, std::int64_t first_batch = 0) {
    if (first_batch < 0 || first_batch > batches_)
      throw ConfigError("Loader::start_epoch: first_batch " + std::to_string(first_batch) + " outside [0, " +
                        std::to_string(batches_) + "]");
    std::unique_lock lock(mutex_);
    ++generation_;
    end_ = 0;  // no new claims while the order is rewritten
    ready_cv_.wait(lock, [&] { return in_flight_ == 0; });
    for (auto& slot : ring_) slot = {};
    compute_shard(epoch, permutation_, shard_);
    epoch_ = epoch;
    next_claim_ = next_deliver_ = first_batch;
    end_ = batches_;
    started_ = true;
    work_cv_.notify_all();
  }

  // The next batch of the epoch in order, or nothing once the epoch is done.
  std::optional<Batch> next() {
    std::unique_lock lock(mutex_);
    if (!started_) throw ConfigError("Loader::next: call start_epoch first");
    if (next_deliver_ >= end_) return std::nullopt;
    const std::int64_t k = next_deliver_;
    if (threads_.empty()) {
      ++next_deliver_;
      lock.unlock();
      return build(k, inline_workspaces_);
    }
    // The window advances only once slot k is emptied, so no worker can write batch k + capacity
    // into this slot before batch k has left it.
    Slot& slot = ring_[std::size_t(k % capacity())];
    ready_cv_.wait(lock, [&] { return slot.batch.has_value() || slot.error; });
    Slot taken = std::exchange(slot, Slot{});
    ++next_deliver_;
    work_cv_.notify_all();
    if (taken.error) std::rethrow_exception(taken.error);
    return std::move(taken.batch);
  }

 private:
  struct Slot {
    std::optional<Batch> batch;
    std::exception_ptr error;
  };

  void compute_shard(std::uint64_t epoch, std::vector<std::int64_t>& permutation,
                     std::vector<std::int64_t>& shard) const {
    const std::int64_t n = data_.count;
    permutation.resize(std::size_t(n));
    for (std::int64_t i = 0; i < n; ++i) permutation[std::size_t(i)] = i;
    if (opt_.shuffle) {
      RandomStream rng(opt_.seed, RngPurpose::shuffle, epoch);
      for (std::int64_t i = n - 1; i > 0; --i)
        std::swap(permutation[std::size_t(i)], permutation[rng.below(std::uint32_t(i + 1))]);
    }
    shard.resize(std::size_t(per_rank_));
    for (std::int64_t j = 0; j < per_rank_; ++j)
      shard[std::size_t(j)] = permutation[std::size_t((opt_.rank + j * opt_.world) % n)];
  }

  // Samples are independent (each one's augmentation is keyed by its own index), so spreading them
  // over threads changes nothing in the batch; one workspace per thread.
  Batch build(std::int64_t k, std::vector<Resampler>& workspaces) const {
    const std::int64_t begin = k * opt_.batch_size;
    const std::int64_t n = std::min(opt_.batch_size, per_rank_ - begin);
    Batch b;
    b.epoch = epoch_;
    b.position = k;
    b.images = pool_->acquire(batch_shape().with_first(n));
    b.labels.resize(std::size_t(n));
    b.indices.resize(std::size_t(n));
    const std::size_t stride = std::size_t(data_.channels) * std::size_t(out_h_) * std::size_t(out_w_);
    const int threads = workspaces.size() > 1 ? int(workspaces.size()) : 1;
    std::exception_ptr failure;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t index = shard_[std::size_t(begin + i)];
      b.indices[std::size_t(i)] = index;
      b.labels[std::size_t(i)] = data_.labels[std::size_t(index)];
      const ImageView src{data_.image(index).data(), data_.channels, data_.height, data_.width};
      try {
        transform_.apply(src, {opt_.seed, epoch_, std::uint64_t(index)}, b.images.data() + std::size_t(i) * stride,
                         workspaces[std::size_t(cpu::thread_index())]);
      } catch (...) {
#pragma omp critical(vitfreeze_loader_failure)
        if (!failure) failure = std::current_exception();
      }
    }
    if (failure) std::rethrow_exception(failure);
    return b;
  }

  void worker_main() {
    std::vector<Resampler> workspace(1);
    std::unique_lock lock(mutex_);
    for (;;) {
      work_cv_.wait(lock, [&] { return stop_ || (next_claim_ < end_ && next_claim_ < next_deliver_ + capacity()); });
      if (stop_) return;
      const std::int64_t k = next_claim_++;
      const std::uint64_t generation = generation_;
      ++in_flight_;
      lock.unlock();
      Slot done;
      try {
        done.batch = build(k, workspace);
      } catch (...) {
        done.error = std::current_exception();
      }
      lock.lock();
      --in_flight_;
      if (generation == generation_) ring_[std::size_t(k % capacity())] = std::move(done);
      ready_cv_.notify_all();  // next() waits for the batch, start_epoch for in_flight_ == 0
    }
  }

  const Dataset& data_;
  Transform transform_;
  LoaderOptions opt_;
  int out_h_ = 0, out_w_ = 0;
  std::int64_t per_rank_ = 0, batches_ = 0;
  std::shared_ptr<detail::BatchBufferPool> pool_;
  std::vector<Resampler> inline_workspaces_ = std::vector<Resampler>(std::size_t(cpu::thread_count()));  // workers == 0

  // Written by start_epoch only while no worker is building, read by workers afterwards.
  std::vector<std::int64_t> permutation_, shard_;
  std::uint64_t epoch_ = 0;

  std::mutex mutex_;  // guards everything below
  std::condition_variable work_cv_, ready_cv_;
  bool started_ = false, stop_ = false;
  std::uint64_t generation_ = 0;
  std::int64_t next_claim_ = 0, next_deliver_ = 0, end_ = 0;
  int in_flight_ = 0;
  std::vector<Slot> ring_;
  std::vector<std::thread> threads_;
};

}  // namespace vitfreeze::data
