#pragma once
// Whole-step CUDA graph: the first run() captures everything a training step enqueues on the
// context's stream (forward, backward, loss, optimizer) and later runs replay it with one launch,
// taking the per-kernel launch cost off the host. A step qualifies when it is static: the same
// shapes, inputs copied into the same buffers before each run, and no host synchronisation or
// pageable host copy inside (DeviceAdamW::stage and DeviceMasks::assign run before, outside).
// The caller passes a signature of everything that changes the enqueued work (e.g. the number of
// frozen units and trained tensors); a new signature recaptures, as when a unit freezes.
//
// Memory: every block handed out during capture is held by the graph for its lifetime, so replays
// write to addresses nobody else is given. The step then uses no intra-step block reuse, which costs
// memory (the sum of the step's allocations instead of their peak), traded for not running the
// caching allocator inside the graph.
#include <cuda_runtime.h>

#include <cstdint>
#include <exception>
#include <vector>

#include "vitfreeze/backend/cuda/context.hpp"

namespace vitfreeze::cuda {

class StepGraph {
 public:
  StepGraph() = default;
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;
  ~StepGraph() { destroy(); }

  template <class Enqueue>
  void run(CudaContext& ctx, std::uint64_t signature, Enqueue&& enqueue) {
    if (!exec_ || signature != signature_) capture(ctx, signature, enqueue);
    check(cudaGraphLaunch(exec_, ctx.stream()), "cudaGraphLaunch");
  }

  std::size_t captures() const { return captures_; }
  std::size_t held_bytes() const {
    std::size_t n = 0;
    for (const DeviceBuffer& b : held_) n += b.bytes();
    return n;
  }

  // Drops the graph and its memory (waits for its replays first).
  void reset(CudaContext& ctx) {
    ctx.synchronize();
    destroy();
  }

 private:
  template <class Enqueue>
  void capture(CudaContext& ctx, std::uint64_t signature, Enqueue& enqueue) {
    reset(ctx);
    // Relaxed mode: the allocator may still call cudaMalloc while the step is being captured.
    check(cudaStreamBeginCapture(ctx.stream(), cudaStreamCaptureModeRelaxed), "cudaStreamBeginCapture");
    ctx.allocator().hold_allocations_in(&held_);
    cudaGraph_t graph = nullptr;
    try {
      enqueue();
    } catch (...) {
      ctx.allocator().hold_allocations_in(nullptr);
      (void)cudaStreamEndCapture(ctx.stream(), &graph);
      if (graph) (void)cudaGraphDestroy(graph);
      held_.clear();
      throw;
    }
    ctx.allocator().hold_allocations_in(nullptr);
    check(cudaStreamEndCapture(ctx.stream(), &graph), "cudaStreamEndCapture");
    graph_ = graph;
    check(cudaGraphInstantiate(&exec_, graph_, 0), "cudaGraphInstantiate");
    signature_ = signature;
    ++captures_;
  }

  void destroy() noexcept {
    if (exec_) (void)cudaGraphExecDestroy(exec_);
    if (graph_) (void)cudaGraphDestroy(graph_);
    exec_ = nullptr;
    graph_ = nullptr;
    held_.clear();
  }

  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  std::uint64_t signature_ = 0;
  std::size_t captures_ = 0;
  std::vector<DeviceBuffer> held_;
};

}  // namespace vitfreeze::cuda
