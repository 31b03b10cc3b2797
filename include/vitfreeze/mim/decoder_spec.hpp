#pragma once
// The shape of an MAE-style decoder (peers spec §1.3), a structural value used as a template
// argument; apart from the decoder itself (mae_decoder.hpp) so that the cost model can read it
// without the modules.

namespace vitfreeze::mim {

struct DecoderSpec {
  int dim = 128;
  int depth = 2;
  int heads = 4;
  int mlp_ratio = 4;
  friend constexpr bool operator==(const DecoderSpec&, const DecoderSpec&) = default;
};

}  // namespace vitfreeze::mim
