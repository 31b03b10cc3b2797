// Every CUDA backend kernel against the CPU backend (in double) on fresh random data. Output buffers
// are poisoned with NaN (all bits set) before each run, and a non-finite output never passes.
// Errors are element-wise (DeviceChecker::close: |got - want| <= tol x max(|want|, rms(want))):
// fp32 outputs 2e-5, bf16 1e-2, fp16 4e-3 (the fp16 cases have not yet run on a GPU).
// Host-only checks run first; without a usable GPU the test then exits 77 (skipped), saying why.
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
#include "vitfreeze/backend/cpu/gelu.hpp"
#include "vitfreeze/backend/cpu/gemm.hpp"
#include "vitfreeze/backend/cpu/layernorm.hpp"
#include "vitfreeze/backend/cpu/linear.hpp"
#include "vitfreeze/backend/cpu/loss.hpp"
#include "vitfreeze/backend/cpu/patchify.hpp"
#include "vitfreeze/backend/cpu/tokens.hpp"
#include "vitfreeze/backend/cuda/elementwise.cuh"
#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/optim/adamw.hpp"

namespace {

namespace vf = vitfreeze;
namespace vc = vitfreeze::cuda;
namespace cpu = vitfreeze::cpu;
using vf::bf16;
using vf::f16;
using namespace vitfreeze::testing;  // device_checks.hpp

// fp16 keeps 3 more mantissa bits than bf16 (unit roundoff 4.9e-4 against 3.9e-3).
constexpr double kTolF32 = 2e-5, kTolBf16 = 1e-2, kTolF16 = 4e-3;
// cuBLASLt's fused GELU may use a fast tanh; its fp32 output is held to 1e-3 (the erf and tanh forms
// differ by ~1e-4 relative, so the printed errors of both, not the pass mark, tell which it computes).
constexpr double kTolFusedGelu = 1e-3;
template <class T>
constexpr double tol_for() {
  return std::is_same_v<T, float> ? kTolF32 : std::is_same_v<T, f16> ? kTolF16 : kTolBf16;
}

// ---- host data ---------------------------------------------------------------------------------
template <class T>
std::vector<T> stored(const std::vector<float>& v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
    std::vector<T> out;
    for (float x : v) out.push_back(T(x));
    return out;
  }
}
// Elements [r * ld, r * ld + cols) of every row.
Doubles rows_of(const Doubles& m, std::int64_t rows, std::int64_t cols, std::int64_t ld) {
  Doubles out;
  for (std::int64_t r = 0; r < rows; ++r) out.insert(out.end(), m.begin() + r * ld, m.begin() + r * ld + cols);
  return out;
}

double gelu_erf(double x) { return 0.5 * x * (1 + std::erf(x * M_SQRT1_2)); }
double gelu_erf_grad(double x) { return 0.5 * (1 + std::erf(x * M_SQRT1_2)) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI); }
constexpr double kTanhC = 0.7978845608028654, kTanhA = 0.044715;  // sqrt(2 / pi)
double gelu_tanh(double x) { return 0.5 * x * (1 + std::tanh(kTanhC * (x + kTanhA * x * x * x))); }
double gelu_tanh_grad(double x) {
  const double t = std::tanh(kTanhC * (x + kTanhA * x * x * x));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * kTanhC * (1 + 3 * kTanhA * x * x);
}

// ---- host-only checks (run without a GPU) ------------------------------------------------------
void host_checks(DeviceChecker& c) {
  bool classes_ok = vf::size_class(1) == 256 && vf::size_class(256) == 256 && vf::size_class(257) == 320 &&
                    vf::size_class(std::size_t(1) << 20) == (std::size_t(1) << 20) &&
                    vf::size_class((std::size_t(1) << 20) + 1) == (std::size_t(5) << 18);
  for (std::size_t n = 1; n < 200000; n += 7) {
    const std::size_t cls = vf::size_class(n);
    classes_ok = classes_ok && cls >= n && (n <= 256 || 4 * cls <= 5 * n + 4) && vf::size_class(cls) == cls;
  }
  c.expect(classes_ok, "allocator size classes: hold the request, waste <= 25%, idempotent");

  auto message_of = [](auto status) {
    try {
      vc::check(status, "someCall(x)");
    } catch (const vf::CudaError& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  const std::string rt = message_of(cudaErrorInvalidValue), lt = message_of(CUBLAS_STATUS_INVALID_VALUE);
  c.expect(rt.find("someCall(x)") != std::string::npos && rt.find("cudaErrorInvalidValue") != std::string::npos,
           "check(cudaError_t) throws CudaError naming call and reason: " + rt);
  c.expect(lt.find("someCall(x)") != std::string::npos && lt.find("CUBLAS_STATUS_INVALID_VALUE") != std::string::npos,
           "check(cublasStatus_t) throws CudaError naming call and reason: " + lt);
  c.expect(vc::detail::alignment_of(reinterpret_cast<const void*>(std::uintptr_t(4096 + 12))) == 4 &&
               vc::detail::alignment_of(reinterpret_cast<const void*>(std::uintptr_t(4096))) == 256,
           "gemm pointer alignment classes");
  // The backend the models run on: every GPU precision policy, fp32 keeping the exact-erf GELU.
  static_assert(vf::BackendFor<vf::Cuda, vf::Fp32> && vf::BackendFor<vf::Cuda, vf::Bf16Mixed> &&
                vf::BackendFor<vf::Cuda, vf::Fp16Mixed> && !vf::Cuda::supports<vf::Fp64>);
  static_assert(!vf::Cuda::epilogue_gelu<vf::Fp32> && vf::Cuda::epilogue_gelu<vf::Bf16Mixed> &&
                vf::Cuda::epilogue_gelu<vf::Fp16Mixed>);
  static_assert(vc::GemmTypes<float, float> && vc::GemmTypes<bf16, bf16> && vc::GemmTypes<bf16, float>);
  static_assert(vc::GemmTypes<f16, f16> && vc::GemmTypes<f16, float>);
  static_assert(!vc::GemmTypes<float, bf16> && !vc::GemmTypes<bf16, f16> && !vc::GemmTypes<f16, bf16>);

  // The checker itself, so that every device comparison below can fail. Reference: 99 ones and one
  // 100 (rms 10.05). A one read as 1.5 passed the former max |err| / max |want| <= 1e-2 (5e-3) and
  // must fail now (bound 1e-2 x rms = 0.1); errors within 1e-2 x max(|want|, rms) pass.
  Doubles want(100, 1.0);
  want[0] = 100.0;
  auto with = [&](std::size_t i, double v, std::size_t j = 0, double w = 100.0) {
    Doubles got = want;
    got[i] = v, got[j] = w;
    return got;
  };
  DeviceChecker probe{.quiet = true};
  probe.close("  (checker self-test: a small entry off by 50 %, must FAIL)", with(7, 1.5), want, 1e-2);
  probe.close("  (checker self-test: within tolerance)", with(7, 1.05, 0, 100.9), want, 1e-2);
  probe.close("  (checker self-test: tol 0 and one ulp off, must FAIL)", with(7, std::nextafter(1.0, 2.0)), want, 0.0);
  probe.close("  (checker self-test: NaN, must FAIL)", with(7, NAN), want, 1e-2);
  c.expect(probe.checks == 4 && probe.failures == 3, "DeviceChecker::close judges each entry (3 of 4 self-tests fail)");
  DeviceChecker all_skipped{.quiet = true};
  all_skipped.expect(true, "  (host check)");
  all_skipped.skip("  (checker self-test)", "every device case skipped");
  c.expect(device_exit_code(all_skipped, 1) == 1, "a run whose device cases were all skipped fails");
}

// ---- GEMM --------------------------------------------------------------------------------------
template <class In, class Out>
void check_gemm_plain(vc::CudaContext& ctx, DeviceChecker& c, Random& rnd, std::int64_t M, std::int64_t N, std::int64_t K,
                      std::int64_t pad) {
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (float beta : {0.0f, 1.0f}) {
        const std::int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
        const std::vector<In> A = stored<In>(rnd.uniform((ta ? K : M) * lda));
        const std::vector<In> B = stored<In>(rnd.uniform((tb ? N : K) * ldb));
        const std::vector<Out> C0 = stored<Out>(rnd.uniform(M * ldc));
        const float alpha = 0.75f;
        vc::DeviceTensor<In> dA = upload(ctx, A), dB = upload(ctx, B);
        vc::DeviceTensor<Out> dC = beta == 0.0f ? poisoned<Out>(ctx, M * ldc) : upload(ctx, C0);
        vc::gemm<In, Out>(ctx, ta, tb, M, N, K, alpha, dA.data(), lda, dB.data(), ldb, beta, dC.data(), ldc);
        Doubles want = widen(C0);
        const Doubles a = widen(A), b = widen(B);
        cpu::gemm<double>(ta, tb, M, N, K, alpha, a.data(), lda, b.data(), ldb, beta, want.data(), ldc);
        const Doubles got = fetch(ctx, dC);
        const std::string name = std::string("gemm ") + type_name<In>() + "->" + type_name<Out>() + (ta ? " At" : " A") +
                                 (tb ? " Bt" : " B") + " beta=" + std::to_string(int(beta)) + " " +
                                 std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K);
        // bf16 inputs are exact in fp32, but allow for split-K reduction order: 1e-4 for bf16 -> fp32.
        const double tol = !std::is_same_v<In, float> && std::is_same_v<Out, float> ? 1e-4 : tol_for<Out>();
        c.close(name, rows_of(got, M, N, ldc), round_to<Out>(rows_of(want, M, N, ldc)), tol);
        if (pad > 0 && beta == 0.0f) {  // the padding columns of C are never written
          bool untouched = true;
          for (std::int64_t r = 0; r < M; ++r)
            for (std::int64_t j = N; j < ldc; ++j) untouched = untouched && std::isnan(got[r * ldc + j]);
          c.expect(untouched, name + ": padding of C untouched");
        }
      }
}

// Linear-layer epilogues: bias, gelu_aux_bias (forward), dgelu and bgradb (backward).
template <class In, class Out>
void check_gemm_epilogues(vc::CudaContext& ctx, DeviceChecker& c, Random& rnd) {
  const std::int64_t M = 40, K = 24, N = 32;  // rows, in features, out features (N % 8 == 0 for aux)
  const std::string tag = std::string(type_name<In>()) + "->" + type_name<Out>();
  const std::vector<In> x = stored<In>(rnd.uniform(M * K)), W = stored<In>(rnd.uniform(N * K));
  const std::vector<Out> bias = stored<Out>(rnd.uniform(N));
  const Doubles xd = widen(x), Wd = widen(W), bd = widen(bias);
  Doubles pre(M * N);
  cpu::linear_forward<double>(xd.data(), Wd.data(), bd.data(), pre.data(), M, K, N);
  vc::DeviceTensor<In> dx = upload(ctx, x), dW = upload(ctx, W);
  vc::DeviceTensor<Out> db = upload(ctx, bias);

  {  // bias
    vc::DeviceTensor<Out> y = poisoned<Out>(ctx, M * N);
    vf::GemmEpilogue<Out> ep;
    ep.kind = vf::Epilogue::bias;
    ep.bias = db.data();
    vc::gemm<In, Out>(ctx, false, true, M, N, K, 1.0f, dx.data(), K, dW.data(), K, 0.0f, y.data(), N, ep);
    c.close("gemm epilogue bias " + tag, fetch(ctx, y), round_to<Out>(pre), tol_for<Out>());
  }
  {  // gelu_aux_bias
    vc::DeviceTensor<Out> y = poisoned<Out>(ctx, M * N), aux = poisoned<Out>(ctx, M * N);
    vf::GemmEpilogue<Out> ep;
    ep.kind = vf::Epilogue::gelu_aux_bias;
    ep.bias = db.data();
    ep.aux = aux.data();
    ep.ld_aux = N;
    vc::gemm<In, Out>(ctx, false, true, M, N, K, 1.0f, dx.data(), K, dW.data(), K, 0.0f, y.data(), N, ep);
    c.close("gemm epilogue gelu_aux_bias " + tag + ": aux = pre-activation", fetch(ctx, aux), round_to<Out>(pre),
            tol_for<Out>());
    Doubles want_tanh, want_erf;
    for (double p : pre) {
      want_tanh.push_back(gelu_tanh(p));
      want_erf.push_back(gelu_erf(p));
    }
    const Doubles got = fetch(ctx, y);
    DeviceChecker probe;  // which GELU does cuBLASLt compute? Report both, pass on either.
    const double tol = std::max(tol_for<Out>(), kTolFusedGelu);
    probe.close("  (vs tanh GELU)", got, round_to<Out>(want_tanh), tol);
    probe.close("  (vs erf GELU)", got, round_to<Out>(want_erf), tol);
    c.expect(probe.failures < 2, "gemm epilogue gelu_aux_bias " + tag + ": output = GELU(pre)");
  }
  {  // dgelu: d_pre = (dout W2) * gelu'(pre), the fc1 backward through the activation
    const std::int64_t No = 16;
    const std::vector<In> dout = stored<In>(rnd.uniform(M * No)), W2 = stored<In>(rnd.uniform(No * N));
    const std::vector<Out> pre_in = stored<Out>(rnd.uniform(M * N, -3.0f, 3.0f));
    vc::DeviceTensor<In> ddout = upload(ctx, dout), dW2 = upload(ctx, W2);
    vc::DeviceTensor<Out> dpre_in = upload(ctx, pre_in), dh = poisoned<Out>(ctx, M * N);
    vf::GemmEpilogue<Out> ep;
    ep.kind = vf::Epilogue::dgelu;
    ep.aux = dpre_in.data();
    ep.ld_aux = N;
    vc::gemm<In, Out>(ctx, false, false, M, N, No, 1.0f, ddout.data(), No, dW2.data(), N, 0.0f, dh.data(), N, ep);
    Doubles prod(M * N);
    const Doubles a = widen(dout), b = widen(W2), p = widen(pre_in);
    cpu::gemm<double>(false, false, M, N, No, 1.0, a.data(), No, b.data(), N, 0.0, prod.data(), N);
    Doubles want_tanh, want_erf;
    for (std::size_t i = 0; i < prod.size(); ++i) {
      want_tanh.push_back(prod[i] * gelu_tanh_grad(p[i]));
      want_erf.push_back(prod[i] * gelu_erf_grad(p[i]));
    }
    const Doubles got = fetch(ctx, dh);
    DeviceChecker probe;
    const double tol = std::max(tol_for<Out>(), kTolFusedGelu);
    probe.close("  (vs tanh GELU')", got, round_to<Out>(want_tanh), tol);
    probe.close("  (vs erf GELU')", got, round_to<Out>(want_erf), tol);
    c.expect(probe.failures < 2, "gemm epilogue dgelu " + tag + ": output = (dout W) * GELU'(aux)");
  }
  {  // bgradb with beta = 1: dW += dy^T x, db = column sums of dy
    const std::vector<In> dy = stored<In>(rnd.uniform(M * N));
    const std::vector<Out> dW0 = stored<Out>(rnd.uniform(N * K));
    vc::DeviceTensor<In> ddy = upload(ctx, dy);
    vc::DeviceTensor<Out> dWacc = upload(ctx, dW0), dbias = poisoned<Out>(ctx, N);
    vf::GemmEpilogue<Out> ep;
    ep.kind = vf::Epilogue::bgradb;
    ep.bias_grad = dbias.data();
    vc::gemm<In, Out>(ctx, true, false, N, K, M, 1.0f, ddy.data(), N, dx.data(), K, 1.0f, dWacc.data(), K, ep);
    Doubles want_dW = widen(dW0), want_db(N, 0.0);
    const Doubles dyd = widen(dy);
    cpu::linear_backward<double>(dyd.data(), xd.data(), Wd.data(), nullptr, want_dW.data(), want_db.data(), M, K, N);
    c.close("gemm epilogue bgradb " + tag + ": dW accumulated (beta=1)", fetch(ctx, dWacc), round_to<Out>(want_dW),
            tol_for<Out>());
    c.close("gemm epilogue bgradb " + tag + ": bias gradient", fetch(ctx, dbias), round_to<Out>(want_db), tol_for<Out>());
  }
}

// ---- LayerNorm ---------------------------------------------------------------------------------
template <class T>
// misalign: x starts one element past a 16-byte boundary, forcing the scalar (non-vector) paths.
void check_layernorm(vc::CudaContext& ctx, DeviceChecker& c, Random& rnd, std::int64_t rows, std::int64_t D,
                     bool misalign = false) {
  const double eps = 1e-5;
  const std::string tag = std::string(type_name<T>()) + " " + std::to_string(rows) + "x" + std::to_string(D) +
                          (misalign ? " misaligned" : "");
  const std::vector<T> x = stored<T>(rnd.uniform(rows * D, -2.0f, 3.0f)), res = stored<T>(rnd.uniform(rows * D));
  const std::vector<T> gamma = stored<T>(rnd.uniform(D, 0.5f, 1.5f)), beta = stored<T>(rnd.uniform(D));
  const Doubles xd = widen(x), gd = widen(gamma), bd = widen(beta);
  Doubles y(rows * D), mean(rows), rstd(rows);
  cpu::layernorm_forward<double>(xd.data(), gd.data(), bd.data(), y.data(), mean.data(), rstd.data(), rows, D, eps);

  std::vector<T> x_padded = x;
  if (misalign) x_padded.insert(x_padded.begin(), T(0.0f));
  vc::DeviceTensor<T> dx_buf = upload(ctx, x_padded), dg = upload(ctx, gamma), dbeta = upload(ctx, beta);
  const T* xp = dx_buf.data() + (misalign ? 1 : 0);
  vc::DeviceTensor<T> dy_out = poisoned<T>(ctx, rows * D);
  vc::DeviceTensor<float> dmean = poisoned<float>(ctx, rows), drstd = poisoned<float>(ctx, rows);
  vc::layernorm_forward<T>(ctx, xp, dg.data(), dbeta.data(), dy_out.data(), dmean.data(), drstd.data(), rows, D,
                           eps);
  c.close("layernorm_forward y " + tag, fetch(ctx, dy_out), round_to<T>(y), tol_for<T>());
  c.close("layernorm_forward mean " + tag, fetch(ctx, dmean), mean, kTolF32);
  c.close("layernorm_forward rstd " + tag, fetch(ctx, drstd), rstd, kTolF32);

  {  // fused residual add
    Doubles h(rows * D), yh(rows * D), mh(rows), rh(rows);
    const Doubles rd = widen(res);
    for (std::int64_t i = 0; i < rows * D; ++i) h[i] = xd[i] + rd[i];
    h = round_to<T>(h);  // the kernel normalises h as stored
    cpu::layernorm_forward<double>(h.data(), gd.data(), bd.data(), yh.data(), mh.data(), rh.data(), rows, D, eps);
    vc::DeviceTensor<T> dres = upload(ctx, res), sum = poisoned<T>(ctx, rows * D), out = poisoned<T>(ctx, rows * D);
    vc::DeviceTensor<float> m2 = poisoned<float>(ctx, rows), r2 = poisoned<float>(ctx, rows);
    vc::residual_layernorm_forward<T>(ctx, xp, dres.data(), sum.data(), dg.data(), dbeta.data(), out.data(),
                                      m2.data(), r2.data(), rows, D, eps);
    c.close("residual_layernorm_forward sum " + tag, fetch(ctx, sum), h, tol_for<T>());
    c.close("residual_layernorm_forward y " + tag, fetch(ctx, out), round_to<T>(yh), tol_for<T>());
    c.close("residual_layernorm_forward rstd " + tag, fetch(ctx, r2), rh, kTolF32);
  }
  {  // backward, accumulating into existing gradients
    const std::vector<T> dy = stored<T>(rnd.uniform(rows * D)), dx0 = stored<T>(rnd.uniform(rows * D));
    const std::vector<float> dg0 = rnd.uniform(D), db0 = rnd.uniform(D);
    Doubles want_dx = widen(dx0), want_dg = widen(dg0), want_db = widen(db0);
    const Doubles dyd = widen(dy);
    cpu::layernorm_backward<double>(dyd.data(), xd.data(), gd.data(), mean.data(), rstd.data(), want_dx.data(),
                                    want_dg.data(), want_db.data(), rows, D);
    vc::DeviceTensor<T> ddy = upload(ctx, dy), ddx = upload(ctx, dx0);
    vc::DeviceTensor<float> ddg = upload(ctx, dg0), ddb = upload(ctx, db0);
    vc::layernorm_backward<T>(ctx, ddy.data(), xp, dg.data(), dmean.data(), drstd.data(), ddx.data(),
                              ddg.data(), ddb.data(), rows, D);
    c.close("layernorm_backward dx " + tag, fetch(ctx, ddx), round_to<T>(want_dx), tol_for<T>());
    c.close("layernorm_backward dgamma " + tag, fetch(ctx, ddg), want_dg, std::is_same_v<T, float> ? kTolF32 : 1e-4);
    c.close("layernorm_backward dbeta " + tag, fetch(ctx, ddb), want_db, std::is_same_v<T, float> ? kTolF32 : 1e-4);
  }
}

// ---- GELU --------------------------------------------------------------------------------------
template <class T>
void check_gelu(vc::CudaContext& ctx, DeviceChecker& c, Random& rnd, std::int64_t n) {
  const std::vector<T> x = stored<T>(rnd.uniform(n, -5.0f, 5.0f)), dy = stored<T>(rnd.uniform(n)),
                       dx0 = stored<T>(rnd.uniform(n));
  const Doubles xd = widen(x), dyd = widen(dy);
  Doubles y(n), dx = widen(dx0);
  cpu::gelu_forward<double>(xd.data(), y.data(), n);
  cpu::gelu_backward<double>(dyd.data(), xd.data(), dx.data(), n);
  vc::DeviceTensor<T> dxin = upload(ctx, x), dyout = poisoned<T>(ctx, n), ddy = upload(ctx, dy), ddx = upload(ctx, dx0);
  vc::gelu_forward<T>(ctx, dxin.data(), dyout.data(), n);
  vc::gelu_backward<T>(ctx, ddy.data(), dxin.data(), ddx.data(), n);
  const std::string tag = std::string(type_name<T>()) + " n=" + std::to_string(n);
  c.close("gelu_forward " + tag, fetch(ctx, dyout), round_to<T>(y), tol_for<T>());
  c.close("gelu_backward (accumulating) " + tag, fetch(ctx, ddx), round_to<T>(dx), tol_for<T>());
}

// ---- column sums, softmax, attention -----------------------------------------------------------
template <class T>
void check_column_sums(vc::CudaContext& ctx, DeviceChecker& c, Random& rnd, std::int64_t rows, std::int64_t cols) {
  const std::vector<T> x = stored<T>(rnd.uniform(rows * cols));
  const std::vector<float> out0 = rnd.uniform(cols);
  Doubles want = widen(out0);
  const Doubles xd = widen(x);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < cols; ++j) want[j] += xd[r * cols + j];
  vc::DeviceTensor<T> dxm = upload(ctx, x);
  vc::DeviceTensor<float> dout = upload(ctx, out0);
  vc::add_column_sums<T>(ctx, dxm.data(), rows, cols, dout.data());
  const std::string tag = std::string(type_name<T>()) + " " + std::to_string(rows) + "x" + std::to_string(cols);
  c.close("add_column_sums (accumulating) " + tag, fetch(ctx, dout), want, kTolF32);
}

// add_in_place and add_broadcast_in_place (period), vectorised when n and period are multiples of 8.
template <class T>
void check_add(vc::CudaContext& ctx, DeviceChecker& c, Random& rnd, std::int64_t n, std::int64_t period) {
  const std::vector<T> y0 = stored<T>(rnd.uniform(n)), x = stored<T>(rnd.uniform(n)), table = stored<T>(rnd.uniform(period));
  const Doubles yd = widen(y0), xd = widen(x), td = widen(table);
  Doubles want_sum(n), want_bc(n);
  for (std::int64_t i = 0; i < n; ++i) {
    want_sum[i] = yd[i] + xd[i];
    want_bc[i] = yd[i] + td[i % period];
  }
  vc::DeviceTensor<T> dy1 = upload(ctx, y0), dy2 = upload(ctx, y0), dxv = upload(ctx, x), dt = upload(ctx, table);
  vc::add_in_place<T>(ctx, dy1.data(), dxv.data(), n);
  vc::add_broadcast_in_place<T>(ctx, dy2.data(), dt.data(), period, n);
  const std::string tag = std::string(type_name<T>()) + " n=" + std::to_string(n) + " period=" + std::to_string(period);
  c.close("add_in_place " + tag, fetch(ctx, dy1), round_to<T>(want_sum), tol_for<T>());
  c.close("add_broadcast_in_place " + tag, fetch(ctx, dy2), round_to<T>(want_bc), tol_for<T>());
}

void check_softmax(vc::CudaContext& ctx, DeviceChecker& c, Random& rnd) {
  const std::int64_t rows = 7, cols = 300;
  const std::vector<float> s = rnd.uniform(rows * cols, -5.0f, 5.0f);
  Doubles want = widen(s);
  cpu::softmax_rows_inplace<double>(want.data(), rows, cols);
  vc::DeviceTensor<float> ds = upload(ctx, s);
  vc::softmax_rows_inplace(ctx, ds.data(), rows, cols);
  c.close("softmax_rows_inplace 7x300", fetch(ctx, ds), want, kTolF32);
}

void check_attention(vc::CudaContext& ctx, DeviceChecker& c, Random& rnd, const vc::AttentionShape& s) {
  const cpu::AttentionShape cs{s.batch, s.tokens, s.heads, s.head_dim};
  const std::int64_t B = s.batch, T = s.tokens, D = s.dim(), P = B * s.heads * T * T;
  const std::string tag = "B" + std::to_string(B) + " T" + std::to_string(T) + " H" + std::to_string(s.heads) + " hd" +
                          std::to_string(s.head_dim);
  const std::vector<float> qkv = rnd.uniform(B * T * 3 * D, -1.5f, 1.5f), dout = rnd.uniform(B * T * D),
                           dqkv0 = rnd.uniform(B * T * 3 * D);
  const Doubles qd = widen(qkv), dod = widen(dout);
  Doubles out(B * T * D), probs(P), dqkv = widen(dqkv0), scratch(P);
  cpu::attention_forward<double>(qd.data(), out.data(), probs.data(), cs);
  cpu::attention_backward<double>(dod.data(), qd.data(), probs.data(), dqkv.data(), scratch.data(), cs);

  vc::DeviceTensor<float> dq = upload(ctx, qkv), dO = poisoned<float>(ctx, B * T * D), dP = poisoned<float>(ctx, P);
  vc::attention_forward(ctx, dq.data(), dO.data(), dP.data(), s);
  c.close("attention_forward out " + tag, fetch(ctx, dO), out, kTolF32);
  c.close("attention_forward probs " + tag, fetch(ctx, dP), probs, kTolF32);
  vc::DeviceTensor<float> ddout = upload(ctx, dout), ddqkv = upload(ctx, dqkv0), dscratch = poisoned<float>(ctx, P);
  vc::attention_backward(ctx, ddout.data(), dq.data(), dP.data(), ddqkv.data(), dscratch.data(), s);
  c.close("attention_backward dqkv (accumulating) " + tag, fetch(ctx, ddqkv), dqkv, kTolF32);
}

// ---- tokens, patchify, loss --------------------------------------------------------------------
// The second shape has enough masked positions for the multi-chunk mask-token reduction.
void check_tokens(vc::CudaContext& ctx, DeviceChecker& c, Random& rnd, std::int64_t B, std::int64_t L, std::int64_t K,
                  std::int64_t D) {
  const std::string tag = "B" + std::to_string(B) + " L" + std::to_string(L) + " K" + std::to_string(K) + " D" + std::to_string(D);
  const std::vector<std::int32_t> ids = rnd.permutation_prefixes(B, L, K);
  const std::vector<float> x = rnd.uniform(B * L * D), dout = rnd.uniform(B * K * D), dx0 = rnd.uniform(B * L * D);
  const Doubles xd = widen(x), dod = widen(dout);
  Doubles out(B * K * D), dx = widen(dx0);
  cpu::gather_tokens_forward<double>(xd.data(), ids.data(), out.data(), B, L, K, D);
  cpu::gather_tokens_backward<double>(dod.data(), ids.data(), dx.data(), B, L, K, D);
  vc::DeviceTensor<std::int32_t> dids = upload(ctx, ids);
  vc::DeviceTensor<float> dxin = upload(ctx, x), dgo = poisoned<float>(ctx, B * K * D), ddout = upload(ctx, dout),
                    ddx = upload(ctx, dx0);
  vc::gather_tokens_forward<float>(ctx, dxin.data(), dids.data(), dgo.data(), B, L, K, D);
  vc::gather_tokens_backward<float>(ctx, ddout.data(), dids.data(), ddx.data(), B, L, K, D);
  c.close("gather_tokens_forward " + tag, fetch(ctx, dgo), out, kTolF32);
  c.close("gather_tokens_backward (accumulating) " + tag, fetch(ctx, ddx), dx, kTolF32);

  // ids_restore[b, l] = shuffled position of patch l (inverse of a full permutation).
  const std::vector<std::int32_t> order = rnd.permutation_prefixes(B, L, L);
  std::vector<std::int32_t> restore(B * L);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t pos = 0; pos < L; ++pos) restore[b * L + order[b * L + pos]] = static_cast<std::int32_t>(pos);
  const std::vector<float> xs = rnd.uniform(B * (K + 1) * D), mask = rnd.uniform(D),
                           dus = rnd.uniform(B * (L + 1) * D), dxs0 = rnd.uniform(B * (K + 1) * D),
                           dm0 = rnd.uniform(D);
  const Doubles xsd = widen(xs), md = widen(mask), dusd = widen(dus);
  Doubles uout(B * (L + 1) * D), dxs = widen(dxs0), dm = widen(dm0);
  cpu::unshuffle_forward<double>(xsd.data(), md.data(), restore.data(), uout.data(), B, K, L, D);
  cpu::unshuffle_backward<double>(dusd.data(), restore.data(), dxs.data(), dm.data(), B, K, L, D);
  vc::DeviceTensor<std::int32_t> drestore = upload(ctx, restore);
  vc::DeviceTensor<float> dxs_in = upload(ctx, xs), dmask = upload(ctx, mask), duo = poisoned<float>(ctx, B * (L + 1) * D),
                    ddus = upload(ctx, dus), ddxs = upload(ctx, dxs0), ddm = upload(ctx, dm0);
  vc::unshuffle_forward<float>(ctx, dxs_in.data(), dmask.data(), drestore.data(), duo.data(), B, K, L, D);
  vc::unshuffle_backward<float>(ctx, ddus.data(), drestore.data(), ddxs.data(), ddm.data(), B, K, L, D);
  c.close("unshuffle_forward " + tag, fetch(ctx, duo), uout, kTolF32);
  c.close("unshuffle_backward dx (accumulating) " + tag, fetch(ctx, ddxs), dxs, kTolF32);
  c.close("unshuffle_backward dmask_token (accumulating) " + tag, fetch(ctx, ddm), dm, kTolF32);
}

void check_patchify(vc::CudaContext& ctx, DeviceChecker& c, Random& rnd) {
  const cpu::PatchGeometry g{2, 3, 8, 12, 4};
  const std::int64_t n = g.batch * g.channels * g.height * g.width;
  for (cpu::PatchLayout layout : {cpu::PatchLayout::pixel_major, cpu::PatchLayout::channel_major}) {
    const std::string tag = layout == cpu::PatchLayout::pixel_major ? "pixel-major" : "channel-major";
    const std::vector<float> images = rnd.uniform(n), patches = rnd.uniform(n);
    std::vector<float> want_p(n), want_i(n);
    cpu::patchify(images.data(), want_p.data(), g, layout);
    cpu::unpatchify(patches.data(), want_i.data(), g, layout);
    vc::DeviceTensor<float> di = upload(ctx, images), dp = poisoned<float>(ctx, n), dp2 = upload(ctx, patches),
                      di2 = poisoned<float>(ctx, n);
    vc::patchify(ctx, di.data(), dp.data(), g, layout);
    vc::unpatchify(ctx, dp2.data(), di2.data(), g, layout);
    c.close("patchify (exact) " + tag, fetch(ctx, dp), widen(want_p), 0.0);
    c.close("unpatchify (exact) " + tag, fetch(ctx, di2), widen(want_i), 0.0);
  }
}

void check_masked_mse(vc::CudaContext& ctx, DeviceChecker& c, Random& rnd) {
  const std::int64_t rows = 37, P = 48;
  const std::vector<float> pred = rnd.uniform(rows * P), target = rnd.uniform(rows * P), dpred0 = rnd.uniform(rows * P);
  std::vector<float> weight = rnd.uniform(rows, 0.0f, 1.0f);
  for (float& w : weight) w = w < 0.3f ? 0.0f : (w < 0.4f ? 0.5f : 1.0f);
  weight[0] = 1.0f;
  const Doubles pd = widen(pred), td = widen(target), wd = widen(weight);
  vc::DeviceTensor<float> dpred = upload(ctx, pred), dtarget = upload(ctx, target), dweight = upload(ctx, weight);
  for (bool weighted : {true, false}) {
    const std::string tag = weighted ? " (weighted)" : " (all rows)";
    double want_wsum = 0, got_wsum = -1;
    const double want = cpu::masked_mse_forward<double>(pd.data(), td.data(), weighted ? wd.data() : nullptr, rows, P,
                                                        &want_wsum);
    const double got = vc::masked_mse_forward<float>(ctx, dpred.data(), dtarget.data(),
                                                     weighted ? dweight.data() : nullptr, rows, P, &got_wsum);
    c.close("masked_mse_forward loss" + tag, {got}, {want}, kTolF32);
    c.close("masked_mse_forward weight sum" + tag, {got_wsum}, {want_wsum}, kTolF32);
    Doubles dwant = widen(dpred0);
    cpu::masked_mse_backward<double>(1.3, pd.data(), td.data(), weighted ? wd.data() : nullptr, want_wsum, dwant.data(),
                                     rows, P);
    vc::DeviceTensor<float> dd = upload(ctx, dpred0);
    vc::masked_mse_backward<float>(ctx, 1.3, dpred.data(), dtarget.data(), weighted ? dweight.data() : nullptr,
                                   want_wsum, dd.data(), rows, P);
    c.close("masked_mse_backward (accumulating)" + tag, fetch(ctx, dd), dwant, kTolF32);
  }
}

// ---- AdamW -------------------------------------------------------------------------------------
void check_adamw(vc::CudaContext& ctx, DeviceChecker& c, Random& rnd) {
  const vf::optim::AdamWOptions options{};
  vf::optim::AdamW<float> reference(options);
  struct Case {
    std::int64_t n;
    bool decay;
    double lr;
    vf::DType working_copy;  // f32: none; bf16 or f16
    float grad_scale;  // the device reads grad * grad_scale; the reference gets the scaled gradient
  };
  const std::vector<Case> cases = {{1000, true, 1e-2, vf::DType::bf16, 1.0f},
                                   {37, false, 2e-2, vf::DType::f32, 1.0f},
                                   {3000, true, 5e-3, vf::DType::f32, 0.25f},
                                   {777, true, 1e-2, vf::DType::f16, 1.0f}};
  std::vector<vf::Parameter<float>> params;
  params.reserve(cases.size());  // optim::AdamW keys its state by the Parameter's address
  std::vector<vc::DeviceTensor<float>> dparam, dgrad, dm, dv;
  std::vector<vc::DeviceTensor<bf16>> dwork;    // bf16 working copies
  std::vector<vc::DeviceTensor<f16>> dwork16;   // fp16 working copies
  for (const Case& k : cases) {
    vf::Parameter<float>& p = params.emplace_back("p" + std::to_string(params.size()), vf::Shape{k.n}, k.decay);
    const std::vector<float> init = rnd.uniform(k.n);
    std::copy(init.begin(), init.end(), p.value.data());
    p.ensure_grad();
    dparam.push_back(upload(ctx, init));
    dgrad.push_back(upload(ctx, std::vector<float>(k.n, 0.0f)));
    dm.push_back(upload(ctx, std::vector<float>(k.n, 0.0f)));
    dv.push_back(upload(ctx, std::vector<float>(k.n, 0.0f)));
    dwork.push_back(k.working_copy == vf::DType::bf16 ? poisoned<bf16>(ctx, k.n) : vc::DeviceTensor<bf16>());
    dwork16.push_back(k.working_copy == vf::DType::f16 ? poisoned<f16>(ctx, k.n) : vc::DeviceTensor<f16>());
  }
  for (std::int64_t step = 1; step <= 3; ++step) {
    std::vector<vc::AdamWTensor> updates;
    for (std::size_t i = 0; i < cases.size(); ++i) {
      const std::vector<float> g = rnd.uniform(cases[i].n, -0.5f, 0.5f);
      for (std::size_t j = 0; j < g.size(); ++j) params[i].grad.data()[j] = g[j] * cases[i].grad_scale;
      reference.update(params[i], cases[i].lr);
      vc::check(cudaMemcpyAsync(dgrad[i].data(), g.data(), dgrad[i].bytes(), cudaMemcpyHostToDevice, ctx.stream()),
                "upload grad");
      void* working = !dwork[i].empty() ? static_cast<void*>(dwork[i].data())
                      : !dwork16[i].empty() ? static_cast<void*>(dwork16[i].data())
                                            : nullptr;
      updates.push_back({dparam[i].data(), dgrad[i].data(), dm[i].data(), dv[i].data(), working, cases[i].n, cases[i].lr,
                         cases[i].decay, step, cases[i].grad_scale, !dwork16[i].empty()});
    }
    vc::adamw_step(ctx, std::span<const vc::AdamWTensor>(updates), options);
  }
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const std::string tag = " tensor " + std::to_string(i) + " after 3 steps";
    const auto* state = reference.state(params[i]);
    c.close("adamw param" + tag, fetch(ctx, dparam[i]), widen(std::vector<float>(params[i].value.data(), params[i].value.data() + cases[i].n)), kTolF32);
    c.close("adamw m" + tag, fetch(ctx, dm[i]), widen(std::vector<float>(state->m.data(), state->m.data() + cases[i].n)), kTolF32);
    c.close("adamw v" + tag, fetch(ctx, dv[i]), widen(std::vector<float>(state->v.data(), state->v.data() + cases[i].n)), kTolF32);
    const Doubles master = widen(std::vector<float>(params[i].value.data(), params[i].value.data() + cases[i].n));
    if (!dwork[i].empty()) c.close("adamw bf16 working copy" + tag, fetch(ctx, dwork[i]), round_to<bf16>(master), kTolBf16);
    if (!dwork16[i].empty()) c.close("adamw f16 working copy" + tag, fetch(ctx, dwork16[i]), round_to<f16>(master), kTolF16);
  }
}

// ---- allocator steady state --------------------------------------------------------------------
void check_steady_state(vc::CudaContext& ctx, DeviceChecker& c, Random& rnd) {
  const std::int64_t M = 64, N = 48, K = 32;
  auto step = [&] {  // allocates inputs, outputs and (inside masked_mse_forward) scratch
    vc::DeviceTensor<float> a = upload(ctx, rnd.uniform(M * K)), b = upload(ctx, rnd.uniform(K * N)), out = poisoned<float>(ctx, M * N);
    vc::gemm<float, float>(ctx, false, false, M, N, K, 1.0f, a.data(), K, b.data(), N, 0.0f, out.data(), N);
    double wsum = 0;
    (void)vc::masked_mse_forward<float>(ctx, out.data(), out.data(), nullptr, M, N, &wsum);
  };
  step();
  const std::size_t plans = ctx.matmul_plans().size();
  const std::size_t mallocs = ctx.allocator().stats().malloc_calls;
  for (int i = 0; i < 3; ++i) step();
  c.expect(ctx.allocator().stats().malloc_calls == mallocs, "allocator steady state: no cudaMalloc after the first step");
  c.expect(ctx.matmul_plans().size() == plans, "matmul plans cached by shape: no new plan after the first step");
}

void run_device_checks(DeviceChecker& c) {
  vc::CudaContext ctx(0);
  std::printf("device: %s (sm_%d%d)\n", ctx.properties().name, ctx.properties().major, ctx.properties().minor);
  Random rnd(20240601);
  section(c, "gemm f32", [&] { check_gemm_plain<float, float>(ctx, c, rnd, 37, 53, 29, 3); });
  section(c, "gemm bf16", [&] { check_gemm_plain<bf16, bf16>(ctx, c, rnd, 64, 96, 48, 0); });
  section(c, "gemm bf16->f32", [&] { check_gemm_plain<bf16, float>(ctx, c, rnd, 64, 96, 48, 8); });
  section(c, "gemm epilogues f32", [&] { check_gemm_epilogues<float, float>(ctx, c, rnd); });
  section(c, "gemm epilogues bf16", [&] { check_gemm_epilogues<bf16, bf16>(ctx, c, rnd); });
  section(c, "gemm epilogues bf16->f32", [&] { check_gemm_epilogues<bf16, float>(ctx, c, rnd); });
  section(c, "gemm f16", [&] { check_gemm_plain<f16, f16>(ctx, c, rnd, 64, 96, 48, 0); });
  section(c, "gemm f16->f32", [&] { check_gemm_plain<f16, float>(ctx, c, rnd, 64, 96, 48, 8); });
  section(c, "gemm epilogues f16", [&] { check_gemm_epilogues<f16, f16>(ctx, c, rnd); });
  section(c, "gemm epilogues f16->f32", [&] { check_gemm_epilogues<f16, float>(ctx, c, rnd); });
  // LayerNorm paths: 16-byte vectors in registers (D % 8 == 0 bf16, D % 4 == 0 f32, up to 8 vectors
  // a lane), scalars in registers (misaligned or odd D up to 256), and the re-reading loop (wider);
  // parameter gradients with one chunk (few rows) and many (3000 rows).
  section(c, "layernorm", [&] {
    check_layernorm<float>(ctx, c, rnd, 13, 300);    // f32 vectors, 3 a lane
    check_layernorm<float>(ctx, c, rnd, 5, 64);
    check_layernorm<bf16>(ctx, c, rnd, 13, 300);     // bf16 300 % 8 != 0: loop kernel
    check_layernorm<bf16>(ctx, c, rnd, 3000, 768);   // ViT-B encoder width, multi-chunk dgamma
    check_layernorm<float>(ctx, c, rnd, 3001, 768);  // 6 vectors a lane, odd rows
    check_layernorm<bf16>(ctx, c, rnd, 1001, 512);   // decoder width
    check_layernorm<bf16>(ctx, c, rnd, 9, 192);      // fewer vectors than lanes
    check_layernorm<bf16>(ctx, c, rnd, 7, 45);       // scalars in registers
    check_layernorm<bf16>(ctx, c, rnd, 131, 64, true);
    check_layernorm<float>(ctx, c, rnd, 11, 768, true);  // misaligned, too wide for registers: loop
    check_layernorm<float>(ctx, c, rnd, 3, 2100);    // 17 f32 vectors a lane: loop
    check_layernorm<f16>(ctx, c, rnd, 3000, 768);    // fp16: vectors
    check_layernorm<f16>(ctx, c, rnd, 7, 45);        // fp16: scalars
  });
  section(c, "gelu", [&] {
    check_gelu<float>(ctx, c, rnd, 3001);
    check_gelu<bf16>(ctx, c, rnd, 3001);
    check_gelu<float>(ctx, c, rnd, 4096);
    check_gelu<bf16>(ctx, c, rnd, 4096);
    check_gelu<f16>(ctx, c, rnd, 4096);
    check_gelu<f16>(ctx, c, rnd, 3001);
  });
  section(c, "column sums", [&] {
    check_column_sums<float>(ctx, c, rnd, 77, 45);    // scalar, one chunk
    check_column_sums<float>(ctx, c, rnd, 1001, 45);  // scalar, many chunks
    check_column_sums<float>(ctx, c, rnd, 3000, 768);
    check_column_sums<bf16>(ctx, c, rnd, 3001, 768);
    check_column_sums<bf16>(ctx, c, rnd, 256, 768);   // cls-token gradient shape
    check_column_sums<f16>(ctx, c, rnd, 256, 768);
  });
  section(c, "add in place", [&] {
    check_add<float>(ctx, c, rnd, 4096, 512);
    check_add<bf16>(ctx, c, rnd, 4096, 512);
    check_add<bf16>(ctx, c, rnd, 3003, 231);
    check_add<bf16>(ctx, c, rnd, 4800, 12);  // n % 8 == 0 but period % 8 != 0: scalar
    check_add<float>(ctx, c, rnd, 600, 12);  // f32 vectors: period % 4 == 0
    check_add<f16>(ctx, c, rnd, 4096, 512);
    check_add<f16>(ctx, c, rnd, 3003, 231);
  });
  section(c, "softmax", [&] { check_softmax(ctx, c, rnd); });
  section(c, "attention", [&] {
    check_attention(ctx, c, rnd, {2, 17, 3, 8});
    check_attention(ctx, c, rnd, {1, 300, 2, 16});
  });
  section(c, "tokens", [&] {
    check_tokens(ctx, c, rnd, 3, 10, 4, 33);
    check_tokens(ctx, c, rnd, 40, 196, 49, 40);
  });
  section(c, "patchify", [&] { check_patchify(ctx, c, rnd); });
  section(c, "masked mse", [&] { check_masked_mse(ctx, c, rnd); });
  section(c, "adamw", [&] { check_adamw(ctx, c, rnd); });
  section(c, "steady state", [&] { check_steady_state(ctx, c, rnd); });
}

}  // namespace

int main() {
  DeviceChecker c;
  return vf::testing::run_device_test(host_checks, run_device_checks, c);
}
