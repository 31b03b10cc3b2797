// Must not compile: the 2-D sin-cos table needs a width divisible by 4 (6 is divisible by the
// 3 heads but not by 4). With VITFREEZE_CONTROL it must compile.
// Expected error: ViTSpec: dim must be a multiple of 4 for the 2-D sin-cos position embedding
#include "vitfreeze/nn/vit.hpp"
#ifdef VITFREEZE_CONTROL
constexpr vitfreeze::ViTSpec spec{.image = 28, .channels = 1, .patch = 4, .dim = 12, .depth = 2, .heads = 3};
#else
constexpr vitfreeze::ViTSpec spec{.image = 28, .channels = 1, .patch = 4, .dim = 6, .depth = 2, .heads = 3};
#endif
template class vitfreeze::nn::ViT<spec, float>;
int main() {}
