#pragma once
// LocalMIM's shape as compile-time values (spec vitfreeze-localmim-freezeout.md §2.1-2.2): which
// blocks are tapped at which scale, and the decoders' shape. Apart from the objective (localmim.hpp)
// so that the cost model can read it without the modules.
#include <array>

#include "vitfreeze/mim/decoder_spec.hpp"

namespace vitfreeze::mim {

// One decoder tap: the hidden state after 0-based block `block`, predicted at scale num/den.
struct TapSpec {
  int block = 0;
  int scale_num = 1;
  int scale_den = 1;
  friend constexpr bool operator==(const TapSpec&, const TapSpec&) = default;
};

template <TapSpec... Ts>
struct taps {
  static constexpr int count = sizeof...(Ts);
  static constexpr std::array<TapSpec, sizeof...(Ts)> list{Ts...};
};

// LocalMIM's taps (spec §2.2): ID = [1, 3, depth-3, depth-1] with scales [4, 2, 1, 1/2], as values
// (for a depth known only at run time: the cost model of a command line) and as the objective's type.
constexpr std::array<TapSpec, 4> localmim_tap_list(int depth) {
  return {TapSpec{1, 4, 1}, TapSpec{3, 2, 1}, TapSpec{depth - 3, 1, 1}, TapSpec{depth - 1, 1, 2}};
}
template <int Depth>
using localmim_taps = taps<localmim_tap_list(Depth)[0], localmim_tap_list(Depth)[1], localmim_tap_list(Depth)[2],
                           localmim_tap_list(Depth)[3]>;

// LocalMIM's decoders: 256 wide, 1 block, 8 heads, MLP ratio 4 (spec §2.1).
inline constexpr DecoderSpec kLocalMimDecoder{.dim = 256, .depth = 1, .heads = 8, .mlp_ratio = 4};

}  // namespace vitfreeze::mim
