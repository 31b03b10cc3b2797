// A minimal user translation unit for the compile-time measurement (bench/compile_time.sh): a ViT-Ti
// encoder, the MAE objective and one trainer step on synthetic images. Not built by CMake.
#include "vitfreeze/freeze/freeze.hpp"
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/train/pretrainer.hpp"

namespace vf = vitfreeze;

int main() {
  constexpr vf::ViTSpec spec = vf::specs::tiny(28, 1, 2);
  vf::nn::ViT<spec> encoder(1);
  vf::mim::Mae<spec> objective(2);
  vf::freeze::FreezeController controller = vf::freeze::make_controller<vf::freeze::Cubic<800>>(spec.depth + 1, {2, 1, 4}, 1e-3);
  vf::optim::AdamW<float> adamw;
  vf::train::PretrainOptions options;
  options.epochs = 2;
  options.progress = false;
  vf::train::Pretrainer trainer(encoder, objective, vf::mim::Random<750>{}, controller, adamw, options);
  const auto images = vf::Tensor<float>::full(vf::Shape{2, 1, 28, 28}, 0.5f);
  return trainer.step(images, 0) > 0 ? 0 : 1;
}
