#pragma once
// The CPU backend: the kernel set the models (model/) are written against, on host memory, for the
// Fp32 (training) and Fp64 (reference) precision policies. Every function forwards to a kernel of
// backend/cpu/ (forward and backward side by side there); the GEMM is oneDNN's where the build has
// it (gemm.hpp). Parameters are the host modules' own Parameter objects: the explicit model reads
// and writes the very tensors the checkpoints, weight files and optimiser see, no copies.
#include <cstring>
#include <span>
#include <string>

#include "vitfreeze/core/parameter.hpp"
#include "vitfreeze/backend/attention_shape.hpp"
#include "vitfreeze/backend/cpu/attention.hpp"
#include "vitfreeze/backend/cpu/context.hpp"
#include "vitfreeze/backend/cpu/contrastive.hpp"
#include "vitfreeze/backend/cpu/gelu.hpp"
#include "vitfreeze/backend/cpu/gemm.hpp"
#include "vitfreeze/backend/cpu/hog.hpp"
#include "vitfreeze/backend/cpu/layernorm.hpp"
#include "vitfreeze/backend/cpu/loss.hpp"
#include "vitfreeze/backend/cpu/patch_targets.hpp"
#include "vitfreeze/backend/cpu/patchify.hpp"
#include "vitfreeze/backend/cpu/reduce.hpp"
#include "vitfreeze/backend/cpu/spatial.hpp"
#include "vitfreeze/backend/cpu/tokens.hpp"
#include "vitfreeze/backend/gemm_epilogue.hpp"
#include "vitfreeze/backend/geometry.hpp"
#include "vitfreeze/core/precision.hpp"

namespace vitfreeze {

// A model's view of one host Parameter: values read in place, gradients accumulated in place
// (created on first use, as the tape does), freezing releases the host's gradient buffer.
template <PrecisionPolicy P>
  requires std::is_same_v<typename P::Activation, typename P::Master>
class CpuParameter {
 public:
  using T = typename P::Master;

  CpuParameter() = default;
  CpuParameter(cpu::CpuContext&, Parameter<T>& host) : host_(&host) {}

  const std::string& name() const { return host_->name; }
  const Shape& shape() const { return host_->value.shape(); }
  std::int64_t numel() const { return host_->value.numel(); }
  bool trainable() const { return host_->trainable; }
  const T* value() const { return host_->value.data(); }
  // Null when frozen: the backward then does no work for this tensor.
  T* grad() const { return host_->trainable ? host_->ensure_grad().data() : nullptr; }
  void freeze() { host_->freeze(); }
  Parameter<T>& host() const { return *host_; }

 private:
  Parameter<T>* host_ = nullptr;
};

struct Cpu {
  using Space = HostMemory;
  using Context = cpu::CpuContext;
  template <PrecisionPolicy P>
  using Parameter = CpuParameter<P>;
  template <class T>
  using Array = Tensor<T, HostMemory>;
  static constexpr const char* name = "cpu";

  template <PrecisionPolicy P>
  static constexpr bool supports = std::is_same_v<typename P::Activation, typename P::Master>;
  // The GELU the GEMM epilogue computes is the exact erf form: every policy may use it.
  template <PrecisionPolicy>
  static constexpr bool epilogue_gelu = true;

  // ---- memory ---------------------------------------------------------------------------------
  template <class T>
  static Array<T> empty(Context& ctx, const Shape& shape) {
    return ctx.array<T>(shape);
  }
  template <class T>
  static Array<T> zeros(Context& ctx, const Shape& shape) {
    Array<T> a = ctx.array<T>(shape);
    a.zero();
    return a;
  }
  template <class T>
  static void zero(Context&, T* p, std::int64_t n) {
    std::memset(static_cast<void*>(p), 0, sizeof(T) * std::size_t(n));
  }
  // Host data as this backend's array: the CPU reads it in place.
  template <class T>
  static Array<T> upload(Context&, const Tensor<T>& host) {
    return host;
  }
  template <class T>
  static void download(Context&, const Array<T>& from, const Tensor<T>& to) {
    if (from.data() != to.data()) to.copy_from(from);
  }
  template <class T>
  static double read_scalar(Context&, const T* p) {
    return double(*p);
  }

  // ---- dense math -----------------------------------------------------------------------------
  template <CpuScalar T>
  static void gemm(Context&, bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, double alpha,
                   const T* A, std::int64_t lda, const T* B, std::int64_t ldb, double beta, T* C, std::int64_t ldc,
                   const GemmEpilogue<T>& epilogue = {}) {
    cpu::gemm<T>(trans_a, trans_b, M, N, K, T(alpha), A, lda, B, ldb, T(beta), C, ldc, epilogue);
  }
  template <CpuScalar T>
  static void add_in_place(Context&, T* y, const T* x, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (std::int64_t i = 0; i < n; ++i) y[i] += x[i];
  }
  // y[i] += table[i % period]
  template <CpuScalar T>
  static void add_broadcast_in_place(Context&, T* y, const T* table, std::int64_t period, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (std::int64_t r = 0; r < n / period; ++r)
      for (std::int64_t i = 0; i < period; ++i) y[r * period + i] += table[i];
  }
  template <CpuScalar T>
  static void gelu_forward(Context&, const T* x, T* y, std::int64_t n) {
    cpu::gelu_forward(x, y, n);
  }
  // dx += dy * GELU'(x)
  template <CpuScalar T>
  static void gelu_backward(Context&, const T* dy, const T* x, T* dx, std::int64_t n) {
    cpu::gelu_backward(dy, x, dx, n);
  }
  // out[c] += sum_r x[r, c]
  template <CpuScalar T>
  static void add_column_sums(Context&, const T* x, std::int64_t rows, std::int64_t cols, T* out) {
    cpu::add_column_sums(x, rows, cols, out);
  }

  // ---- normalisation --------------------------------------------------------------------------
  template <CpuScalar T>
  static void layernorm_forward(Context&, const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd,
                                std::int64_t rows, std::int64_t dim, double eps) {
    cpu::layernorm_forward(x, gamma, beta, y, mean, rstd, rows, dim, eps);
  }
  template <CpuScalar T>
  static void residual_layernorm_forward(Context&, const T* x, const T* residual, T* sum, const T* gamma, const T* beta,
                                         T* y, T* mean, T* rstd, std::int64_t rows, std::int64_t dim, double eps) {
    cpu::residual_layernorm_forward(x, residual, sum, gamma, beta, y, mean, rstd, rows, dim, eps);
  }
  // Accumulates dx, dgamma, dbeta (each may be null).
  template <CpuScalar T>
  static void layernorm_backward(Context&, const T* dy, const T* x, const T* gamma, const T* mean, const T* rstd, T* dx,
                                 T* dgamma, T* dbeta, std::int64_t rows, std::int64_t dim) {
    cpu::layernorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta, rows, dim);
  }

  // ---- attention over the fused qkv buffer [B, T, 3D] -> [B, T, D] ------------------------------
  template <PrecisionPolicy P>
  struct AttentionSaved {
    Array<typename P::Activation> probs;  // [B, H, T, T]
  };
  // rpe: LoMaR's relative key bias (null: none); its dtable is read by the backward.
  template <PrecisionPolicy P, CpuScalar T>
  static void attention_forward(Context& ctx, const T* qkv, T* out, const AttentionShape& s, AttentionSaved<P>* saved,
                                const RelativeKeyBias<T>* rpe = nullptr) {
    Array<T> probs = ctx.array<T>(Shape{s.batch, s.heads, s.tokens, s.tokens});
    cpu::attention_forward(qkv, out, probs.data(), s, rpe);
    if (saved) saved->probs = probs;
  }
  // dqkv is overwritten (rpe->dtable, when set, accumulates). out: the forward's output (unused here;
  // a fused GPU kernel reads it).
  template <PrecisionPolicy P, CpuScalar T>
  static void attention_backward(Context& ctx, const T* dout, const T* qkv, const T*, const AttentionSaved<P>& saved,
                                 T* dqkv, const AttentionShape& s, const RelativeKeyBias<T>* rpe = nullptr) {
    std::memset(static_cast<void*>(dqkv), 0, sizeof(T) * std::size_t(s.batch * s.tokens * 3 * s.dim()));
    Array<T> scratch = ctx.array<T>(Shape{s.batch, s.heads, s.tokens, s.tokens});
    cpu::attention_backward(dout, qkv, saved.probs.data(), dqkv, scratch.data(), s, rpe);
  }
  // The pre-softmax logits [B, H, T, T] = q k^T / sqrt(head_dim) (MAE-lite's distillation), and
  // their backward into the q and k parts of dqkv (accumulated).
  template <CpuScalar T>
  static void attention_logits_forward(Context&, const T* qkv, T* logits, const AttentionShape& s) {
    cpu::attention_logits_forward(qkv, logits, s);
  }
  template <CpuScalar T>
  static void attention_logits_backward(Context&, const T* dlogits, const T* qkv, T* dqkv, const AttentionShape& s) {
    cpu::attention_logits_backward(dlogits, qkv, dqkv, s);
  }

  // ---- tokens ---------------------------------------------------------------------------------
  template <CpuScalar T>
  static void patchify(Context&, const T* images, T* patches, const PatchGeometry& g, PatchLayout layout) {
    cpu::patchify(images, patches, g, layout);
  }
  template <CpuScalar T>
  static void gather_tokens_forward(Context&, const T* x, const std::int32_t* ids, T* out, std::int64_t B,
                                    std::int64_t L, std::int64_t K, std::int64_t D) {
    cpu::gather_tokens_forward(x, ids, out, B, L, K, D);
  }
  // dx[b, ids[b, k], :] += dout[b, k, :]
  template <CpuScalar T>
  static void gather_tokens_backward(Context&, const T* dout, const std::int32_t* ids, T* dx, std::int64_t B,
                                     std::int64_t L, std::int64_t K, std::int64_t D) {
    cpu::gather_tokens_backward(dout, ids, dx, B, L, K, D);
  }
  template <CpuScalar T>
  static void assemble_encoder_tokens(Context&, const T* patch_tokens, const T* cls, const T* pos,
                                      const std::int32_t* ids_keep, T* x, std::int64_t B, std::int64_t K, std::int64_t D) {
    cpu::assemble_encoder_tokens(patch_tokens, cls, pos, ids_keep, x, B, K, D);
  }
  template <CpuScalar T>
  static void split_encoder_token_grads(Context&, const T* dx, T* dpatch_tokens, T* dcls_rows, std::int64_t B,
                                        std::int64_t K, std::int64_t D) {
    cpu::split_encoder_token_grads(dx, dpatch_tokens, dcls_rows, B, K, D);
  }
  template <CpuScalar T>
  static void unshuffle_forward(Context&, const T* x, const T* mask_token, const std::int32_t* ids_restore, T* out,
                                std::int64_t B, std::int64_t K, std::int64_t L, std::int64_t D) {
    cpu::unshuffle_forward(x, mask_token, ids_restore, out, B, K, L, D);
  }
  // Accumulates into dx and dmask_token (null: skipped).
  template <CpuScalar T>
  static void unshuffle_backward(Context&, const T* dout, const std::int32_t* ids_restore, T* dx, T* dmask_token,
                                 std::int64_t B, std::int64_t K, std::int64_t L, std::int64_t D) {
    cpu::unshuffle_backward(dout, ids_restore, dx, dmask_token, B, K, L, D);
  }

  // ---- channels-last maps (LocalMIM's scale heads) ----------------------------------------------
  template <CpuScalar T>
  static void pixel_shuffle_2x2_forward(Context&, const T* x, const T* bias, T* y, const MapGeometry& g, std::int64_t C) {
    cpu::pixel_shuffle_2x2_forward(x, bias, y, g, C);
  }
  template <CpuScalar T>
  static void pixel_shuffle_2x2_backward(Context&, const T* dy, T* dx, const MapGeometry& g, std::int64_t C) {
    cpu::pixel_shuffle_2x2_backward(dy, dx, g, C);
  }
  template <CpuScalar T>
  static void fold_kernel_position_sums(Context&, const T* column_sums, T* dbias, std::int64_t C) {
    cpu::fold_kernel_position_sums(column_sums, dbias, C);
  }
  template <CpuScalar T>
  static void avg_pool_2x2_forward(Context&, const T* x, T* y, const MapGeometry& g, std::int64_t C) {
    cpu::avg_pool_2x2_forward(x, y, g, C);
  }
  template <CpuScalar T>
  static void avg_pool_2x2_backward(Context&, const T* dy, T* dx, const MapGeometry& g, std::int64_t C) {
    cpu::avg_pool_2x2_backward(dy, dx, g, C);
  }

  // ---- targets and losses -----------------------------------------------------------------------
  template <CpuScalar T>
  static void patch_targets(Context&, const T* images, T* target, const PatchGeometry& g, bool normalize,
                            double eps) {
    cpu::patch_targets(images, target, g, normalize, eps);
  }
  template <CpuScalar T>
  static void hog_targets(Context&, const T* images, std::span<const HogGeometry> g, std::span<T* const> targets) {
    cpu::hog_targets(images, g, targets);
  }
  // result[0] (+)= loss, result[1] (+)= the weight sum (result: this backend's memory).
  template <CpuScalar T, CpuScalar W>
  static void masked_mse_forward(Context&, const T* pred, const T* target, const W* weight, std::int64_t rows,
                                 std::int64_t values, double* result, bool accumulate = false, std::int64_t pred_ld = 0) {
    double weight_sum = 0;
    const double loss = cpu::masked_mse_forward(pred, target, weight, rows, values, &weight_sum, pred_ld);
    result[0] = accumulate ? result[0] + loss : loss;
    result[1] = accumulate ? result[1] + weight_sum : weight_sum;
  }
  // MiCL's symmetric t-vMF InfoNCE over z [2N, D] (rows 2i, 2i + 1: the views of image i), in double.
  using ContrastiveSaved = cpu::TvmfInfoNceSaved;
  template <CpuScalar T>
  static void tvmf_info_nce_forward(Context&, const T* z, std::int64_t N, std::int64_t D, double kappa, double tau,
                                    ContrastiveSaved& saved, double* loss) {
    loss[0] = cpu::tvmf_info_nce_forward(z, N, D, kappa, tau, saved);
  }
  // dz += g * scale * dloss/dz (scale: null or the loss scale in this backend's memory)
  template <CpuScalar T>
  static void tvmf_info_nce_backward(Context&, double g, const ContrastiveSaved& saved, double kappa, double tau, T* dz,
                                     std::int64_t N, std::int64_t D, const float* scale = nullptr) {
    cpu::tvmf_info_nce_backward(scale ? g * double(*scale) : g, saved, kappa, tau, dz, N, D);
  }

  // dpred += g * scale * 2 w (pred - target) / (values * weight_sum); scale: null or a scalar in
  // this backend's memory (the fp16 loss scale on the GPU).
  template <CpuScalar T, CpuScalar W>
  static void masked_mse_backward(Context&, double g, const T* pred, const T* target, const W* weight,
                                  double weight_sum, T* dpred, std::int64_t rows, std::int64_t values,
                                  std::int64_t pred_ld = 0, const float* scale = nullptr) {
    cpu::masked_mse_backward(scale ? g * double(*scale) : g, pred, target, weight, weight_sum, dpred, rows, values, pred_ld);
  }
};

}  // namespace vitfreeze
