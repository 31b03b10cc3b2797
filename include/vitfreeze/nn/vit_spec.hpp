#pragma once
// ViTSpec: the architecture of a Vision Transformer as a value. It is a structural type, so it is
// used directly as a template argument (`nn::ViT<spec>`); check_spec<spec>() turns every impossible
// shape into a compile error with a message.
#include <cstdint>

#include "vitfreeze/backend/relative_position.hpp"

namespace vitfreeze {

// Where a token's position comes from: the fixed 2-D sin-cos table added to the patch embeddings
// (MAE, timm), or no absolute position at all and LoMaR's image relative position encoding in
// every attention layer (iRPE: a [head_dim, 50] table per block; backend/relative_position.hpp).
// A relative encoder has no parameter or table whose size depends on the image, so the same weights
// run at any resolution.
enum class PositionEncoding { absolute_sincos, relative };

struct ViTSpec {
  int image = 224;     // square input side, pixels
  int channels = 3;    // input channels
  int patch = 16;      // square patch side, pixels
  int dim = 192;       // embedding width D
  int depth = 12;      // transformer blocks
  int heads = 3;       // attention heads
  int mlp_ratio = 4;   // MLP hidden width = mlp_ratio * dim
  PositionEncoding position = PositionEncoding::absolute_sincos;

  constexpr int grid() const { return image / patch; }                 // patches per side
  constexpr int tokens() const { return grid() * grid(); }             // patches, cls excluded
  constexpr int patch_dim() const { return patch * patch * channels; } // values per patch
  constexpr int head_dim() const { return dim / heads; }
  constexpr int hidden() const { return dim * mlp_ratio; }
  constexpr bool relative_position() const { return position == PositionEncoding::relative; }

  // Parameters of the encoder as timm builds it (cls token, patch embedding, blocks, final norm; the
  // fixed sin-cos position table is a buffer, not a parameter), plus the relative tables.
  constexpr std::int64_t parameter_count() const {
    const std::int64_t d = dim, h = hidden();
    const std::int64_t block = 2 * (2 * d)                 // two LayerNorms
                               + d * 3 * d + 3 * d         // qkv
                               + d * d + d                 // proj
                               + d * h + h + h * d + d     // fc1, fc2
                               + (relative_position() ? std::int64_t(head_dim()) * kRelativePositionBuckets : 0);
    return d                                               // cls token
           + d * patch_dim() + d                           // patch embedding
           + depth * block + 2 * d;                        // blocks, final norm
  }

  friend constexpr bool operator==(const ViTSpec&, const ViTSpec&) = default;
};

// Compile-time validation; each failing condition names itself.
template <ViTSpec S>
consteval bool check_spec() {
  static_assert(S.image > 0 && S.channels > 0 && S.patch > 0 && S.dim > 0 && S.depth > 0 && S.heads > 0 &&
                    S.mlp_ratio > 0,
                "ViTSpec: every field must be positive");
  static_assert(S.image % S.patch == 0, "ViTSpec: image must be a multiple of patch");
  static_assert(S.dim % S.heads == 0, "ViTSpec: dim must be a multiple of heads");
  static_assert(S.relative_position() || S.dim % 4 == 0,
                "ViTSpec: dim must be a multiple of 4 for the 2-D sin-cos position embedding");
  return true;
}

template <ViTSpec S>
concept ValidViTSpec = check_spec<S>();

namespace specs {
// The standard widths; image/channels/patch are chosen per data set.
constexpr ViTSpec tiny(int image = 224, int channels = 3, int patch = 16, int heads = 3) {
  return {image, channels, patch, 192, 12, heads, 4};
}
constexpr ViTSpec small(int image = 224, int channels = 3, int patch = 16) { return {image, channels, patch, 384, 12, 6, 4}; }
constexpr ViTSpec base(int image = 224, int channels = 3, int patch = 16) { return {image, channels, patch, 768, 12, 12, 4}; }
constexpr ViTSpec large(int image = 224, int channels = 3, int patch = 16) { return {image, channels, patch, 1024, 24, 16, 4}; }

// The same network with LoMaR's relative position encoding instead of absolute positions.
constexpr ViTSpec with_relative_position(ViTSpec s) {
  s.position = PositionEncoding::relative;
  return s;
}
// The same network on images of another side (a relative encoder's weights load unchanged).
constexpr ViTSpec at_image(ViTSpec s, int image) {
  s.image = image;
  return s;
}
}  // namespace specs

}  // namespace vitfreeze
