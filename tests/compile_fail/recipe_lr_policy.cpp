// Must not compile: an LR policy whose unit_lr returns float (the controller works in double). With
// VITFREEZE_CONTROL (double) it must compile.
// Expected error: Pretraining: LrPolicy is not a freeze::LrPolicy
#include <cstdint>

#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/train/pretraining.hpp"
namespace vf = vitfreeze;
constexpr vf::ViTSpec spec{.image = 28, .channels = 1, .patch = 4, .dim = 64, .depth = 2, .heads = 4};
#ifdef VITFREEZE_CONTROL
using Lr = double;
#else
using Lr = float;
#endif
struct Constant {
  static constexpr const char* name = "constant";
  static constexpr Lr unit_lr(const vf::freeze::LrSettings& s, const vf::freeze::RunLength&, double, std::int64_t) {
    return Lr(s.base_lr);
  }
};
using Recipe = vf::Pretraining<vf::nn::ViT<spec>, vf::mim::Mae<spec>, vf::mim::Random<750>, vf::freeze::Cubic<800>, Constant>;
static_assert(Recipe::units() == 3);
int main() {}
