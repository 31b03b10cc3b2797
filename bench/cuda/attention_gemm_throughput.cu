// Timing probe for the bf16 batched-GEMM attention (attention_gemm.cuh) at the MAE ViT-B/16 shapes:
// the whole forward, inference forward and backward, then each stage of the forward and backward on
// its own, with the GEMM stages in TFLOP/s and the memory-bound kernels in GB/s (bytes each kernel
// must read and write once). Not built by CMake; compile like gemm_throughput.cu (docs/cuda.md).
//   attention_gemm_throughput [batch=256] [repeats=20]
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <vitfreeze/backend/cuda/attention_gemm.cuh>

#include "throughput_probe.hpp"

namespace {

namespace vf = vitfreeze;
namespace vc = vitfreeze::cuda;
namespace vb = vitfreeze::bench;
using vf::bf16;

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

  vc::DeviceBuffer qkv = vb::filled_buffer<bf16>(ctx, B * T * 3 * D, 1), dout = vb::filled_buffer<bf16>(ctx, B * T * D, 2);
  vc::DeviceBuffer out = ctx.allocator().allocate(sizeof(bf16) * B * T * D);
  vc::DeviceBuffer dqkv = ctx.allocator().allocate(sizeof(bf16) * B * T * 3 * D);
  vc::GemmAttentionSaved saved;
  report("forward (training)", vb::time_ms(ctx, repeats, [&] {
           vc::attention_forward_gemm(ctx, qkv.as<bf16>(), out.as<bf16>(), s, saved);
         }), 2 * gemm_flops, 0);
  report("forward (inference)", vb::time_ms(ctx, repeats, [&] {
           vc::attention_forward_gemm_inference(ctx, qkv.as<bf16>(), out.as<bf16>(), s);
         }), 2 * gemm_flops, 0);
  report("backward", vb::time_ms(ctx, repeats, [&] {
           vc::attention_backward_gemm(ctx, dout.as<bf16>(), saved, dqkv.as<bf16>(), s);
         }), 4 * gemm_flops, 0);

  // Stages, on the saved buffers and scratch of the right sizes.
  bf16* heads = saved.heads.as<bf16>();
  bf16* probs = saved.probs.as<bf16>();
  const bf16 *q = heads, *k = heads + n, *v = heads + 2 * n;
  vc::DeviceBuffer s32 = vb::filled_buffer<float>(ctx, scores, 3), o = vb::filled_buffer<bf16>(ctx, n, 4), o2 = vb::filled_buffer<bf16>(ctx, n, 6), ds = vb::filled_buffer<bf16>(ctx, scores, 5);
  const vc::GemmBatch by_heads{matrices, T * hd, T * hd, T * ld}, by_scores{matrices, T * ld, T * hd, T * hd};
  const double qkv_bytes = 2.0 * 2 * B * T * 3 * D, out_bytes = 2.0 * 2 * B * T * D;
  report("split q,k,v", vb::time_ms(ctx, repeats, [&] { vc::detail::move_heads(ctx, qkv.as<bf16>(), heads, s, 3, true); }),
         0, qkv_bytes);
  report("S = Q K^T (f32 out)", vb::time_ms(ctx, repeats, [&] {
           vc::gemm<bf16, float>(ctx, false, true, T, T, hd, 1.0f, q, hd, k, hd, 0.0f, s32.as<float>(), ld, {}, by_heads);
         }), gemm_flops, 0);
  report("softmax rows", vb::time_ms(ctx, repeats, [&] {
           vc::kernels::scaled_softmax_rows<vc::detail::kSoftmaxWarps>
               <<<vc::detail::row_kernel_grid(matrices * T), vc::detail::kSoftmaxWarps * 32, 0, ctx.stream()>>>(
                   s32.as<float>(), probs, matrices * T, int(T), int(ld), 0.18f);
         }), 0, double(scores) * (4 + 2));
  report("O = P V", vb::time_ms(ctx, repeats, [&] {
           vc::gemm<bf16, bf16>(ctx, false, false, T, hd, T, 1.0f, probs, ld, v, hd, 0.0f, o.as<bf16>(), hd, {}, by_scores);
         }), gemm_flops, 0);
  report("merge out", vb::time_ms(ctx, repeats, [&] { vc::detail::move_heads(ctx, o.as<bf16>(), out.as<bf16>(), s, 1, false); }),
         0, out_bytes);
  report("dV = P^T dO", vb::time_ms(ctx, repeats, [&] {
           vc::gemm<bf16, bf16>(ctx, true, false, T, hd, T, 1.0f, probs, ld, o.as<bf16>(), hd, 0.0f, o2.as<bf16>(), hd, {},
                                by_scores);
         }), gemm_flops, 0);
  report("softmax backward rows", vb::time_ms(ctx, repeats, [&] {
           vc::kernels::softmax_backward_rows<vc::detail::kSoftmaxWarps>
               <<<vc::detail::row_kernel_grid(matrices * T), vc::detail::kSoftmaxWarps * 32, 0, ctx.stream()>>>(
                   probs, s32.as<float>(), ds.as<bf16>(), matrices * T, int(T), int(ld));
         }), 0, double(scores) * (2 + 4 + 2));
  report("dK = s dS^T Q", vb::time_ms(ctx, repeats, [&] {
           vc::gemm<bf16, bf16>(ctx, true, false, T, hd, T, 0.125f, ds.as<bf16>(), ld, q, hd, 0.0f, o.as<bf16>(), hd, {},
                                by_scores);
         }), gemm_flops, 0);
  report("merge dq,dk,dv", vb::time_ms(ctx, repeats, [&] { vc::detail::move_heads(ctx, heads, dqkv.as<bf16>(), s, 3, false); }),
         0, qkv_bytes);
  vc::check(cudaGetLastError(), "stage launches");
}

}  // namespace

int main(int argc, char** argv) {
  return vb::run_probe(argc, argv, [](vc::CudaContext& ctx, std::int64_t batch, int repeats) {
    std::printf("%s, %d repeats\n", ctx.properties().name, repeats);
    run(ctx, "encoder ViT-B (49 visible + cls)", {batch, 50, 12, 64}, repeats);
    run(ctx, "decoder (196 + cls)", {batch, 197, 16, 32}, repeats);
    run(ctx, "tiny ViT encoder", {batch, 50, 3, 64}, repeats);
  });
}
