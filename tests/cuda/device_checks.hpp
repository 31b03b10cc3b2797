#pragma once
// What every CUDA test shares: a checker printing one line per check (element-wise error against a
// reference; a non-finite output never passes), the exit protocol (0 pass, 1 fail, 77 skipped: no
// usable GPU, said on stdout; VITFREEZE_REQUIRE_GPU=1 makes that a failure, and a run whose device
// cases were all skipped fails too), sections that turn an exception into one failure, reproducible
// random host data, host <-> device copies with NaN-poisoned outputs, and the host side of
// whole-step tests.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include <vitfreeze/cuda.hpp>

#include "vitfreeze/autograd/tape.hpp"
#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/testing/explicit_freezing.hpp"

namespace vitfreeze::testing {

using Doubles = std::vector<double>;

struct DeviceChecker {
  int checks = 0, failures = 0;
  int skips = 0;  // cases the backend declined to run: not tested, counted in the summary line
  bool quiet = false;  // prints nothing (the checker's own self-tests, whose FAIL lines are expected)

  void expect(bool ok, const std::string& name) {
    ++checks;
    failures += !ok;
    if (!quiet) std::printf("%s %s\n", ok ? "ok  " : "FAIL", name.c_str());
  }
  // Element-wise, allclose-style: |got_i - want_i| <= tol * max(|want_i|, rms(want)) for every i,
  // every value finite, sizes equal and nonzero (tol 0: exact). Each entry is held to its own size,
  // with an absolute floor of tol * RMS(want): near zero, rounding error follows the tensor's typical
  // magnitude, not the entry's. Never looser than max |err| / max |want| <= tol, which let entries
  // far below the largest go unchecked. Prints the worst entry and its err / bound (<= 1 passes).
  // Braced lists ({value}) are vectors of double.
  template <class A = double, class B = double>
  void close(const std::string& name, const std::vector<A>& got, const std::vector<B>& want, double tol) {
    ++checks;
    bool finite = got.size() == want.size() && !got.empty();
    double sum_sq = 0;
    for (std::size_t i = 0; finite && i < want.size(); ++i) sum_sq += double(want[i]) * double(want[i]);
    const double rms = finite ? std::sqrt(sum_sq / double(want.size())) : 0.0;
    const double floor = rms > 0 ? rms : 1.0;  // an all-zero reference: absolute tolerance tol
    double worst = 0;  // err / bound of the worst entry (tol 0 and an error: infinite)
    std::size_t at = 0;
    for (std::size_t i = 0; finite && i < got.size(); ++i) {
      const double g = double(got[i]), w = double(want[i]);
      if (!std::isfinite(g)) finite = false;
      const double err = std::abs(g - w), bound = tol * std::max(std::abs(w), floor);
      const double ratio = err == 0 ? 0.0 : bound > 0 ? err / bound : INFINITY;
      if (!(ratio <= worst)) worst = ratio, at = i;
    }
    const bool ok = finite && worst <= 1.0;
    failures += !ok;
    if (quiet) return;
    if (!finite) {
      std::printf("FAIL %-60s NON-FINITE OUTPUT or size mismatch (%zu values, %zu expected)\n", name.c_str(), got.size(),
                  want.size());
      return;
    }
    std::printf("%s %-60s err/bound %.3g (tol %.0e x max(|want|, rms %.3g)), worst [%zu] %.6g vs %.6g\n",
                ok ? "ok  " : "FAIL", name.c_str(), worst, tol, floor, at, double(got[at]), double(want[at]));
  }
  // A case the backend cannot run here: said loudly, counted, not a failure.
  void skip(const std::string& name, const std::string& why) {
    ++skips;
    if (quiet) return;
    std::printf("skip: %s: %s\n", name.c_str(), why.c_str());
    std::printf("      ^^^^ SKIPPED, NOT TESTED ^^^^\n");
  }
};

// VITFREEZE_REQUIRE_GPU=1 (the GPU bench script sets it): a machine meant to have a GPU that has none
// fails instead of skipping.
inline bool gpu_required() {
  const char* v = std::getenv("VITFREEZE_REQUIRE_GPU");
  return v && std::strcmp(v, "1") == 0;
}
// The exit code when no GPU is usable: 77 (skipped), or 1 under VITFREEZE_REQUIRE_GPU=1.
inline int no_gpu_exit(const char* why) {
  if (gpu_required()) {
    std::printf("FAIL: no usable CUDA device (%s) and VITFREEZE_REQUIRE_GPU=1\n", why);
    return 1;
  }
  std::printf("SKIPPED: no usable CUDA device (%s)\n", why);
  return 77;
}
// Empty when a device is usable, else why not.
inline std::string gpu_unavailable() {
  int devices = 0;
  const cudaError_t status = cudaGetDeviceCount(&devices);
  if (status != cudaSuccess) return cudaGetErrorString(status);
  return devices == 0 ? "device count is 0" : "";
}

// The exit code after the device checks ran (printing the summary): 1 on any failure, and 1 when
// they checked nothing (`c.checks` still equal to the host checks' count: every case skipped).
inline int device_exit_code(const DeviceChecker& c, int host_checks) {
  const bool nothing_checked = c.checks == host_checks;
  if (!c.quiet) {
    if (c.skips)
      std::printf("%d checks, %d failed, %d case(s) SKIPPED, NOT TESTED\n", c.checks, c.failures, c.skips);
    else
      std::printf("%d checks, %d failed\n", c.checks, c.failures);
    if (nothing_checked) std::printf("FAIL: no device check ran (%d case(s) skipped)\n", c.skips);
  }
  return nothing_checked || c.failures ? 1 : 0;
}

// Runs `host_checks(checker)` (no GPU needed), then `device_checks(checker)` when a GPU is usable;
// returns the process exit code. A run in which the device checks checked nothing (every case
// skipped, e.g. cuDNN refusing every shape) fails: it would otherwise pass having tested nothing.
template <class H, class F>
int run_device_test(H&& host_checks, F&& device_checks, DeviceChecker& c) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // every finished line reaches the log, even before a crash
  host_checks(c);
  const int host_checks_run = c.checks;
  if (const std::string why = gpu_unavailable(); !why.empty()) {
    if (c.failures) return 1;
    std::printf("%d host-only checks passed\n", host_checks_run);
    return no_gpu_exit(why.c_str());
  }
  try {
    device_checks(c);
  } catch (const std::exception& e) {  // the context itself could not be created
    std::printf("FAIL exception: %s\n", e.what());
    return 1;
  }
  return device_exit_code(c, host_checks_run);
}
template <class F>
int run_device_test(F&& device_checks, DeviceChecker& c) {
  return run_device_test([](DeviceChecker&) {}, device_checks, c);
}

// A section that throws (an epilogue this cuBLASLt refuses, a launch error) fails and the rest run.
template <class F>
void section(DeviceChecker& c, const char* name, F&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    c.expect(false, std::string(name) + " threw: " + e.what());
  }
}

template <class T>
const char* type_name() {
  return std::is_same_v<T, float> ? "f32" : std::is_same_v<T, f16> ? "f16" : "bf16";
}

// ---- host data ---------------------------------------------------------------------------------
// n uniform values in [lo, hi) from one test stream, each rounded to T.
template <class T = float>
std::vector<T> random_uniform(std::uint64_t seed, std::uint64_t stream, std::size_t n, float lo = -1.0f,
                              float hi = 1.0f) {
  RandomStream rs(seed, RngPurpose::test, stream);
  std::vector<T> v;
  v.reserve(n);
  for (std::size_t i = 0; i < n; ++i) v.push_back(T(lo + (hi - lo) * rs.uniform_float()));
  return v;
}

// Every call draws from a fresh stream of one seed: the data is the same run after run.
class Random {
 public:
  explicit Random(std::uint64_t seed) : seed_(seed) {}

  template <class T = float>
  std::vector<T> uniform(std::size_t n, float lo = -1.0f, float hi = 1.0f) {
    return random_uniform<T>(seed_, ++stream_, n, lo, hi);
  }
  // ids[b, k]: the first K entries of a random permutation of [0, L) per sample; full permutation
  // in `order` when K == L.
  std::vector<std::int32_t> permutation_prefixes(std::int64_t B, std::int64_t L, std::int64_t K) {
    RandomStream rs(seed_, RngPurpose::shuffle, ++stream_);
    std::vector<std::int32_t> ids;
    for (std::int64_t b = 0; b < B; ++b) {
      std::vector<std::int32_t> order(L);
      std::iota(order.begin(), order.end(), 0);
      for (std::int64_t i = L - 1; i > 0; --i) std::swap(order[i], order[rs.below(std::uint32_t(i + 1))]);
      ids.insert(ids.end(), order.begin(), order.begin() + K);
    }
    return ids;
  }

 private:
  std::uint64_t seed_, stream_ = 0;
};

template <class T>
Doubles widen(const std::vector<T>& v) {
  Doubles out;
  out.reserve(v.size());
  for (const T& x : v) out.push_back(static_cast<double>(static_cast<float>(x)));
  return out;
}
// The reference rounded to the output's storage type.
template <class T>
Doubles round_to(Doubles v) {
  if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>)
    for (double& x : v) x = static_cast<float>(T(static_cast<float>(x)));
  return v;
}

// ---- device data -------------------------------------------------------------------------------
template <class T>
cuda::DeviceTensor<T> upload(cuda::CudaContext& ctx, const std::vector<T>& host) {
  cuda::DeviceTensor<T> t = ctx.empty<T>(Shape{static_cast<std::int64_t>(host.size())});
  cuda::check(cudaMemcpyAsync(t.data(), host.data(), t.bytes(), cudaMemcpyHostToDevice, ctx.stream()), "upload");
  return t;
}
// All bits set: a NaN in both fp32 and bf16.
template <class T>
cuda::DeviceTensor<T> poisoned(cuda::CudaContext& ctx, std::int64_t n) {
  cuda::DeviceTensor<T> t = ctx.empty<T>(Shape{n});
  cuda::check(cudaMemsetAsync(t.data(), 0xFF, t.bytes(), ctx.stream()), "poison");
  return t;
}
template <class T>
std::vector<T> download(cuda::CudaContext& ctx, const T* device, std::int64_t n) {
  std::vector<T> host(static_cast<std::size_t>(n));
  cuda::check(cudaMemcpyAsync(host.data(), device, sizeof(T) * host.size(), cudaMemcpyDeviceToHost, ctx.stream()),
              "download");
  ctx.synchronize();
  return host;
}
template <class T>
std::vector<T> download(cuda::CudaContext& ctx, const cuda::DeviceTensor<T>& t) {
  return download(ctx, t.data(), t.numel());
}
template <class T>
Doubles fetch(cuda::CudaContext& ctx, const T* device, std::int64_t n) {
  return widen(download(ctx, device, n));
}
template <class T>
Doubles fetch(cuda::CudaContext& ctx, const cuda::DeviceTensor<T>& t) {
  return widen(download(ctx, t));
}

// ---- whole-step tests: the CPU model's side ----------------------------------------------------
// Moves every parameter off its init (zero biases, unit norms) so each term of the loss counts.
template <class Params>
void nudge_off_init(const Params& params) {
  RandomStream rs(99, RngPurpose::test, 1);
  for (auto* p : params)
    for (std::int64_t i = 0; i < p->value.numel(); ++i) p->value[i] += 0.05f * (2 * rs.uniform_float() - 1);
}

// Images [batch, channels, image, image] of uniform [-1, 1) values.
inline Tensor<float> random_images(std::int64_t batch, std::int64_t channels, std::int64_t image, std::uint64_t stream) {
  Tensor<float> images(Shape{batch, channels, image, image});
  RandomStream rs(5, RngPurpose::test, stream);
  for (std::int64_t i = 0; i < images.numel(); ++i) images[i] = 2 * rs.uniform_float() - 1;
  return images;
}

// One CPU forward and backward of `objective` on `encoder`: returns the loss, leaves the gradients
// in the parameters.
template <class Objective, class Encoder, class Masks>
double host_loss_and_grads(Objective& objective, Encoder& encoder, const Tensor<float>& images, const Masks& masks) {
  Tape<float> tape;
  auto out = objective.forward(tape, encoder, images, masks);
  const double loss = tape.value(out.loss)[0];
  tape.backward(out.loss);
  return loss;
}

inline std::vector<float> to_vector(const Tensor<float>& t) { return {t.data(), t.data() + t.numel()}; }

// A device step against the CPU's: the loss, then per parameter (the same list, by name) the
// gradient of every tensor that trains on the host, divided by loss_scale (a step seeded with the
// fp16 loss scale); the same tensors train on both sides, and a tensor the objective does not reach
// (the encoder's final norm under LocalMIM: no host gradient) keeps a zero device gradient.
template <class DeviceParameters>
void compare_with_host(DeviceChecker& c, const std::string& tag, cuda::CudaContext& ctx, double gpu_loss, double cpu_loss,
                       const DeviceParameters& params, const std::vector<Parameter<float>*>& host_params,
                       double loss_tol, double grad_tol, float loss_scale = 1.0f) {
  c.close(tag + "loss", std::vector<double>{gpu_loss}, std::vector<double>{cpu_loss}, loss_tol);
  c.expect(host_params.size() == params.size(), tag + "same parameter list as the CPU model");
  for (std::size_t i = 0; i < params.size() && i < host_params.size(); ++i) {
    c.expect(params[i]->name() == host_params[i]->name, tag + "parameter " + std::to_string(i) + " is " + host_params[i]->name);
    if (params[i]->trainable() != host_params[i]->trainable) {
      c.expect(false, tag + params[i]->name() + " trains on one side only");
      continue;
    }
    if (!params[i]->trainable()) continue;
    std::vector<float> device_grad = to_vector(params[i]->grad_to_host(ctx));
    for (float& g : device_grad) g /= loss_scale;
    if (host_params[i]->grad.empty()) {  // unused by the objective: no gradient reached it
      const bool zero = std::all_of(device_grad.begin(), device_grad.end(), [](float g) { return g == 0.0f; });
      c.expect(zero, tag + params[i]->name() + ": unused, its device gradient stays zero");
      continue;
    }
    c.close(tag + "grad " + params[i]->name(), device_grad, to_vector(host_params[i]->grad), grad_tol);
  }
}

// The parameters of a model's host modules, encoder first (the explicit model's order).
template <class Encoder, class Objective>
std::vector<Parameter<float>*> host_parameters(Encoder& encoder, Objective& objective) {
  std::vector<Parameter<float>*> out;
  encoder.collect_parameters(out);
  objective.collect_parameters(out);
  return out;
}

// The loss a device step wrote (the first of its device doubles).
inline double device_loss(const cuda::DeviceTensor<double>& loss) {
  double host = 0;
  cuda::check(cudaMemcpy(&host, loss.data(), sizeof(double), cudaMemcpyDeviceToHost), "cudaMemcpy(loss)");
  return host;
}

}  // namespace vitfreeze::testing
