// A user's program: builds a tiny encoder, runs forward and backward, prints the loss.
#include <vitfreeze/vitfreeze.hpp>

#include <iostream>

int main() {
  constexpr vitfreeze::ViTSpec spec{.image = 8, .channels = 1, .patch = 4, .dim = 16, .depth = 2, .heads = 2};
  vitfreeze::nn::ViT<spec, float> model(1);
  vitfreeze::Tape<float> tape;
  vitfreeze::Tensor<float> images = vitfreeze::Tensor<float>::full({2, 1, 8, 8}, 0.5f);
  auto out = model.forward(tape, images);
  auto loss = vitfreeze::ops::weighted_sum(tape, out.tokens, vitfreeze::Tensor<float>::full(tape.value(out.tokens).shape(), 1.0f));
  tape.backward(loss);
  const bool ok = !model.cls_token.grad.empty();
  std::cout << "consumer: loss " << tape.value(loss)[0] << (ok ? " ok" : " missing gradient") << "\n";
  return ok ? 0 : 1;
}
