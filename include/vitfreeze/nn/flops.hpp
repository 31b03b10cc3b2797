#pragma once
// Forward FLOP counts of the ViT building blocks, per image, counting only matrix products at
// 2*M*K*N per GEMM (machine-facts §4, anchors §2.2). Norms, GELU, softmax and adds are left out: the
// count then matches torch.profiler's mm/addmm/bmm/conv total to 0.3 % for MAE ViT-Tiny. Training
// costs about 3x forward (input and weight gradient each cost about one forward).
#include <cstdint>

#include "vitfreeze/nn/vit_spec.hpp"

namespace vitfreeze::nn {

// [M x K] times [K x N].
constexpr std::int64_t gemm_flops(std::int64_t m, std::int64_t k, std::int64_t n) { return 2 * m * k * n; }

// A linear layer on `rows` tokens (also a 1x1 conv on `rows` pixels, or a stride-2 2x2 transposed conv
// with out = 4 * out_channels per input pixel).
constexpr std::int64_t linear_forward_flops(std::int64_t rows, std::int64_t in, std::int64_t out) {
  return gemm_flops(rows, in, out);
}

// Patch embedding: a stride-p conv = one linear map of each flattened patch (patch_dim = p*p*C).
constexpr std::int64_t patch_embed_forward_flops(std::int64_t patches, std::int64_t patch_dim, std::int64_t dim) {
  return linear_forward_flops(patches, patch_dim, dim);
}

// One pre-norm transformer block on T tokens of width D with MLP width r*D:
// qkv 6TD^2 + proj 2TD^2 + fc1 2rTD^2 + fc2 2rTD^2 + (QK^T and AV) 4T^2 D.
// For r = 4: 24 T D^2 + 4 T^2 D. Serves encoder blocks and decoder blocks (width Dd) alike.
constexpr std::int64_t transformer_block_forward_flops(std::int64_t tokens, std::int64_t width, std::int64_t mlp_ratio) {
  return (8 + 4 * mlp_ratio) * tokens * width * width + 4 * tokens * tokens * width;
}

// Conveniences for an encoder described by a ViTSpec.
constexpr std::int64_t patch_embed_forward_flops(const ViTSpec& spec) {
  return patch_embed_forward_flops(spec.tokens(), spec.patch_dim(), spec.dim);
}
constexpr std::int64_t encoder_block_forward_flops(const ViTSpec& spec, std::int64_t tokens) {
  return transformer_block_forward_flops(tokens, spec.dim, spec.mlp_ratio);
}

}  // namespace vitfreeze::nn
