// Must not compile: an objective with no forward(tape, encoder, images, masks). With
// VITFREEZE_CONTROL (mim::Mae) it must compile.
// Expected error: Pretraining: Objective is not a mim::Objective
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/train/pretraining.hpp"
namespace vf = vitfreeze;
constexpr vf::ViTSpec spec{.image = 28, .channels = 1, .patch = 4, .dim = 64, .depth = 2, .heads = 4};
struct NoForward {
  static constexpr const char* name = "no-forward";
  using Encoder = vf::nn::ViT<spec>;
  void collect_parameters(vf::nn::ParameterList<float>&) {}
};
#ifdef VITFREEZE_CONTROL
using Objective = vf::mim::Mae<spec>;
#else
using Objective = NoForward;
#endif
using Recipe = vf::Pretraining<vf::nn::ViT<spec>, Objective, vf::mim::Random<750>, vf::freeze::Cubic<800>>;
static_assert(Recipe::units() == 3);
int main() {}
