#pragma once
// Linear probing: the encoder is frozen, its features are computed once (the explicit encoder's
// forward on the CPU backend, keeping nothing; a relative encoder on its full grid), and a linear
// classifier is trained on the cached features, one of two ways:
//   ProbeMethod::adamw  the features standardised once with the training set's statistics, AdamW
//                       with a cosine LR (the project's short protocol);
//   ProbeMethod::mae    MAE's linear probe (main_linprobe.py, peers spec §0.7): BatchNorm without
//                       affine before the head (batch statistics while training, running estimates,
//                       momentum 0.1, in evaluation), LARS (momentum 0.9, no weight decay), lr = blr
//                       x batch / 256 with warmup and a half cosine to 0, head trunc-normal std 0.01.
// Differences from MAE's: the features are cached, so there is no crop/flip augmentation per epoch,
// and the global pool averages the encoder's final-normed patch tokens (MAE: fc_norm of the mean).
#include <cmath>
#include <numeric>
#include <optional>
#include <ostream>
#include <string>

#include "vitfreeze/autograd/ops/batchnorm.hpp"
#include "vitfreeze/autograd/ops/loss.hpp"
#include "vitfreeze/backend/cpu/backend.hpp"
#include "vitfreeze/data/loader.hpp"
#include "vitfreeze/nn/linear.hpp"
#include "vitfreeze/model/encoder.hpp"
#include "vitfreeze/freeze/lr_mode.hpp"
#include "vitfreeze/io/metrics.hpp"
#include "vitfreeze/optim/adamw.hpp"
#include "vitfreeze/optim/lars.hpp"
#include "vitfreeze/train/evaluate.hpp"

namespace vitfreeze::train {

enum class FeaturePool { cls, mean_patches };

struct Features {
  Tensor<float> values;               // [N, D]
  std::vector<std::int32_t> labels;   // N
};

// Runs the encoder forward on every sample of `loader`'s epoch 0 (no augmentation expected).
// progress (null: silent): a line per batch group, as the pretraining's, labelled `what`.
template <class Encoder>
Features extract_features(Encoder& encoder, data::Loader& loader, std::int64_t count, FeaturePool pool,
                          std::ostream* progress = nullptr, const std::string& what = "features") {
  constexpr std::int64_t D = Encoder::spec.dim, L = Encoder::spec.tokens();
  Features f{Tensor<float>(Shape{count, D}), {}};
  cpu::CpuContext ctx;
  const model::Encoder<Cpu, Fp32> explicit_encoder(ctx, encoder);
  Tensor<std::int32_t> every_patch;  // [B, L]: rows 0..L-1, the unmasked sequence
  std::optional<io::ProgressBar> bar;
  if (progress) {
    bar.emplace(*progress, io::ProgressOptions{.label = what, .show_loss = false, .show_epochs = false});
    bar->begin_epoch(1, 1, loader.batches_per_epoch());
  }
  loader.start_epoch(0);
  std::int64_t row = 0, batches = 0;
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
    if (bar) bar->update(++batches, 0.0, B);
  }
  if (bar) bar->end_epoch();
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

enum class ProbeMethod { adamw, mae };

struct ProbeOptions {
  int epochs = 20;
  std::int64_t batch = 256;
  double lr = 1e-3;  // adamw: the peak LR
  std::uint64_t seed = 0;
  int classes = 10;
  ProbeMethod method = ProbeMethod::adamw;
  double blr = 0.1;       // mae: lr = blr * batch / 256
  int warmup_epochs = 10; // mae
  std::ostream* progress = nullptr;  // a progress line per probe epoch (null: silent)
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

namespace detail {
// Shuffled mini-batches of the cached features, every epoch: step(x [B, D], labels, epoch + fraction)
// -> the batch's loss (shown on opt.progress).
template <class Step>
void for_each_probe_batch(const Features& train, const ProbeOptions& opt, Tape<float>& tape, Step&& step) {
  const std::int64_t N = train.values.dim(0), D = train.values.dim(1);
  std::optional<io::ProgressBar> bar;
  if (opt.progress) bar.emplace(*opt.progress, io::ProgressOptions{.label = "probe epoch"});
  std::vector<std::int64_t> order(static_cast<std::size_t>(N));
  std::iota(order.begin(), order.end(), 0);
  const std::int64_t steps_per_epoch = (N + opt.batch - 1) / opt.batch;
  for (int e = 0; e < opt.epochs; ++e) {
    if (bar) bar->begin_epoch(e + 1, opt.epochs, steps_per_epoch);
    RandomStream rng(opt.seed, RngPurpose::shuffle, std::uint64_t(e), 7);
    for (std::int64_t i = N - 1; i > 0; --i) std::swap(order[i], order[rng.below(std::uint32_t(i + 1))]);
    for (std::int64_t s = 0, k = 0; s < N; s += opt.batch, ++k) {
      const std::int64_t B = std::min(opt.batch, N - s);
      Tensor<float> x = tape.alloc(Shape{B, D});
      std::vector<std::int32_t> y(static_cast<std::size_t>(B));
      for (std::int64_t b = 0; b < B; ++b) {
        std::copy_n(train.values.data() + order[s + b] * D, D, x.data() + b * D);
        y[std::size_t(b)] = train.labels[std::size_t(order[s + b])];
      }
      const double loss = step(x, y, double(e) + double(k) / double(steps_per_epoch));
      if (bar) bar->update(k + 1, loss, B);
      tape.reset();
    }
    if (bar) bar->end_epoch();
  }
}

inline Features running_normalised(const Features& f, const Tensor<float>& mean, const Tensor<float>& variance, double eps) {
  Features out{f.values.clone(), f.labels};
  const std::int64_t D = f.values.dim(1);
  for (std::int64_t i = 0; i < out.values.numel(); ++i)
    out.values[i] = float((out.values[i] - mean[i % D]) / std::sqrt(double(variance[i % D]) + eps));
  return out;
}

inline ProbeResult train_adamw_probe(Features train, Features test, const ProbeOptions& opt) {
  standardize(train, test);
  const std::int64_t N = train.values.dim(0), D = train.values.dim(1);
  nn::Linear<float> head("head", D, opt.classes);
  nn::trunc_normal_init(head.weight, 0.01, opt.seed);
  head.bias.value.zero();
  optim::AdamW<float> adam({.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0});
  Tape<float> tape;
  const std::int64_t total = (N + opt.batch - 1) / opt.batch * opt.epochs;
  std::int64_t step = 0;
  for_each_probe_batch(train, opt, tape, [&](const Tensor<float>& x, const std::vector<std::int32_t>& y, double) {
    const auto loss = ops::cross_entropy(tape, head(tape, tape.constant(x)), y);
    tape.backward(loss);
    const double lr = opt.lr * 0.5 * (1 + std::cos(M_PI * double(step++) / double(total)));
    for (auto* p : {&head.weight, &head.bias}) adam.update(*p, lr), p->zero_grad();
    return double(tape.value(loss)[0]);
  });
  return {evaluate_linear(head, train), evaluate_linear(head, test)};
}

inline ProbeResult train_mae_probe(const Features& train, const Features& test, const ProbeOptions& opt) {
  constexpr double eps = 1e-6, momentum = 0.1;  // BatchNorm1d(affine=False, eps=1e-6)
  const std::int64_t D = train.values.dim(1);
  nn::Linear<float> head("head", D, opt.classes);
  nn::trunc_normal_init(head.weight, 0.01, opt.seed);
  head.bias.value.zero();
  optim::Lars<float> lars({.momentum = 0.9, .weight_decay = 0.0});
  Tensor<float> running_mean(Shape{D}), running_var = Tensor<float>::full(Shape{D}, 1.0f);
  const double lr = opt.blr * double(opt.batch) / 256.0;
  Tape<float> tape;
  for_each_probe_batch(train, opt, tape, [&](const Tensor<float>& x, const std::vector<std::int32_t>& y, double epoch) {
    ops::BatchStatistics<float> batch;
    const auto loss = ops::cross_entropy(tape, head(tape, ops::batch_norm(tape, tape.constant(x), eps, &batch)), y);
    tape.backward(loss);
    const double n = double(x.dim(0)), unbiased = n > 1 ? n / (n - 1) : 1.0;  // PyTorch's running variance
    for (std::int64_t d = 0; d < D; ++d) {
      running_mean[d] = float((1 - momentum) * running_mean[d] + momentum * batch.mean[d]);
      running_var[d] = float((1 - momentum) * running_var[d] + momentum * batch.variance[d] * unbiased);
    }
    const double step_lr = freeze::warmup_cosine(epoch, lr, 0.0, opt.warmup_epochs, opt.epochs);
    for (auto* p : {&head.weight, &head.bias}) lars.update(*p, step_lr), p->zero_grad();
    return double(tape.value(loss)[0]);
  });
  return {evaluate_linear(head, running_normalised(train, running_mean, running_var, eps)),
          evaluate_linear(head, running_normalised(test, running_mean, running_var, eps))};
}
}  // namespace detail

inline ProbeResult train_linear_probe(Features train, Features test, const ProbeOptions& opt) {
  if (opt.method == ProbeMethod::mae) return detail::train_mae_probe(train, test, opt);
  return detail::train_adamw_probe(std::move(train), std::move(test), opt);
}

}  // namespace vitfreeze::train
