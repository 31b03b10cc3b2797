#pragma once
// What every CUDA test shares: a checker printing one line per check (relative error against a
// reference; a non-finite output never passes) and the exit protocol: 0 pass, 1 fail, 77 skipped
// (no usable GPU, said on stdout).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

namespace vitfreeze::testing {

struct DeviceChecker {
  int checks = 0, failures = 0;

  void expect(bool ok, const std::string& name) {
    ++checks;
    failures += !ok;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", name.c_str());
  }
  // max |got - want| / max |want| <= tol, every value finite, sizes equal and nonzero.
  template <class A, class B>
  double close(const std::string& name, const std::vector<A>& got, const std::vector<B>& want, double tol) {
    ++checks;
    bool finite = got.size() == want.size() && !got.empty();
    double err = 0, scale = 0;
    for (std::size_t i = 0; finite && i < got.size(); ++i) {
      const double g = double(got[i]), w = double(want[i]);
      if (!std::isfinite(g)) finite = false;
      err = std::max(err, std::abs(g - w));
      scale = std::max(scale, std::abs(w));
    }
    const double rel = err / (scale > 0 ? scale : 1.0);
    const bool ok = finite && rel <= tol;
    failures += !ok;
    std::printf("%s %-60s rel.err %.3g (tol %.0e)%s\n", ok ? "ok  " : "FAIL", name.c_str(), rel, tol,
                finite ? "" : "  NON-FINITE OUTPUT or size mismatch");
    return rel;
  }
};

// Runs `device_checks(checker)` when a GPU is usable; returns the process exit code.
template <class F>
int run_device_test(F&& device_checks, DeviceChecker& c) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // every finished line reaches the log, even before a crash
  int devices = 0;
  const cudaError_t status = cudaGetDeviceCount(&devices);
  if (status != cudaSuccess || devices == 0) {
    if (c.failures) return 1;
    std::printf("SKIPPED: no usable CUDA device (%s); %d host-only checks passed\n",
                status != cudaSuccess ? cudaGetErrorString(status) : "device count is 0", c.checks);
    return 77;
  }
  try {
    device_checks(c);
  } catch (const std::exception& e) {
    std::printf("FAIL exception: %s\n", e.what());
    return 1;
  }
  std::printf("%d checks, %d failed\n", c.checks, c.failures);
  return c.failures ? 1 : 0;
}

}  // namespace vitfreeze::testing
