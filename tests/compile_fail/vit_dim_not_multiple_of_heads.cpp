// Must not compile: width 64 is not divisible by 5 heads. With VITFREEZE_CONTROL it must compile.
// Expected error: ViTSpec: dim must be a multiple of heads
#include "vitfreeze/nn/vit.hpp"
#ifdef VITFREEZE_CONTROL
constexpr vitfreeze::ViTSpec spec{.image = 28, .channels = 1, .patch = 4, .dim = 64, .depth = 2, .heads = 4};
#else
constexpr vitfreeze::ViTSpec spec{.image = 28, .channels = 1, .patch = 4, .dim = 64, .depth = 2, .heads = 5};
#endif
template class vitfreeze::nn::ViT<spec, float>;
int main() {}
