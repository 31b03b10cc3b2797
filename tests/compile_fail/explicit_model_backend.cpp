// Must not compile: a backend that provides no kernels. With VITFREEZE_CONTROL (vitfreeze::Cpu) it
// must compile.
// Expected error: model::ExplicitOf: B is not a vitfreeze::Backend
#include "vitfreeze/backend/cpu/backend.hpp"
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/model/explicit_of.hpp"
namespace vf = vitfreeze;
constexpr vf::ViTSpec spec{.image = 28, .channels = 1, .patch = 4, .dim = 64, .depth = 2, .heads = 4};
struct Abacus {
  static constexpr const char* name = "abacus";
};
#ifdef VITFREEZE_CONTROL
using B = vf::Cpu;
#else
using B = Abacus;
#endif
using Model = vf::model::ExplicitOf<vf::mim::Mae<spec>, B, vf::Fp32>;
static_assert(sizeof(Model*) > 0);
int main() {}
