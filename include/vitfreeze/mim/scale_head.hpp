#pragma once
// LocalMIM's prediction heads (spec vitfreeze-localmim-freezeout.md §2.3): the decoder's tokens
// [B, g*g, Dd] (cls dropped), seen as a channels-last map [B, g, g, Dd], are brought to the grid of
// scale s = num/den and projected to `out` values per cell:
//
//   s = 4    pred.0 ConvT(Dd -> Dd/2) -> pred.1 LayerNorm2d -> pred.2 GELU -> pred.3 ConvT(Dd/2 -> Dd/4)
//            -> pred.4 Conv1x1(Dd/4 -> out)                                              grid 4g
//   s = 2    pred.0 ConvT(Dd -> Dd/2) -> pred.1 Conv1x1(Dd/2 -> out)                      grid 2g
//   s = 1    pred.0 Conv1x1(Dd -> out)                                                    grid g
//   s = 1/2  pred.0 AvgPool2d(2, 2) -> pred.1 Conv1x1(Dd -> out)                          grid g/2
//
// The pred.N indices are LocalMIM's nn.Sequential indices, so parameter names are the reference's
// (`decoder.K.pred.N.weight`, `.bias`). Output: [B, cells, out], cells row-major on the new grid.
// All layers keep PyTorch's default init, as in the reference (it re-initialises only nn.Linear
// and nn.LayerNorm, and these are convolutions).
#include <optional>
#include <string>

#include "vitfreeze/autograd/ops/elementwise.hpp"
#include "vitfreeze/autograd/ops/gelu.hpp"
#include "vitfreeze/autograd/ops/spatial.hpp"
#include "vitfreeze/io/torch_layout.hpp"
#include "vitfreeze/nn/layernorm.hpp"
#include "vitfreeze/nn/linear.hpp"

namespace vitfreeze::mim {

// ConvTranspose2d(in -> out, kernel 2, stride 2) on channels-last maps: linear(in -> 4 out, no bias)
// then ops::pixel_shuffle_2x2 adding the bias [out]. weight [4*out, in] holds PyTorch's weight
// [in, out, 2, 2] transposed: weight[4co + 2ky + kx][ci] = torch[ci][co][ky][kx], i.e. our weight
// viewed as [out, 2, 2, in] with axes (3, 0, 1, 2) (its torch_permutation, which every file under
// PyTorch's names applies: io/torch_layout.hpp).
template <CpuScalar T>
class ConvTranspose2x2 {
 public:
  ConvTranspose2x2(const std::string& name, std::int64_t in, std::int64_t out)
      : weight(name + ".weight", Shape{4 * out, in}, true), bias(name + ".bias", Shape{out}, false) {
    weight.torch_permutation = {Shape{out, 2, 2, in}, {3, 0, 1, 2}};
  }

  // x [B, h, w, in] -> [B, 2h, 2w, out]
  Var<T> operator()(Tape<T>& tape, Var<T> x) {
    return ops::pixel_shuffle_2x2(tape, ops::linear(tape, x, tape.parameter(weight)), tape.parameter(bias));
  }

  // PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias, where fan_in is
  // weight.size(1) * 2 * 2 = 4 * out for a transposed convolution (not `in`).
  void init_default(std::uint64_t seed) {
    const double bound = 1.0 / std::sqrt(double(weight.value.dim(0)));
    nn::uniform_init(weight, bound, seed);
    nn::uniform_init(bias, bound, seed);
  }

  std::int64_t in_channels() const { return weight.value.dim(1); }
  std::int64_t out_channels() const { return bias.value.dim(0); }

  // The weight in PyTorch's layout [in, out, 2, 2], and back.
  Tensor<T> torch_weight() const { return io::to_torch_layout(weight, weight.value); }
  void load_torch_weight(const Tensor<T>& t) { io::from_torch_layout(weight, t, weight.value); }

  void collect_parameters(nn::ParameterList<T>& out) {
    out.push_back(&weight);
    out.push_back(&bias);
  }

  Parameter<T> weight;  // [4 * out, in]
  Parameter<T> bias;    // [out]
};

// The scales LocalMIM's heads implement: 4, 2, 1 and 1/2.
constexpr bool scale_head_supports(int num, int den) {
  return (den == 1 && (num == 4 || num == 2 || num == 1)) || (num == 1 && den == 2);
}

template <CpuScalar T>
class ScaleHead {
 public:
  // name: "decoder.K.pred"; in_dim: decoder width Dd; grid: patches per side g.
  ScaleHead(const std::string& name, std::int64_t in_dim, int grid, int num, int den, std::int64_t out_dim)
      : proj_(name + "." + std::to_string(projection_index(num, den)), hidden_dim(in_dim, num, den), out_dim),
        in_dim_(in_dim), grid_(grid), num_(num), den_(den) {
    if (num == 4 && in_dim % 4 != 0) throw ConfigError("ScaleHead: scale 4 needs a decoder width divisible by 4");
    if (num == 2 && in_dim % 2 != 0) throw ConfigError("ScaleHead: scale 2 needs an even decoder width");
    if (den == 2 && grid % 2 != 0) throw ConfigError("ScaleHead: scale 1/2 needs an even patch grid");
    if (grid < 1 || in_dim < 1 || out_dim < 1) throw ConfigError("ScaleHead: sizes must be positive");
    proj_.weight.file_shape = Shape{out_dim, proj_.in_features(), 1, 1};  // a Conv2d 1x1 kernel, same memory
    if (num >= 2) up1_.emplace(name + ".0", in_dim, in_dim / 2);
    if (num == 4) {
      norm_.emplace(name + ".1", in_dim / 2);  // LayerNorm2d, eps 1e-6
      up2_.emplace(name + ".3", in_dim / 2, in_dim / 4);
    }
  }

  void init(std::uint64_t seed) {
    if (up1_) up1_->init_default(seed);
    if (norm_) norm_->init();
    if (up2_) up2_->init_default(seed);
    proj_.init_default(seed);  // Conv2d 1x1: fan_in = in, the same bound as a Linear
  }

  // tokens [B, g*g, Dd] -> [B, cells, out]
  Var<T> operator()(Tape<T>& tape, Var<T> tokens) {
    const Tensor<T>& X = tape.value(tokens);
    if (X.rank() != 3 || X.dim(1) != std::int64_t(grid_) * grid_ || X.dim(2) != in_dim_)
      throw ShapeError("ScaleHead: expected tokens [B, " + std::to_string(grid_ * grid_) + ", " +
                       std::to_string(in_dim_) + "], got " + X.shape().str());
    if (num_ == 1 && den_ == 1) return proj_(tape, tokens);  // a 1x1 convolution needs no grid
    const std::int64_t B = X.dim(0);
    Var<T> x = ops::reshape(tape, tokens, Shape{B, grid_, grid_, in_dim_});
    if (den_ == 2) x = ops::avg_pool_2x2(tape, x);
    if (up1_) x = (*up1_)(tape, x);
    if (norm_) x = ops::gelu(tape, (*norm_)(tape, x));
    if (up2_) x = (*up2_)(tape, x);
    x = proj_(tape, x);
    return ops::reshape(tape, x, Shape{B, cells(), out_dim()});
  }

  // In LocalMIM's order: pred.0, pred.1, ...
  void collect_parameters(nn::ParameterList<T>& out) {
    if (up1_) up1_->collect_parameters(out);
    if (norm_) norm_->collect_parameters(out);
    if (up2_) up2_->collect_parameters(out);
    proj_.collect_parameters(out);
  }

  int output_grid() const { return grid_ * num_ / den_; }
  std::int64_t cells() const { return std::int64_t(output_grid()) * output_grid(); }
  std::int64_t out_dim() const { return proj_.out_features(); }
  int scale_num() const { return num_; }
  int scale_den() const { return den_; }

  // The layers (empty where the scale has none), for weight files and tests.
  std::optional<ConvTranspose2x2<T>>& upsample1() { return up1_; }
  std::optional<nn::LayerNorm<T>>& norm2d() { return norm_; }
  std::optional<ConvTranspose2x2<T>>& upsample2() { return up2_; }
  nn::Linear<T>& projection() { return proj_; }
  const std::optional<ConvTranspose2x2<T>>& upsample1() const { return up1_; }
  const std::optional<nn::LayerNorm<T>>& norm2d() const { return norm_; }
  const std::optional<ConvTranspose2x2<T>>& upsample2() const { return up2_; }
  const nn::Linear<T>& projection() const { return proj_; }
  int grid() const { return grid_; }
  std::int64_t in_dim() const { return in_dim_; }

 private:
  // Index of the final Conv1x1 in LocalMIM's nn.Sequential; throws on an unsupported scale (it runs
  // first in the constructor, so nothing is built for a bad scale).
  static int projection_index(int num, int den) {
    if (!scale_head_supports(num, den))
      throw ConfigError("ScaleHead: scale " + std::to_string(num) + "/" + std::to_string(den) +
                        " is not one of LocalMIM's 4, 2, 1, 1/2");
    return num == 4 ? 4 : (num == 2 || den == 2) ? 1 : 0;
  }
  // Channels entering the Conv1x1.
  static std::int64_t hidden_dim(std::int64_t in_dim, int num, int den) {
    projection_index(num, den);
    return num == 4 ? in_dim / 4 : num == 2 ? in_dim / 2 : in_dim;
  }

  std::optional<ConvTranspose2x2<T>> up1_;
  std::optional<nn::LayerNorm<T>> norm_;
  std::optional<ConvTranspose2x2<T>> up2_;
  nn::Linear<T> proj_;
  std::int64_t in_dim_;
  int grid_, num_, den_;
};

}  // namespace vitfreeze::mim
