#pragma once
// Fused scaled-dot-product attention (no mask, no dropout) in bf16 or fp16 through the cuDNN backend (graph)
// API, opt-in: include this header and link cuDNN (libcudnn.so.9). Not part of <vitfreeze/cuda.hpp>.
//
// Layout, as cpu::attention_forward / cuda::attention_forward: q, k and v are read in place from the
// fused projection qkv[b, t, s*D + h*hd + d] (s in {q, k, v}) through strides, so no transpose or copy
// is made; out[b, t, h*hd + d]; dq, dk and dv are written the same way into a fused dqkv buffer.
// stats[b, h, t] (fp32) is the softmax log-sum-exp of the scaled scores of row t, written by the
// training forward and read by the backward instead of the probabilities.
//
// The graphs are the ones cudnn-frontend's sdpa / sdpa_backward nodes lower to (cuDNN's runtime
// fusion engine recognises these patterns and runs one flash-attention kernel):
//   forward:  S = Q Kᵀ; S *= scale; M = rowmax S; E = exp(S - M); Z = rowsum E;
//             stats = M + log Z; P = E / Z (bf16 / fp16: the io type); O = P V
//   backward: Δ = rowsum(dO ∘ O) (fp32, in workspace); S = Q Kᵀ · scale; P = exp(S - stats);
//             dV = Pᵀ dO; dS = P ∘ (dO Vᵀ - Δ) · scale; dK = dSᵀ Q; dQacc = dS K (fp32, workspace);
//             dQ = identity(dQacc)
// Graphs and execution plans are built once per (B, H, T, hd, mode, io type) and cached; building is slow
// (tens to hundreds of milliseconds), executing is not.
//
// Status: compiled, never run on a GPU (see docs/cuda.md).
#include <cudnn.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "vitfreeze/backend/attention_shape.hpp"
#include "vitfreeze/backend/cuda/allocator.hpp"
#include "vitfreeze/backend/cuda/check.hpp"
#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/core/dtype.hpp"
#include "vitfreeze/core/error.hpp"

namespace vitfreeze::cuda {

inline std::string cudnn_status_name(cudnnStatus_t status) { return cudnnGetErrorString(status); }

// Throws CudaError naming the call, the status and cuDNN's own last message (which usually says
// which attribute or engine constraint failed).
inline void check(cudnnStatus_t status, const char* call) {
  if (status == CUDNN_STATUS_SUCCESS) return;
  char last[1024] = {0};
  cudnnGetLastErrorString(last, sizeof(last));
  std::string message = std::string(call) + " failed: " + cudnn_status_name(status);
  if (last[0] != '\0') message += std::string(" (") + last + ")";
  throw CudaError(message);
}

namespace detail {

// Two attributes are marked deprecated in cuDNN 9.x headers (graphs may be built without a handle and
// take the device from a device-property descriptor instead) but are still honoured. Setting them
// keeps the plan bound to the handle's device; naming them by value avoids the deprecation warning.
inline constexpr auto kOperationGraphHandleAttribute = static_cast<cudnnBackendAttributeName_t>(800);
inline constexpr auto kExecutionPlanHandleAttribute = static_cast<cudnnBackendAttributeName_t>(400);

// One backend descriptor, destroyed with its owner.
class CudnnDescriptor {
 public:
  CudnnDescriptor() = default;
  explicit CudnnDescriptor(cudnnBackendDescriptorType_t type) {
    check(cudnnBackendCreateDescriptor(type, &descriptor_), "cudnnBackendCreateDescriptor");
  }
  CudnnDescriptor(const CudnnDescriptor&) = delete;
  CudnnDescriptor& operator=(const CudnnDescriptor&) = delete;
  CudnnDescriptor(CudnnDescriptor&& other) noexcept : descriptor_(std::exchange(other.descriptor_, nullptr)) {}
  CudnnDescriptor& operator=(CudnnDescriptor&& other) noexcept {
    if (this != &other) {
      reset();
      descriptor_ = std::exchange(other.descriptor_, nullptr);
    }
    return *this;
  }
  ~CudnnDescriptor() { reset(); }

  cudnnBackendDescriptor_t get() const { return descriptor_; }

  void set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, std::int64_t count,
           const void* values, const char* what) {
    check(cudnnBackendSetAttribute(descriptor_, name, type, count, values), what);
  }
  void set_descriptor(cudnnBackendAttributeName_t name, cudnnBackendDescriptor_t value, const char* what) {
    set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &value, what);
  }
  void set_int64(cudnnBackendAttributeName_t name, std::int64_t value, const char* what) {
    set(name, CUDNN_TYPE_INT64, 1, &value, what);
  }
  void set_data_type(cudnnBackendAttributeName_t name, cudnnDataType_t value, const char* what) {
    set(name, CUDNN_TYPE_DATA_TYPE, 1, &value, what);
  }
  void finalize(const char* what) { check(cudnnBackendFinalize(descriptor_), what); }

 private:
  void reset() noexcept {
    if (descriptor_) (void)cudnnBackendDestroyDescriptor(descriptor_);
    descriptor_ = nullptr;
  }
  cudnnBackendDescriptor_t descriptor_ = nullptr;
};

using Dims = std::vector<std::int64_t>;

// Descriptors a finalized graph and plan refer to; a deque, so references stay valid as it grows.
using CudnnDescriptors = std::deque<CudnnDescriptor>;

// Builds one operation graph: owns every tensor and operation descriptor it creates (the finalized
// graph and plan refer to them), and keeps the operations in creation (topological) order.
class SdpaGraphBuilder {
 public:
  explicit SdpaGraphBuilder(CudnnDescriptors& owned) : owned_(owned) {}

  // A tensor the caller binds in the variant pack (or a scalar passed by value from the host).
  cudnnBackendDescriptor_t bound_tensor(std::int64_t uid, cudnnDataType_t type, const Dims& dims, const Dims& strides,
                                        bool by_value = false) {
    return make_tensor(uid, type, dims, strides, /*is_virtual=*/false, by_value);
  }
  // An intermediate the fused kernel never materialises. fp32 unless told (as cudnn-frontend's
  // intermediate data type).
  cudnnBackendDescriptor_t virtual_tensor(const Dims& dims, const Dims& strides,
                                          cudnnDataType_t type = CUDNN_DATA_FLOAT) {
    return make_tensor(next_virtual_uid_++, type, dims, strides, /*is_virtual=*/true, false);
  }

  void matmul(cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t c) {
    CudnnDescriptor& desc = own(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    desc.set_data_type(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_DATA_FLOAT, "matmul compute type");
    desc.finalize("matmul descriptor finalize");
    CudnnDescriptor& op = own(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    op.set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_ADESC, a, "matmul A");
    op.set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_BDESC, b, "matmul B");
    op.set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_CDESC, c, "matmul C");
    op.set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_DESC, desc.get(), "matmul descriptor");
    op.finalize("matmul operation finalize");
    operations_.push_back(op.get());
  }

  // y = mode(x) or y = mode(x, b); fp32 math.
  void pointwise(cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b,
                 cudnnBackendDescriptor_t y) {
    CudnnDescriptor& desc = own(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    desc.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode, "pointwise mode");
    desc.set_data_type(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_DATA_FLOAT, "pointwise math precision");
    desc.finalize("pointwise descriptor finalize");
    CudnnDescriptor& op = own(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, desc.get(), "pointwise descriptor");
    op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x, "pointwise X");
    if (b) op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b, "pointwise B");
    op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y, "pointwise Y");
    op.finalize("pointwise operation finalize");
    operations_.push_back(op.get());
  }

  // y[..., 1] = reduce over the last dimension of x; fp32 math.
  void reduction(cudnnReduceTensorOp_t reduce, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    CudnnDescriptor& desc = own(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    desc.set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &reduce, "reduction operator");
    desc.set_data_type(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_DATA_FLOAT, "reduction compute type");
    desc.finalize("reduction descriptor finalize");
    CudnnDescriptor& op = own(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    op.set_descriptor(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x, "reduction X");
    op.set_descriptor(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y, "reduction Y");
    op.set_descriptor(CUDNN_ATTR_OPERATION_REDUCTION_DESC, desc.get(), "reduction descriptor");
    op.finalize("reduction operation finalize");
    operations_.push_back(op.get());
  }

  // Same elements seen with other dims/strides (used for transposes: no data moves).
  void reshape(cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    CudnnDescriptor& op = own(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
    op.set_descriptor(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x, "reshape X");
    op.set_descriptor(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y, "reshape Y");
    op.finalize("reshape operation finalize");
    operations_.push_back(op.get());
  }

  // The finalized operation graph, bound to `handle` (none: only the graph's own validation runs).
  cudnnBackendDescriptor_t finish(cudnnHandle_t handle) {
    CudnnDescriptor& graph = own(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    if (handle) graph.set(kOperationGraphHandleAttribute, CUDNN_TYPE_HANDLE, 1, &handle, "operation graph handle");
    graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
              static_cast<std::int64_t>(operations_.size()), operations_.data(), "operation graph operations");
    graph.finalize("operation graph finalize");
    return graph.get();
  }

 private:
  CudnnDescriptor& own(cudnnBackendDescriptorType_t type) {
    owned_.emplace_back(type);
    return owned_.back();
  }
  cudnnBackendDescriptor_t make_tensor(std::int64_t uid, cudnnDataType_t type, const Dims& dims, const Dims& strides,
                                       bool is_virtual, bool by_value) {
    CudnnDescriptor& t = own(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    const std::int64_t alignment = 16;  // every bound pointer is checked against this at execution
    t.set_data_type(CUDNN_ATTR_TENSOR_DATA_TYPE, type, "tensor data type");
    t.set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, static_cast<std::int64_t>(dims.size()), dims.data(),
          "tensor dimensions");
    t.set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, static_cast<std::int64_t>(strides.size()), strides.data(),
          "tensor strides");
    t.set_int64(CUDNN_ATTR_TENSOR_UNIQUE_ID, uid, "tensor unique id");
    t.set_int64(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, alignment, "tensor byte alignment");
    t.set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual, "tensor is virtual");
    if (by_value) t.set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value, "tensor is by value");
    t.finalize("tensor finalize");
    return t.get();
  }

  CudnnDescriptors& owned_;
  std::vector<cudnnBackendDescriptor_t> operations_;
  std::int64_t next_virtual_uid_ = 1000;
};

enum class SdpaMode { inference, training, backward };

// Unique ids of the tensors bound in variant packs.
namespace sdpa_uid {
inline constexpr std::int64_t q = 1, k = 2, v = 3, o = 4, stats = 5, d_o = 6, d_q = 7, d_k = 8, d_v = 9,
                              scale = 10, one = 11, row_dot = 12, dq_accumulator = 13;
}

// The cuDNN type of the tensors an SDPA graph reads and writes (fp32 is not offered by cuDNN).
template <class E>
  requires(std::is_same_v<E, bf16> || std::is_same_v<E, f16>)
constexpr cudnnDataType_t sdpa_io_type() {
  return std::is_same_v<E, bf16> ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_HALF;
}

// Adds the operations of one SDPA graph (see the top of this file) to g, its q, k, v, o (and
// gradients) of type io. Needs no handle or GPU.
inline void describe_sdpa_graph(SdpaGraphBuilder& g, const AttentionShape& s, SdpaMode mode,
                                cudnnDataType_t io = CUDNN_DATA_BFLOAT16) {
  const std::int64_t B = s.batch, H = s.heads, T = s.tokens, hd = s.head_dim, D = s.dim();
  // q, k, v in place in the fused [B, T, 3D] buffer: dims [B, H, T, hd], strides {T*3D, hd, 3D, 1}.
  const Dims head_major = {B, H, T, hd}, qkv_strides = {T * 3 * D, hd, 3 * D, 1};
  // Kᵀ and Vᵀ are the same memory with the last two dims swapped (what the backend's matmul wants).
  const Dims transposed = {B, H, hd, T}, qkv_transposed_strides = {T * 3 * D, hd, 1, 3 * D};
  const Dims out_strides = {T * D, hd, D, 1};
  const Dims scores = {B, H, T, T}, score_strides = {H * T * T, T * T, T, 1};
  const Dims scores_transposed_strides = {H * T * T, T * T, 1, T};
  const Dims per_row = {B, H, T, 1}, per_row_strides = {H * T, T, 1, 1};
  const Dims scalar = {1, 1, 1, 1};

  auto q = g.bound_tensor(sdpa_uid::q, io, head_major, qkv_strides);
  auto k_t = g.bound_tensor(sdpa_uid::k, io, transposed, qkv_transposed_strides);
  auto scale = g.bound_tensor(sdpa_uid::scale, CUDNN_DATA_FLOAT, scalar, scalar, /*by_value=*/true);

  if (mode != SdpaMode::backward) {
    auto v = g.bound_tensor(sdpa_uid::v, io, head_major, qkv_strides);
    auto o = g.bound_tensor(sdpa_uid::o, io, head_major, out_strides);
    auto s_raw = g.virtual_tensor(scores, score_strides);
    g.matmul(q, k_t, s_raw);
    auto s_scaled = g.virtual_tensor(scores, score_strides);
    g.pointwise(CUDNN_POINTWISE_MUL, s_raw, scale, s_scaled);
    auto row_max = g.virtual_tensor(per_row, per_row_strides);
    g.reduction(CUDNN_REDUCE_TENSOR_MAX, s_scaled, row_max);
    auto shifted = g.virtual_tensor(scores, score_strides);
    g.pointwise(CUDNN_POINTWISE_SUB, s_scaled, row_max, shifted);
    auto exp_scores = g.virtual_tensor(scores, score_strides);
    g.pointwise(CUDNN_POINTWISE_EXP, shifted, nullptr, exp_scores);
    auto row_sum = g.virtual_tensor(per_row, per_row_strides);
    g.reduction(CUDNN_REDUCE_TENSOR_ADD, exp_scores, row_sum);
    // The stats branch is part of the recognised pattern even in inference (then it stays virtual).
    auto log_sum = g.virtual_tensor(per_row, per_row_strides);
    g.pointwise(CUDNN_POINTWISE_LOG, row_sum, nullptr, log_sum);
    auto stats = mode == SdpaMode::training
                     ? g.bound_tensor(sdpa_uid::stats, CUDNN_DATA_FLOAT, per_row, per_row_strides)
                     : g.virtual_tensor(per_row, per_row_strides);
    g.pointwise(CUDNN_POINTWISE_ADD, row_max, log_sum, stats);
    auto probs = g.virtual_tensor(scores, score_strides, io);  // P V runs in the io type
    g.pointwise(CUDNN_POINTWISE_DIV, exp_scores, row_sum, probs);
    g.matmul(probs, v, o);
  } else {
    auto v_t = g.bound_tensor(sdpa_uid::v, io, transposed, qkv_transposed_strides);
    auto o = g.bound_tensor(sdpa_uid::o, io, head_major, out_strides);
    auto d_o = g.bound_tensor(sdpa_uid::d_o, io, head_major, out_strides);
    auto stats = g.bound_tensor(sdpa_uid::stats, CUDNN_DATA_FLOAT, per_row, per_row_strides);
    auto d_q = g.bound_tensor(sdpa_uid::d_q, io, head_major, qkv_strides);
    auto d_k = g.bound_tensor(sdpa_uid::d_k, io, head_major, qkv_strides);
    auto d_v = g.bound_tensor(sdpa_uid::d_v, io, head_major, qkv_strides);
    auto one = g.bound_tensor(sdpa_uid::one, CUDNN_DATA_FLOAT, scalar, scalar, /*by_value=*/true);
    auto row_dot = g.bound_tensor(sdpa_uid::row_dot, CUDNN_DATA_FLOAT, per_row, per_row_strides);
    const Dims accumulator_strides = {H * T * hd, T * hd, hd, 1};
    auto dq_accumulator = g.bound_tensor(sdpa_uid::dq_accumulator, CUDNN_DATA_FLOAT, head_major, accumulator_strides);

    // Δ[row] = Σ_d dO ∘ O: the softmax-backward row term, reduced before the fused kernel.
    // (cudnn-frontend gives this virtual product these strides; kept identical to match its pattern.)
    auto do_times_o = g.virtual_tensor(head_major, {H * T * hd, T * hd, H * hd, 1});
    g.pointwise(CUDNN_POINTWISE_MUL, d_o, o, do_times_o);
    auto row_dot_raw = g.virtual_tensor(per_row, per_row_strides);
    g.reduction(CUDNN_REDUCE_TENSOR_ADD, do_times_o, row_dot_raw);
    g.pointwise(CUDNN_POINTWISE_MUL, row_dot_raw, one, row_dot);  // the dropout-scale slot; 1 here

    // P = exp(scale Q Kᵀ - stats), recomputed.
    auto s_raw = g.virtual_tensor(scores, score_strides);
    g.matmul(q, k_t, s_raw);
    auto s_scaled = g.virtual_tensor(scores, score_strides);
    g.pointwise(CUDNN_POINTWISE_MUL, s_raw, scale, s_scaled);
    auto shifted = g.virtual_tensor(scores, score_strides);
    g.pointwise(CUDNN_POINTWISE_SUB, s_scaled, stats, shifted);
    auto probs = g.virtual_tensor(scores, score_strides);
    g.pointwise(CUDNN_POINTWISE_EXP, shifted, nullptr, probs);

    // dV = Pᵀ dO
    auto probs_t = g.virtual_tensor(scores, scores_transposed_strides, io);
    g.reshape(probs, probs_t);
    g.matmul(probs_t, d_o, d_v);

    // dS = P ∘ (dO Vᵀ - Δ) · scale
    auto dp = g.virtual_tensor(scores, score_strides);
    g.matmul(d_o, v_t, dp);
    auto dp_masked = g.virtual_tensor(scores, score_strides);
    g.pointwise(CUDNN_POINTWISE_MUL, dp, one, dp_masked);  // the dropout-mask slot; 1 here
    auto dp_centered = g.virtual_tensor(scores, score_strides);
    g.pointwise(CUDNN_POINTWISE_SUB, dp_masked, row_dot, dp_centered);
    auto ds_unscaled = g.virtual_tensor(scores, score_strides);
    g.pointwise(CUDNN_POINTWISE_MUL, dp_centered, probs, ds_unscaled);
    auto ds = g.virtual_tensor(scores, score_strides);
    g.pointwise(CUDNN_POINTWISE_MUL, ds_unscaled, scale, ds);

    // dK = dSᵀ Q
    auto ds_t = g.virtual_tensor(scores, scores_transposed_strides, io);
    g.reshape(ds, ds_t);
    g.matmul(ds_t, q, d_k);

    // dQ = dS K, accumulated in fp32 by the kernel, then converted. K is Kᵀ seen back through a
    // reshape; cudnn-frontend leaves that virtual tensor at the intermediate type (fp32), as here.
    auto k = g.virtual_tensor(head_major, qkv_strides);
    g.reshape(k_t, k);
    g.matmul(ds, k, dq_accumulator);
    g.pointwise(CUDNN_POINTWISE_IDENTITY, dq_accumulator, nullptr, d_q);
  }
}

}  // namespace detail

class CudnnSdpa {
 public:
  // The handle runs on ctx.stream(); workspace comes from ctx.allocator(). ctx must outlive this.
  explicit CudnnSdpa(CudaContext& ctx) : ctx_(ctx) {
    ctx.make_current();
    cudnnHandle_t h = nullptr;
    check(cudnnCreate(&h), "cudnnCreate");
    handle_.reset(h);
    check(cudnnSetStream(h, ctx.stream()), "cudnnSetStream");
  }
  CudnnSdpa(const CudnnSdpa&) = delete;
  CudnnSdpa& operator=(const CudnnSdpa&) = delete;
  ~CudnnSdpa() {
    // Queued executions may still read the workspace and the plans; let them finish first.
    (void)cudaStreamSynchronize(ctx_.stream());
    plans_.clear();  // descriptors before the handle
  }

  // Builds (once per shape) the training forward, inference forward and backward plans. False, with
  // the reason in *why, when a requirement fails or cuDNN has no engine for one of them; the caller
  // then uses its own kernels. The answer is cached, so calling this per step is cheap.
  bool supports(const AttentionShape& s, std::string* why = nullptr, cudnnDataType_t io = CUDNN_DATA_BFLOAT16) {
    for (Mode mode : {Mode::training, Mode::inference, Mode::backward}) {
      const Plan& plan = plan_for(s, mode, io);
      if (!plan.ok()) {
        if (why) *why = std::string(mode_name(mode)) + ": " + plan.failure;
        return false;
      }
    }
    if (why) why->clear();
    return true;
  }

  // out = softmax(q kᵀ / sqrt(hd)) v per head; stats[b, h, t] = log-sum-exp of row t of the scaled
  // scores when stats is non-null (training); inference mode when it is null.
  template <class E>
  void forward(const E* qkv, E* out, float* stats, const AttentionShape& s) {
    const Plan& plan = usable_plan(s, stats ? Mode::training : Mode::inference, detail::sdpa_io_type<E>());
    const std::int64_t D = s.dim();
    std::vector<std::pair<std::int64_t, const void*>> bindings = {
        {detail::sdpa_uid::q, qkv},
        {detail::sdpa_uid::k, qkv + D},
        {detail::sdpa_uid::v, qkv + 2 * D},
        {detail::sdpa_uid::o, out},
        {detail::sdpa_uid::scale, &plan.scale}};
    if (stats) bindings.emplace_back(detail::sdpa_uid::stats, stats);
    execute(plan, bindings);
  }

  // dqkv is overwritten: dq, dk and dv go to the q, k and v columns of the fused gradient.
  template <class E>
  void backward(const E* qkv, const E* out, const E* dout, const float* stats, E* dqkv, const AttentionShape& s) {
    const Plan& plan = usable_plan(s, Mode::backward, detail::sdpa_io_type<E>());
    const std::int64_t D = s.dim();
    void* workspace = workspace_for(plan);
    auto* base = static_cast<char*>(workspace);
    void* row_dot = base + plan.row_dot_offset;
    void* dq_accumulator = base + plan.dq_accumulator_offset;
    // Before cuDNN 9.6 the fp32 dQ accumulator had to be zeroed by the caller (cudnn-frontend does so).
    if (cudnnGetVersion() < 90600)
      check(cudaMemsetAsync(dq_accumulator, 0, plan.dq_accumulator_bytes, ctx_.stream()), "cudaMemsetAsync(dQ acc)");
    execute(plan, {{detail::sdpa_uid::q, qkv},
                   {detail::sdpa_uid::k, qkv + D},
                   {detail::sdpa_uid::v, qkv + 2 * D},
                   {detail::sdpa_uid::o, out},
                   {detail::sdpa_uid::d_o, dout},
                   {detail::sdpa_uid::stats, stats},
                   {detail::sdpa_uid::d_q, dqkv},
                   {detail::sdpa_uid::d_k, dqkv + D},
                   {detail::sdpa_uid::d_v, dqkv + 2 * D},
                   {detail::sdpa_uid::scale, &plan.scale},
                   {detail::sdpa_uid::one, &plan.one},
                   {detail::sdpa_uid::row_dot, row_dot},
                   {detail::sdpa_uid::dq_accumulator, dq_accumulator}},
            workspace);
  }

  std::size_t cached_plans() const { return plans_.size(); }

 private:
  using Mode = detail::SdpaMode;
  static const char* mode_name(Mode m) {
    return m == Mode::inference ? "forward (inference)" : m == Mode::training ? "forward (training)" : "backward";
  }

  struct Plan {
    std::string failure;  // empty when usable
    detail::CudnnDescriptors descriptors;    // graph pieces the plan refers to
    detail::CudnnDescriptor execution_plan;  // declared after them: destroyed first
    std::int64_t cudnn_workspace_bytes = 0;
    // Backward only: fp32 buffers the graph reads and writes, placed after cuDNN's own workspace.
    std::size_t row_dot_offset = 0, dq_accumulator_offset = 0, dq_accumulator_bytes = 0;
    std::size_t total_workspace_bytes = 0;
    float scale = 1.0f, one = 1.0f;  // by-value scalars: their host addresses go into the variant pack
    bool ok() const { return failure.empty(); }
  };
  using Key = std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t, Mode, int>;  // ..., io type

  struct HandleDeleter {
    void operator()(cudnnHandle_t h) const noexcept { (void)cudnnDestroy(h); }
  };

  static std::size_t round_up(std::size_t bytes) { return (bytes + 255) / 256 * 256; }

  const Plan& plan_for(const AttentionShape& s, Mode mode, cudnnDataType_t io) {
    const Key key{s.batch, s.heads, s.tokens, s.head_dim, mode, int(io)};
    auto found = plans_.find(key);
    if (found != plans_.end()) return *found->second;
    auto plan = std::make_unique<Plan>();
    plan->failure = unsupported_reason(s, mode);
    if (plan->ok()) {
      try {
        build(*plan, s, mode, io);
      } catch (const std::exception& e) {
        plan->failure = e.what();
        plan->execution_plan = {};
        plan->descriptors.clear();
      }
    }
    return *plans_.emplace(key, std::move(plan)).first->second;
  }

  const Plan& usable_plan(const AttentionShape& s, Mode mode, cudnnDataType_t io) {
    const Plan& plan = plan_for(s, mode, io);
    if (!plan.ok())
      throw CudaError(std::string("cuDNN SDPA ") + mode_name(mode) + " unavailable for B=" + std::to_string(s.batch) +
                      " H=" + std::to_string(s.heads) + " T=" + std::to_string(s.tokens) +
                      " hd=" + std::to_string(s.head_dim) + ": " + plan.failure + " (check supports() first)");
    return plan;
  }

  // Requirements known before asking cuDNN (cudnn-frontend checks the same).
  std::string unsupported_reason(const AttentionShape& s, Mode mode) const {
    const std::size_t version = cudnnGetVersion();
    const cudaDeviceProp& p = ctx_.properties();
    if (version < 90000) return "needs cuDNN 9.0 or newer, found " + std::to_string(version);
    if (version >= 91000 && version < 91002) return "cuDNN 9.10.0 and 9.10.1 have known SDPA bugs";
    if (p.major < 8) return "needs compute capability 8.0 or newer";
    if (s.batch < 1 || s.heads < 1 || s.tokens < 1 || s.head_dim < 1) return "empty shape";
    if (s.head_dim % 8 != 0) return "head_dim must be a multiple of 8";
    const std::int64_t max_head_dim = (mode == Mode::backward && p.major != 9) ? 128 : 256;
    if (s.head_dim > max_head_dim) return "head_dim above " + std::to_string(max_head_dim);
    if (mode == Mode::backward && s.tokens == 1) return "backward needs more than one token";
    // Up to 9.15 a sequence length that is not a multiple of 128 needs an extra padding mask
    // (cudnn-frontend adds one silently); that variant of the graph is not built here.
    if (version <= 91500 && s.tokens % 128 != 0) return "cuDNN <= 9.15 needs a padding mask when T % 128 != 0";
    return {};
  }

  void build(Plan& plan, const AttentionShape& s, Mode mode, cudnnDataType_t io) {
    const std::int64_t B = s.batch, H = s.heads, T = s.tokens, hd = s.head_dim;
    plan.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    ctx_.make_current();
    detail::SdpaGraphBuilder g(plan.descriptors);
    detail::describe_sdpa_graph(g, s, mode, io);
    cudnnBackendDescriptor_t graph = g.finish(handle_.get());
    choose_engine(plan, graph);

    plan.total_workspace_bytes = round_up(static_cast<std::size_t>(plan.cudnn_workspace_bytes));
    if (mode == Mode::backward) {
      plan.row_dot_offset = plan.total_workspace_bytes;
      plan.total_workspace_bytes += round_up(sizeof(float) * static_cast<std::size_t>(B * H * T));
      plan.dq_accumulator_offset = plan.total_workspace_bytes;
      plan.dq_accumulator_bytes = sizeof(float) * static_cast<std::size_t>(B * H * T * hd);
      plan.total_workspace_bytes += round_up(plan.dq_accumulator_bytes);
    }
  }

  // The first engine configuration (heuristic mode A, then the fallback list) whose execution plan
  // finalizes. The reasons of the rejected ones are kept for the failure message.
  void choose_engine(Plan& plan, cudnnBackendDescriptor_t graph) {
    std::string rejected;
    for (cudnnBackendHeurMode_t heur_mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
      detail::CudnnDescriptor heuristics(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
      heuristics.set_descriptor(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph, "heuristics graph");
      heuristics.set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &heur_mode, "heuristics mode");
      const cudnnStatus_t finalized = cudnnBackendFinalize(heuristics.get());
      if (finalized != CUDNN_STATUS_SUCCESS) {
        rejected += std::string(" [heuristics mode ") + std::to_string(int(heur_mode)) +
                    ": " + cudnn_status_name(finalized) + "]";
        continue;
      }
      std::int64_t count = 0;
      check(cudnnBackendGetAttribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0,
                                     &count, nullptr),
            "heuristics result count");
      if (count <= 0) continue;
      std::vector<detail::CudnnDescriptor> configs;
      std::vector<cudnnBackendDescriptor_t> raw;
      for (std::int64_t i = 0; i < count; ++i) {
        configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
        raw.push_back(configs.back().get());
      }
      std::int64_t returned = 0;
      check(cudnnBackendGetAttribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                     count, &returned, raw.data()),
            "heuristics results");
      for (std::int64_t i = 0; i < returned; ++i) {
        detail::CudnnDescriptor execution_plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
        cudnnHandle_t h = handle_.get();
        execution_plan.set(detail::kExecutionPlanHandleAttribute, CUDNN_TYPE_HANDLE, 1, &h, "execution plan handle");
        execution_plan.set_descriptor(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, raw[i], "execution plan engine config");
        const cudnnStatus_t status = cudnnBackendFinalize(execution_plan.get());
        if (status != CUDNN_STATUS_SUCCESS) {
          if (rejected.size() < 2000) rejected += std::string(" [engine config ") + std::to_string(i) + ": " +
                                                  cudnn_status_name(status) + "]";
          continue;
        }
        check(cudnnBackendGetAttribute(execution_plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64,
                                       1, nullptr, &plan.cudnn_workspace_bytes),
              "execution plan workspace size");
        plan.execution_plan = std::move(execution_plan);
        plan.descriptors.push_back(std::move(configs[i]));  // the plan refers to its engine config
        return;
      }
    }
    throw CudaError("no cuDNN engine supports this SDPA graph:" + (rejected.empty() ? std::string(" none proposed")
                                                                                     : rejected));
  }

  // The shared workspace, grown to this plan's need. Replacing it is safe under the single-stream
  // rule (the old block may only be reused by work queued after this point).
  void* workspace_for(const Plan& plan) {
    if (plan.total_workspace_bytes == 0) return nullptr;
    if (workspace_.bytes() < plan.total_workspace_bytes)
      workspace_ = ctx_.allocator().allocate(plan.total_workspace_bytes);
    return workspace_.data();
  }

  void execute(const Plan& plan, const std::vector<std::pair<std::int64_t, const void*>>& bindings,
               void* workspace = nullptr) {
    if (!workspace) workspace = workspace_for(plan);
    std::vector<std::int64_t> uids;
    std::vector<void*> pointers;
    for (const auto& [uid, pointer] : bindings) {
      // Tensors were declared 16-byte aligned; the by-value scalars are host addresses.
      const bool host_scalar = uid == detail::sdpa_uid::scale || uid == detail::sdpa_uid::one;
      if (!host_scalar && reinterpret_cast<std::uintptr_t>(pointer) % 16 != 0)
        throw CudaError("cuDNN SDPA: tensor " + std::to_string(uid) + " is not 16-byte aligned");
      uids.push_back(uid);
      pointers.push_back(const_cast<void*>(pointer));
    }
    detail::CudnnDescriptor pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
    pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, static_cast<std::int64_t>(uids.size()), uids.data(),
             "variant pack ids");
    pack.set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, static_cast<std::int64_t>(pointers.size()),
             pointers.data(), "variant pack pointers");
    pack.set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace, "variant pack workspace");
    pack.finalize("variant pack finalize");
    ctx_.make_current();
    check(cudnnBackendExecute(handle_.get(), plan.execution_plan.get(), pack.get()), "cudnnBackendExecute(SDPA)");
  }

  CudaContext& ctx_;
  std::unique_ptr<std::remove_pointer_t<cudnnHandle_t>, HandleDeleter> handle_;
  std::map<Key, std::unique_ptr<Plan>> plans_;
  DeviceBuffer workspace_;
};

}  // namespace vitfreeze::cuda
