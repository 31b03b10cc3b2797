#pragma once
// Patch embedding: a p x p stride-p convolution computed as one GEMM over channel-major patches,
// so the weight [D, C*p*p] is exactly timm's conv weight [D, C, p, p] in memory.
#include "vitfreeze/backend/cpu/patchify.hpp"
#include "vitfreeze/nn/linear.hpp"

namespace vitfreeze::nn {

template <CpuScalar T>
class PatchEmbed {
 public:
  PatchEmbed(const std::string& name, std::int64_t channels, std::int64_t patch, std::int64_t dim)
      : proj(name + ".proj", channels * patch * patch, dim), channels_(channels), patch_(patch) {
    proj.weight.file_shape = Shape{dim, channels, patch, patch};
  }

  // images [B, C, H, W] (no gradient: inputs are data) -> tokens [B, L, D]
  Var<T> operator()(Tape<T>& tape, const Tensor<T>& images) {
    if (images.rank() != 4 || images.dim(1) != channels_)
      throw ShapeError("PatchEmbed: expected images [B, " + std::to_string(channels_) + ", H, W], got " +
                       images.shape().str());
    const cpu::PatchGeometry g{images.dim(0), channels_, images.dim(2), images.dim(3), patch_};
    g.validate();
    Tensor<T> patches = tape.alloc(Shape{g.batch, g.patches(), g.patch_dim()});
    cpu::patchify(images.data(), patches.data(), g, cpu::PatchLayout::channel_major);
    return proj(tape, tape.constant(patches));
  }

  // MAE: Xavier on the [D, C p p] view; the bias keeps PyTorch's default conv init.
  void init(std::uint64_t seed) {
    xavier_uniform(proj.weight, proj.weight.value.dim(0), proj.weight.value.dim(1), seed);
    uniform_init(proj.bias, 1.0 / std::sqrt(double(proj.weight.value.dim(1))), seed);
  }
  void collect_parameters(ParameterList<T>& out) { proj.collect_parameters(out); }

  Linear<T> proj;

 private:
  std::int64_t channels_, patch_;
};

}  // namespace vitfreeze::nn
