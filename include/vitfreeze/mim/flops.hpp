#pragma once
// Forward FLOPs per image of the objectives' own modules, counted as nn/flops.hpp counts the
// encoder (matrix products only, 2*M*K*N). Values, not types, so a cost model can be evaluated for
// a ViTSpec known only at run time; the objectives' static cost hooks call these with their own
// compile-time shapes (Mae::untracked_forward_flops, LocalMim::tap_forward_flops).
#include <cstdint>

#include "vitfreeze/mim/decoder_spec.hpp"
#include "vitfreeze/mim/localmim_spec.hpp"
#include "vitfreeze/nn/flops.hpp"
#include "vitfreeze/nn/vit_spec.hpp"

namespace vitfreeze::mim {

// An MAE decoder (mae_decoder.hpp) reading the encoder's 1 + visible tokens: embed them to the
// decoder width, run its blocks on all 1 + L tokens, and (with_pred) predict out_values per patch.
constexpr double mae_decoder_forward_flops(const ViTSpec& encoder, const DecoderSpec& decoder, int visible,
                                           int out_values, bool with_pred = true) {
  const std::int64_t patches = encoder.tokens();
  std::int64_t f = nn::linear_forward_flops(visible + 1, encoder.dim, decoder.dim) +
                   decoder.depth * nn::transformer_block_forward_flops(patches + 1, decoder.dim, decoder.mlp_ratio);
  if (with_pred) f += nn::linear_forward_flops(patches, decoder.dim, out_values);
  return static_cast<double>(f);
}

// LocalMIM's scale head (scale_head.hpp) on a grid x grid map of `width` channels at scale num/den.
// A stride-2 2x2 transposed convolution is a linear map to 4 * out channels per input pixel.
constexpr double scale_head_forward_flops(int grid, int width, int scale_num, int scale_den, int out_values) {
  const std::int64_t g2 = std::int64_t(grid) * grid;
  std::int64_t f = 0;
  if (scale_num == 4)
    f = nn::linear_forward_flops(g2, width, 4 * (width / 2)) + nn::linear_forward_flops(4 * g2, width / 2, 4 * (width / 4)) +
        nn::linear_forward_flops(16 * g2, width / 4, out_values);
  else if (scale_num == 2)
    f = nn::linear_forward_flops(g2, width, 4 * (width / 2)) + nn::linear_forward_flops(4 * g2, width / 2, out_values);
  else if (scale_den == 2)  // average pool 2x2, then the 1x1 convolution
    f = nn::linear_forward_flops((grid / 2) * std::int64_t(grid / 2), width, out_values);
  else
    f = nn::linear_forward_flops(g2, width, out_values);
  return static_cast<double>(f);
}

// One LocalMIM tap: its decoder (no prediction layer) and its scale head.
constexpr double localmim_tap_forward_flops(const ViTSpec& encoder, const DecoderSpec& decoder, const TapSpec& tap,
                                            int visible, int out_values) {
  return mae_decoder_forward_flops(encoder, decoder, visible, out_values, /*with_pred=*/false) +
         scale_head_forward_flops(encoder.grid(), decoder.dim, tap.scale_num, tap.scale_den, out_values);
}

}  // namespace vitfreeze::mim
