// Must not compile: a masking policy without kept() (the trainer sizes buffers with it). With
// VITFREEZE_CONTROL (mim::Random<750>) it must compile.
// Expected error: Pretraining: Masking is not a mim::MaskingPolicy
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/train/pretraining.hpp"
namespace vf = vitfreeze;
constexpr vf::ViTSpec spec{.image = 28, .channels = 1, .patch = 4, .dim = 64, .depth = 2, .heads = 4};
struct MakeOnly {
  vf::mim::MaskSet make(int, int, int, std::uint64_t, std::uint64_t, std::uint32_t = 0) const { return {}; }
};
#ifdef VITFREEZE_CONTROL
using Masking = vf::mim::Random<750>;
#else
using Masking = MakeOnly;
#endif
using Recipe = vf::Pretraining<vf::nn::ViT<spec>, vf::mim::Mae<spec>, Masking, vf::freeze::Cubic<800>>;
static_assert(Recipe::units() == 3);
int main() {}
