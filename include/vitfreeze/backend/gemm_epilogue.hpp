#pragma once
// What a backend's GEMM may do with its result in the same call, in row-major terms, for
// C[M,N] = alpha op(A) op(B) + beta C:
//   bias           C += bias[n]   (bias: [N], broadcast over rows)
//   gelu_aux_bias  pre = alpha op(A) op(B) + beta C + bias[n]; aux = pre; C = gelu(pre)
//   dgelu          C = (alpha op(A) op(B)) * gelu'(aux)        (beta must be 0)
//   bgradb         C as without epilogue, and bias_grad[m] = sum_k op(A)[m, k] (written, not
//                  accumulated): for dW = dy^T x (A = dy, transposed) this is db = column sums of dy.
// aux is [M, N] with row stride ld_aux. Which GELU the epilogue computes is the backend's
// (Backend::epilogue_gelu_is_exact): the CPU computes the exact erf form, cuBLASLt the tanh form,
// so a model asks for it only where the precision policy allows (model/linear.hpp).
#include <cstdint>

namespace vitfreeze {

enum class Epilogue { none, bias, gelu_aux_bias, dgelu, bgradb };

template <class Out>
struct GemmEpilogue {
  Epilogue kind = Epilogue::none;
  const Out* bias = nullptr;  // bias, gelu_aux_bias
  Out* aux = nullptr;         // gelu_aux_bias: written; dgelu: read
  std::int64_t ld_aux = 0;
  Out* bias_grad = nullptr;   // bgradb
};

}  // namespace vitfreeze
