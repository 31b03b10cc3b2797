#pragma once
// MAE-lite (peers spec §3): MAE retuned for ViT-Tiny. The objective is MAE unchanged (masking,
// norm-pix target, loss); what differs is the model and the recipe around it:
//   - the encoder has 12 heads of 16 instead of ViT-Tiny's 3 of 64 (same parameter count);
//   - the decoder is one block 96 wide with 3 heads;
//   - pretraining crops take scale (0.08, 1) with bilinear or bicubic drawn per sample;
//   - fine-tuning uses layer decay 0.85, mixup 0.2 and no label smoothing.
// The optional attention distillation from a MAE-Base teacher is not part of this.
#include "vitfreeze/data/resample.hpp"
#include "vitfreeze/mim/mae.hpp"

namespace vitfreeze::mim {

inline constexpr DecoderSpec kMaeLiteDecoder{.dim = 96, .depth = 1, .heads = 3, .mlp_ratio = 4};

// ViT-Tiny the MAE-lite way, for any image geometry.
constexpr ViTSpec mae_lite_tiny(int image, int channels, int patch) { return specs::tiny(image, channels, patch, 12); }

template <ViTSpec S, CpuScalar T = float>
class MaeLite : public Mae<S, kMaeLiteDecoder, NormalizedPixels, T> {
 public:
  static constexpr const char* name = "mae-lite";
  using Mae<S, kMaeLiteDecoder, NormalizedPixels, T>::Mae;
};

// The recipe's numbers around the objective.
struct MaeLiteRecipe {
  static constexpr double crop_min_scale = 0.08;
  static constexpr data::Interpolation interpolation = data::Interpolation::random;
  static constexpr double finetune_layer_decay = 0.85;
  static constexpr double finetune_mixup_alpha = 0.2;
  static constexpr double finetune_label_smoothing = 0.0;
};

}  // namespace vitfreeze::mim
