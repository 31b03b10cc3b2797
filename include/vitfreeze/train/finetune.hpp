#pragma once
// End-to-end fine-tuning (MAE recipe, peers spec §0.7): global average pooling of the patch tokens,
// a new LayerNorm `fc_norm` (the encoder's final norm is not used), a linear head (trunc-normal
// std 2e-5, zero bias); AdamW with layer-wise LR decay, warmup + cosine, label smoothing, and
// optional mixup (Beta(alpha, alpha) pairs within the batch).
#include <chrono>
#include <cmath>
#include <iostream>

#include "vitfreeze/autograd/ops/elementwise.hpp"
#include "vitfreeze/autograd/ops/loss.hpp"
#include "vitfreeze/data/loader.hpp"
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

  Var<T> operator()(Tape<T>& tape, const Tensor<T>& images) {
    auto tokens = encoder.forward(tape, images, nullptr, {}, /*final_norm=*/false).tokens;
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
  double mixup_alpha = 0.0;  // 0 = off
  std::uint64_t seed = 0;
  bool progress = true;
};

// Beta(a, a) from two Gamma(a) draws (Marsaglia-Tsang; a < 1 through the a + 1 boost).
inline double sample_gamma(RandomStream& rng, double a) {
  if (a < 1) return sample_gamma(rng, a + 1) * std::pow(rng.uniform() + 1e-300, 1.0 / a);
  const double d = a - 1.0 / 3, c = 1 / std::sqrt(9 * d);
  for (;;) {
    double x = rng.normal(), v = 1 + c * x;
    if (v <= 0) continue;
    v = v * v * v;
    const double u = rng.uniform();
    if (std::log(u + 1e-300) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
  }
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
      Tensor<float> images = batch->images;
      std::vector<std::int32_t> partner = batch->labels;
      double lam = 1.0;
      if (opt.mixup_alpha > 0) {  // mix sample i with sample B-1-i (timm's flipped-batch pairing)
        RandomStream rng(opt.seed, RngPurpose::mixup, std::uint64_t(epoch), std::uint32_t(s));
        const double a = sample_gamma(rng, opt.mixup_alpha), b = sample_gamma(rng, opt.mixup_alpha);
        lam = a / (a + b);
        images = batch->images.clone();
        const std::int64_t B = images.dim(0), per = images.numel() / B;
        for (std::int64_t i = 0; i < B; ++i) {
          const std::int64_t j = B - 1 - i;
          for (std::int64_t k = 0; k < per; ++k)
            images[i * per + k] = float(lam * batch->images[i * per + k] + (1 - lam) * batch->images[j * per + k]);
          partner[std::size_t(i)] = batch->labels[std::size_t(j)];
        }
      }
      auto logits = model(tape, images);
      auto loss = ops::cross_entropy(tape, logits, batch->labels, opt.label_smoothing);
      if (lam < 1.0)
        loss = ops::add(tape, ops::scale(tape, loss, lam),
                        ops::scale(tape, ops::cross_entropy(tape, logits, partner, opt.label_smoothing), 1 - lam));
      const double value = tape.value(loss)[0];
      if (!std::isfinite(value)) throw NumericError("finetune: non-finite loss at epoch " + std::to_string(epoch));
      tape.backward(loss);
      for (auto& g : groups)
        for (auto* p : g.params) {
          adam.update(*p, lr * g.lr_scale);
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
