#pragma once
// cuBLASLt matmul plans: the operation descriptor, the matrix layouts and the algorithm chosen by the
// heuristic for one GEMM shape. Creating them and querying the heuristic costs far more than a small
// GEMM, so plans are built once per shape key and reused (shapes are static within a training run).
#include <cublasLt.h>

#include <compare>
#include <cstdint>
#include <map>
#include <memory>
#include <type_traits>

namespace vitfreeze::cuda {

namespace detail {
struct MatmulDescDeleter {
  void operator()(cublasLtMatmulDesc_t d) const noexcept { (void)cublasLtMatmulDescDestroy(d); }
};
struct MatrixLayoutDeleter {
  void operator()(cublasLtMatrixLayout_t l) const noexcept { (void)cublasLtMatrixLayoutDestroy(l); }
};
struct MatmulPreferenceDeleter {
  void operator()(cublasLtMatmulPreference_t p) const noexcept { (void)cublasLtMatmulPreferenceDestroy(p); }
};
}  // namespace detail

using MatmulDescPtr = std::unique_ptr<std::remove_pointer_t<cublasLtMatmulDesc_t>, detail::MatmulDescDeleter>;
using MatrixLayoutPtr = std::unique_ptr<std::remove_pointer_t<cublasLtMatrixLayout_t>, detail::MatrixLayoutDeleter>;
using MatmulPreferencePtr =
    std::unique_ptr<std::remove_pointer_t<cublasLtMatmulPreference_t>, detail::MatmulPreferenceDeleter>;

// Everything the plan and the heuristic's answer depend on. Pointer alignments are part of it: cuBLASLt picks
// kernels that assume them (a head inside a fused qkv buffer is only 4- or 16-byte aligned).
struct MatmulKey {
  bool trans_a = false, trans_b = false;
  std::int64_t M = 0, N = 0, K = 0, lda = 0, ldb = 0, ldc = 0, ld_aux = 0;
  int input_type = 0, output_type = 0;  // cudaDataType_t
  std::uint32_t epilogue = 0;           // cublasLtEpilogue_t
  std::uint32_t align_a = 0, align_b = 0, align_c = 0, align_bias = 0, align_aux = 0;
  // Strided batch (GemmBatch): count 1 and strides 0 for a single GEMM. The layouts carry them.
  std::int64_t batch_count = 1, stride_a = 0, stride_b = 0, stride_c = 0;
  auto operator<=>(const MatmulKey&) const = default;
};

struct MatmulPlan {
  MatmulDescPtr desc;
  MatrixLayoutPtr a, b, c;  // in cuBLASLt's (column-major) roles; D uses c's layout
  cublasLtMatmulAlgo_t algo{};
};

using MatmulPlanCache = std::map<MatmulKey, MatmulPlan>;

}  // namespace vitfreeze::cuda
