#pragma once
// Dynamic loss scaling on the device (the rule: core/loss_scale.hpp). The scale and its schedule
// live in device memory, so a step needs no host round trip: the loss backward reads the scale as its
// seed, a multi-tensor check flags non-finite weight gradients, AdamW reads the flag (skips) and the
// scale (divides), and a one-thread kernel advances the schedule. The host learns what happened one
// optimiser step late, from a copy into pinned memory guarded by an event: by the time the next step
// is staged the GPU has long finished the previous check, so waiting for it costs nothing and the
// host keeps running ahead of the GPU. It needs the answer for two things only: undoing the step
// counts of a skipped update (AdamW's bias correction counts applied updates) and stopping a run
// whose gradients stay non-finite.
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/device_math.cuh"
#include "vitfreeze/core/loss_scale.hpp"

namespace vitfreeze::cuda {

namespace kernels {

// blockIdx.y picks the tensor of the table (any slice type with grad and numel, e.g. the AdamW
// table). Every writer stores the same 1, so the unordered stores need no atomics.
template <class Slice>
__global__ void find_non_finite_gradients(const Slice* slices, LossScaleState* state) {
  const Slice s = slices[blockIdx.y];
  int bad = 0;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < s.numel;
       i += std::int64_t(gridDim.x) * blockDim.x)
    bad |= !isfinite(s.grad[i]);
  if (__syncthreads_or(bad) && threadIdx.x == 0) state->found_non_finite = 1;
}

__global__ void advance_loss_scale(LossScaleState* state, LossScaleOptions options) {
  advance_loss_scale(*state, options);
}

}  // namespace kernels

class DeviceLossScaler {
 public:
  DeviceLossScaler(CudaContext& ctx, LossScaleOptions options) : options_(options) {
    validate(options_);
    state_ = ctx.allocator().allocate(sizeof(LossScaleState));
    const LossScaleState initial = initial_loss_scale_state(options_);
    check(cudaMemcpyAsync(state_.data(), &initial, sizeof initial, cudaMemcpyHostToDevice, ctx.stream()),
          "cudaMemcpyAsync(loss scale state)");  // pageable source: staged before the call returns
    LossScaleState* host = nullptr;
    check(cudaMallocHost(reinterpret_cast<void**>(&host), sizeof(LossScaleState)), "cudaMallocHost(loss scale mirror)");
    mirror_.reset(host);
    *mirror_ = initial;
    cudaEvent_t e = nullptr;
    check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate(loss scale)");
    copied_.reset(e);
    last_ = initial;
  }

  // The device state: `scale` is the loss backward's seed factor, read by AdamW together with the flag.
  LossScaleState* device_state() const { return state_.as<LossScaleState>(); }
  const float* device_scale() const { return &device_state()->scale; }

  // Flags non-finite gradients among the table's tensors (launch over `count` slices, the largest
  // `largest` elements), after clearing the previous step's flag.
  template <class Slice>
  void check_gradients(CudaContext& ctx, const Slice* device_table, std::size_t count, std::int64_t largest) const {
    check(cudaMemsetAsync(&device_state()->found_non_finite, 0, sizeof(std::int32_t), ctx.stream()),
          "cudaMemsetAsync(found_non_finite)");
    detail::for_each_table_chunk(count, largest, [&](dim3 grid, std::size_t first) {
      kernels::find_non_finite_gradients<Slice><<<grid, detail::kBlock, 0, ctx.stream()>>>(device_table + first,
                                                                                           device_state());
      check_launch("find_non_finite_gradients");
    });
  }

  // After the (gated) update: advances the schedule and queues the state's copy to the host. The
  // event is an external node under stream capture, so a replayed step graph records it too.
  void advance(CudaContext& ctx) {
    kernels::advance_loss_scale<<<1, 1, 0, ctx.stream()>>>(device_state(), options_);
    check_launch("advance_loss_scale");
    check(cudaMemcpyAsync(mirror_.get(), state_.data(), sizeof(LossScaleState), cudaMemcpyDeviceToHost, ctx.stream()),
          "cudaMemcpyAsync(loss scale mirror)");
    check(cudaEventRecordWithFlags(copied_.get(), ctx.stream(), cudaEventRecordExternal), "cudaEventRecord(loss scale)");
    pending_ = true;
  }

  // The state after the last advanced step, waiting for it if it is still queued; empty when no step
  // was advanced since the last call. Throws NumericError once more than max_consecutive_skips steps
  // in a row had non-finite gradients.
  std::optional<LossScaleState> settle() {
    if (!pending_) return std::nullopt;
    check(cudaEventSynchronize(copied_.get()), "cudaEventSynchronize(loss scale)");
    pending_ = false;
    last_ = *mirror_;
    if (last_.consecutive_skips > options_.max_consecutive_skips)
      throw NumericError("fp16 loss scaling: non-finite gradients in " + std::to_string(last_.consecutive_skips) +
                         " steps in a row (scale now " + std::to_string(last_.scale) +
                         "); the run diverged, it did not just overflow");
    return last_;
  }

  // A replayed step graph ran advance()'s work (kernel, copy into the mirror, event) without the
  // host calling it: the next settle() must wait for that copy.
  void replayed() { pending_ = true; }

  // What the host last learnt (settle()).
  const LossScaleState& last_settled() const { return last_; }
  const LossScaleOptions& options() const { return options_; }

 private:
  struct HostFree {
    void operator()(LossScaleState* p) const noexcept { (void)cudaFreeHost(p); }
  };
  struct EventDestroy {
    void operator()(cudaEvent_t e) const noexcept { (void)cudaEventDestroy(e); }
  };

  LossScaleOptions options_;
  DeviceBuffer state_;
  std::unique_ptr<LossScaleState, HostFree> mirror_;
  std::unique_ptr<std::remove_pointer_t<cudaEvent_t>, EventDestroy> copied_;
  LossScaleState last_{};
  bool pending_ = false;
};

}  // namespace vitfreeze::cuda
