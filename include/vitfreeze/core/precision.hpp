#pragma once
// Precision policies, as types: what activations (and the GEMMs' working weights) are stored in,
// what the master weights, parameter gradients, optimiser moments, normalisation statistics and
// loss sums are kept in (Master), and which GELU the fused GEMM epilogue may compute.
//   Fp64       double everywhere: the CPU reference the gradient checks compare against.
//   Fp32       fp32 everywhere (true fp32 GEMMs, no TF32), exact-erf GELU: the CPU's training
//              precision, and on the GPU the reference the half policies are tested against.
//   Bf16Mixed  bf16 activations and working weights (rewritten from the fp32 master by AdamW), fp32
//              accumulation in every GEMM and kernel; on the GPU the GELU is fused into the fc1 GEMM
//              epilogue, which cuBLASLt computes in the tanh form (9e-5 from erf, under bf16 rounding).
//   Fp16Mixed  as Bf16Mixed in fp16 (3 more mantissa bits, 5 fewer exponent bits); needs dynamic loss
//              scaling (optim/loss_scaling.hpp), which the trainer turns on for it (loss_scaling).
// A backend says which policies it runs (Backend::supports<P>).
#include <concepts>
#include <type_traits>

#include "vitfreeze/core/dtype.hpp"

namespace vitfreeze {

struct Fp64 {
  using Activation = double;
  using Master = double;
  static constexpr bool fused_tanh_gelu = false;
  static constexpr bool loss_scaling = false;
  static constexpr const char* name = "fp64";
};

struct Fp32 {
  using Activation = float;
  using Master = float;
  static constexpr bool fused_tanh_gelu = false;
  static constexpr bool loss_scaling = false;
  static constexpr const char* name = "fp32";
};

struct Bf16Mixed {
  using Activation = bf16;
  using Master = float;
  static constexpr bool fused_tanh_gelu = true;
  static constexpr bool loss_scaling = false;
  static constexpr const char* name = "bf16";
};

struct Fp16Mixed {
  using Activation = f16;
  using Master = float;
  static constexpr bool fused_tanh_gelu = true;
  static constexpr bool loss_scaling = true;
  static constexpr const char* name = "fp16";
};

template <class P>
concept PrecisionPolicy = requires {
  typename P::Activation;
  typename P::Master;
  { P::fused_tanh_gelu } -> std::convertible_to<bool>;
  { P::loss_scaling } -> std::convertible_to<bool>;
  { P::name } -> std::convertible_to<const char*>;
} && (std::is_same_v<typename P::Master, float> || std::is_same_v<typename P::Master, double>) &&
                          (std::is_same_v<typename P::Activation, typename P::Master> ||
                           std::is_same_v<typename P::Activation, bf16> || std::is_same_v<typename P::Activation, f16>);

}  // namespace vitfreeze
