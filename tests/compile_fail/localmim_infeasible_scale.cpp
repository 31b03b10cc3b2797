// Must not compile: on 28x28 images with patch 2 (a 14x14 grid), LocalMIM's scale 4 would need HOG
// cells of half a pixel. With VITFREEZE_CONTROL (scale 2: cells of one pixel) it must compile.
// Expected error: LocalMim: a tap scale is infeasible for this image and patch
#include "vitfreeze/mim/localmim.hpp"
constexpr vitfreeze::ViTSpec spec{.image = 28, .channels = 1, .patch = 2, .dim = 32, .depth = 4, .heads = 2};
#ifdef VITFREEZE_CONTROL
using Taps = vitfreeze::mim::taps<vitfreeze::mim::TapSpec{1, 2, 1}, vitfreeze::mim::TapSpec{3, 1, 2}>;
#else
using Taps = vitfreeze::mim::taps<vitfreeze::mim::TapSpec{1, 4, 1}, vitfreeze::mim::TapSpec{3, 1, 2}>;
#endif
template class vitfreeze::mim::LocalMim<spec, Taps, vitfreeze::mim::DecoderSpec{.dim = 32, .depth = 1, .heads = 2}>;
int main() {}
