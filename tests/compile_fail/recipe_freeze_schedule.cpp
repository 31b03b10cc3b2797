// Must not compile: a freeze schedule whose fraction() is not constexpr (the schedule must be usable
// at compile time, e.g. by predicted_saving). With VITFREEZE_CONTROL (constexpr) it must compile.
// Expected error: Pretraining: Schedule is not a freeze::FreezeSchedule
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/train/pretraining.hpp"
namespace vf = vitfreeze;
constexpr vf::ViTSpec spec{.image = 28, .channels = 1, .patch = 4, .dim = 64, .depth = 2, .heads = 4};
struct Halfway {
#ifdef VITFREEZE_CONTROL
  static constexpr double fraction(int unit, int units) { return unit + 1 == units ? 1.0 : 0.5; }
#else
  static double fraction(int unit, int units) { return unit + 1 == units ? 1.0 : 0.5; }
#endif
};
using Recipe = vf::Pretraining<vf::nn::ViT<spec>, vf::mim::Mae<spec>, vf::mim::Random<750>, Halfway, vf::freeze::GlobalHardFreeze>;
static_assert(Recipe::units() == 3);
int main() {}
