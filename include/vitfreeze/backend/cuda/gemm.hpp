#pragma once
// Row-major GEMM on cuBLASLt with the semantics of cpu::gemm:
//   C[M,N] = alpha * op(A) * op(B) + beta * C,   op(X) = X or X^T,  lda/ldb/ldc = row strides,
// plus optional fused epilogues. cuBLASLt is column-major; a row-major matrix with row stride ld is
// the column-major transpose with the same ld, so C^T = op(B)^T op(A)^T is computed with the operands
// swapped (cuBLASLt's A is our B, its B is our A, its m x n output is our N x M) and no copies.
//
// Strided batch (GemmBatch): batch.count independent GEMMs of that shape; entry i reads
// A + i * stride_a and B + i * stride_b and writes C + i * stride_c (strides in elements). This is how
// attention runs one small GEMM per (sample, head) in a single launch. Batched calls take no epilogue.
//
// Types: fp32 inputs -> fp32 output (true fp32, not TF32), or bf16 (fp16) inputs -> bf16 (fp16) or
// fp32 output; the accumulation is fp32 in all cases. beta = 1 accumulates into C (weight gradients over micro-steps).
//
// Epilogues: the backend-neutral GemmEpilogue of backend/gemm_epilogue.hpp (bias, gelu_aux_bias,
// dgelu, bgradb; bias, aux and bias_grad have the output's element type), mapped onto cuBLASLt's;
// aux's row stride ld_aux must be a multiple of 8 (cuBLASLt's rule).
// cuBLASLt's GELU is the tanh approximation as far as PyTorch and llm.c assume (NVIDIA does not
// document it; tests/cuda/test_cuda_ops.cu reports which one the device computes). The exact-erf GELU
// of the CPU backend is gelu_forward/gelu_backward in gelu.cuh, after a `bias` GEMM.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>

#include "vitfreeze/backend/cuda/context.hpp"
#include "vitfreeze/backend/gemm_epilogue.hpp"
#include "vitfreeze/core/dtype.hpp"

namespace vitfreeze::cuda {

struct GemmBatch {
  std::int64_t count = 1, stride_a = 0, stride_b = 0, stride_c = 0;  // strides in elements
};

// Input/output element type pairs cuBLASLt runs with fp32 accumulation here.
template <class In, class Out>
concept GemmTypes = (std::is_same_v<In, float> && std::is_same_v<Out, float>) ||
                    ((std::is_same_v<In, bf16> || std::is_same_v<In, f16>) &&
                     (std::is_same_v<Out, In> || std::is_same_v<Out, float>));

namespace detail {

constexpr cublasLtEpilogue_t lt_epilogue(Epilogue e) {
  switch (e) {
    case Epilogue::bias: return CUBLASLT_EPILOGUE_BIAS;
    case Epilogue::gelu_aux_bias: return CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    case Epilogue::dgelu: return CUBLASLT_EPILOGUE_DGELU;
    case Epilogue::bgradb: return CUBLASLT_EPILOGUE_BGRADB;
    case Epilogue::none: break;
  }
  return CUBLASLT_EPILOGUE_DEFAULT;
}

template <class T>
constexpr cudaDataType_t cuda_type() {
  if constexpr (std::is_same_v<T, float>)
    return CUDA_R_32F;
  else if constexpr (std::is_same_v<T, f16>)
    return CUDA_R_16F;
  else
    return CUDA_R_16BF;
}

// Largest power of two dividing the address, capped at 256 (cuBLASLt's default assumption).
inline std::uint32_t alignment_of(const void* p) {
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  std::uint32_t a = 256;
  while (a > 1 && address % a != 0) a /= 2;
  return a;
}

template <class V>
void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const V& value, const char* what) {
  check(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(value)), what);
}

// The alignment every batch entry's pointer has: entry i starts i * stride elements after `p`.
inline std::uint32_t batched_alignment_of(const void* p, std::int64_t count, std::int64_t stride_bytes) {
  const std::uint32_t base = alignment_of(p);
  if (count <= 1) return base;
  return std::min(base, alignment_of(reinterpret_cast<const void*>(static_cast<std::uintptr_t>(stride_bytes))));
}

inline MatrixLayoutPtr make_layout(cudaDataType_t type, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                                   std::int64_t batch_count, std::int64_t batch_stride) {
  cublasLtMatrixLayout_t layout = nullptr;
  check(cublasLtMatrixLayoutCreate(&layout, type, static_cast<std::uint64_t>(rows), static_cast<std::uint64_t>(cols), ld),
        "cublasLtMatrixLayoutCreate");
  MatrixLayoutPtr owned(layout);
  if (batch_count > 1) {
    const auto count = static_cast<std::int32_t>(batch_count);  // cuBLASLt's attribute type
    check(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)),
          "cublasLtMatrixLayoutSetAttribute(BATCH_COUNT)");
    check(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &batch_stride,
                                           sizeof(batch_stride)),
          "cublasLtMatrixLayoutSetAttribute(STRIDED_BATCH_OFFSET)");
  }
  return owned;
}

inline std::string describe(const MatmulKey& k) {
  return "M=" + std::to_string(k.M) + " N=" + std::to_string(k.N) + " K=" + std::to_string(k.K) +
         " trans_a=" + std::to_string(k.trans_a) + " trans_b=" + std::to_string(k.trans_b) +
         " lda=" + std::to_string(k.lda) + " ldb=" + std::to_string(k.ldb) + " ldc=" + std::to_string(k.ldc) +
         " epilogue=" + std::to_string(k.epilogue) + " types=" + std::to_string(k.input_type) + "->" +
         std::to_string(k.output_type) + " batch=" + std::to_string(k.batch_count) + " strides=" +
         std::to_string(k.stride_a) + "," + std::to_string(k.stride_b) + "," + std::to_string(k.stride_c);
}

// Pointers change from call to call within one plan (same shape, same alignment).
inline void set_epilogue_pointers(cublasLtMatmulDesc_t desc, const void* bias, const void* aux) {
  if (bias) set_desc(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias, "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");
  if (aux) set_desc(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux, "cublasLtMatmulDescSetAttribute(AUX_POINTER)");
}

inline MatmulPlan build_plan(CudaContext& ctx, const MatmulKey& k, const void* bias, const void* aux) {
  MatmulPlan plan;
  cublasLtMatmulDesc_t desc = nullptr;
  check(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
  plan.desc.reset(desc);
  // Operands swapped (see the header comment): cuBLASLt's A is our B, its B is our A.
  const cublasOperation_t op_a = k.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = k.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  set_desc(desc, CUBLASLT_MATMUL_DESC_TRANSA, op_a, "cublasLtMatmulDescSetAttribute(TRANSA)");
  set_desc(desc, CUBLASLT_MATMUL_DESC_TRANSB, op_b, "cublasLtMatmulDescSetAttribute(TRANSB)");
  set_desc(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, k.epilogue, "cublasLtMatmulDescSetAttribute(EPILOGUE)");
  if (k.ld_aux) set_desc(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, k.ld_aux, "cublasLtMatmulDescSetAttribute(AUX_LD)");
  set_epilogue_pointers(desc, bias, k.ld_aux ? aux : nullptr);  // the heuristic reads their alignment

  const auto in = static_cast<cudaDataType_t>(k.input_type), out = static_cast<cudaDataType_t>(k.output_type);
  // Column-major views of the stored row-major operands: a stored [r, c] matrix is a column-major [c, r].
  plan.a = make_layout(in, k.trans_b ? k.K : k.N, k.trans_b ? k.N : k.K, k.ldb, k.batch_count, k.stride_b);
  plan.b = make_layout(in, k.trans_a ? k.M : k.K, k.trans_a ? k.K : k.M, k.lda, k.batch_count, k.stride_a);
  plan.c = make_layout(out, k.N, k.M, k.ldc, k.batch_count, k.stride_c);

  cublasLtMatmulPreference_t pref_raw = nullptr;
  check(cublasLtMatmulPreferenceCreate(&pref_raw), "cublasLtMatmulPreferenceCreate");
  MatmulPreferencePtr pref(pref_raw);
  auto set_pref = [&](cublasLtMatmulPreferenceAttributes_t attribute, auto value) {
    check(cublasLtMatmulPreferenceSetAttribute(pref.get(), attribute, &value, sizeof(value)),
          "cublasLtMatmulPreferenceSetAttribute");
  };
  set_pref(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, static_cast<std::uint64_t>(ctx.workspace_bytes()));
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, k.align_b);  // cuBLASLt's A is our B
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, k.align_a);
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, k.align_c);
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, k.align_c);

  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(ctx.lt(), desc, plan.a.get(), plan.b.get(), plan.c.get(),
                                                               plan.c.get(), pref.get(), 1, &result, &found);
  if (status != CUBLAS_STATUS_SUCCESS || found == 0)
    throw CudaError("cublasLtMatmulAlgoGetHeuristic found no algorithm for " + describe(k) + " (" +
                    cublasLtGetStatusString(status) + ")");
  plan.algo = result.algo;
  return plan;
}

}  // namespace detail

template <class In, class Out>
  requires GemmTypes<In, Out>
void gemm(CudaContext& ctx, bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
          const In* A, std::int64_t lda, const In* B, std::int64_t ldb, float beta, Out* C, std::int64_t ldc,
          const GemmEpilogue<Out>& epilogue = {}, const GemmBatch& batch = {}) {
  if (M <= 0 || N <= 0 || batch.count == 0) return;
  if (lda < (trans_a ? M : K) || ldb < (trans_b ? K : N) || ldc < N)
    throw ConfigError("cuda::gemm: leading dimension below the row length");
  const Epilogue kind = epilogue.kind;
  if (batch.count < 0 || batch.count > INT32_MAX || batch.stride_a < 0 || batch.stride_b < 0 || batch.stride_c < 0)
    throw ConfigError("cuda::gemm: batch count must be in [0, 2^31) and batch strides non-negative");
  // Overlapping outputs would race between batch entries.
  if (batch.count > 1 && batch.stride_c < (M - 1) * ldc + N)
    throw ConfigError("cuda::gemm: batch stride_c smaller than one output matrix");
  if (batch.count > 1 && kind != Epilogue::none) throw ConfigError("cuda::gemm: batched calls take no epilogue");
  const bool uses_bias = kind == Epilogue::bias || kind == Epilogue::gelu_aux_bias;
  const bool uses_aux = kind == Epilogue::gelu_aux_bias || kind == Epilogue::dgelu;
  if (uses_bias && !epilogue.bias) throw ConfigError("cuda::gemm: bias epilogue without a bias");
  if (uses_aux && (!epilogue.aux || epilogue.ld_aux < N || epilogue.ld_aux % 8 != 0))
    throw ConfigError("cuda::gemm: GELU epilogue needs aux with ld_aux >= N and a multiple of 8");
  if (kind == Epilogue::dgelu && beta != 0.0f) throw ConfigError("cuda::gemm: the dgelu epilogue needs beta = 0");
  if (kind == Epilogue::bgradb && !epilogue.bias_grad) throw ConfigError("cuda::gemm: bgradb without bias_grad");

  MatmulKey key;
  key.trans_a = trans_a;
  key.trans_b = trans_b;
  key.M = M;
  key.N = N;
  key.K = K;
  key.lda = lda;
  key.ldb = ldb;
  key.ldc = ldc;
  key.ld_aux = uses_aux ? epilogue.ld_aux : 0;
  key.input_type = detail::cuda_type<In>();
  key.output_type = detail::cuda_type<Out>();
  key.epilogue = static_cast<std::uint32_t>(detail::lt_epilogue(kind));
  const std::int64_t count = batch.count;
  key.batch_count = count;
  key.stride_a = count > 1 ? batch.stride_a : 0;  // unused for one GEMM: keep single calls on one plan
  key.stride_b = count > 1 ? batch.stride_b : 0;
  key.stride_c = count > 1 ? batch.stride_c : 0;
  key.align_a = detail::batched_alignment_of(A, count, key.stride_a * std::int64_t(sizeof(In)));
  key.align_b = detail::batched_alignment_of(B, count, key.stride_b * std::int64_t(sizeof(In)));
  key.align_c = detail::batched_alignment_of(C, count, key.stride_c * std::int64_t(sizeof(Out)));
  const void* bias_pointer = kind == Epilogue::bgradb ? static_cast<const void*>(epilogue.bias_grad)
                             : uses_bias                ? static_cast<const void*>(epilogue.bias)
                                                        : nullptr;
  key.align_bias = bias_pointer ? detail::alignment_of(bias_pointer) : 0;
  key.align_aux = uses_aux ? detail::alignment_of(epilogue.aux) : 0;

  MatmulPlanCache& plans = ctx.matmul_plans();
  auto it = plans.find(key);
  if (it == plans.end()) it = plans.emplace(key, detail::build_plan(ctx, key, bias_pointer, epilogue.aux)).first;
  MatmulPlan& plan = it->second;
  detail::set_epilogue_pointers(plan.desc.get(), bias_pointer, uses_aux ? epilogue.aux : nullptr);
  check(cublasLtMatmul(ctx.lt(), plan.desc.get(), &alpha, B, plan.a.get(), A, plan.b.get(), &beta, C, plan.c.get(), C,
                       plan.c.get(), &plan.algo, ctx.workspace(), ctx.workspace_bytes(), ctx.stream()),
        "cublasLtMatmul");
}

}  // namespace vitfreeze::cuda
