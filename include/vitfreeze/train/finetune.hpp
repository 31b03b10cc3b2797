#pragma once
// End-to-end fine-tuning (MAE recipe, peers spec §0.7): global average pooling of the patch tokens,
// a new LayerNorm `fc_norm` (the encoder's final norm is not used), a linear head (trunc-normal
// std 2e-5, zero bias); AdamW with layer-wise LR decay and no weight decay on 1-D tensors (biases,
// norms) or the cls token and position table (timm's no_weight_decay), warmup + cosine, label
// smoothing, optional mixup / cutmix with switching (data/mix.hpp) and stochastic depth
// (nn/drop_path.hpp). The images' own augmentation (RandAugment, colour jitter, random erasing) is
// the loader's Transform. A relative encoder (LoMaR) runs at any image size with the same weights.
#include <chrono>
#include <cmath>
#include <iostream>

#include "vitfreeze/autograd/ops/elementwise.hpp"
#include "vitfreeze/autograd/ops/loss.hpp"
#include "vitfreeze/data/loader.hpp"
#include "vitfreeze/data/mix.hpp"
#include "vitfreeze/freeze/lr_mode.hpp"
#include "vitfreeze/io/metrics.hpp"
#include "vitfreeze/nn/layernorm.hpp"
#include "vitfreeze/nn/linear.hpp"
#include "vitfreeze/nn/vit.hpp"
#include "vitfreeze/optim/adamw.hpp"
#include "vitfreeze/optim/param_groups.hpp"
#include "vitfreeze/train/evaluate.hpp"

namespace vitfreeze::train {

template <class Encoder, CpuScalar T = float>
class Classifier {
 public:
  static constexpr ViTSpec spec = Encoder::spec;

  Classifier(Encoder& encoder, int classes, std::uint64_t seed)
      : encoder(encoder), fc_norm("fc_norm", spec.dim), head("head", spec.dim, classes) {
    nn::trunc_normal_init(head.weight, 2e-5, seed);
    head.bias.value.zero();
  }

  // drop_path: stochastic depth for a training step (none in evaluation).
  Var<T> operator()(Tape<T>& tape, const Tensor<T>& images, const nn::StochasticDepth* drop_path = nullptr) {
    auto tokens = encoder.forward(tape, images, nullptr, {}, /*final_norm=*/false, 1, drop_path).tokens;
    return head(tape, fc_norm(tape, ops::mean_tokens(tape, tokens, 1)));
  }

  // Layers for layer-wise decay: 0 = patch embedding + cls, b + 1 = block b, depth + 1 = fc_norm + head.
  std::vector<nn::ParameterList<T>> layers() {
    std::vector<nn::ParameterList<T>> l(std::size_t(spec.depth) + 2);
    encoder.patch_embed.collect_parameters(l[0]);
    l[0].push_back(&encoder.cls_token);
    for (int b = 0; b < spec.depth; ++b) encoder.blocks[std::size_t(b)].collect_parameters(l[std::size_t(b) + 1]);
    fc_norm.collect_parameters(l.back());
    head.collect_parameters(l.back());
    return l;
  }

  Encoder& encoder;
  nn::LayerNorm<T> fc_norm;
  nn::Linear<T> head;
};

struct FinetuneOptions {
  int epochs = 10;
  int warmup_epochs = 1;
  double base_lr = 1e-3;
  double min_lr = 1e-6;
  double weight_decay = 0.05;
  double layer_decay = 0.75;
  double label_smoothing = 0.1;
  double mixup_alpha = 0.0;   // 0 = off
  double cutmix_alpha = 0.0;  // 0 = off
  double mix_switch_probability = 0.5;  // cutmix rather than mixup when both are on
  double drop_path = 0.0;     // the last block's stochastic depth rate
  std::uint64_t seed = 0;
  bool progress = true;

  data::MixSettings mix() const { return {mixup_alpha, cutmix_alpha, mix_switch_probability, 1.0}; }
};

// timm's fine-tuning decay rule (param_groups_lrd): no weight decay on 1-D tensors (biases, norm
// weights) or on the names of no_weight_decay() (cls_token, pos_embed).
template <CpuScalar T>
bool finetune_weight_decay(const Parameter<T>& p) {
  return p.value.rank() > 1 && p.name != "cls_token" && p.name != "pos_embed";
}

template <class Encoder>
Accuracy evaluate_classifier(Classifier<Encoder>& model, data::Loader& loader) {
  Accuracy acc;
  Tape<float> tape;
  loader.start_epoch(0);
  while (auto batch = loader.next()) {
    tape.reset();
    NoGrad<float> no_grad(tape);
    accumulate_accuracy(tape.value(model(tape, batch->images)), batch->labels, acc);
  }
  return acc;
}

// Trains all parameters; returns per-epoch mean training loss.
template <class Encoder>
std::vector<double> finetune(Classifier<Encoder>& model, data::Loader& loader, const FinetuneOptions& opt) {
  auto groups = optim::layer_decay_groups<float>(model.layers(), opt.layer_decay);
  for (auto& g : groups)
    for (auto* p : g.params) p->unfreeze();
  optim::AdamW<float> adam({.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = opt.weight_decay});
  Tape<float> tape;
  io::ProgressBar bar(std::cout);
  const std::int64_t iters = loader.batches_per_epoch();
  std::vector<double> losses;
  for (int epoch = 0; epoch < opt.epochs; ++epoch) {
    loader.start_epoch(std::uint64_t(epoch) + 1000);  // a different order from pretraining's epochs
    if (opt.progress) bar.begin_epoch(epoch + 1, opt.epochs, iters);
    double sum = 0;
    std::int64_t s = 0;
    while (auto batch = loader.next()) {
      const double lr = freeze::warmup_cosine(double(epoch) + double(s) / double(iters), opt.base_lr, opt.min_lr,
                                              opt.warmup_epochs, opt.epochs);
      tape.reset();
      std::vector<std::int32_t> partner;
      const auto& shape = batch->images.shape();
      const data::MixDraw mix = opt.mix().draw(opt.seed, std::uint64_t(epoch), std::uint32_t(s), int(shape[2]), int(shape[3]));
      const Tensor<float> images = mix.kind == data::MixDraw::Kind::none
                                       ? batch->images
                                       : data::apply_mix(mix, batch->images, batch->labels, partner);
      const double lam = mix.lam;
      const nn::StochasticDepth drop{opt.drop_path, opt.seed, std::uint64_t(epoch) * std::uint64_t(iters) + std::uint64_t(s)};
      auto logits = model(tape, images, opt.drop_path > 0 ? &drop : nullptr);
      auto loss = ops::cross_entropy(tape, logits, batch->labels, opt.label_smoothing);
      if (lam < 1.0)
        loss = ops::add(tape, ops::scale(tape, loss, lam),
                        ops::scale(tape, ops::cross_entropy(tape, logits, partner, opt.label_smoothing), 1 - lam));
      const double value = tape.value(loss)[0];
      if (!std::isfinite(value)) throw NumericError("finetune: non-finite loss at epoch " + std::to_string(epoch));
      tape.backward(loss);
      for (auto& g : groups)
        for (auto* p : g.params) {
          adam.update(*p, lr * g.lr_scale, finetune_weight_decay(*p));
          p->zero_grad();
        }
      sum += value, ++s;
      if (opt.progress) bar.update(s, value, batch->size());
    }
    if (opt.progress) bar.end_epoch();
    losses.push_back(s ? sum / double(s) : 0.0);
  }
  return losses;
}

}  // namespace vitfreeze::train
