#pragma once
// What the pretraining-step benches share: rotating input batches, the timed step loop and the
// result line (img/s, TFLOP/s from a matrix-product count, saving against the unfrozen baseline).
// The statistic is the one bench/cuda/torch_mim_bench.py uses for PyTorch, so the two compare:
// kWarmupSteps untimed steps, then kTimedBlocks blocks of `steps` steps, each block timed by CUDA
// events around it (no synchronisation between its steps); the step time is the median over the
// blocks of the block's mean.
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include <vitfreeze/cuda.hpp>

#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/testing/explicit_freezing.hpp"

namespace vitfreeze::bench {

// Batches of images and masks rotate so that no step reads the previous step's inputs from L2.
inline constexpr int kInputSets = 4;

// kInputSets device batches [batch, channels, image, image] of uniform [-1, 1) values.
inline std::vector<cuda::DeviceTensor<float>> random_device_images(cuda::CudaContext& ctx, int batch, int channels,
                                                                  int image) {
  std::vector<cuda::DeviceTensor<float>> images;
  const std::int64_t values = std::int64_t(batch) * channels * image * image;
  for (int k = 0; k < kInputSets; ++k) {
    Tensor<float> host(Shape{batch, channels, image, image});
    RandomStream rs(11, RngPurpose::test, std::uint64_t(k));
    for (std::int64_t i = 0; i < values; ++i) host[i] = 2 * rs.uniform_float() - 1;
    images.push_back(cuda::to_device(ctx, host));
  }
  return images;
}

inline constexpr int kWarmupSteps = 10;
inline constexpr int kTimedBlocks = 5;

struct StepTiming {
  double median_ms = 0, min_ms = 0, max_ms = 0;  // over the blocks' mean step times
};

// Runs step(i) for kWarmupSteps untimed steps (plans, allocator cache, clocks), then kTimedBlocks
// timed blocks of `steps` steps. With VITFREEZE_PROFILE_ONE_STEP set, it brackets one step with
// cudaProfilerStart/Stop and ends the program.
template <class Step>
StepTiming time_steps(cuda::CudaContext& ctx, int steps, Step&& step) {
  int i = 0;
  for (; i < kWarmupSteps; ++i) step(i);
  ctx.synchronize();
  if (std::getenv("VITFREEZE_PROFILE_ONE_STEP")) {  // for `ncu --profile-from-start off`: one step, then stop
    cuda::check(cudaProfilerStart(), "cudaProfilerStart");
    step(i);
    ctx.synchronize();
    cuda::check(cudaProfilerStop(), "cudaProfilerStop");
    std::exit(0);  // a benchmark tool, not library code
  }
  std::vector<float> ms;
  cudaEvent_t start, stop;
  cuda::check(cudaEventCreate(&start), "cudaEventCreate");
  cuda::check(cudaEventCreate(&stop), "cudaEventCreate");
  for (int b = 0; b < kTimedBlocks; ++b) {
    cuda::check(cudaEventRecord(start, ctx.stream()), "cudaEventRecord");
    for (int k = 0; k < steps; ++k) step(i++);
    cuda::check(cudaEventRecord(stop, ctx.stream()), "cudaEventRecord");
    cuda::check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float t = 0;
    cuda::check(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
    ms.push_back(t / float(steps));
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.front(), ms.back()};
}

// One result line. TFLOP/s only for the unfrozen step (the FLOP count is that of the full step);
// frozen variants report their saving against the last unfrozen baseline.
inline void report_step(cuda::CudaContext& ctx, int frozen_units, const StepTiming& t, int batch, double flops_per_image,
                        double& baseline_ms, const cuda::DeviceTensor<double>& loss_device, const std::string& note = "") {
  double loss = 0;
  cuda::check(cudaMemcpy(&loss, loss_device.data(), sizeof(double), cudaMemcpyDeviceToHost), "cudaMemcpy(loss)");
  if (frozen_units == 0) baseline_ms = t.median_ms;
  const auto stats = ctx.allocator().stats();
  std::printf("frozen units %2d%s: step %.2f ms (block means min %.2f, max %.2f), %.0f img/s, %.1f TFLOP/s%s, loss %.4f, "
              "device memory in use+cached %.2f GiB, cudaMalloc calls %zu\n",
              frozen_units, note.c_str(), t.median_ms, t.min_ms, t.max_ms, batch / (t.median_ms / 1e3),
              frozen_units == 0 ? flops_per_image * batch / (t.median_ms / 1e3) / 1e12 : 0.0,
              frozen_units == 0 ? "" : " (n/a)", loss, double(stats.bytes_in_use + stats.bytes_cached) / (1 << 30),
              stats.malloc_calls);
  if (frozen_units > 0 && baseline_ms > 0)
    std::printf("  saving vs no freezing: %.1f%% of step time\n", 100.0 * (1 - t.median_ms / baseline_ms));
}

inline std::vector<int> parse_int_list(const char* s) {
  std::vector<int> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stoi(item));
  return out;
}

}  // namespace vitfreeze::bench
