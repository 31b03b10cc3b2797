#pragma once
// Pretraining loop: loader -> masks -> encoder (frozen prefix forward-only) -> objective -> backward
// -> AdamW on the active units at their scheduled LR -> the freeze controller advances.
//
// Units (schedule indices): unit 0 = patch embedding (+ cls token under truncate semantics),
// unit i = block i-1, the last unit also owns the final norm and the objective's own parameters
// (MAE decoder). The last unit never freezes.
//
// Checkpoints (io/checkpoint.hpp) hold everything the next step depends on: parameters, AdamW
// state, the controller's State, the next iteration with its (epoch, batch) position in the
// loader's deterministic order, and the skipped-step count. Masks depend only on (seed, g) and
// batches only on (seed, epoch, batch), gradients are zero between steps, so a fresh trainer that
// loads a checkpoint continues bit for bit as the uninterrupted run would have (CPU).
//
// Data parallel (options.communicator, dist/): each rank steps on its own shard of the batch, the
// active units' gradients are summed over the ranks before every update, and decisions that must
// be the same everywhere (skip or stop on a non-finite value, checkpoint success) are taken
// together. The window's global sample layout is micro-batch-major, then rank: rank r's sample i of
// micro-batch a is global sample (a * world + r) * B + i for its masks, so W ranks of B samples
// compute the update one process would on the W*B samples stacked in rank order.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <optional>
#include <set>

#include "vitfreeze/data/loader.hpp"
#include "vitfreeze/dist/replica_group.hpp"
#include "vitfreeze/freeze/controller.hpp"
#include "vitfreeze/freeze/semantics.hpp"
#include "vitfreeze/io/checkpoint.hpp"
#include "vitfreeze/io/metrics.hpp"
#include "vitfreeze/io/weights.hpp"
#include "vitfreeze/mim/masking.hpp"
#include "vitfreeze/mim/objective.hpp"
#include "vitfreeze/optim/adamw.hpp"
#include "vitfreeze/train/step_dump.hpp"
#include "vitfreeze/train/step_engine.hpp"

namespace vitfreeze::train {

// An objective with per-block taps (LocalMIM): each tap's parameters belong to its block's unit,
// and the tap is dropped (no norm, decoder, head, target or loss term) when that unit freezes.
template <class O, class T>
concept ObjectiveWithTaps = requires(O& o, int k, nn::ParameterList<T>& list) {
  { o.tap_count() } -> std::convertible_to<int>;
  { o.tap_block(k) } -> std::convertible_to<int>;
  { o.tap_active(k) } -> std::convertible_to<bool>;
  o.collect_tap_parameters(k, list);
  o.drop_tap(k);
};

enum class NonFinitePolicy { stop, skip };

struct PretrainOptions {
  int epochs = 10;  // LRs, warmup and freeze points come from the FreezeController
  std::uint64_t seed = 0;
  freeze::FreezeSemantics semantics = freeze::FreezeSemantics::truncate;
  NonFinitePolicy non_finite = NonFinitePolicy::stop;
  int max_skipped_steps = 10;
  std::int64_t log_every = 50;           // steps between metrics records
  std::int64_t max_steps_per_epoch = -1; // for smoke runs: cut every epoch short
  std::filesystem::path out_dir;         // metrics.jsonl goes here when set
  bool progress = true;
  // Gradient accumulation: micro-batches per optimiser step. g counts micro-batches (as ViTFreeze's
  // iteration counter does); LRs and freezing advance on the first micro-batch of each window, the
  // update happens after the last, and each micro-batch's loss is weighted 1/accumulation. Masks
  // are keyed by (window, sample offset in the window), so A micro-batches of B equal one batch of
  // A*B. The iterations per epoch (and checkpoint_every_steps) must be multiples of it.
  int accumulation = 1;
  // Keep the patch embedding (and cls token) training to the end: blocks are then units 0..depth-1
  // (ViTFreeze's --dont_freeze_pe). Activation gradients must reach the patch embedding through the
  // frozen blocks, so only their weight gradients are saved, whatever `semantics` says.
  bool dont_freeze_pe = false;

  // Checkpoints: written to checkpoint_dir (when set) every `checkpoint_every_epochs` epochs and at
  // the end (0: never), every `checkpoint_every_steps` steps (0: never), and before a NumericError
  // is thrown (the last good state). Only the newest `keep_checkpoints` are kept.
  std::filesystem::path checkpoint_dir;
  int checkpoint_every_epochs = 1;
  std::int64_t checkpoint_every_steps = 0;
  int keep_checkpoints = 2;
  // The caller's part of the recipe (batch size, data, augmentation, ...): stored in checkpoints and
  // compared on resume together with what the trainer knows (schedule, LRs, seed, optimiser).
  io::Json recipe = io::Json::object();

  // Writes one step's input, mask, loss, parameters and gradients to this file (train/step_dump.hpp).
  std::filesystem::path dump_step;
  std::int64_t dump_iteration = -1;  // which iteration; -1: the first step this trainer runs

  // Data parallel training: the group of ranks this trainer is one of (nullptr: a single process).
  // Every rank constructs its trainer with the same options and feeds it its own shard (a Loader
  // with this rank and world). Only rank 0 writes checkpoints, metrics and the progress bar; every
  // rank reads checkpoints (a file system all ranks see). Must outlive the trainer.
  dist::Communicator* communicator = nullptr;
};

struct EpochReport {
  int epoch = 0;
  double mean_loss = 0;
  double seconds = 0;
  double images_per_second = 0;
  int first_active_unit = 0;
};

// The metrics.jsonl records of a pretraining run (the GPU trainer writes the same ones).
inline io::Json step_record(int epoch, std::int64_t g, double loss, const freeze::FreezeController& controller) {
  io::Json rec = io::Json::object();
  rec["kind"] = "step";
  rec["epoch"] = epoch;
  rec["iteration"] = g;
  rec["loss"] = loss;
  rec["lr"] = controller.lr(controller.units() - 1);
  rec["first_active_unit"] = controller.first_active_unit();
  return rec;
}
inline io::Json epoch_record(const EpochReport& r) {
  io::Json rec = io::Json::object();
  rec["kind"] = "epoch";
  rec["epoch"] = r.epoch;
  rec["loss"] = r.mean_loss;
  rec["seconds"] = r.seconds;
  rec["images_per_second"] = r.images_per_second;
  rec["first_active_unit"] = r.first_active_unit;
  return rec;
}
inline io::Json freeze_record(int unit, std::int64_t iteration) {
  io::Json rec = io::Json::object();
  rec["kind"] = "freeze";
  rec["unit"] = unit;
  rec["iteration"] = iteration;
  return rec;
}

// Engine: how each micro-batch's forward and backward run (train/step_engine.hpp): the explicit model
// by default, the tape as the reference.
template <class Encoder, class Objective, class Masking, CpuScalar T = float,
          class Engine = ExplicitStepEngine<Encoder, Objective, T>>
  requires mim::Objective<Objective, T> && mim::MaskingPolicy<Masking> && StepEngine<Engine, T>
class Pretrainer {
 public:
  Pretrainer(Encoder& encoder, Objective& objective, Masking masking, freeze::FreezeController& controller,
             optim::AdamW<T>& optimizer, PretrainOptions options)
      : encoder_(encoder), objective_(objective), masking_(masking), controller_(controller), optimizer_(optimizer),
        options_(std::move(options)), engine_(encoder, objective) {
    build_units();
    if (controller_.units() != static_cast<int>(units_.size()))
      throw ConfigError("Pretrainer: the schedule has " + std::to_string(controller_.units()) + " units, the model " +
                        std::to_string(units_.size()));
    if (!options_.out_dir.empty()) std::filesystem::create_directories(options_.out_dir);
    if (options_.keep_checkpoints < 1) throw ConfigError("Pretrainer: keep_checkpoints must be >= 1");
    const int A = options_.accumulation;
    if (A < 1 || controller_.run().iters_per_epoch % A != 0 ||
        (options_.max_steps_per_epoch > 0 && options_.max_steps_per_epoch % A != 0) ||
        options_.checkpoint_every_steps % A != 0)
      throw ConfigError("Pretrainer: accumulation " + std::to_string(A) +
                        " must be >= 1 and divide the iterations per epoch and checkpoint_every_steps");
    if (options_.communicator) {
      replicas_.emplace(*options_.communicator);
      replicas_->join(all_parameters(), architecture().dump() + recipe().dump());
    }
  }

  // One optimisation step on a batch at global iteration g. Returns the loss.
  double step(const Tensor<T>& images, std::int64_t g) {
    const int A = options_.accumulation;
    const std::int64_t window = g / A, offset = g % A;
    if (offset == 0) {
      for (int u : controller_.step(g)) freeze_unit(u);
      window_failed_ = false;
    }
    static constexpr ViTSpec S = Encoder::spec;
    const int B = int(images.dim(0));
    const std::int64_t first_sample = (offset * world() + rank()) * B;
    const mim::MaskSet masks = masking_.make(B, S.grid(), S.grid(), options_.seed, std::uint64_t(window),
                                             std::uint32_t(first_sample));
    // Ranks weight their batches by size; the group divides by the window's total (ReplicaGroup).
    const double loss = engine_.forward_backward(images, masks, replicas_ ? double(B) / A : 1.0 / A);
    const bool loss_finite = std::isfinite(loss);
    if (!options_.dump_step.empty() && !dumped_ && is_root() &&
        (options_.dump_iteration < 0 || options_.dump_iteration == g)) {
      dump_step(options_.dump_step, images, masks, loss, g);
      dumped_ = true;
    }
    if (replicas_) return finish_distributed(g, B, loss);
    if (!loss_finite || window_failed_) return on_non_finite(g, loss_finite ? NAN : loss);
    if (offset + 1 < A) {  // gradients keep accumulating until the window's last micro-batch
      next_iteration_ = g + 1;
      return loss;
    }
    if (!gradients_finite()) return on_non_finite(g, NAN);
    return apply_update(g, loss);
  }

  // Runs the whole schedule over `loader` (its length is the iterations per epoch). After
  // load_checkpoint()/resume() it continues from the checkpoint's position and ignores first_epoch.
  std::vector<EpochReport> fit(data::Loader& loader, int first_epoch = 0) {
    std::vector<EpochReport> reports;
    io::ProgressBar bar(std::cout);
    const std::int64_t iters = controller_.run().iters_per_epoch;
    std::int64_t first_batch = 0;
    if (resumed_) {
      first_epoch = int(next_iteration_ / iters);
      first_batch = next_iteration_ % iters;
      resumed_ = false;
    }
    for (int epoch = first_epoch; epoch < options_.epochs; ++epoch, first_batch = 0) {
      loader.start_epoch(std::uint64_t(epoch), std::min(first_batch, loader.batches_per_epoch()));
      const std::int64_t steps = options_.max_steps_per_epoch > 0 ? std::min(options_.max_steps_per_epoch, iters) : iters;
      const bool progress = options_.progress && is_root();
      if (progress) bar.begin_epoch(epoch + 1, options_.epochs, steps);
      const auto start = std::chrono::steady_clock::now();
      double loss_sum = 0;
      std::int64_t images = 0, done = 0;
      for (std::int64_t s = first_batch; s < steps; ++s) {
        auto batch = loader.next();
        if (!batch) break;
        const std::int64_t g = std::int64_t(epoch) * iters + s;
        const double loss = step(batch->images, g);
        loss_sum += loss, images += batch->size() * world(), ++done;  // all ranks' images (equal shards)
        if (progress) bar.update(s + 1, loss, batch->size() * world());
        if (metrics() && (g % options_.log_every == 0)) log_step(epoch, g, loss);
        if (options_.checkpoint_every_steps > 0 && next_iteration_ % options_.checkpoint_every_steps == 0 &&
            !options_.checkpoint_dir.empty())
          save_checkpoint();
      }
      if (progress) bar.end_epoch();
      next_iteration_ = std::int64_t(epoch + 1) * iters;  // the next epoch starts at batch 0
      if (!options_.checkpoint_dir.empty() && options_.checkpoint_every_epochs > 0 &&
          ((epoch + 1) % options_.checkpoint_every_epochs == 0 || epoch + 1 == options_.epochs))
        save_checkpoint();
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      EpochReport r{epoch, done ? loss_sum / double(done) : 0.0, seconds, double(images) / seconds,
                    controller_.first_active_unit()};
      reports.push_back(r);
      if (metrics()) metrics()->log(epoch_record(r));
    }
    return reports;
  }

  // ---- checkpoints -------------------------------------------------------------------------------

  // What must match for a checkpoint to load: the model ...
  io::Json architecture() const {
    io::Json a = io::detail::spec_json(Encoder::spec);
    a.set("objective", Objective::name);
    a.set("dtype", std::string(dtype_name(dtype_v<T>)));
    return a;
  }
  // ... and the recipe: the schedule, LRs, run length, seed, optimiser, masking, plus options.recipe.
  io::Json recipe() const {
    const auto& run = controller_.run();
    const auto& lr = controller_.lr_settings();
    io::Json fractions = io::Json::array();
    for (int u = 0; u < controller_.units(); ++u) fractions.push_back(controller_.fraction(u));
    const auto& adam = optimizer_.options();
    io::Json r = io::Json::object();
    r.set("epochs", options_.epochs);
    r.set("schedule_epochs", run.epochs);
    r.set("warmup_epochs", run.warmup_epochs);
    r.set("iters_per_epoch", run.iters_per_epoch);
    r.set("max_steps_per_epoch", options_.max_steps_per_epoch);
    r.set("lr_mode", int(lr.mode));
    r.set("base_lr", lr.base_lr);
    r.set("min_lr", lr.min_lr);
    r.set("lr_tail", lr.tail);
    // A user's LR policy is named (built-in ones are lr_mode, as in older checkpoints).
    if (!controller_.lr_policy().builtin_mode) r.set("lr_policy", controller_.lr_policy().name);
    r.set("freeze_fractions", std::move(fractions));
    r.set("semantics", options_.semantics == freeze::FreezeSemantics::truncate ? "truncate" : "vitfreeze");
    r.set("seed", options_.seed);
    r.set("accumulation", options_.accumulation);
    r.set("dont_freeze_pe", options_.dont_freeze_pe);
    r.set("visible_patches", masking_.kept(Encoder::spec.grid(), Encoder::spec.grid()));
    r.set("adamw", io::Json(io::Json::Object{{"beta1", adam.beta1}, {"beta2", adam.beta2}, {"eps", adam.eps},
                                             {"weight_decay", adam.weight_decay}}));
    if (!options_.recipe.is_object()) throw ConfigError("PretrainOptions::recipe must be a JSON object");
    for (const auto& [k, v] : options_.recipe.as_object()) {
      if (r.contains(k)) throw ConfigError("PretrainOptions::recipe: \"" + k + "\" is set by the trainer");
      r.set(k, v);
    }
    return r;
  }

  // The full training state as a checkpoint file's contents.
  io::SafetensorsWriter checkpoint_writer() const {
    const auto params = all_parameters();
    io::SafetensorsWriter w;
    io::add_checkpoint_config(w, architecture(), recipe());
    io::add_parameters(w, params, "param/");
    io::add_optimizer_state(w, optimizer_, params);
    const auto state = controller_.state();
    Tensor<std::uint8_t> frozen(Shape{std::int64_t(state.frozen.size())});
    for (std::size_t u = 0; u < state.frozen.size(); ++u) frozen[std::int64_t(u)] = state.frozen[u] ? 1 : 0;
    w.add("freeze/frozen", frozen);
    io::add_i64(w, "freeze/last_step", state.last_step);
    const std::int64_t iters = controller_.run().iters_per_epoch;
    io::add_i64(w, "train/iteration", next_iteration_);
    io::add_i64(w, "train/epoch", next_iteration_ / iters);
    io::add_i64(w, "train/batch", next_iteration_ % iters);
    io::add_i64(w, "train/skipped_steps", skipped_);
    return w;
  }

  // Saves into options.checkpoint_dir as ckpt-<next iteration>.safetensors and prunes old ones.
  // Data parallel: collective; the replicas are checked to be identical, rank 0 writes, and a failed
  // write throws on every rank.
  std::filesystem::path save_checkpoint() {
    if (options_.checkpoint_dir.empty()) throw ConfigError("Pretrainer::save_checkpoint: no checkpoint_dir set");
    auto write = [&] {
      return io::write_checkpoint(options_.checkpoint_dir, next_iteration_, checkpoint_writer(), options_.keep_checkpoints);
    };
    if (!replicas_) return write();
    replicas_->check_identical(all_parameters(), next_iteration_, "before saving a checkpoint");
    std::exception_ptr failure;
    if (is_root()) try {
        write();
      } catch (...) {
        failure = std::current_exception();
      }
    replicas_->settle(failure, "rank 0 writing the checkpoint");
    return options_.checkpoint_dir / io::checkpoint_file_name(next_iteration_);
  }
  void save_checkpoint(const std::filesystem::path& file) const { checkpoint_writer().write(file); }

  // Verifies `file` completely (checksums, configuration, every tensor) and only then restores the
  // model, optimiser, controller and position; fit() continues from there.
  void load_checkpoint(const std::filesystem::path& file) {
    collectively("loading " + file.string(), [&] { restore(io::open_checkpoint(file, architecture(), recipe())); });
  }

  // "auto": the newest intact checkpoint in options.checkpoint_dir (none: start fresh, returns
  // nullopt); anything else is a checkpoint file. Returns the file loaded.
  // Data parallel: every rank reads the file (or finds the newest) itself, and then the ranks must
  // agree on the restored state.
  std::optional<std::filesystem::path> resume(const std::string& what) {
    if (what != "auto") {
      load_checkpoint(what);
      return std::filesystem::path(what);
    }
    if (options_.checkpoint_dir.empty()) throw ConfigError("resume auto: no checkpoint directory configured");
    std::optional<std::filesystem::path> loaded;
    collectively("resuming from " + options_.checkpoint_dir.string(), [&] {
      auto found = io::open_latest_checkpoint(options_.checkpoint_dir, architecture(), recipe(), [](const CheckpointError& e) {
        std::cerr << "warning: skipping unreadable checkpoint: " << e.what() << "\n";
      });
      if (!found) return;
      restore(found->reader);
      loaded = found->path;
    });
    return loaded;
  }

  // The next global iteration step() expects (after a resume: the checkpoint's).
  std::int64_t next_iteration() const { return next_iteration_; }
  // For a trainer whose steps ran elsewhere: the GPU's DevicePretrainer keeps one of these over the
  // same host models, optimiser and controller as the keeper of its checkpoints, and tells it where
  // the run is before each save.
  void set_next_iteration(std::int64_t g) { next_iteration_ = g; }

  // One step's data for checking against another implementation (PyTorch): train/step_dump.hpp.
  void dump_step(const std::filesystem::path& file, const Tensor<T>& images, const mim::MaskSet& masks, double loss,
                 std::int64_t g) const {
    write_step_dump<Encoder::spec>(file, objective_, masking_, all_parameters(), images, masks, loss, g, recipe());
  }

  const std::vector<nn::ParameterList<T>>& units() const { return units_; }
  std::int64_t skipped_steps() const { return skipped_; }
  int rank() const { return replicas_ ? replicas_->rank() : 0; }
  int world() const { return replicas_ ? replicas_->world() : 1; }
  bool is_root() const { return rank() == 0; }
  // Data parallel: the group (traffic counters), or nullptr for a single process.
  const dist::ReplicaGroup<T>* replicas() const { return replicas_ ? &*replicas_ : nullptr; }
  Engine& engine() { return engine_; }
  // Every parameter the trainer updates: the units' in order, then the never-frozen ones.
  nn::ParameterList<T> all_parameters() const {
    nn::ParameterList<T> out;
    for (const auto& u : units_) out.insert(out.end(), u.begin(), u.end());
    out.insert(out.end(), always_trained_.begin(), always_trained_.end());
    return out;
  }

 private:
  // Opened on first use: appended to after a resume, started afresh otherwise. Rank 0's only.
  io::MetricsLog* metrics() {
    if (options_.out_dir.empty() || !is_root()) return nullptr;
    if (!metrics_)
      metrics_.emplace(options_.out_dir / "metrics.jsonl", resumed_from_ ? io::MetricsLog::Mode::append
                                                                          : io::MetricsLog::Mode::truncate);
    return &*metrics_;
  }

  // The update at the end of an accumulation window: AdamW on the active units at their LRs.
  double apply_update(std::int64_t g, double loss) {
    for (std::size_t u = 0; u < units_.size(); ++u) {
      if (!controller_.is_active(int(u))) continue;
      const double lr = controller_.lr(int(u));
      for (auto* p : units_[u]) optimizer_.update(*p, lr);
    }
    for (auto* p : always_trained_) optimizer_.update(*p, controller_.global_lr());
    zero_gradients();
    next_iteration_ = g + 1;
    return loss;
  }

  // Data parallel: a non-finite loss anywhere is remembered until the window's end, where one
  // allreduce sums the gradients and tells every rank the same verdict; inner micro-batches return
  // their rank's own loss, the window's last the loss over all ranks.
  double finish_distributed(std::int64_t g, int samples, double loss) {
    const int A = options_.accumulation;
    if (g % A == 0) window_samples_ = 0;
    window_samples_ += samples;
    if (!std::isfinite(loss)) window_failed_ = true;
    if ((g + 1) % A != 0) {
      next_iteration_ = g + 1;
      return loss;
    }
    nn::ParameterList<T> active;
    for (std::size_t u = 0; u < units_.size(); ++u)
      if (controller_.is_active(int(u))) active.insert(active.end(), units_[u].begin(), units_[u].end());
    active.insert(active.end(), always_trained_.begin(), always_trained_.end());
    const auto outcome = replicas_->allreduce_gradients(
        active, {double(window_samples_), double(samples), loss, !window_failed_}, A);
    window_failed_ = false;
    if (outcome.failed || !gradients_finite()) return on_non_finite(g, outcome.failed ? INFINITY : NAN);
    return apply_update(g, outcome.loss);
  }

  // Runs `work` on every rank; a failure on any rank throws on all (single process: just runs it).
  // After the work, the ranks must hold the same state.
  template <class Work>
  void collectively(const std::string& what, Work&& work) {
    if (!replicas_) return work();
    std::exception_ptr failure;
    try {
      work();
    } catch (...) {
      failure = std::current_exception();
    }
    replicas_->settle(failure, what);
    replicas_->check_identical(all_parameters(), next_iteration_, "after " + what);
  }

  void zero_gradients() {
    for (auto& unit : units_)
      for (auto* p : unit) p->zero_grad();
    for (auto* p : always_trained_) p->zero_grad();
  }

  void restore(const io::SafetensorsReader& r) {
    std::vector<std::string> problems;
    const int units = controller_.units();
    io::expect_tensor(r, "freeze/frozen", DType::u8, {units}, problems);
    for (const char* name : {"freeze/last_step", "train/iteration", "train/epoch", "train/batch", "train/skipped_steps"})
      io::expect_tensor(r, name, DType::i64, {}, problems);
    io::throw_if_problems(r, problems, "checkpoint state does not fit this trainer");

    freeze::FreezeController::State state;
    const auto frozen = r.get<std::uint8_t>("freeze/frozen");
    for (int u = 0; u < units; ++u) state.frozen.push_back(frozen[u] != 0);
    state.last_step = io::get_i64(r, "freeze/last_step");
    const std::int64_t next = io::get_i64(r, "train/iteration"), skipped = io::get_i64(r, "train/skipped_steps");
    const std::int64_t iters = controller_.run().iters_per_epoch;
    if (next < 0 || next > controller_.run().total_iterations() || io::get_i64(r, "train/epoch") != next / iters ||
        io::get_i64(r, "train/batch") != next % iters || skipped < 0 ||
        !(state.last_step == next - 1 || state.last_step == next))
      problems.push_back("train/*: inconsistent position (iteration " + std::to_string(next) + ", last step " +
                         std::to_string(state.last_step) + ", " + std::to_string(iters) + " iterations per epoch)");
    for (int u = 1; u < units; ++u)
      if (state.frozen[std::size_t(u)] && !state.frozen[std::size_t(u) - 1])
        problems.push_back("freeze/frozen: frozen units are not a prefix");
    std::set<const Parameter<T>*> frozen_params;
    for (int u = 0; u < units; ++u)
      if (state.frozen[std::size_t(u)])
        for (auto* p : units_[std::size_t(u)]) frozen_params.insert(p);
    const auto params = all_parameters();
    io::check_parameters(r, params, [&](const Parameter<T>& p) { return frozen_params.count(&p) != 0; }, problems);
    io::throw_if_problems(r, problems, "checkpoint does not fit this model");

    // Everything verified: from here on nothing can fail.
    controller_.restore(state);
    for (auto* p : params) {
      if (frozen_params.count(p)) p->freeze();
      else p->unfreeze(), p->zero_grad();
    }
    for (int u = 0; u < units; ++u)
      if (state.frozen[std::size_t(u)]) drop_taps_of_unit(u);
    io::restore_parameters(r, params, optimizer_);
    next_iteration_ = next;
    skipped_ = skipped;
    resumed_ = resumed_from_ = true;
    if (metrics()) {
      io::Json rec = io::Json::object();
      rec["kind"] = "resume";
      rec["iteration"] = next;
      rec["file"] = r.source();
      metrics()->log(rec);
    }
  }

  // Unit of block b: b + 1, or b when the patch embedding is not a unit (dont_freeze_pe).
  int unit_of_block(int b) const { return b + (options_.dont_freeze_pe ? 0 : 1); }

  void build_units() {
    const int depth = Encoder::spec.depth;
    units_.assign(std::size_t(unit_of_block(depth - 1)) + 1, {});
    if (options_.dont_freeze_pe) {
      encoder_.patch_embed.collect_parameters(always_trained_);
      always_trained_.push_back(&encoder_.cls_token);
    } else {
      encoder_.patch_embed.collect_parameters(units_[0]);
      if (options_.semantics == freeze::FreezeSemantics::truncate)
        units_[0].push_back(&encoder_.cls_token);
      else
        always_trained_.push_back(&encoder_.cls_token);
    }
    for (int b = 0; b < depth; ++b)
      encoder_.blocks[std::size_t(b)].collect_parameters(units_[std::size_t(unit_of_block(b))]);
    encoder_.norm.collect_parameters(units_.back());
    if constexpr (ObjectiveWithTaps<Objective, T>) {
      // A tap's norm, decoder and head share its block's unit and freeze (are dropped) with it.
      for (int k = 0; k < objective_.tap_count(); ++k)
        objective_.collect_tap_parameters(k, units_[std::size_t(unit_of_block(objective_.tap_block(k)))]);
    } else {
      objective_.collect_parameters(units_.back());
    }
  }

  void drop_taps_of_unit(int u) {
    if constexpr (ObjectiveWithTaps<Objective, T>)
      for (int k = 0; k < objective_.tap_count(); ++k)
        if (unit_of_block(objective_.tap_block(k)) == u) {
          if (objective_.tap_active(k)) objective_.drop_tap(k);
          engine_.drop_tap(k);
        }
  }

  // The unit stops training: no gradient buffers, no optimiser state, no backward work.
  void freeze_unit(int u) {
    drop_taps_of_unit(u);
    for (auto* p : units_[std::size_t(u)]) {
      p->freeze();
      optimizer_.release(*p);
    }
    if (metrics()) metrics()->log(freeze_record(u, controller_.last_step()));
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

  // Skip: the step leaves no trace but the counter. Stop (or too many skips): the state before
  // this step is saved (when a checkpoint directory is set), then a NumericError is thrown.
  // A non-finite loss or gradient discards the whole accumulation window: `skip` counts it once and
  // goes on with the next window; `stop` saves the state from before the window and throws.
  double on_non_finite(std::int64_t g, double loss) {
    zero_gradients();
    const int A = options_.accumulation;
    const bool window_end = (g + 1) % A == 0;
    std::string what = "non-finite " + std::string(std::isnan(loss) ? "loss or gradient" : "loss") +
                       " at iteration " + std::to_string(g);
    if (options_.non_finite == NonFinitePolicy::skip && (window_failed_ || ++skipped_ <= options_.max_skipped_steps)) {
      window_failed_ = !window_end;
      next_iteration_ = g + 1;
      return loss;
    }
    if (options_.non_finite == NonFinitePolicy::skip) what += " (too many skipped steps)";
    next_iteration_ = g - g % A;  // parameters and optimiser are still those before this window
    if (!options_.checkpoint_dir.empty()) {
      try {
        what += "; last good state saved to " + save_checkpoint().string();
      } catch (const Error& e) {
        what += std::string("; saving the last good state failed: ") + e.what();
      }
    }
    throw NumericError(what);
  }

  void log_step(int epoch, std::int64_t g, double loss) { metrics()->log(step_record(epoch, g, loss, controller_)); }

  Encoder& encoder_;
  Objective& objective_;
  Masking masking_;
  freeze::FreezeController& controller_;
  optim::AdamW<T>& optimizer_;
  PretrainOptions options_;
  Engine engine_;
  std::vector<nn::ParameterList<T>> units_;
  nn::ParameterList<T> always_trained_;
  std::optional<io::MetricsLog> metrics_;
  std::optional<dist::ReplicaGroup<T>> replicas_;
  std::int64_t window_samples_ = 0;  // data parallel: this rank's samples in the current window
  std::int64_t skipped_ = 0;
  bool window_failed_ = false;  // a micro-batch of the current accumulation window was non-finite
  std::int64_t next_iteration_ = 0;
  bool resumed_ = false;       // fit() starts at next_iteration_
  bool resumed_from_ = false;  // a checkpoint was loaded (metrics append)
  bool dumped_ = false;
};

}  // namespace vitfreeze::train
