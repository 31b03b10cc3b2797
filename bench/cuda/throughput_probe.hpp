#pragma once
// What the GPU throughput probes share: device buffers filled with a hashed pattern (realistic bit
// patterns; zeros would flatter power), a CUDA-event timer, and main (arguments, the skip without a GPU, errors).
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include <vitfreeze/backend/cuda/context.hpp>
#include <vitfreeze/backend/cuda/device_math.cuh>

namespace vitfreeze::bench {

// Values in [-0.5, 0.5) from a hash of the index.
template <class T>
__global__ void fill_pattern(T* x, std::int64_t n, std::uint32_t seed) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x) {
    std::uint32_t h = static_cast<std::uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    x[i] = cuda::from_float<T>(static_cast<float>(h >> 8) * (1.0f / 16777216.0f) - 0.5f);
  }
}

template <class T>
void fill_device(cuda::CudaContext& ctx, T* x, std::int64_t n, std::uint32_t seed) {
  fill_pattern<T><<<cuda::detail::grid_for(n), cuda::detail::kBlock, 0, ctx.stream()>>>(x, n, seed);
  cuda::check_launch("fill_pattern");
}

// A tensor of n pattern values.
template <class T>
cuda::DeviceTensor<T> filled(cuda::CudaContext& ctx, std::int64_t n, std::uint32_t seed) {
  cuda::DeviceTensor<T> t = ctx.empty<T>(Shape{n});
  fill_device(ctx, t.data(), n, seed);
  return t;
}
// An allocator buffer of n pattern values of type T.
template <class T>
cuda::DeviceBuffer filled_buffer(cuda::CudaContext& ctx, std::int64_t n, std::uint32_t seed) {
  cuda::DeviceBuffer b = ctx.allocator().allocate(sizeof(T) * static_cast<std::size_t>(n));
  fill_device(ctx, b.as<T>(), n, seed);
  return b;
}

// Milliseconds per call of f, after 3 warm-up calls (plans, heuristics, allocator cache, clocks).
template <class F>
double time_ms(cuda::CudaContext& ctx, int repeats, F&& f) {
  for (int i = 0; i < 3; ++i) f();
  cudaEvent_t start, stop;
  cuda::check(cudaEventCreate(&start), "cudaEventCreate");
  cuda::check(cudaEventCreate(&stop), "cudaEventCreate");
  cuda::check(cudaEventRecord(start, ctx.stream()), "cudaEventRecord");
  for (int i = 0; i < repeats; ++i) f();
  cuda::check(cudaEventRecord(stop, ctx.stream()), "cudaEventRecord");
  cuda::check(cudaEventSynchronize(stop), "cudaEventSynchronize");
  float ms = 0;
  cuda::check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
  return ms / repeats;
}

// A probe's main: `probe [batch=256] [repeats=20]`; without a usable GPU it says so and returns 77,
// otherwise runs body(ctx, batch, repeats) on device 0 and returns 0 (1 on an exception).
template <class F>
int run_probe(int argc, char** argv, F&& body) {
  const std::int64_t batch = argc > 1 ? std::atoll(argv[1]) : 256;
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 20;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIPPED: no usable CUDA device\n");
    return 77;
  }
  try {
    cuda::CudaContext ctx(0);
    body(ctx, batch, repeats);
  } catch (const std::exception& e) {
    std::printf("error: %s\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace vitfreeze::bench
