// One full MAE pretraining step on the GPU (forward, backward, fused AdamW, zero_grad) through the
// device modules, bf16 activations with fp32 master weights: images/s, achieved TFLOP/s (matrix
// products only, nn/flops.hpp's count, x3 for training) and the time saved by freezing a prefix of
// units (truncate semantics). The PyTorch reference on the same shapes is torch_mim_bench.py.
//   mae_step_bench [model=b|ti] [batch=256] [steps=20] [frozen units list, e.g. 0,4,8,12]
// With VITFREEZE_PROFILE_ONE_STEP set, it brackets one step with cudaProfilerStart/Stop and stops.
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <vitfreeze/cuda.hpp>

#include "vitfreeze/backend/cuda/nn/mae.cuh"
#include "vitfreeze/backend/cuda/nn/optimizer.cuh"
#include "vitfreeze/backend/cuda/step_graph.hpp"
#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/nn/flops.hpp"

namespace {

namespace vf = vitfreeze;
namespace vc = vitfreeze::cuda;
namespace vn = vitfreeze::cuda::nn;

constexpr vf::mim::DecoderSpec kMaeDecoder{.dim = 512, .depth = 8, .heads = 16, .mlp_ratio = 4};

// Matrix-product FLOPs of one MAE training step per image (forward x 3).
constexpr std::int64_t mae_training_flops(const vf::ViTSpec& s, const vf::mim::DecoderSpec& d, int keep) {
  const std::int64_t enc_tokens = keep + 1, dec_tokens = s.tokens() + 1;
  std::int64_t f = vf::nn::patch_embed_forward_flops(keep, s.patch_dim(), s.dim);
  f += s.depth * vf::nn::transformer_block_forward_flops(enc_tokens, s.dim, s.mlp_ratio);
  f += vf::nn::linear_forward_flops(enc_tokens, s.dim, d.dim);
  f += d.depth * vf::nn::transformer_block_forward_flops(dec_tokens, d.dim, d.mlp_ratio);
  f += vf::nn::linear_forward_flops(dec_tokens, d.dim, s.patch_dim());
  return 3 * f;
}

struct Timing {
  double median_ms = 0, img_per_s = 0, tflops = 0;
};

template <vf::ViTSpec S>
void run(const char* label, int batch, int steps, const std::vector<int>& frozen_list) {
  using P = vn::Bf16Mixed;
  using Mae = vf::mim::Mae<S, kMaeDecoder, true, float>;
  vc::CudaContext ctx;
  std::printf("== MAE %s/%d at %d px, mask 0.75, batch %d, %s, device %s\n", label, S.patch, S.image, batch, P::name,
              ctx.properties().name);
  auto encoder = std::make_unique<vf::nn::ViT<S, float>>(1);
  auto mae = std::make_unique<Mae>(1);

  // Four batches of images and masks, rotated, so no step reads the previous step's inputs from L2.
  constexpr int kSets = 4;
  std::vector<vf::Tensor<float>> images;
  std::vector<vn::DeviceMasks> masks;
  std::vector<vf::mim::MaskSet> host_masks;
  const std::int64_t image_values = std::int64_t(batch) * S.channels * S.image * S.image;
  for (int k = 0; k < kSets; ++k) {
    vf::Tensor<float> host(vf::Shape{batch, S.channels, S.image, S.image});
    vf::RandomStream rs(11, vf::RngPurpose::test, std::uint64_t(k));
    for (std::int64_t i = 0; i < image_values; ++i) host[i] = 2 * rs.uniform_float() - 1;
    images.push_back(vc::to_device(ctx, host));
    host_masks.push_back(vf::mim::Random<750>::make(batch, S.grid(), S.grid(), 7, std::uint64_t(k)));
    masks.push_back(vn::DeviceMasks::upload(ctx, host_masks.back()));
  }
  const int keep = vf::mim::Random<750>::kept(S.grid(), S.grid());
  const double flops_per_image = double(mae_training_flops(S, kMaeDecoder, keep));
  std::printf("matrix-product FLOPs per image and step: %.3f GFLOP (encoder tokens %d, decoder tokens %d)\n",
              flops_per_image / 1e9, keep + 1, S.tokens() + 1);
  vc::DeviceBuffer loss = ctx.allocator().allocate(sizeof(double) * 2);

  double baseline_ms = 0;
  // Every frozen-prefix variant eagerly with the default attention path; then no freezing replayed
  // as a CUDA graph, and no freezing on the GEMM attention path when cuDNN's is compiled in.
  struct Variant {
    int frozen;
    bool cudnn, graph;
  };
  std::vector<Variant> runs;
  for (int frozen : frozen_list) runs.push_back({frozen, true, false});
  runs.push_back({0, true, true});
  if (vn::AttentionPaths::cudnn_compiled()) runs.push_back({0, false, false});
  for (auto [frozen, cudnn, graphed] : runs) {
    ctx.service<vn::AttentionPaths>().cudnn_enabled = cudnn;
    vn::DeviceMae<P> model(ctx, *encoder, *mae);
    if (frozen > 0) model.encoder.freeze_units(frozen);
    vn::DeviceParameterList<vf::bf16> params;
    model.collect_parameters(params);
    vn::DeviceAdamW<vf::bf16> optimizer(params, vf::optim::AdamWOptions{});
    vf::Tensor<float> static_images = ctx.empty<float>(images[0].shape());
    vn::DeviceMasks static_masks = vn::DeviceMasks::upload(ctx, host_masks[0]);
    vc::StepGraph graph;
    auto step = [&](int i) {
      if (!graphed) {
        optimizer.zero_grad(ctx);
        model.forward_backward(ctx, images[i % kSets].data(), masks[i % kSets], loss.as<double>());
        optimizer.step(ctx, 1.5e-4);
        return;
      }
      // Inputs into the captured addresses, this step's AdamW table, then one graph launch.
      vc::check(cudaMemcpyAsync(static_images.data(), images[i % kSets].data(), images[i % kSets].bytes(),
                                cudaMemcpyDeviceToDevice, ctx.stream()),
                "cudaMemcpyAsync(images)");
      static_masks.assign(ctx, host_masks[i % kSets]);
      optimizer.stage(ctx, 1.5e-4);
      graph.run(ctx, std::uint64_t(frozen), [&] {
        optimizer.zero_grad(ctx);
        model.forward_backward(ctx, static_images.data(), static_masks, loss.as<double>());
        optimizer.launch(ctx);
      });
    };
    for (int i = 0; i < 3; ++i) step(i);  // plans, cache, clocks
    ctx.synchronize();
    if (std::getenv("VITFREEZE_PROFILE_ONE_STEP")) {  // for `ncu --profile-from-start off`: one step only
      vc::check(cudaProfilerStart(), "cudaProfilerStart");
      step(3);
      ctx.synchronize();
      vc::check(cudaProfilerStop(), "cudaProfilerStop");
      return;
    }
    std::vector<float> ms;
    cudaEvent_t start, stop;
    vc::check(cudaEventCreate(&start), "cudaEventCreate");
    vc::check(cudaEventCreate(&stop), "cudaEventCreate");
    for (int i = 0; i < steps; ++i) {
      vc::check(cudaEventRecord(start, ctx.stream()), "cudaEventRecord");
      step(i);
      vc::check(cudaEventRecord(stop, ctx.stream()), "cudaEventRecord");
      vc::check(cudaEventSynchronize(stop), "cudaEventSynchronize");
      float t = 0;
      vc::check(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
      ms.push_back(t);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    double host_loss = 0;
    vc::check(cudaMemcpy(&host_loss, loss.data(), sizeof(double), cudaMemcpyDeviceToHost), "cudaMemcpy(loss)");
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2];
    if (frozen == 0 && cudnn && !graphed) baseline_ms = median;
    const auto stats = ctx.allocator().stats();
    const std::string path = std::string(!vn::AttentionPaths::cudnn_compiled() || !cudnn ? "gemm attention" : "cuDNN attention") +
                             (graphed ? ", CUDA graph" : ", eager");
    std::printf("%s, frozen units %2d: step %.2f ms (min %.2f, max %.2f), %.0f img/s, %.1f TFLOP/s%s, loss %.4f, "
                "device memory in use+cached %.2f GiB, cudaMalloc calls %zu\n",
                path.c_str(), frozen, median, ms.front(), ms.back(), batch / (median / 1e3),
                frozen == 0 ? flops_per_image * batch / (median / 1e3) / 1e12 : 0.0,
                frozen == 0 ? "" : " (n/a)", host_loss, double(stats.bytes_in_use + stats.bytes_cached) / (1 << 30),
                stats.malloc_calls);
    if (frozen > 0 && cudnn && !graphed && baseline_ms > 0)
      std::printf("  saving vs no freezing: %.1f%% of step time\n", 100.0 * (1 - median / baseline_ms));
  }
}

std::vector<int> parse_list(const char* s) {
  std::vector<int> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stoi(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string model = argc > 1 ? argv[1] : "b";
  const int batch = argc > 2 ? std::atoi(argv[2]) : 256;
  const int steps = argc > 3 ? std::atoi(argv[3]) : 20;
  const std::vector<int> frozen = parse_list(argc > 4 ? argv[4] : "0");
  try {
    if (model == "b")
      run<vf::specs::base()>("ViT-B", batch, steps, frozen);
    else if (model == "ti")
      run<vf::specs::tiny()>("ViT-Ti", batch, steps, frozen);
    else {
      std::fprintf(stderr, "model must be b or ti\n");
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
