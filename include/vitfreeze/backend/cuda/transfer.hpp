#pragma once
// Host <-> device copies of whole tensors on the context's stream.
#include <cuda_runtime.h>

#include "vitfreeze/backend/cuda/context.hpp"

namespace vitfreeze::cuda {

// A device copy of a host tensor. The host buffer may be reused as soon as this returns (pageable
// host memory is staged before cudaMemcpyAsync returns).
template <class T>
Tensor<T> to_device(CudaContext& ctx, const Tensor<T>& host) {
  Tensor<T> dev = ctx.empty<T>(host.shape());
  check(cudaMemcpyAsync(dev.data(), host.data(), host.bytes(), cudaMemcpyHostToDevice, ctx.stream()),
        "cudaMemcpyAsync(host to device)");
  return dev;
}

// Copies device memory into an existing host tensor of the same shape; waits for the stream.
template <class T>
void copy_to_host(CudaContext& ctx, const Tensor<T>& dev, const Tensor<T>& host) {
  expect_shape(host.shape(), dev.shape(), "cuda::copy_to_host");
  check(cudaMemcpyAsync(host.data(), dev.data(), dev.bytes(), cudaMemcpyDeviceToHost, ctx.stream()),
        "cudaMemcpyAsync(device to host)");
  ctx.synchronize();
}

template <class T>
Tensor<T> to_host(CudaContext& ctx, const Tensor<T>& dev) {
  Tensor<T> host(dev.shape());
  copy_to_host(ctx, dev, host);
  return host;
}

}  // namespace vitfreeze::cuda
