#pragma once
// Host <-> device copies of whole tensors on the context's stream.
#include <cuda_runtime.h>

#include "vitfreeze/backend/cuda/context.hpp"

namespace vitfreeze::cuda {

// Copies a host tensor into an existing device tensor of the same shape. The host buffer may be
// reused as soon as this returns (pageable host memory is staged before cudaMemcpyAsync returns).
template <class T>
void copy_to_device(CudaContext& ctx, const Tensor<T>& host, const DeviceTensor<T>& dev) {
  expect_shape(host.shape(), dev.shape(), "cuda::copy_to_device");
  check(cudaMemcpyAsync(dev.data(), host.data(), host.bytes(), cudaMemcpyHostToDevice, ctx.stream()),
        "cudaMemcpyAsync(host to device)");
}

// A device copy of a host tensor (same staging rule).
template <class T>
DeviceTensor<T> to_device(CudaContext& ctx, const Tensor<T>& host) {
  DeviceTensor<T> dev = ctx.empty<T>(host.shape());
  copy_to_device(ctx, host, dev);
  return dev;
}

// Copies device memory into an existing host tensor of the same shape; waits for the stream.
template <class T>
void copy_to_host(CudaContext& ctx, const DeviceTensor<T>& dev, const Tensor<T>& host) {
  expect_shape(host.shape(), dev.shape(), "cuda::copy_to_host");
  check(cudaMemcpyAsync(host.data(), dev.data(), dev.bytes(), cudaMemcpyDeviceToHost, ctx.stream()),
        "cudaMemcpyAsync(device to host)");
  ctx.synchronize();
}

template <class T>
Tensor<T> to_host(CudaContext& ctx, const DeviceTensor<T>& dev) {
  Tensor<T> host(dev.shape());
  copy_to_host(ctx, dev, host);
  return host;
}

}  // namespace vitfreeze::cuda
