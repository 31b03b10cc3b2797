// Encoder forward + backward throughput of the CPU backend on the full token sequence (no masking),
// for comparison with PyTorch on the same shapes (bench/encoder_bench_torch.py; both run by
// bench/run_encoder_bench.sh). Rows: ViT-Ti 28x28x1 patch 4 (50 tokens), ViT-Ti and ViT-B at 224
// patch 16 (197 tokens). Engines: the explicit encoder (model/Encoder, the training path) and the
// tape (the reference).
//   encoder_bench [iters=10] [fma_peak_gflops=0: not printed] [explicit|tape|both]
// Prints one line per row: images/s, GFLOP/s (3 x forward GEMM FLOPs) and, with a peak, its share.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "vitfreeze/backend/cpu/backend.hpp"
#include "vitfreeze/core/parallel.hpp"
#include "vitfreeze/model/encoder.hpp"
#include "vitfreeze/nn/flops.hpp"
#include "vitfreeze/nn/vit.hpp"
#include "vitfreeze/testing/random_tensor.hpp"

namespace vf = vitfreeze;

namespace {

template <vf::ViTSpec S>
void report(const char* label, const char* engine, std::int64_t batch, std::vector<double> times, double peak) {
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  const std::int64_t T = S.tokens() + 1;
  const double fwd = double(vf::nn::patch_embed_forward_flops(S)) + S.depth * double(vf::nn::encoder_block_forward_flops(S, T));
  const double gflops = 3 * fwd * double(batch) / median / 1e9;
  std::printf("vitfreeze  %-30s %-8s batch %3ld  %8.1f img/s  %7.1f GFLOP/s", label, engine, long(batch), double(batch) / median,
              gflops);
  if (peak > 0) std::printf("  %5.1f %% of FMA peak", 100 * gflops / peak);
  std::printf("  (median of %zu, min %.1f max %.1f ms)\n", times.size(), 1e3 * times.front(), 1e3 * times.back());
}

template <vf::ViTSpec S>
void bench(const char* label, std::int64_t batch, int iters, double peak, const std::string& engines) {
  vf::nn::ViT<S, float> model(1);
  const auto images = vf::testing::random_tensor<float>({batch, S.channels, S.image, S.image}, 2);
  const auto seed = vf::testing::random_tensor<float>({batch, S.tokens() + 1, S.dim}, 3);
  auto zero = [&] {
    for (auto* p : model.parameters()) p->zero_grad();
  };
  if (engines == "explicit" || engines == "both") {
    vf::cpu::CpuContext ctx;
    const vf::model::Encoder<vf::Cpu, vf::Fp32> encoder(ctx, model);
    vf::Tensor<std::int32_t> every_patch(vf::Shape{batch, S.tokens()});
    for (std::int64_t i = 0; i < every_patch.numel(); ++i) every_patch[i] = std::int32_t(i % S.tokens());
    std::vector<double> times;
    for (int i = 0; i < iters + 2; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      typename vf::model::Encoder<vf::Cpu, vf::Fp32>::Saved saved;
      encoder.forward(ctx, images, every_patch.data(), batch, S.tokens(), 1, &saved);
      encoder.backward(ctx, saved, seed);
      zero();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (i >= 2) times.push_back(s);  // two warm-up steps
    }
    report<S>(label, "explicit", batch, times, peak);
  }
  if (engines == "tape" || engines == "both") {
    vf::Tape<float> tape;
    std::vector<double> times;
    for (int i = 0; i < iters + 2; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      tape.reset();
      auto out = model.forward(tape, images);
      tape.backward(out.tokens, seed);
      zero();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (i >= 2) times.push_back(s);
    }
    report<S>(label, "tape", batch, times, peak);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int iters = argc > 1 ? std::atoi(argv[1]) : 10;
  const double peak = argc > 2 ? std::atof(argv[2]) : 0.0;
  const std::string engines = argc > 3 ? argv[3] : "explicit";
  std::printf("threads %d, GEMM %s\n", vf::cpu::thread_count(), vf::cpu::gemm_library());
  bench<vf::specs::tiny(28, 1, 4)>("ViT-Ti 28x28x1 p4 (50 tok)", 64, iters, peak, engines);
  bench<vf::specs::tiny(224, 3, 16)>("ViT-Ti 224x224x3 p16 (197 tok)", 16, iters, peak, engines);
  bench<vf::specs::base(224, 3, 16)>("ViT-B 224x224x3 p16 (197 tok)", 8, std::max(3, iters / 2), peak, engines);
}
