#pragma once
// Pretraining loop: loader -> masks -> encoder (frozen prefix forward-only) -> objective -> backward
// -> AdamW on the active units at their scheduled LR -> the freeze controller advances.
//
// Units (schedule indices): unit 0 = patch embedding (+ cls token under truncate semantics),
// unit i = block i-1, the last unit also owns the final norm and the objective's own parameters
// (MAE decoder). The last unit never freezes.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <optional>

#include "vitfreeze/data/loader.hpp"
#include "vitfreeze/freeze/controller.hpp"
#include "vitfreeze/freeze/semantics.hpp"
#include "vitfreeze/io/metrics.hpp"
#include "vitfreeze/mim/masking.hpp"
#include "vitfreeze/optim/adamw.hpp"

namespace vitfreeze::train {

enum class NonFinitePolicy { stop, skip };

struct PretrainOptions {
  int epochs = 10;
  int warmup_epochs = 1;
  double base_lr = 1.5e-4 * 256 / 256;  // lr = blr * batch / 256 is applied by the caller
  double min_lr = 1e-6;
  std::uint64_t seed = 0;
  freeze::FreezeSemantics semantics = freeze::FreezeSemantics::truncate;
  NonFinitePolicy non_finite = NonFinitePolicy::stop;
  int max_skipped_steps = 10;
  std::int64_t log_every = 50;           // steps between metrics records
  std::int64_t max_steps_per_epoch = -1; // for smoke runs: cut every epoch short
  std::filesystem::path out_dir;         // metrics.jsonl goes here when set
  bool progress = true;
};

struct EpochReport {
  int epoch = 0;
  double mean_loss = 0;
  double seconds = 0;
  double images_per_second = 0;
  int first_active_unit = 0;
};

template <class Encoder, class Objective, class Masking, CpuScalar T = float>
class Pretrainer {
 public:
  Pretrainer(Encoder& encoder, Objective& objective, Masking masking, freeze::FreezeController& controller,
             optim::AdamW<T>& optimizer, PretrainOptions options)
      : encoder_(encoder), objective_(objective), masking_(masking), controller_(controller), optimizer_(optimizer),
        options_(std::move(options)) {
    build_units();
    if (controller_.units() != static_cast<int>(units_.size()))
      throw ConfigError("Pretrainer: the schedule has " + std::to_string(controller_.units()) + " units, the model " +
                        std::to_string(units_.size()));
    if (!options_.out_dir.empty()) {
      std::filesystem::create_directories(options_.out_dir);
      metrics_.emplace(options_.out_dir / "metrics.jsonl", io::MetricsLog::Mode::truncate);
    }
  }

  // One optimisation step on a batch at global iteration g. Returns the loss.
  double step(const Tensor<T>& images, std::int64_t g) {
    for (int u : controller_.step(g)) freeze_unit(u);
    static constexpr ViTSpec S = Encoder::spec;
    const mim::MaskSet masks = masking_.make(int(images.dim(0)), S.grid(), S.grid(), options_.seed, std::uint64_t(g));
    tape_.reset();
    auto out = objective_.forward(tape_, encoder_, images, masks);
    const double loss = double(tape_.value(out.loss)[0]);
    if (!std::isfinite(loss)) return on_non_finite(g, loss);
    tape_.backward(out.loss);
    if (!gradients_finite()) return on_non_finite(g, NAN);
    for (std::size_t u = 0; u < units_.size(); ++u) {
      if (!controller_.is_active(int(u))) continue;
      const double lr = controller_.lr(int(u));
      for (auto* p : units_[u]) optimizer_.update(*p, lr);
    }
    for (auto* p : always_trained_) optimizer_.update(*p, controller_.global_lr());
    for (auto& unit : units_)
      for (auto* p : unit) p->zero_grad();
    for (auto* p : always_trained_) p->zero_grad();
    return loss;
  }

  // Runs the whole schedule over `loader` (its length is the iterations per epoch).
  std::vector<EpochReport> fit(data::Loader& loader, int first_epoch = 0) {
    std::vector<EpochReport> reports;
    io::ProgressBar bar(std::cout);
    const std::int64_t iters = controller_.run().iters_per_epoch;
    for (int epoch = first_epoch; epoch < options_.epochs; ++epoch) {
      loader.start_epoch(std::uint64_t(epoch));
      const std::int64_t steps = options_.max_steps_per_epoch > 0 ? std::min(options_.max_steps_per_epoch, iters) : iters;
      if (options_.progress) bar.begin_epoch(epoch + 1, options_.epochs, steps);
      const auto start = std::chrono::steady_clock::now();
      double loss_sum = 0;
      std::int64_t images = 0, done = 0;
      for (std::int64_t s = 0; s < steps; ++s) {
        auto batch = loader.next();
        if (!batch) break;
        const std::int64_t g = std::int64_t(epoch) * iters + s;
        const double loss = step(batch->images, g);
        loss_sum += loss, images += batch->size(), ++done;
        if (options_.progress) bar.update(s + 1, loss, batch->size());
        if (metrics_ && (g % options_.log_every == 0)) log_step(epoch, g, loss);
      }
      if (options_.progress) bar.end_epoch();
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      EpochReport r{epoch, done ? loss_sum / double(done) : 0.0, seconds, double(images) / seconds,
                    controller_.first_active_unit()};
      reports.push_back(r);
      if (metrics_) {
        io::Json rec = io::Json::object();
        rec["kind"] = "epoch";
        rec["epoch"] = r.epoch;
        rec["loss"] = r.mean_loss;
        rec["seconds"] = r.seconds;
        rec["images_per_second"] = r.images_per_second;
        rec["first_active_unit"] = r.first_active_unit;
        metrics_->log(rec);
      }
    }
    return reports;
  }

  const std::vector<nn::ParameterList<T>>& units() const { return units_; }
  std::int64_t skipped_steps() const { return skipped_; }
  Tape<T>& tape() { return tape_; }

 private:
  void build_units() {
    const int depth = Encoder::spec.depth;
    units_.assign(std::size_t(depth) + 1, {});
    encoder_.patch_embed.collect_parameters(units_[0]);
    if (options_.semantics == freeze::FreezeSemantics::truncate)
      units_[0].push_back(&encoder_.cls_token);
    else
      always_trained_.push_back(&encoder_.cls_token);
    for (int b = 0; b < depth; ++b) encoder_.blocks[std::size_t(b)].collect_parameters(units_[std::size_t(b) + 1]);
    encoder_.norm.collect_parameters(units_.back());
    objective_.collect_parameters(units_.back());
  }

  // The unit stops training: no gradient buffers, no optimiser state, no backward work.
  void freeze_unit(int u) {
    for (auto* p : units_[std::size_t(u)]) {
      p->freeze();
      optimizer_.release(*p);
    }
    if (metrics_) {
      io::Json rec = io::Json::object();
      rec["kind"] = "freeze";
      rec["unit"] = u;
      rec["iteration"] = controller_.last_step();
      metrics_->log(rec);
    }
  }

  bool gradients_finite() const {
    auto finite = [](const nn::ParameterList<T>& ps) {
      for (auto* p : ps) {
        if (p->grad.empty()) continue;
        for (std::int64_t i = 0; i < p->grad.numel(); ++i)
          if (!std::isfinite(double(p->grad[i]))) return false;
      }
      return true;
    };
    for (auto& u : units_)
      if (!finite(u)) return false;
    return finite(always_trained_);
  }

  double on_non_finite(std::int64_t g, double loss) {
    for (auto& unit : units_)
      for (auto* p : unit) p->zero_grad();
    for (auto* p : always_trained_) p->zero_grad();
    const std::string what = "non-finite " + std::string(std::isnan(loss) ? "loss or gradient" : "loss") +
                             " at iteration " + std::to_string(g);
    if (options_.non_finite == NonFinitePolicy::stop || ++skipped_ > options_.max_skipped_steps)
      throw NumericError(what + (options_.non_finite == NonFinitePolicy::skip ? " (too many skipped steps)" : ""));
    return loss;
  }

  void log_step(int epoch, std::int64_t g, double loss) {
    io::Json rec = io::Json::object();
    rec["kind"] = "step";
    rec["epoch"] = epoch;
    rec["iteration"] = g;
    rec["loss"] = loss;
    rec["lr"] = controller_.lr(controller_.units() - 1);
    rec["first_active_unit"] = controller_.first_active_unit();
    metrics_->log(rec);
  }

  Encoder& encoder_;
  Objective& objective_;
  Masking masking_;
  freeze::FreezeController& controller_;
  optim::AdamW<T>& optimizer_;
  PretrainOptions options_;
  Tape<T> tape_;
  std::vector<nn::ParameterList<T>> units_;
  nn::ParameterList<T> always_trained_;
  std::optional<io::MetricsLog> metrics_;
  std::int64_t skipped_ = 0;
};

}  // namespace vitfreeze::train
