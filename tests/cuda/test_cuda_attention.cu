// The strided-batched GEMM and the bf16 GEMM attention (attention_gemm.cuh) against the CPU backend
// in double, on fresh random data. Inputs are rounded to their storage type first, so the reference
// sees the same values. Outputs are poisoned with NaN (all bits set) before each run and a
// non-finite output never passes. Errors are element-wise (DeviceChecker::close): fp32 outputs 2e-5 (1e-4
// from bf16 inputs), bf16 outputs 1e-2. Without a usable GPU the test exits 77 (skipped), saying why.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>
#include <vector>

#include <vitfreeze/cuda.hpp>

#include "device_checks.hpp"
#include "vitfreeze/backend/cpu/attention.hpp"
#include "vitfreeze/backend/cpu/gemm.hpp"
#include "vitfreeze/core/rng.hpp"

namespace {

namespace vf = vitfreeze;
namespace vc = vitfreeze::cuda;
namespace cpu = vitfreeze::cpu;
using vf::bf16;
using namespace vitfreeze::testing;  // device_checks.hpp

constexpr double kTolF32 = 2e-5, kTolBf16ToF32 = 1e-4, kTolBf16 = 1e-2;

// ---- host-only checks --------------------------------------------------------------------------
void host_checks(DeviceChecker& c) {
  vc::MatmulKey a, b;
  b.batch_count = 3;
  c.expect(a != b && vc::GemmBatch{}.count == 1, "MatmulKey tells batch shapes apart; GemmBatch defaults to one GEMM");
  c.expect(vc::detail::attention_probs_ld(17) == 24 && vc::detail::attention_probs_ld(50) == 56 &&
               vc::detail::attention_probs_ld(197) == 200 && vc::detail::attention_probs_ld(8) == 8,
           "attention score rows padded to a multiple of 8");
  const void* base = reinterpret_cast<const void*>(std::uintptr_t(4096));
  c.expect(vc::detail::batched_alignment_of(base, 3, 12) == 4 && vc::detail::batched_alignment_of(base, 1, 12) == 256 &&
               vc::detail::batched_alignment_of(base, 3, 1024) == 256,
           "batched gemm alignment: the worst batch entry's");
  c.expect(vc::detail::attention_shared_floats(17) == 24 && vc::detail::attention_shared_floats(300) == 304,
           "fallback attention shared row padded past T");
}

// ---- strided-batched GEMM ----------------------------------------------------------------------
// count GEMMs with padded rows (pad, 2 pad, 3 pad elements) and gap elements between batch entries,
// against cpu::gemm per entry. With beta = 0 C is poisoned, and the padding and the gaps must stay NaN.
template <class In, class Out>
void check_batched_gemm(vc::CudaContext& ctx, DeviceChecker& c, Random& rnd, std::int64_t M, std::int64_t N, std::int64_t K,
                        std::int64_t count, std::int64_t pad, std::int64_t gap) {
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (float beta : {0.0f, 1.0f}) {
        const std::int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + 2 * pad, ldc = N + 3 * pad;
        const vc::GemmBatch batch{count, (ta ? K : M) * lda + gap, (tb ? N : K) * ldb + gap, M * ldc + gap};
        const std::vector<In> A = rnd.uniform<In>(count * batch.stride_a), B = rnd.uniform<In>(count * batch.stride_b);
        const std::vector<Out> C0 = rnd.uniform<Out>(count * batch.stride_c);
        const float alpha = 0.75f;
        vc::DeviceTensor<In> dA = upload(ctx, A), dB = upload(ctx, B);
        vc::DeviceTensor<Out> dC = beta == 0.0f ? poisoned<Out>(ctx, count * batch.stride_c) : upload(ctx, C0);
        vc::gemm<In, Out>(ctx, ta, tb, M, N, K, alpha, dA.data(), lda, dB.data(), ldb, beta, dC.data(), ldc, {}, batch);
        const Doubles a = widen(A), b = widen(B), got_all = fetch(ctx, dC);
        Doubles want_all = widen(C0), got, want;
        bool gaps_untouched = true;
        for (std::int64_t i = 0; i < count; ++i) {
          double* w = want_all.data() + i * batch.stride_c;
          cpu::gemm<double>(ta, tb, M, N, K, alpha, a.data() + i * batch.stride_a, lda, b.data() + i * batch.stride_b,
                            ldb, beta, w, ldc);
          for (std::int64_t r = 0; r < M; ++r)
            for (std::int64_t j = 0; j < N; ++j) {
              got.push_back(got_all[i * batch.stride_c + r * ldc + j]);
              want.push_back(w[r * ldc + j]);
            }
        }
        if (beta == 0.0f)
          for (std::int64_t e = 0; e < count * batch.stride_c; ++e) {
            const std::int64_t in_entry = e % batch.stride_c;
            const bool written = in_entry < M * ldc && in_entry % ldc < N;
            gaps_untouched = gaps_untouched && (written || std::isnan(got_all[e]));
          }
        const std::string name = std::string("batched gemm ") + type_name<In>() + "->" + type_name<Out>() +
                                 (ta ? " At" : " A") + (tb ? " Bt" : " B") + " beta=" + std::to_string(int(beta)) +
                                 " " + std::to_string(count) + "x[" + std::to_string(M) + "x" + std::to_string(N) +
                                 "x" + std::to_string(K) + "]";
        const double tol = std::is_same_v<Out, float> ? (std::is_same_v<In, float> ? kTolF32 : kTolBf16ToF32) : kTolBf16;
        c.close(name, got, round_to<Out>(want), tol);
        if (beta == 0.0f) c.expect(gaps_untouched, name + ": padding and gaps of C untouched");
      }
}

void check_batch_plans(vc::CudaContext& ctx, DeviceChecker& c, Random& rnd) {
  const std::int64_t M = 8, N = 8, K = 8;
  vc::DeviceTensor<float> A = upload(ctx, rnd.uniform<float>(3 * 64)), B = upload(ctx, rnd.uniform<float>(3 * 64)),
                    C = poisoned<float>(ctx, 3 * 64);
  auto run = [&](std::int64_t count) {
    vc::gemm<float, float>(ctx, false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C.data(), N, {},
                           vc::GemmBatch{count, 64, 64, 64});
  };
  run(3);
  const std::size_t after_first = ctx.matmul_plans().size();
  run(2);
  const std::size_t after_second = ctx.matmul_plans().size();
  run(3);
  run(2);
  c.expect(after_second == after_first + 1 && ctx.matmul_plans().size() == after_second,
           "matmul plans cached per batch shape (a new count is a new plan, a repeated one is not)");
}

// ---- GEMM attention ----------------------------------------------------------------------------
void check_attention(vc::CudaContext& ctx, DeviceChecker& c, Random& rnd, const vf::AttentionShape& s) {
  const std::int64_t B = s.batch, T = s.tokens, H = s.heads, D = s.dim();
  const std::string tag = "B" + std::to_string(B) + " T" + std::to_string(T) + " H" + std::to_string(H) + " hd" +
                          std::to_string(s.head_dim);
  // Inputs spread like trained activations (|scores| up to a few units), bf16-exact.
  const std::vector<bf16> qkv = rnd.uniform<bf16>(B * T * 3 * D, -2.0f, 2.0f), dout = rnd.uniform<bf16>(B * T * D);
  const Doubles qd = widen(qkv), dod = widen(dout);
  Doubles out(B * T * D), probs(B * H * T * T), dqkv(B * T * 3 * D, 0.0), scratch(B * H * T * T);
  cpu::attention_forward<double>(qd.data(), out.data(), probs.data(), s);
  cpu::attention_backward<double>(dod.data(), qd.data(), probs.data(), dqkv.data(), scratch.data(), s);

  vc::DeviceTensor<bf16> dqkv_in = upload(ctx, qkv), dout_in = upload(ctx, dout);
  vc::DeviceTensor<bf16> y = poisoned<bf16>(ctx, B * T * D);
  vc::GemmAttentionSaved saved;
  vc::attention_forward_gemm(ctx, dqkv_in.data(), y.data(), s, saved);
  const Doubles got_out = fetch(ctx, y);
  c.close("attention_forward_gemm out " + tag, got_out, round_to<bf16>(out), kTolBf16);

  const std::int64_t ld = saved.probs_ld;
  const Doubles got_probs_all = fetch(ctx, saved.probs.as<bf16>(), B * H * T * ld);
  Doubles got_probs;
  bool padding_zero = ld >= T;
  for (std::int64_t r = 0; r < B * H * T; ++r) {
    got_probs.insert(got_probs.end(), got_probs_all.begin() + r * ld, got_probs_all.begin() + r * ld + T);
    for (std::int64_t j = T; j < ld; ++j) padding_zero = padding_zero && got_probs_all[r * ld + j] == 0.0;
  }
  c.close("attention_forward_gemm saved probs " + tag, got_probs, round_to<bf16>(probs), kTolBf16);
  c.expect(padding_zero, "attention_forward_gemm saved probs: padding columns zero " + tag);

  vc::DeviceTensor<bf16> y_inference = poisoned<bf16>(ctx, B * T * D);
  vc::attention_forward_gemm_inference(ctx, dqkv_in.data(), y_inference.data(), s);
  const Doubles got_inference = fetch(ctx, y_inference);
  c.close("attention_forward_gemm_inference out " + tag, got_inference, round_to<bf16>(out), kTolBf16);
  c.expect(got_inference == got_out, "attention_forward_gemm_inference equals the training forward bit for bit " + tag);

  vc::DeviceTensor<bf16> grad = poisoned<bf16>(ctx, B * T * 3 * D);
  vc::attention_backward_gemm(ctx, dout_in.data(), saved, grad.data(), s);
  const Doubles got_grad = fetch(ctx, grad);
  // Each of dq, dk, dv on its own scale (dq and dk are much smaller than dv).
  const char* part_names[] = {"dq", "dk", "dv"};
  for (int part = 0; part < 3; ++part) {
    Doubles g, w;
    for (std::int64_t bt = 0; bt < B * T; ++bt)
      for (std::int64_t i = 0; i < D; ++i) {
        g.push_back(got_grad[bt * 3 * D + part * D + i]);
        w.push_back(dqkv[bt * 3 * D + part * D + i]);
      }
    c.close(std::string("attention_backward_gemm ") + part_names[part] + " (overwritten) " + tag, g, round_to<bf16>(w),
            kTolBf16);
  }
}

void run_device_checks(DeviceChecker& c) {
  vc::CudaContext ctx(0);
  std::printf("device: %s (sm_%d%d)\n", ctx.properties().name, ctx.properties().major, ctx.properties().minor);
  Random rnd(20240917);
  // fp32 with odd strides (4-byte aligned entries); bf16 kept 16-byte aligned, as attention uses it.
  section(c, "batched gemm f32", [&] { check_batched_gemm<float, float>(ctx, c, rnd, 13, 11, 7, 3, 1, 5); });
  section(c, "batched gemm bf16", [&] { check_batched_gemm<bf16, bf16>(ctx, c, rnd, 24, 16, 40, 3, 8, 8); });
  section(c, "batched gemm bf16->f32", [&] { check_batched_gemm<bf16, float>(ctx, c, rnd, 24, 16, 40, 3, 8, 8); });
  section(c, "batched gemm plans", [&] { check_batch_plans(ctx, c, rnd); });
  section(c, "attention T17", [&] { check_attention(ctx, c, rnd, {2, 17, 3, 8}); });
  section(c, "attention tiny ViT", [&] { check_attention(ctx, c, rnd, {3, 50, 3, 64}); });
  section(c, "attention encoder", [&] { check_attention(ctx, c, rnd, {4, 50, 12, 64}); });
  section(c, "attention decoder", [&] { check_attention(ctx, c, rnd, {2, 197, 16, 32}); });
  section(c, "attention hd12 (scalar head moves)", [&] { check_attention(ctx, c, rnd, {3, 9, 2, 12}); });
  section(c, "attention T1", [&] { check_attention(ctx, c, rnd, {2, 1, 2, 16}); });
}

}  // namespace

int main() {
  DeviceChecker c;
  return vf::testing::run_device_test(host_checks, run_device_checks, c);
}
