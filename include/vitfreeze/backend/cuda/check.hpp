#pragma once
// Turns CUDA runtime and cuBLASLt status codes into vitfreeze::CudaError naming the failed call and
// the library's own reason string, so a failure deep in a training step says what went wrong.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "vitfreeze/core/error.hpp"

namespace vitfreeze::cuda {

inline void check(cudaError_t status, const char* call) {
  if (status == cudaSuccess) return;
  throw CudaError(std::string(call) + " failed: " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) +
                  ")");
}

inline void check(cublasStatus_t status, const char* call) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw CudaError(std::string(call) + " failed: " + cublasLtGetStatusName(status) + " (" +
                  cublasLtGetStatusString(status) + ")");
}

// After a <<<...>>> launch: reports a bad configuration (grid, shared memory) at the launch site
// instead of at the next synchronising call.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

}  // namespace vitfreeze::cuda
