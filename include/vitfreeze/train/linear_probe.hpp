#pragma once
// Linear probing: the encoder is frozen, its features are computed once (the explicit encoder's
// forward on the CPU backend, keeping nothing), standardised with the training set's statistics
// (BatchNorm without affine, as in MAE's probe), and a linear classifier is trained on the cached
// features with AdamW.
#include <cmath>
#include <numeric>

#include "vitfreeze/autograd/ops/loss.hpp"
#include "vitfreeze/backend/cpu/backend.hpp"
#include "vitfreeze/data/loader.hpp"
#include "vitfreeze/nn/linear.hpp"
#include "vitfreeze/model/encoder.hpp"
#include "vitfreeze/optim/adamw.hpp"
#include "vitfreeze/train/evaluate.hpp"

namespace vitfreeze::train {

enum class FeaturePool { cls, mean_patches };

struct Features {
  Tensor<float> values;               // [N, D]
  std::vector<std::int32_t> labels;   // N
};

// Runs the encoder forward on every sample of `loader`'s epoch 0 (no augmentation expected).
template <class Encoder>
Features extract_features(Encoder& encoder, data::Loader& loader, std::int64_t count, FeaturePool pool) {
  constexpr std::int64_t D = Encoder::spec.dim, L = Encoder::spec.tokens();
  Features f{Tensor<float>(Shape{count, D}), {}};
  cpu::CpuContext ctx;
  const model::Encoder<Cpu, Fp32> explicit_encoder(ctx, encoder);
  Tensor<std::int32_t> every_patch;  // [B, L]: rows 0..L-1, the unmasked sequence
  loader.start_epoch(0);
  std::int64_t row = 0;
  while (auto batch = loader.next()) {
    const std::int64_t B = batch->images.dim(0);
    if (every_patch.empty() || every_patch.dim(0) < B) {
      every_patch = Tensor<std::int32_t>(Shape{B, L});
      for (std::int64_t i = 0; i < every_patch.numel(); ++i) every_patch[i] = std::int32_t(i % L);
    }
    const Tensor<float> tokens = explicit_encoder.forward(ctx, batch->images, every_patch.data(), B, L, 1, nullptr);
    const std::int64_t Tn = tokens.dim(1);  // 1 + L
    for (std::int64_t b = 0; b < B && row < count; ++b, ++row) {
      float* out = f.values.data() + row * D;
      if (pool == FeaturePool::cls) {
        std::copy_n(tokens.data() + b * Tn * D, D, out);
      } else {
        std::fill_n(out, D, 0.0f);
        for (std::int64_t t = 1; t < Tn; ++t)
          for (std::int64_t d = 0; d < D; ++d) out[d] += tokens[(b * Tn + t) * D + d] / float(Tn - 1);
      }
      f.labels.push_back(batch->labels[std::size_t(b)]);
    }
  }
  if (row != count) throw ConfigError("extract_features: loader produced " + std::to_string(row) + " of " + std::to_string(count) + " samples");
  return f;
}

// Standardise columns with the statistics of `train` (applied to both).
inline void standardize(Features& train, Features& test) {
  const std::int64_t N = train.values.dim(0), D = train.values.dim(1);
  std::vector<double> mean(D, 0), var(D, 0);
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t d = 0; d < D; ++d) mean[d] += train.values[n * D + d] / double(N);
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t d = 0; d < D; ++d) var[d] += std::pow(train.values[n * D + d] - mean[d], 2) / double(N);
  for (Features* f : {&train, &test})
    for (std::int64_t n = 0; n < f->values.dim(0); ++n)
      for (std::int64_t d = 0; d < D; ++d)
        f->values[n * D + d] = float((f->values[n * D + d] - mean[d]) / std::sqrt(var[d] + 1e-6));
}

struct ProbeOptions {
  int epochs = 20;
  std::int64_t batch = 256;
  double lr = 1e-3;
  std::uint64_t seed = 0;
  int classes = 10;
};

struct ProbeResult {
  Accuracy train, test;
};

inline Accuracy evaluate_linear(nn::Linear<float>& head, const Features& f) {
  Accuracy acc;
  Tape<float> tape;
  NoGrad<float> no_grad(tape);
  auto logits = head(tape, tape.constant(f.values));
  accumulate_accuracy(tape.value(logits), f.labels, acc);
  return acc;
}

inline ProbeResult train_linear_probe(Features train, Features test, const ProbeOptions& opt) {
  standardize(train, test);
  const std::int64_t N = train.values.dim(0), D = train.values.dim(1);
  nn::Linear<float> head("head", D, opt.classes);
  nn::trunc_normal_init(head.weight, 0.01, opt.seed);
  head.bias.value.zero();
  optim::AdamW<float> adam({.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0});
  Tape<float> tape;
  std::vector<std::int64_t> order(static_cast<std::size_t>(N));
  std::iota(order.begin(), order.end(), 0);
  const std::int64_t steps_per_epoch = (N + opt.batch - 1) / opt.batch, total = steps_per_epoch * opt.epochs;
  std::int64_t step = 0;
  for (int e = 0; e < opt.epochs; ++e) {
    RandomStream rng(opt.seed, RngPurpose::shuffle, std::uint64_t(e), 7);
    for (std::int64_t i = N - 1; i > 0; --i) std::swap(order[i], order[rng.below(std::uint32_t(i + 1))]);
    for (std::int64_t s = 0; s < N; s += opt.batch, ++step) {
      const std::int64_t B = std::min(opt.batch, N - s);
      Tensor<float> x = tape.alloc(Shape{B, D});
      std::vector<std::int32_t> y(static_cast<std::size_t>(B));
      for (std::int64_t b = 0; b < B; ++b) {
        std::copy_n(train.values.data() + order[s + b] * D, D, x.data() + b * D);
        y[std::size_t(b)] = train.labels[std::size_t(order[s + b])];
      }
      tape.backward(ops::cross_entropy(tape, head(tape, tape.constant(x)), y));
      const double lr = opt.lr * 0.5 * (1 + std::cos(M_PI * double(step) / double(total)));
      adam.update(head.weight, lr);
      adam.update(head.bias, lr);
      head.weight.zero_grad();
      head.bias.zero_grad();
      tape.reset();
    }
  }
  return {evaluate_linear(head, train), evaluate_linear(head, test)};
}

}  // namespace vitfreeze::train
