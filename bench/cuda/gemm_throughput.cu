// GEMM throughput probe: cuBLASLt through vitfreeze::cuda::gemm at the linear-layer shapes of MAE
// ViT-B/16 pretraining (encoder on 50 visible tokens, 512-wide decoder on 197 tokens), bf16 inputs
// with fp32 accumulation, plus the fused-epilogue and fp32 variants. Prints TFLOP/s per shape.
// Not built by CMake; see docs/cuda.md for the nvcc command.
//   gemm_throughput [batch=256] [repeats=20]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>
#include <vector>

#include <vitfreeze/backend/cuda/context.hpp>
#include <vitfreeze/backend/cuda/gemm.hpp>

#include "throughput_probe.hpp"

namespace {

namespace vf = vitfreeze;
namespace vc = vitfreeze::cuda;
namespace vb = vitfreeze::bench;

struct Case {
  std::string name;
  bool trans_a, trans_b;
  std::int64_t M, N, K;
  float beta;
  vf::Epilogue epilogue;
};

template <class In, class Out>
void run(vc::CudaContext& ctx, const Case& c, int repeats) {
  const std::int64_t a_elems = c.M * c.K, b_elems = c.K * c.N;
  vc::DeviceTensor<In> A = vb::filled<In>(ctx, a_elems, 1), B = vb::filled<In>(ctx, b_elems, 2);
  vc::DeviceTensor<Out> C = vb::filled<Out>(ctx, c.M * c.N, 3), bias = vb::filled<Out>(ctx, std::max(c.M, c.N), 4);
  vc::DeviceTensor<Out> aux = c.epilogue == vf::Epilogue::none ? vc::DeviceTensor<Out>() : vb::filled<Out>(ctx, c.M * c.N, 5);
  const std::int64_t lda = c.trans_a ? c.M : c.K, ldb = c.trans_b ? c.K : c.N;
  vf::GemmEpilogue<Out> ep;
  ep.kind = c.epilogue;
  ep.bias = bias.data();
  ep.bias_grad = bias.data();
  ep.aux = aux.empty() ? nullptr : aux.data();
  ep.ld_aux = c.N;
  auto once = [&] {
    vc::gemm<In, Out>(ctx, c.trans_a, c.trans_b, c.M, c.N, c.K, 1.0f, A.data(), lda, B.data(), ldb, c.beta, C.data(), c.N,
                      ep);
  };
  const double seconds = vb::time_ms(ctx, repeats, once) / 1e3;
  const double tflops = 2.0 * double(c.M) * double(c.N) * double(c.K) / seconds / 1e12;
  std::printf("%-34s %-9s M=%-6lld N=%-5lld K=%-5lld %8.3f ms %7.1f TFLOP/s\n", c.name.c_str(),
              std::is_same_v<In, float> ? "f32" : (std::is_same_v<Out, float> ? "bf16>f32" : "bf16"),
              static_cast<long long>(c.M), static_cast<long long>(c.N), static_cast<long long>(c.K), seconds * 1e3,
              tflops);
}

}  // namespace

int main(int argc, char** argv) {
  return vb::run_probe(argc, argv, [](vc::CudaContext& ctx, std::int64_t batch, int repeats) {
    std::printf("%s, batch %lld, %d repeats per shape\n", ctx.properties().name, static_cast<long long>(batch), repeats);
    const std::int64_t enc = batch * 50, dec = batch * 197;  // 49 visible patches + cls; 196 patches + cls
    using E = vf::Epilogue;
    const std::vector<Case> cases = {
        {"encoder qkv  x W^T", false, true, enc, 2304, 768, 0.0f, E::none},
        {"encoder proj x W^T", false, true, enc, 768, 768, 0.0f, E::none},
        {"encoder fc1  x W^T", false, true, enc, 3072, 768, 0.0f, E::none},
        {"encoder fc1  +bias+GELU (aux)", false, true, enc, 3072, 768, 0.0f, E::gelu_aux_bias},
        {"encoder fc2  x W^T", false, true, enc, 768, 3072, 0.0f, E::none},
        {"encoder fc1  dX = dY W", false, false, enc, 768, 3072, 0.0f, E::none},
        {"encoder fc2  dH = dY W, dGELU", false, false, enc, 3072, 768, 0.0f, E::dgelu},
        {"encoder fc1  dW += dY^T X", true, false, 3072, 768, enc, 1.0f, E::none},
        {"encoder fc1  dW += dY^T X, db", true, false, 3072, 768, enc, 1.0f, E::bgradb},
        {"decoder qkv  x W^T", false, true, dec, 1536, 512, 0.0f, E::none},
        {"decoder fc1  x W^T", false, true, dec, 2048, 512, 0.0f, E::none},
        {"decoder fc2  x W^T", false, true, dec, 512, 2048, 0.0f, E::none},
        {"decoder pred x W^T", false, true, dec, 768, 512, 0.0f, E::none},
    };
    for (const Case& c : cases) run<vf::bf16, vf::bf16>(ctx, c, repeats);
    run<vf::bf16, float>(ctx, cases[7], repeats);  // fp32 gradient accumulation
    run<float, float>(ctx, cases[2], repeats);     // true fp32 (no TF32), for scale
  });
}
