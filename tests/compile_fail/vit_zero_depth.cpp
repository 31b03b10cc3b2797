// Must not compile: a ViT needs at least one block. With VITFREEZE_CONTROL it must compile.
// Expected error: ViTSpec: every field must be positive
#include "vitfreeze/nn/vit.hpp"
#ifdef VITFREEZE_CONTROL
constexpr vitfreeze::ViTSpec spec{.image = 28, .channels = 1, .patch = 4, .dim = 64, .depth = 1, .heads = 4};
#else
constexpr vitfreeze::ViTSpec spec{.image = 28, .channels = 1, .patch = 4, .dim = 64, .depth = 0, .heads = 4};
#endif
template class vitfreeze::nn::ViT<spec, float>;
int main() {}
