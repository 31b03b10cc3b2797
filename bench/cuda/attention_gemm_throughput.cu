// Timing probe for the bf16 batched-GEMM attention (attention_gemm.cuh) at the MAE ViT-B/16 shapes:
// the whole forward, inference forward and backward, then each stage of the forward and backward on
// its own, with the GEMM stages in TFLOP/s and the memory-bound kernels in GB/s (bytes each kernel
// must read and write once). Not built by CMake; compile like gemm_throughput.cu (docs/cuda.md).
//   attention_gemm_throughput [batch=256] [repeats=20]
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <vitfreeze/backend/cuda/attention_gemm.cuh>

namespace {

namespace vf = vitfreeze;
namespace vc = vitfreeze::cuda;
using vf::bf16;

template <class T>
__global__ void fill_pattern(T* x, std::int64_t n, std::uint32_t seed) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x) {
    std::uint32_t h = static_cast<std::uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    x[i] = vc::from_float<T>(static_cast<float>(h >> 8) * (1.0f / 16777216.0f) - 0.5f);
  }
}

template <class T>
vc::DeviceBuffer filled(vc::CudaContext& ctx, std::int64_t n, std::uint32_t seed) {
  vc::DeviceBuffer b = ctx.allocator().allocate(sizeof(T) * static_cast<std::size_t>(n));
  fill_pattern<T><<<vc::detail::grid_for(n), vc::detail::kBlock, 0, ctx.stream()>>>(b.as<T>(), n, seed);
  vc::check_launch("fill_pattern");
  return b;
}

// Milliseconds per call of f, after warm-up calls (plans, heuristics, allocator cache).
template <class F>
double time_ms(vc::CudaContext& ctx, int repeats, F&& f) {
  for (int i = 0; i < 3; ++i) f();
  cudaEvent_t start, stop;
  vc::check(cudaEventCreate(&start), "cudaEventCreate");
  vc::check(cudaEventCreate(&stop), "cudaEventCreate");
  vc::check(cudaEventRecord(start, ctx.stream()), "cudaEventRecord");
  for (int i = 0; i < repeats; ++i) f();
  vc::check(cudaEventRecord(stop, ctx.stream()), "cudaEventRecord");
  vc::check(cudaEventSynchronize(stop), "cudaEventSynchronize");
  float ms = 0;
  vc::check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
  return ms / repeats;
}

void report(const char* what, double ms, double flops, double bytes) {
  std::printf("  %-34s %8.3f ms", what, ms);
  if (flops > 0) std::printf("  %7.1f TFLOP/s", flops / (ms * 1e-3) / 1e12);
  if (bytes > 0) std::printf("  %7.0f GB/s", bytes / (ms * 1e-3) / 1e9);
  std::printf("\n");
}

void run(vc::CudaContext& ctx, const char* name, const vf::AttentionShape& s, int repeats) {
  const std::int64_t B = s.batch, T = s.tokens, D = s.dim(), hd = s.head_dim;
  const std::int64_t matrices = B * s.heads, ld = vc::detail::attention_probs_ld(T);
  const std::int64_t n = matrices * T * hd, scores = matrices * T * ld;
  const double gemm_flops = 2.0 * double(matrices) * double(T) * double(T) * double(hd);  // one of the T x T GEMMs
  std::printf("%s: B %lld T %lld H %lld hd %lld\n", name, (long long)B, (long long)T, (long long)s.heads, (long long)hd);

  vc::DeviceBuffer qkv = filled<bf16>(ctx, B * T * 3 * D, 1), dout = filled<bf16>(ctx, B * T * D, 2);
  vc::DeviceBuffer out = ctx.allocator().allocate(sizeof(bf16) * B * T * D);
  vc::DeviceBuffer dqkv = ctx.allocator().allocate(sizeof(bf16) * B * T * 3 * D);
  vc::GemmAttentionSaved saved;
  report("forward (training)", time_ms(ctx, repeats, [&] {
           vc::attention_forward_gemm(ctx, qkv.as<bf16>(), out.as<bf16>(), s, saved);
         }), 2 * gemm_flops, 0);
  report("forward (inference)", time_ms(ctx, repeats, [&] {
           vc::attention_forward_gemm_inference(ctx, qkv.as<bf16>(), out.as<bf16>(), s);
         }), 2 * gemm_flops, 0);
  report("backward", time_ms(ctx, repeats, [&] {
           vc::attention_backward_gemm(ctx, dout.as<bf16>(), saved, dqkv.as<bf16>(), s);
         }), 4 * gemm_flops, 0);

  // Stages, on the saved buffers and scratch of the right sizes.
  bf16* heads = saved.heads.as<bf16>();
  bf16* probs = saved.probs.as<bf16>();
  const bf16 *q = heads, *k = heads + n, *v = heads + 2 * n;
  vc::DeviceBuffer s32 = filled<float>(ctx, scores, 3), o = filled<bf16>(ctx, n, 4), o2 = filled<bf16>(ctx, n, 6), ds = filled<bf16>(ctx, scores, 5);
  const vc::GemmBatch by_heads{matrices, T * hd, T * hd, T * ld}, by_scores{matrices, T * ld, T * hd, T * hd};
  const double qkv_bytes = 2.0 * 2 * B * T * 3 * D, out_bytes = 2.0 * 2 * B * T * D;
  report("split q,k,v", time_ms(ctx, repeats, [&] { vc::detail::move_heads(ctx, qkv.as<bf16>(), heads, s, 3, true); }),
         0, qkv_bytes);
  report("S = Q K^T (f32 out)", time_ms(ctx, repeats, [&] {
           vc::gemm<bf16, float>(ctx, false, true, T, T, hd, 1.0f, q, hd, k, hd, 0.0f, s32.as<float>(), ld, {}, by_heads);
         }), gemm_flops, 0);
  report("softmax rows", time_ms(ctx, repeats, [&] {
           vc::kernels::scaled_softmax_rows<vc::detail::kSoftmaxWarps>
               <<<vc::detail::row_kernel_grid(matrices * T), vc::detail::kSoftmaxWarps * 32, 0, ctx.stream()>>>(
                   s32.as<float>(), probs, matrices * T, int(T), int(ld), 0.18f);
         }), 0, double(scores) * (4 + 2));
  report("O = P V", time_ms(ctx, repeats, [&] {
           vc::gemm<bf16, bf16>(ctx, false, false, T, hd, T, 1.0f, probs, ld, v, hd, 0.0f, o.as<bf16>(), hd, {}, by_scores);
         }), gemm_flops, 0);
  report("merge out", time_ms(ctx, repeats, [&] { vc::detail::move_heads(ctx, o.as<bf16>(), out.as<bf16>(), s, 1, false); }),
         0, out_bytes);
  report("dV = P^T dO", time_ms(ctx, repeats, [&] {
           vc::gemm<bf16, bf16>(ctx, true, false, T, hd, T, 1.0f, probs, ld, o.as<bf16>(), hd, 0.0f, o2.as<bf16>(), hd, {},
                                by_scores);
         }), gemm_flops, 0);
  report("softmax backward rows", time_ms(ctx, repeats, [&] {
           vc::kernels::softmax_backward_rows<vc::detail::kSoftmaxWarps>
               <<<vc::detail::row_kernel_grid(matrices * T), vc::detail::kSoftmaxWarps * 32, 0, ctx.stream()>>>(
                   probs, s32.as<float>(), ds.as<bf16>(), matrices * T, int(T), int(ld));
         }), 0, double(scores) * (2 + 4 + 2));
  report("dK = s dS^T Q", time_ms(ctx, repeats, [&] {
           vc::gemm<bf16, bf16>(ctx, true, false, T, hd, T, 0.125f, ds.as<bf16>(), ld, q, hd, 0.0f, o.as<bf16>(), hd, {},
                                by_scores);
         }), gemm_flops, 0);
  report("merge dq,dk,dv", time_ms(ctx, repeats, [&] { vc::detail::move_heads(ctx, heads, dqkv.as<bf16>(), s, 3, false); }),
         0, qkv_bytes);
  vc::check(cudaGetLastError(), "stage launches");
}

}  // namespace

int main(int argc, char** argv) {
  const std::int64_t batch = argc > 1 ? std::atoll(argv[1]) : 256;
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 20;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIPPED: no usable CUDA device\n");
    return 77;
  }
  try {
    vc::CudaContext ctx(0);
    std::printf("%s, %d repeats\n", ctx.properties().name, repeats);
    run(ctx, "encoder ViT-B (49 visible + cls)", {batch, 50, 12, 64}, repeats);
    run(ctx, "decoder (196 + cls)", {batch, 197, 16, 32}, repeats);
    run(ctx, "tiny ViT encoder", {batch, 50, 3, 64}, repeats);
  } catch (const std::exception& e) {
    std::printf("error: %s\n", e.what());
    return 1;
  }
  return 0;
}
