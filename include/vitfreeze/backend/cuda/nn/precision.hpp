#pragma once
// Mixed-precision policies of the device modules, as types. In every policy the master weights,
// weight gradients, optimizer moments, LayerNorm statistics and loss sums are fp32; the policy
// decides what activations and the GEMMs' working weights are stored in, and which GELU runs.
//   Fp32       : fp32 everywhere (true fp32 GEMMs, no TF32), exact-erf GELU: matches the CPU backend
//                to rounding, the reference the bf16 policy is tested against.
//   Bf16Mixed  : bf16 activations and working weights (rewritten from the fp32 master by AdamW),
//                fp32 accumulation in every GEMM and kernel; GELU fused into the fc1 GEMM epilogue,
//                which cuBLASLt computes in the tanh form (measured on an H100: 1e-6 from tanh,
//                9e-5 from erf, far under bf16 rounding).
//   Fp16Mixed  : as Bf16Mixed with fp16 activations and working weights (3 more mantissa bits, 5
//                fewer exponent bits), for GPUs or users that prefer fp16; needs dynamic loss
//                scaling (optim/loss_scaling.hpp), which the trainer turns on for it (loss_scaling).
#include <concepts>
#include <type_traits>

#include "vitfreeze/core/dtype.hpp"

namespace vitfreeze::cuda::nn {

struct Fp32 {
  using Activation = float;
  static constexpr bool fused_tanh_gelu = false;
  static constexpr bool loss_scaling = false;
  static constexpr const char* name = "fp32";
};

struct Bf16Mixed {
  using Activation = bf16;
  static constexpr bool fused_tanh_gelu = true;
  static constexpr bool loss_scaling = false;
  static constexpr const char* name = "bf16";
};

struct Fp16Mixed {
  using Activation = f16;
  static constexpr bool fused_tanh_gelu = true;
  static constexpr bool loss_scaling = true;
  static constexpr const char* name = "fp16";
};

template <class P>
concept PrecisionPolicy = requires {
  typename P::Activation;
  { P::fused_tanh_gelu } -> std::convertible_to<bool>;
  { P::loss_scaling } -> std::convertible_to<bool>;
  { P::name } -> std::convertible_to<const char*>;
} && (std::is_same_v<typename P::Activation, float> || std::is_same_v<typename P::Activation, bf16> ||
       std::is_same_v<typename P::Activation, f16>);

}  // namespace vitfreeze::cuda::nn
