// The public headers compile under nvcc (C++20), and a CUDA test binary skips cleanly (exit 77)
// when no GPU is usable, saying why (fails instead under VITFREEZE_REQUIRE_GPU=1).
#include <cuda_runtime.h>

#include <cstdio>
#include <vitfreeze/vitfreeze.hpp>

#include "device_checks.hpp"

int main() {
  constexpr vitfreeze::ViTSpec spec{.image = 8, .channels = 1, .patch = 4, .dim = 16, .depth = 1, .heads = 2};
  static_assert(vitfreeze::check_spec<spec>());
  if (const std::string why = vitfreeze::testing::gpu_unavailable(); !why.empty())
    return vitfreeze::testing::no_gpu_exit(why.c_str());
  int devices = 0;
  cudaGetDeviceCount(&devices);
  std::printf("CUDA devices: %d\n", devices);
  return 0;
}
