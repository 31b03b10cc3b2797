// Must not compile: 30 is not a multiple of the patch 4. With VITFREEZE_CONTROL it must compile.
// Expected error: ViTSpec: image must be a multiple of patch
#include "vitfreeze/nn/vit.hpp"
#ifdef VITFREEZE_CONTROL
constexpr vitfreeze::ViTSpec spec{.image = 28, .channels = 1, .patch = 4, .dim = 64, .depth = 2, .heads = 4};
#else
constexpr vitfreeze::ViTSpec spec{.image = 30, .channels = 1, .patch = 4, .dim = 64, .depth = 2, .heads = 4};
#endif
template class vitfreeze::nn::ViT<spec, float>;
int main() {}
