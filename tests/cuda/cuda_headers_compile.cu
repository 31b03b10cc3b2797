// The public headers compile under nvcc (C++20), and a CUDA test binary skips cleanly (exit 77)
// when no GPU is usable, saying why.
#include <cuda_runtime.h>

#include <cstdio>
#include <vitfreeze/vitfreeze.hpp>

int main() {
  constexpr vitfreeze::ViTSpec spec{.image = 8, .channels = 1, .patch = 4, .dim = 16, .depth = 1, .heads = 2};
  static_assert(vitfreeze::check_spec<spec>());
  int devices = 0;
  const cudaError_t status = cudaGetDeviceCount(&devices);
  if (status != cudaSuccess || devices == 0) {
    std::printf("SKIPPED: no usable CUDA device (%s)\n",
                status != cudaSuccess ? cudaGetErrorString(status) : "device count is 0");
    return 77;
  }
  std::printf("CUDA devices: %d\n", devices);
  return 0;
}
