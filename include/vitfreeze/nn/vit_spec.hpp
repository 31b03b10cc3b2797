#pragma once
// ViTSpec: the architecture of a Vision Transformer as a value. It is a structural type, so it is
// used directly as a template argument (`nn::ViT<spec>`); check_spec<spec>() turns every impossible
// shape into a compile error with a message.
#include <cstdint>

namespace vitfreeze {

struct ViTSpec {
  int image = 224;     // square input side, pixels
  int channels = 3;    // input channels
  int patch = 16;      // square patch side, pixels
  int dim = 192;       // embedding width D
  int depth = 12;      // transformer blocks
  int heads = 3;       // attention heads
  int mlp_ratio = 4;   // MLP hidden width = mlp_ratio * dim

  constexpr int grid() const { return image / patch; }                 // patches per side
  constexpr int tokens() const { return grid() * grid(); }             // patches, cls excluded
  constexpr int patch_dim() const { return patch * patch * channels; } // values per patch
  constexpr int head_dim() const { return dim / heads; }
  constexpr int hidden() const { return dim * mlp_ratio; }

  // Parameters of the encoder as timm builds it (cls token, patch embedding, blocks, final norm; the
  // fixed sin-cos position table is a buffer, not a parameter).
  constexpr std::int64_t parameter_count() const {
    const std::int64_t d = dim, h = hidden();
    const std::int64_t block = 2 * (2 * d)                 // two LayerNorms
                               + d * 3 * d + 3 * d         // qkv
                               + d * d + d                 // proj
                               + d * h + h + h * d + d;    // fc1, fc2
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
  static_assert(S.dim % 4 == 0, "ViTSpec: dim must be a multiple of 4 for the 2-D sin-cos position embedding");
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
}  // namespace specs

}  // namespace vitfreeze
