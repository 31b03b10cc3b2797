// Must not compile: a precision policy without master weights (Master). With VITFREEZE_CONTROL
// (Master = float) it must compile.
// Expected error: model::ExplicitOf: P is not a vitfreeze::PrecisionPolicy
#include "vitfreeze/backend/cpu/backend.hpp"
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/model/explicit_of.hpp"
namespace vf = vitfreeze;
constexpr vf::ViTSpec spec{.image = 28, .channels = 1, .patch = 4, .dim = 64, .depth = 2, .heads = 4};
struct AllFloat {
  using Activation = float;
#ifdef VITFREEZE_CONTROL
  using Master = float;
#endif
  static constexpr bool fused_tanh_gelu = false;
  static constexpr bool loss_scaling = false;
  static constexpr const char* name = "all-float";
};
using Model = vf::model::ExplicitOf<vf::mim::Mae<spec>, vf::Cpu, AllFloat>;
static_assert(sizeof(Model*) > 0);
int main() {}
