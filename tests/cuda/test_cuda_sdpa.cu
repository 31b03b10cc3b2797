// cuDNN fused SDPA (cudnn_sdpa.hpp) against the CPU attention in double, on fresh random bf16 inputs.
// Inputs are rounded to bf16 first and the reference runs on the rounded values, so the errors are
// cuDNN's own (bf16 P and outputs, fp32 accumulation). Errors are element-wise (DeviceChecker::close),
// tolerance 2e-2. Outputs are poisoned with NaN first; a non-finite output never passes.
// Prints one line per check; a shape cuDNN cannot run prints "skip: <reason>" (not a failure by
// itself, but a run where cuDNN refused every shape fails). Exit 0 pass, 1 any failure, 77 no GPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <vitfreeze/cuda.hpp>
#include <vitfreeze/backend/cuda/cudnn_sdpa.hpp>

#include "device_checks.hpp"
#include "vitfreeze/backend/cpu/attention.hpp"
#include "vitfreeze/core/rng.hpp"

namespace {

namespace vf = vitfreeze;
namespace vc = vitfreeze::cuda;
namespace cpu = vitfreeze::cpu;
using vf::bf16;
using namespace vitfreeze::testing;  // device_checks.hpp

constexpr double kTol = 2e-2;
// AttentionShape is {batch, tokens, heads, head_dim}.
constexpr vf::AttentionShape kShapes[] = {{2, 50, 12, 64}, {2, 197, 16, 32}, {3, 17, 3, 64}};

// bf16 values of uniform(-1.5, 1.5) draws: attention scores of order 1 with these.
std::vector<bf16> random_bf16(std::size_t n, std::uint64_t stream) {
  return vf::testing::random_uniform<bf16>(20240601, stream, n, -1.5f, 1.5f);
}
// Columns [first, first + count) of every row of a row-major matrix with `ld` columns.
Doubles columns(const Doubles& m, std::int64_t ld, std::int64_t first, std::int64_t count) {
  Doubles out;
  for (std::size_t r = 0; r * ld < m.size(); ++r)
    out.insert(out.end(), m.begin() + r * ld + first, m.begin() + r * ld + first + count);
  return out;
}

// stats[b, h, t] = log Σ_t' exp(scale q_t · k_t'), the row log-sum-exp of the scaled scores.
Doubles reference_stats(const Doubles& qkv, const vf::AttentionShape& s) {
  const std::int64_t T = s.tokens, D = s.dim(), hd = s.head_dim;
  const double scale = 1.0 / std::sqrt(double(hd));
  Doubles stats;
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t h = 0; h < s.heads; ++h)
      for (std::int64_t t = 0; t < T; ++t) {
        Doubles scores(T);
        for (std::int64_t j = 0; j < T; ++j) {
          double dot = 0;
          for (std::int64_t d = 0; d < hd; ++d)
            dot += qkv[(b * T + t) * 3 * D + h * hd + d] * qkv[(b * T + j) * 3 * D + D + h * hd + d];
          scores[j] = scale * dot;
        }
        const double m = *std::max_element(scores.begin(), scores.end());
        double z = 0;
        for (double x : scores) z += std::exp(x - m);
        stats.push_back(m + std::log(z));
      }
  return stats;
}

void host_checks(DeviceChecker& c) {
  std::string message = "no exception";
  try {
    vc::check(CUDNN_STATUS_BAD_PARAM, "cudnnSomething(x)");
  } catch (const vf::CudaError& e) {
    message = e.what();
  }
  c.expect(message.find("cudnnSomething(x)") != std::string::npos && message.find("BAD_PARAM") != std::string::npos,
           "check(cudnnStatus_t) throws CudaError naming call and status: " + message);
  std::printf("cuDNN library version %zu (headers %d)\n", cudnnGetVersion(), CUDNN_VERSION);

  // Every tensor and operation descriptor of the graphs, and the operation graph itself, pass
  // cuDNN's own validation; this needs no GPU (engine choice and execution do).
  using Mode = vc::detail::SdpaMode;
  for (const vf::AttentionShape& s : kShapes)
    for (Mode mode : {Mode::training, Mode::inference, Mode::backward}) {
      const char* mode_name = mode == Mode::training ? "training" : mode == Mode::inference ? "inference" : "backward";
      const std::string name = std::string("graph finalizes without a device: ") + mode_name + " B=" +
                               std::to_string(s.batch) + " T=" + std::to_string(s.tokens) +
                               " H=" + std::to_string(s.heads) + " hd=" + std::to_string(s.head_dim);
      try {
        vc::detail::CudnnDescriptors owned;
        vc::detail::SdpaGraphBuilder graph(owned);
        vc::detail::describe_sdpa_graph(graph, s, mode);
        graph.finish(nullptr);
        c.expect(true, name);
      } catch (const std::exception& e) {
        c.expect(false, name + ": " + e.what());
      }
    }
}

void check_shape(vc::CudaContext& ctx, vc::CudnnSdpa& sdpa, DeviceChecker& c, const vf::AttentionShape& s,
                 std::uint64_t seed) {
  const std::string tag = "B=" + std::to_string(s.batch) + " T=" + std::to_string(s.tokens) +
                          " H=" + std::to_string(s.heads) + " hd=" + std::to_string(s.head_dim);
  std::string why;
  if (!sdpa.supports(s, &why)) {
    c.skip(tag, "cuDNN SDPA not supported: " + why);
    return;
  }
  const std::size_t plans = sdpa.cached_plans();
  c.expect(sdpa.supports(s) && sdpa.cached_plans() == plans, "supports() is cached " + tag);

  const std::int64_t BT = s.batch * s.tokens, D = s.dim(), rows = s.batch * s.heads * s.tokens;
  const std::vector<bf16> qkv = random_bf16(BT * 3 * D, 2 * seed), dout = random_bf16(BT * D, 2 * seed + 1);
  const Doubles qkv_d = widen(qkv), dout_d = widen(dout);

  // Reference in double on the same (bf16) values. attention_backward accumulates: start from 0.
  const cpu::AttentionShape cs = s;
  Doubles out(BT * D), probs(rows * s.tokens), dqkv(BT * 3 * D, 0.0), scratch(rows * s.tokens);
  cpu::attention_forward<double>(qkv_d.data(), out.data(), probs.data(), cs);
  cpu::attention_backward<double>(dout_d.data(), qkv_d.data(), probs.data(), dqkv.data(), scratch.data(), cs);
  const Doubles stats = reference_stats(qkv_d, s);

  vc::DeviceTensor<bf16> d_qkv = upload(ctx, qkv), d_dout = upload(ctx, dout);

  // Training forward: out and stats.
  vc::DeviceTensor<bf16> d_out = poisoned<bf16>(ctx, BT * D);
  vc::DeviceTensor<float> d_stats = poisoned<float>(ctx, rows);
  sdpa.forward(d_qkv.data(), d_out.data(), d_stats.data(), s);
  const std::vector<bf16> out_training = download(ctx, d_out);
  c.close("forward (training) out " + tag, widen(out_training), out, kTol);
  c.close("forward (training) stats = row logsumexp " + tag, widen(download(ctx, d_stats)), stats, kTol);

  // The same call again gives the same bits (the cached plan is reused, the kernel is deterministic).
  vc::DeviceTensor<bf16> d_out_again = poisoned<bf16>(ctx, BT * D);
  vc::DeviceTensor<float> d_stats_again = poisoned<float>(ctx, rows);
  sdpa.forward(d_qkv.data(), d_out_again.data(), d_stats_again.data(), s);
  const std::vector<bf16> out_again = download(ctx, d_out_again);
  c.expect(std::equal(out_again.begin(), out_again.end(), out_training.begin(),
                      [](bf16 a, bf16 b) { return a.bits == b.bits; }),
           "forward (training) repeated call is bitwise identical " + tag);

  // Inference forward: out only.
  vc::DeviceTensor<bf16> d_out_inference = poisoned<bf16>(ctx, BT * D);
  sdpa.forward(d_qkv.data(), d_out_inference.data(), nullptr, s);
  c.close("forward (inference) out " + tag, widen(download(ctx, d_out_inference)), out, kTol);

  // Backward from the training forward's own out and stats; dqkv is overwritten (poisoned first).
  vc::DeviceTensor<bf16> d_dqkv = poisoned<bf16>(ctx, BT * 3 * D);
  sdpa.backward(d_qkv.data(), d_out.data(), d_dout.data(), d_stats.data(), d_dqkv.data(), s);
  const Doubles got = widen(download(ctx, d_dqkv));
  c.close("backward dq " + tag, columns(got, 3 * D, 0, D), columns(dqkv, 3 * D, 0, D), kTol);
  c.close("backward dk " + tag, columns(got, 3 * D, D, D), columns(dqkv, 3 * D, D, D), kTol);
  c.close("backward dv " + tag, columns(got, 3 * D, 2 * D, D), columns(dqkv, 3 * D, 2 * D, D), kTol);
}

void device_checks(DeviceChecker& c) {
  vc::CudaContext ctx(0);
  vc::CudnnSdpa sdpa(ctx);
  std::uint64_t seed = 0;
  for (const vf::AttentionShape& s : kShapes) check_shape(ctx, sdpa, c, s, ++seed);
}

}  // namespace

int main() {
  DeviceChecker c;
  return vf::testing::run_device_test(host_checks, device_checks, c);
}
