// Encoder forward + backward throughput of the CPU backend (ViT-Ti), for comparison with PyTorch
// on the same shapes (bench/encoder_bench_torch.py; run both with bench/run_encoder_bench.sh).
// Prints one line per shape: images/s, GFLOP/s, share of the machine's FP32 peak.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "vitfreeze/autograd/ops/elementwise.hpp"
#include "vitfreeze/backend/cpu/parallel.hpp"
#include "vitfreeze/nn/flops.hpp"
#include "vitfreeze/nn/vit.hpp"
#include "vitfreeze/testing/random_tensor.hpp"

namespace vf = vitfreeze;

template <vf::ViTSpec S>
void bench(const char* label, std::int64_t batch, int iters, double peak_gflops) {
  vf::nn::ViT<S, float> model(1);
  auto images = vf::testing::random_tensor<float>({batch, S.channels, S.image, S.image}, 2);
  auto seed = vf::testing::random_tensor<float>({batch, S.tokens() + 1, S.dim}, 3);
  vf::Tape<float> tape;
  std::vector<double> times;
  for (int i = 0; i < iters + 2; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    tape.reset();
    auto out = model.forward(tape, images);
    tape.backward(out.tokens, seed);
    for (auto* p : model.parameters()) p->zero_grad();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (i >= 2) times.push_back(s);  // two warm-up steps
  }
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  const std::int64_t T = S.tokens() + 1;
  const double fwd = double(vf::nn::patch_embed_forward_flops(S)) + S.depth * double(vf::nn::encoder_block_forward_flops(S, T));
  const double gflops = 3 * fwd * double(batch) / median / 1e9;
  std::printf("vitfreeze  %-28s batch %3ld  %8.1f img/s  %7.1f GFLOP/s  %5.1f %% of peak  (median of %d)\n", label,
              long(batch), double(batch) / median, gflops, 100 * gflops / peak_gflops, iters);
}

int main(int argc, char** argv) {
  const int iters = argc > 1 ? std::atoi(argv[1]) : 10;
  const double peak = 445.0;  // measured FP32 FMA peak of the 2-core reference machine (machine-facts §3)
  std::printf("threads %d\n", vf::cpu::thread_count());
  bench<vf::specs::tiny(28, 1, 4)>("ViT-Ti 28x28x1 p4 (50 tok)", 64, iters, peak);
  bench<vf::specs::tiny(224, 3, 16)>("ViT-Ti 224x224x3 p16 (197 tok)", 16, iters, peak);
}
