// The backend op table (tests/backend_ops.hpp) on the CUDA backend in fp32: the same cases, inputs
// and plain-loop double references the CPU backend is held to (tests/test_backend_ops.cpp), in value
// and gradient mode, outputs poisoned. The kernels the Cuda backend does not have (relative-bias
// attention, attention logits) are declined by the table and reported as skipped.
// Exit 0 pass, 1 fail, 77 without a GPU.
#include <cuda_runtime.h>

#include <cstdio>
#include <string>

#include <vitfreeze/cuda.hpp>

#include "../backend_ops.hpp"
#include "device_checks.hpp"

namespace {

namespace vf = vitfreeze;
using namespace vitfreeze::testing;  // device_checks.hpp

// fp32 kernels (cuBLASLt may use TF32-free fp32 GEMMs; the tolerance of test_cuda_ops' fp32 cases).
constexpr double kValueTol = 2e-5, kGradientTol = 5e-4;

void device_checks(DeviceChecker& c) {
  vf::cuda::CudaContext ctx(0);
  for (const backend_ops::OpReport& r : backend_ops::run_op_table<vf::Cuda, vf::Fp32>(ctx)) {
    if (!r.declined.empty()) {
      c.skip(r.name, r.declined);
      continue;
    }
    for (std::size_t o = 0; o < r.value_error.size(); ++o)
      c.expect(r.value_error[o] <= kValueTol, r.name + ": output " + std::to_string(o) + " (error " +
                                                  std::to_string(r.value_error[o]) + ")");
    for (std::size_t k = 0; k < r.gradient_error.size(); ++k)
      c.expect(r.gradient_error[k] <= kGradientTol, r.name + ": gradient " + std::to_string(k) + " (error " +
                                                        std::to_string(r.gradient_error[k]) + ")");
  }
}

}  // namespace

int main() {
  DeviceChecker c;
  return vf::testing::run_device_test(device_checks, c);
}
