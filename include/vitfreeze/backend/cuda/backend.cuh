#pragma once
// The CUDA backend (nvcc translation units only): the kernel set the models (model/) are written
// against, on device memory, for the Fp32, Bf16Mixed and Fp16Mixed precision policies. Every
// function forwards to a kernel of backend/cuda/ (cuBLASLt GEMMs with fused epilogues, own kernels
// for the rest); all of them enqueue on the context's stream and none waits for the GPU, except
// read_scalar, download and MiCL's contrastive loss (below). Parameters are CudaParameter handles:
// device copies (fp32 master, the policy's working copy, gradient and AdamW moments) made from the
// host modules' Parameters.
//
// MiCL's t-vMF InfoNCE runs on the host in this version: z [2N, D] (N x D values, small next to the
// encoder) is downloaded, the CPU kernel (backend/cpu/contrastive.hpp) computes the loss and dz in
// double, and dz goes back up. It waits for the GPU twice per step, so a MiCL step cannot be
// captured in a CUDA graph (train/cuda_step_engine.cuh refuses graphs for it).
#include <cuda_runtime.h>

#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "vitfreeze/backend/attention_shape.hpp"
#include "vitfreeze/backend/backend.hpp"
#include "vitfreeze/backend/cpu/contrastive.hpp"
#include "vitfreeze/backend/cuda/attention_paths.cuh"
#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/cuda/elementwise.cuh"
#include "vitfreeze/backend/cuda/encoder_tokens.cuh"
#include "vitfreeze/backend/cuda/gelu.cuh"
#include "vitfreeze/backend/cuda/gemm.hpp"
#include "vitfreeze/backend/cuda/hog.cuh"
#include "vitfreeze/backend/cuda/layernorm.cuh"
#include "vitfreeze/backend/cuda/loss.cuh"
#include "vitfreeze/backend/cuda/parameter.cuh"
#include "vitfreeze/backend/cuda/patch_targets.cuh"
#include "vitfreeze/backend/cuda/patchify.cuh"
#include "vitfreeze/backend/cuda/reduce.cuh"
#include "vitfreeze/backend/cuda/spatial.cuh"
#include "vitfreeze/backend/cuda/tokens.cuh"
#include "vitfreeze/backend/cuda/transfer.hpp"
#include "vitfreeze/backend/gemm_epilogue.hpp"
#include "vitfreeze/backend/geometry.hpp"
#include "vitfreeze/backend/target_kernels.hpp"
#include "vitfreeze/core/precision.hpp"

namespace vitfreeze {

struct Cuda {
  using Space = DeviceMemory;
  using Context = cuda::CudaContext;
  template <PrecisionPolicy P>
  using Parameter = cuda::CudaParameter<P>;
  template <class T>
  using Array = Tensor<T, DeviceMemory>;
  static constexpr const char* name = "cuda";

  // fp32 master weights with fp32, bf16 or fp16 activations (no fp64 kernels).
  template <PrecisionPolicy P>
  static constexpr bool supports = std::is_same_v<typename P::Master, float> && cuda::DeviceScalar<typename P::Activation>;
  // cuBLASLt's GELU epilogue computes the tanh form: used where the policy allows it (bf16, fp16);
  // fp32 keeps the exact-erf kernel after a bias epilogue.
  template <PrecisionPolicy P>
  static constexpr bool epilogue_gelu = P::fused_tanh_gelu;

  // ---- memory ---------------------------------------------------------------------------------
  template <class T>
  static Array<T> empty(Context& ctx, const Shape& shape) {
    return ctx.empty<T>(shape);
  }
  template <class T>
  static Array<T> zeros(Context& ctx, const Shape& shape) {
    Array<T> a = ctx.empty<T>(shape);
    zero(ctx, a.data(), a.numel());
    return a;
  }
  template <class T>
  static void zero(Context& ctx, T* p, std::int64_t n) {
    if (n > 0) cuda::check(cudaMemsetAsync(p, 0, sizeof(T) * std::size_t(n), ctx.stream()), "cudaMemsetAsync(zero)");
  }
  // A device copy of host data (the host tensor may go once this returns).
  template <class T>
  static Array<T> upload(Context& ctx, const Tensor<T>& host) {
    return cuda::to_device(ctx, host);
  }
  template <class T>
  static void copy_from_host(Context& ctx, const Tensor<T>& from, const Array<T>& to) {
    cuda::copy_to_device(ctx, from, to);
  }
  // Waits for the stream.
  template <class T>
  static void download(Context& ctx, const Array<T>& from, const Tensor<T>& to) {
    cuda::copy_to_host(ctx, from, to);
  }
  template <class T>
  static double read_scalar(Context& ctx, const T* p) {
    T host{};
    cuda::check(cudaMemcpyAsync(&host, p, sizeof(T), cudaMemcpyDeviceToHost, ctx.stream()), "cudaMemcpyAsync(scalar)");
    ctx.synchronize();
    return double(host);
  }
  // fp32 data as the activation type (round to nearest even).
  template <cuda::DeviceScalar T>
  static void convert(Context& ctx, const float* x, T* y, std::int64_t n) {
    cuda::convert<T>(ctx, x, y, n);
  }

  // ---- dense math -----------------------------------------------------------------------------
  // In: float, bf16 or fp16; Out: In or float (weight gradients of 16-bit activations are fp32).
  template <class In, class Out>
    requires cuda::GemmTypes<In, Out>
  static void gemm(Context& ctx, bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, double alpha,
                   const In* A, std::int64_t lda, const In* B, std::int64_t ldb, double beta, Out* C, std::int64_t ldc,
                   const std::type_identity_t<GemmEpilogue<Out>>& epilogue = {}) {
    cuda::gemm<In, Out>(ctx, trans_a, trans_b, M, N, K, float(alpha), A, lda, B, ldb, float(beta), C, ldc, epilogue);
  }
  template <cuda::DeviceScalar T>
  static void add_in_place(Context& ctx, T* y, const T* x, std::int64_t n) {
    cuda::add_in_place<T>(ctx, y, x, n);
  }
  // y[i] += table[i % period]
  template <cuda::DeviceScalar T>
  static void add_broadcast_in_place(Context& ctx, T* y, const T* table, std::int64_t period, std::int64_t n) {
    cuda::add_broadcast_in_place<T>(ctx, y, table, period, n);
  }
  // The exact-erf GELU (the CPU's) in every policy.
  template <cuda::DeviceScalar T>
  static void gelu_forward(Context& ctx, const T* x, T* y, std::int64_t n) {
    cuda::gelu_forward<T>(ctx, x, y, n);
  }
  // dx += dy * GELU'(x)
  template <cuda::DeviceScalar T>
  static void gelu_backward(Context& ctx, const T* dy, const T* x, T* dx, std::int64_t n) {
    cuda::gelu_backward<T>(ctx, dy, x, dx, n);
  }
  // out[c] += sum_r x[r, c] (fp32 out)
  template <cuda::DeviceScalar T>
  static void add_column_sums(Context& ctx, const T* x, std::int64_t rows, std::int64_t cols, float* out) {
    cuda::add_column_sums<T>(ctx, x, rows, cols, out);
  }

  // ---- normalisation (fp32 statistics and parameter gradients) ----------------------------------
  template <cuda::DeviceScalar T>
  static void layernorm_forward(Context& ctx, const T* x, const T* gamma, const T* beta, T* y, float* mean, float* rstd,
                                std::int64_t rows, std::int64_t dim, double eps) {
    cuda::layernorm_forward<T>(ctx, x, gamma, beta, y, mean, rstd, rows, dim, eps);
  }
  template <cuda::DeviceScalar T>
  static void residual_layernorm_forward(Context& ctx, const T* x, const T* residual, T* sum, const T* gamma,
                                         const T* beta, T* y, float* mean, float* rstd, std::int64_t rows,
                                         std::int64_t dim, double eps) {
    cuda::residual_layernorm_forward<T>(ctx, x, residual, sum, gamma, beta, y, mean, rstd, rows, dim, eps);
  }
  // Accumulates dx, dgamma, dbeta (each may be null).
  template <cuda::DeviceScalar T>
  static void layernorm_backward(Context& ctx, const T* dy, const T* x, const T* gamma, const float* mean,
                                 const float* rstd, T* dx, float* dgamma, float* dbeta, std::int64_t rows, std::int64_t dim) {
    cuda::layernorm_backward<T>(ctx, dy, x, gamma, mean, rstd, dx, dgamma, dbeta, rows, dim);
  }

  // ---- attention over the fused qkv buffer [B, T, 3D] -> [B, T, D] (attention_paths.cuh) ----------
  template <PrecisionPolicy P>
  using AttentionSaved = typename cuda::AttentionPath<typename P::Activation>::Saved;
  template <PrecisionPolicy P, cuda::DeviceScalar T>
  static void attention_forward(Context& ctx, const T* qkv, T* out, const AttentionShape& s, AttentionSaved<P>* saved) {
    cuda::AttentionPath<T>::forward(ctx, qkv, out, s, saved);
  }
  // dqkv is overwritten; out: the forward's output (cuDNN's backward reads it).
  template <PrecisionPolicy P, cuda::DeviceScalar T>
  static void attention_backward(Context& ctx, const T* dout, const T* qkv, const T* out, const AttentionSaved<P>& saved,
                                 T* dqkv, const AttentionShape& s) {
    cuda::AttentionPath<T>::backward(ctx, dout, qkv, out, saved, dqkv, s);
  }

  // ---- tokens ---------------------------------------------------------------------------------
  template <cuda::DeviceScalar T>
  static void patchify(Context& ctx, const T* images, T* patches, const PatchGeometry& g, PatchLayout layout) {
    cuda::patchify<T>(ctx, images, patches, g, layout);
  }
  template <cuda::DeviceScalar T>
  static void gather_tokens_forward(Context& ctx, const T* x, const std::int32_t* ids, T* out, std::int64_t B,
                                    std::int64_t L, std::int64_t K, std::int64_t D) {
    cuda::gather_tokens_forward<T>(ctx, x, ids, out, B, L, K, D);
  }
  // dx[b, ids[b, k], :] += dout[b, k, :]
  template <cuda::DeviceScalar T>
  static void gather_tokens_backward(Context& ctx, const T* dout, const std::int32_t* ids, T* dx, std::int64_t B,
                                     std::int64_t L, std::int64_t K, std::int64_t D) {
    cuda::gather_tokens_backward<T>(ctx, dout, ids, dx, B, L, K, D);
  }
  template <cuda::DeviceScalar T>
  static void assemble_encoder_tokens(Context& ctx, const T* patch_tokens, const T* cls, const T* pos,
                                      const std::int32_t* ids_keep, T* x, std::int64_t B, std::int64_t K, std::int64_t D) {
    cuda::assemble_encoder_tokens<T>(ctx, patch_tokens, cls, pos, ids_keep, x, B, K, D);
  }
  template <cuda::DeviceScalar T>
  static void split_encoder_token_grads(Context& ctx, const T* dx, T* dpatch_tokens, T* dcls_rows, std::int64_t B,
                                        std::int64_t K, std::int64_t D) {
    cuda::split_encoder_token_grads<T>(ctx, dx, dpatch_tokens, dcls_rows, B, K, D);
  }
  template <cuda::DeviceScalar T>
  static void unshuffle_forward(Context& ctx, const T* x, const T* mask_token, const std::int32_t* ids_restore, T* out,
                                std::int64_t B, std::int64_t K, std::int64_t L, std::int64_t D) {
    cuda::unshuffle_forward<T>(ctx, x, mask_token, ids_restore, out, B, K, L, D);
  }
  // Accumulates into dx and dmask_token (fp32; null: skipped).
  template <cuda::DeviceScalar T>
  static void unshuffle_backward(Context& ctx, const T* dout, const std::int32_t* ids_restore, T* dx, float* dmask_token,
                                 std::int64_t B, std::int64_t K, std::int64_t L, std::int64_t D) {
    cuda::unshuffle_backward<T>(ctx, dout, ids_restore, dx, dmask_token, B, K, L, D);
  }

  // ---- channels-last maps (LocalMIM's scale heads) ----------------------------------------------
  template <cuda::DeviceScalar T>
  static void pixel_shuffle_2x2_forward(Context& ctx, const T* x, const T* bias, T* y, const MapGeometry& g,
                                        std::int64_t C) {
    cuda::pixel_shuffle_2x2_forward<T>(ctx, x, bias, y, g, C);
  }
  template <cuda::DeviceScalar T>
  static void pixel_shuffle_2x2_backward(Context& ctx, const T* dy, T* dx, const MapGeometry& g, std::int64_t C) {
    cuda::pixel_shuffle_2x2_backward<T>(ctx, dy, dx, g, C);
  }
  static void fold_kernel_position_sums(Context& ctx, const float* column_sums, float* dbias, std::int64_t C) {
    cuda::fold_kernel_position_sums(ctx, column_sums, dbias, C);
  }
  template <cuda::DeviceScalar T>
  static void avg_pool_2x2_forward(Context& ctx, const T* x, T* y, const MapGeometry& g, std::int64_t C) {
    cuda::avg_pool_2x2_forward<T>(ctx, x, y, g, C);
  }
  template <cuda::DeviceScalar T>
  static void avg_pool_2x2_backward(Context& ctx, const T* dy, T* dx, const MapGeometry& g, std::int64_t C) {
    cuda::avg_pool_2x2_backward<T>(ctx, dy, dx, g, C);
  }

  // ---- targets and losses (images: fp32) ---------------------------------------------------------
  template <cuda::DeviceScalar T>
  static void patch_targets(Context& ctx, const float* images, T* target, const PatchGeometry& g, bool normalize,
                            double eps, std::int64_t lead = 1) {
    cuda::patch_targets<T>(ctx, images, target, g, normalize, eps, lead);
  }
  template <cuda::DeviceScalar T>
  static void hog_targets(Context& ctx, const float* images, std::span<const HogGeometry> g, std::span<T* const> targets) {
    if (g.size() != targets.size()) throw ShapeError("Cuda::hog_targets: one output per geometry");
    for (std::size_t s = 0; s < g.size(); ++s) cuda::hog_targets<T>(ctx, images, targets[s], g[s]);
  }
  // A reconstruction target with a device kernel (backend/target_kernels.hpp): out[s] holds
  // [batch, lead + cells, values] rows for geometry g[s].
  template <class Target, cuda::DeviceScalar T>
    requires requires { Target::device_kernel; }
  static void compute_target(Context& ctx, const float* images, std::span<const TargetGeometry> g,
                             std::span<T* const> out) {
    if (g.size() != out.size()) throw ShapeError("Cuda::compute_target: one output per geometry");
    using Kernel = std::remove_cvref_t<decltype(Target::device_kernel)>;
    constexpr Kernel kernel = Target::device_kernel;
    for (std::size_t s = 0; s < g.size(); ++s) {
      const TargetGeometry& x = g[s];
      if constexpr (std::is_same_v<Kernel, CellPixelsKernel>)
        cuda::patch_targets<T>(ctx, images, out[s], PatchGeometry{x.batch, x.channels, x.height, x.width, x.cell},
                               kernel.normalize, kernel.eps, x.lead);
      else if constexpr (std::is_same_v<Kernel, HogKernel>)
        cuda::hog_targets<T>(ctx, images, out[s], HogGeometry{x.batch, x.channels, x.height, x.width, kernel.bins, x.cell, x.lead});
      else
        static_assert(std::is_same_v<Kernel, HogKernel>, "Cuda::compute_target: a device kernel this backend does not have");
    }
  }
  // result[0] (+)= loss, result[1] (+)= the weight sum (device doubles); weight: fp32 per row or null.
  template <cuda::DeviceScalar T>
  static void masked_mse_forward(Context& ctx, const T* pred, const T* target, const float* weight, std::int64_t rows,
                                 std::int64_t values, double* result, bool accumulate = false, std::int64_t pred_ld = 0) {
    cuda::masked_mse_forward_async<T>(ctx, pred, target, weight, rows, values, result, accumulate, pred_ld);
  }
  // dpred += g * scale * 2 w (pred - target) / (values * weight_sum); scale: null or a device float
  // (the fp16 loss scale).
  template <cuda::DeviceScalar T>
  static void masked_mse_backward(Context& ctx, double g, const T* pred, const T* target, const float* weight,
                                  double weight_sum, T* dpred, std::int64_t rows, std::int64_t values,
                                  std::int64_t pred_ld = 0, const float* scale = nullptr) {
    cuda::masked_mse_backward<T>(ctx, g, pred, target, weight, weight_sum, dpred, rows, values, pred_ld, scale);
  }

  // MiCL's symmetric t-vMF InfoNCE over z [2N, D], on the host (see the top of this file).
  using ContrastiveSaved = cpu::TvmfInfoNceSaved;
  template <cuda::DeviceScalar T>
  static void tvmf_info_nce_forward(Context& ctx, const T* z, std::int64_t N, std::int64_t D, double kappa, double tau,
                                    ContrastiveSaved& saved, double* loss) {
    const std::vector<float> host = to_host_floats(ctx, z, 2 * N * D);
    const double value = cpu::tvmf_info_nce_forward(host.data(), N, D, kappa, tau, saved);
    cuda::check(cudaMemcpyAsync(loss, &value, sizeof(double), cudaMemcpyHostToDevice, ctx.stream()),
                "cudaMemcpyAsync(contrastive loss)");  // pageable source: staged before the call returns
  }
  // dz += g * scale * dloss/dz (scale: null or a device float)
  template <cuda::DeviceScalar T>
  static void tvmf_info_nce_backward(Context& ctx, double g, const ContrastiveSaved& saved, double kappa, double tau, T* dz,
                                     std::int64_t N, std::int64_t D, const float* scale = nullptr) {
    Tensor<float> host(Shape{2 * N, D});
    cpu::tvmf_info_nce_backward(scale ? g * read_scalar(ctx, scale) : g, saved, kappa, tau, host.data(), N, D);
    Array<float> grad = cuda::to_device(ctx, host);
    if constexpr (std::is_same_v<T, float>) {
      cuda::add_in_place<float>(ctx, dz, grad.data(), grad.numel());
    } else {
      Array<T> rounded = ctx.empty<T>(host.shape());
      cuda::convert<T>(ctx, grad.data(), rounded.data(), grad.numel());
      cuda::add_in_place<T>(ctx, dz, rounded.data(), grad.numel());
    }
  }

 private:
  // n device values as host floats (waits for the stream).
  template <cuda::DeviceScalar T>
  static std::vector<float> to_host_floats(Context& ctx, const T* p, std::int64_t n) {
    std::vector<T> raw(static_cast<std::size_t>(n));
    cuda::check(cudaMemcpyAsync(raw.data(), p, sizeof(T) * raw.size(), cudaMemcpyDeviceToHost, ctx.stream()),
                "cudaMemcpyAsync(download)");
    ctx.synchronize();
    std::vector<float> out;
    out.reserve(raw.size());
    for (const T& x : raw) out.push_back(float(x));
    return out;
  }
};

static_assert(BackendFor<Cuda, Fp32> && BackendFor<Cuda, Bf16Mixed> && BackendFor<Cuda, Fp16Mixed>);
static_assert(!Cuda::supports<Fp64>);

}  // namespace vitfreeze
