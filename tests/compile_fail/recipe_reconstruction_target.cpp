// Must not compile: a reconstruction target with no compute(). With VITFREEZE_CONTROL (the same type
// with compute) it must compile.
// Expected error: Mae: Target is not a mim::ReconstructionTarget
#include <span>

#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/train/pretraining.hpp"
namespace vf = vitfreeze;
constexpr vf::ViTSpec spec{.image = 28, .channels = 1, .patch = 4, .dim = 64, .depth = 2, .heads = 4};
struct Brightness {
  static constexpr const char* name = "brightness";
  static constexpr int values(int, int) { return 1; }
#ifdef VITFREEZE_CONTROL
  template <class T>
  static void compute(const T*, std::span<const vf::mim::TargetGeometry>, std::span<T* const>) {}
#endif
};
using Recipe = vf::Pretraining<vf::nn::ViT<spec>, vf::mim::Mae<spec, {}, Brightness>, vf::mim::Random<750>,
                               vf::freeze::Cubic<800>>;
static_assert(Recipe::units() == 3);
int main() {}
