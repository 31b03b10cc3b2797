#pragma once
// The pretraining loop, written once for every backend: loader -> masks -> the step engine's forward
// and backward (frozen prefix forward-only) -> AdamW on the active units at their scheduled LR ->
// the freeze controller advances. What differs per backend is the engine (train/step_engine.hpp):
// the CPU's run synchronously on the host modules' parameters; a device engine (the GPU's) keeps
// its own copies, runs ahead of the host, and its losses are read at logging points and at each
// epoch's end.
//
// The parts: options.hpp (what a run is told), units.hpp (which parameters freeze together),
// run_state.hpp (the run's position and history in checkpoints), records.hpp (reports, metrics).
//
// Checkpoints (io/checkpoint.hpp) hold everything the next step depends on: parameters, AdamW
// state, the controller's state, the next iteration with its (epoch, batch) position in the
// loader's deterministic order, the skipped-step count and the run's history. Masks depend only on
// (seed, g) and batches only on (seed, epoch, batch), gradients are zero between steps, so a fresh
// trainer that loads a checkpoint continues bit for bit as the uninterrupted run would have (CPU).
// Everything read is checked against the run before anything is restored. A device engine's state
// goes through the host objects (download before a save, upload after a restore): one format,
// whichever backend wrote it.
//
// Data parallel (options.communicator, dist/; host-gradient engines): each rank steps on its own
// shard of the batch, the active units' gradients are summed over the ranks before every update,
// and decisions that must be the same everywhere (skip or stop on a non-finite value, checkpoint
// success) are taken together. The window's global sample layout is micro-batch-major, then rank:
// rank r's sample i of micro-batch a is global sample (a * world + r) * B + i for its masks, so W
// ranks of B samples compute the update one process would on the W*B samples stacked in rank order.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <limits>
#include <optional>
#include <set>

#include "vitfreeze/data/loader.hpp"
#include "vitfreeze/dist/replica_group.hpp"
#include "vitfreeze/freeze/controller.hpp"
#include "vitfreeze/io/checkpoint.hpp"
#include "vitfreeze/io/metrics.hpp"
#include "vitfreeze/io/weights.hpp"
#include "vitfreeze/mim/masking.hpp"
#include "vitfreeze/mim/objective.hpp"
#include "vitfreeze/optim/adamw.hpp"
#include "vitfreeze/train/options.hpp"
#include "vitfreeze/train/records.hpp"
#include "vitfreeze/train/run_state.hpp"
#include "vitfreeze/train/step_dump.hpp"
#include "vitfreeze/train/step_engine.hpp"
#include "vitfreeze/train/units.hpp"

namespace vitfreeze::train {

// Engine: how each micro-batch's forward and backward run (train/step_engine.hpp): the explicit model
// on the CPU by default, the tape as the reference, a device engine on the GPU. Extra constructor
// arguments go to the engine's constructor (a device engine also receives all_parameters()).
template <class Encoder, class Objective, class Masking, CpuScalar T = float,
          class Engine = ExplicitStepEngine<Encoder, Objective, T>>
  requires mim::Objective<Objective, T> && mim::MaskingPolicy<Masking> && StepEngine<Engine, T>
class Pretrainer {
  static constexpr bool kDeviceEngine = !Engine::host_gradients;
  static_assert(!kDeviceEngine || DeviceStepEngine<Engine, T>, "an engine without host gradients must update itself");

 public:
  template <class... EngineArgs>
  Pretrainer(Encoder& encoder, Objective& objective, Masking masking, freeze::FreezeController& controller,
             optim::AdamW<T>& optimizer, PretrainOptions options, EngineArgs&&... engine_args)
      : objective_(objective), masking_(masking), controller_(controller), optimizer_(optimizer),
        options_(std::move(options)), units_(encoder, objective, options_),
        engine_(make_engine(encoder, objective, std::forward<EngineArgs>(engine_args)...)) {
    if (controller_.units() != units_.count())
      throw ConfigError("Pretrainer: the schedule has " + std::to_string(controller_.units()) + " units, the model " +
                        std::to_string(units_.count()));
    if (!options_.out_dir.empty()) std::filesystem::create_directories(options_.out_dir);
    if (options_.keep_checkpoints < 1) throw ConfigError("Pretrainer: keep_checkpoints must be >= 1");
    const int A = options_.accumulation;
    if (A < 1 || controller_.run().iters_per_epoch % A != 0 ||
        (options_.max_steps_per_epoch > 0 && options_.max_steps_per_epoch % A != 0) ||
        options_.checkpoint_every_steps % A != 0)
      throw ConfigError("Pretrainer: accumulation " + std::to_string(A) +
                        " must be >= 1 and divide the iterations per epoch and checkpoint_every_steps");
    if (options_.seed > std::uint64_t(std::numeric_limits<std::int64_t>::max()))
      throw ConfigError("Pretrainer: seed " + std::to_string(options_.seed) +
                        " above 2^63 - 1 (checkpoints record it as an exact JSON integer)");
    if constexpr (kDeviceEngine) {
      if (options_.non_finite != NonFinitePolicy::stop || !options_.dump_step.empty() || options_.communicator)
        throw ConfigError("Pretrainer: with this engine, skipping non-finite steps, step dumps and data parallelism "
                          "are not available (its gradients stay on the device)");
    }
    unit_of_parameter_ = units_.unit_of_parameters();
    if (!options_.checkpoint_dir.empty()) checkpoints_.emplace(options_.checkpoint_dir, architecture(), recipe());
    if (options_.communicator) {
      replicas_.emplace(*options_.communicator);
      replicas_->join(all_parameters(), architecture().dump() + recipe().dump());
    }
  }

  // One micro-batch at global iteration g (g must not go backwards). Returns its loss; a device
  // engine's is waited for.
  double step(const Tensor<T>& images, std::int64_t g) {
    engine_.reserve_loss_slots(1);
    const double loss = run_micro_batch(images, g, 0);
    if constexpr (kDeviceEngine) {
      const double read = engine_.loss(0);
      if (!std::isfinite(read)) throw_deferred_non_finite(g);
      return read;
    }
    return loss;
  }

  // Runs the whole schedule over `loader` (its length is the iterations per epoch). After
  // load_checkpoint()/resume() it continues from the checkpoint's position and ignores first_epoch.
  // Returns the reports of every epoch of the run, those before a resume included.
  std::vector<EpochReport> fit(data::Loader& loader, int first_epoch = 0) {
    io::ProgressBar bar(std::cout);
    const std::int64_t iters = controller_.run().iters_per_epoch;
    std::int64_t first_batch = 0;
    if (resumed_) {
      first_epoch = int(at_.next_iteration / iters);
      first_batch = at_.next_iteration % iters;
      resumed_ = false;
    } else {
      at_.progress = {};
    }
    for (int epoch = first_epoch; epoch < options_.epochs; ++epoch, first_batch = 0) {
      loader.start_epoch(std::uint64_t(epoch), std::min(first_batch, loader.batches_per_epoch()));
      const std::int64_t steps = options_.max_steps_per_epoch > 0 ? std::min(options_.max_steps_per_epoch, iters) : iters;
      const bool progress = options_.progress && is_root();
      if (progress) bar.begin_epoch(epoch + 1, options_.epochs, steps);
      const auto start = std::chrono::steady_clock::now();
      const double seconds_before = at_.progress.seconds;  // of this epoch, before a resume
      auto elapsed = [&] {
        return seconds_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      };
      epoch_start_g_ = std::int64_t(epoch) * iters + first_batch;
      settled_ = 0;
      engine_.reserve_loss_slots(std::max<std::int64_t>(steps - first_batch, 1));
      std::int64_t unreported_images = 0;
      for (std::int64_t s = first_batch; s < steps; ++s) {
        auto batch = loader.next();
        if (!batch) break;
        const std::int64_t g = std::int64_t(epoch) * iters + s, slot = kDeviceEngine ? s - first_batch : 0;
        double loss = run_micro_batch(batch->images, g, slot);
        at_.progress.images += batch->size() * world();  // all ranks' images (equal shards)
        unreported_images += batch->size() * world();
        if constexpr (kDeviceEngine) {
          if (g % options_.log_every != 0) continue;  // the only reads inside an epoch: they wait for the device
          settle_losses(slot + 1);
          loss = engine_.loss(slot);
        } else if (std::isfinite(loss)) {
          at_.progress.loss_sum += loss, ++at_.progress.losses;
        }
        at_.progress.seconds = elapsed();
        if (progress) bar.update(s + 1, loss, unreported_images), unreported_images = 0;
        if (metrics() && (g % options_.log_every == 0)) log_step(epoch, g, loss);
        if (s + 1 < steps && step_checkpoint_due()) {  // the epoch's last: below, with its report
          if constexpr (kDeviceEngine) settle_losses(slot + 1);
          save_checkpoint();
        }
      }
      if constexpr (kDeviceEngine) settle_losses(at_.next_iteration - epoch_start_g_);
      if (progress) {
        if (unreported_images > 0) bar.update(steps, last_settled_loss_, unreported_images);
        bar.end_epoch();
      }
      at_.next_iteration = std::int64_t(epoch + 1) * iters;  // the next epoch starts at batch 0
      const double seconds = elapsed();
      const EpochReport r{epoch, at_.progress.losses ? at_.progress.loss_sum / double(at_.progress.losses) : 0.0, seconds,
                          double(at_.progress.images) / seconds, controller_.first_active_unit()};
      at_.history.push_back(r);
      at_.progress = {};
      if (epoch_checkpoint_due(epoch) || step_checkpoint_due()) save_checkpoint();
      if (metrics()) {
        io::Json record = epoch_record(r);
        if constexpr (kDeviceEngine) engine_.epoch_record(record);
        metrics()->log(record);
      }
    }
    if constexpr (kDeviceEngine) engine_.download(all_parameters(), optimizer_);  // the host models hold the result
    return at_.history;
  }

  // Checkpoints every options.checkpoint_every_epochs epochs and at the end, and every
  // options.checkpoint_every_steps iterations.
  bool epoch_checkpoint_due(int epoch) const {
    return !options_.checkpoint_dir.empty() && options_.checkpoint_every_epochs > 0 &&
           ((epoch + 1) % options_.checkpoint_every_epochs == 0 || epoch + 1 == options_.epochs);
  }
  bool step_checkpoint_due() const {
    return !options_.checkpoint_dir.empty() && options_.checkpoint_every_steps > 0 &&
           at_.next_iteration % options_.checkpoint_every_steps == 0;
  }

  // The run's finished epochs (carried by checkpoints across resumes) and the epoch in progress.
  const std::vector<EpochReport>& history() const { return at_.history; }
  const EpochProgress& epoch_progress() const { return at_.progress; }

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

  // The full training state as a checkpoint file's contents (a device engine's state must have
  // been downloaded: save_checkpoint() does it).
  io::SafetensorsWriter checkpoint_writer() const {
    const auto params = all_parameters();
    io::SafetensorsWriter w;
    io::add_checkpoint_config(w, architecture(), recipe());
    io::add_parameters(w, params, "param/");
    io::add_optimizer_state(w, optimizer_, params);
    add_run_state(w, controller_, at_);
    return w;
  }

  // Saves into options.checkpoint_dir as ckpt-<next iteration>.safetensors and prunes old ones.
  // A state that is not a good one (a parameter or moment not finite, a negative second moment, a
  // step count out of range) is never saved: NumericError naming what is wrong.
  // Data parallel: collective; the replicas are checked to be identical, rank 0 writes, and a failed
  // write throws on every rank.
  std::filesystem::path save_checkpoint() {
    if (!checkpoints_) throw ConfigError("Pretrainer::save_checkpoint: no checkpoint_dir set");
    if constexpr (kDeviceEngine) engine_.download(all_parameters(), optimizer_);
    check_state_is_good();
    auto write = [&] { return checkpoints_->write(at_.next_iteration, checkpoint_writer(), options_.keep_checkpoints); };
    if (!replicas_) return write();
    replicas_->check_identical(all_parameters(), at_.next_iteration, "before saving a checkpoint");
    std::exception_ptr failure;
    if (is_root()) try {
        write();
      } catch (...) {
        failure = std::current_exception();
      }
    replicas_->settle(failure, "rank 0 writing the checkpoint");
    return options_.checkpoint_dir / io::checkpoint_file_name(at_.next_iteration);
  }
  void save_checkpoint(const std::filesystem::path& file) {
    if constexpr (kDeviceEngine) engine_.download(all_parameters(), optimizer_);
    check_state_is_good();
    checkpoint_writer().write(file);
  }

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
    if (!checkpoints_) throw ConfigError("resume auto: no checkpoint directory configured");
    std::optional<std::filesystem::path> loaded;
    collectively("resuming from " + options_.checkpoint_dir.string(), [&] {
      auto found = checkpoints_->open_latest([](const CheckpointError& e) {
        std::cerr << "warning: skipping a checkpoint that is not this run's: " << e.what() << "\n";
      });
      if (!found) return;
      restore(found->reader);
      loaded = found->path;
    });
    return loaded;
  }

  // The next global iteration step() expects (after a resume: the checkpoint's).
  std::int64_t next_iteration() const { return at_.next_iteration; }

  // One step's data for checking against another implementation (PyTorch): train/step_dump.hpp.
  void dump_step(const std::filesystem::path& file, const Tensor<T>& images, const mim::MaskSet& masks, double loss,
                 std::int64_t g) const {
    write_step_dump<Encoder::spec>(file, objective_, masking_, all_parameters(), images, masks, loss, g, recipe());
  }

  const std::vector<nn::ParameterList<T>>& units() const { return units_.units(); }
  std::int64_t skipped_steps() const { return at_.skipped_steps; }
  int rank() const { return replicas_ ? replicas_->rank() : 0; }
  int world() const { return replicas_ ? replicas_->world() : 1; }
  bool is_root() const { return rank() == 0; }
  // Data parallel: the group (traffic counters), or nullptr for a single process.
  const dist::ReplicaGroup<T>* replicas() const { return replicas_ ? &*replicas_ : nullptr; }
  Engine& engine() { return engine_; }
  // Every parameter the trainer updates: the units' in order, then the never-frozen ones.
  nn::ParameterList<T> all_parameters() const { return units_.all_parameters(); }

 private:
  template <class... EngineArgs>
  Engine make_engine(Encoder& encoder, Objective& objective, EngineArgs&&... args) {
    if constexpr (kDeviceEngine)
      return Engine(encoder, objective, units_.all_parameters(), std::forward<EngineArgs>(args)...);
    else
      return Engine(encoder, objective, std::forward<EngineArgs>(args)...);
  }

  // Opened on first use: appended to after a resume, started afresh otherwise. Rank 0's only.
  io::MetricsLog* metrics() {
    if (options_.out_dir.empty() || !is_root()) return nullptr;
    if (!metrics_)
      metrics_.emplace(options_.out_dir / "metrics.jsonl", resumed_from_ ? io::MetricsLog::Mode::append
                                                                          : io::MetricsLog::Mode::truncate);
    return &*metrics_;
  }

  // One micro-batch: freezing and LRs at a window's start, masks, the engine's forward and backward,
  // and at the window's end the update. Host-gradient engines: returns the loss after the
  // non-finite policy ran. Device engines: the loss is read later (returns NaN).
  double run_micro_batch(const Tensor<T>& images, std::int64_t g, std::int64_t slot) {
    const int A = options_.accumulation;
    const std::int64_t window = g / A, offset = g % A;
    if (offset == 0) {
      for (int u : controller_.step(g)) freeze_unit(u);
      window_failed_ = false;
      progress_at_window_start_ = at_.progress;
    }
    static constexpr ViTSpec S = Encoder::spec;
    const int B = int(images.dim(0));
    const std::int64_t first_sample = (offset * world() + rank()) * B;
    const mim::MaskSet masks = masking_.make(B, S.grid(), S.grid(), options_.seed, std::uint64_t(window),
                                             std::uint32_t(first_sample));
    // Ranks weight their batches by size; the group divides by the window's total (ReplicaGroup).
    engine_.forward_backward(images, masks, replicas_ ? double(B) / A : 1.0 / A, slot);
    if constexpr (kDeviceEngine) {
      at_.next_iteration = g + 1;
      if (offset + 1 == A) {  // the window's update: AdamW at each parameter's unit LR
        lrs_.resize(unit_of_parameter_.size());
        for (std::size_t i = 0; i < lrs_.size(); ++i)
          lrs_[i] = unit_of_parameter_[i] < 0 ? controller_.global_lr() : controller_.lr(unit_of_parameter_[i]);
        engine_.update(lrs_, 1.0);
        engine_.zero_grad();
      }
      return NAN;
    } else {
      const double loss = engine_.loss(slot);
      const bool loss_finite = std::isfinite(loss);
      if (!options_.dump_step.empty() && !dumped_ && is_root() &&
          (options_.dump_iteration < 0 || options_.dump_iteration == g)) {
        dump_step(options_.dump_step, images, masks, loss, g);
        dumped_ = true;
      }
      if (replicas_) return finish_distributed(g, B, loss);
      if (!loss_finite || window_failed_) return on_non_finite(g, loss_finite ? NAN : loss);
      if (offset + 1 < A) {  // gradients keep accumulating until the window's last micro-batch
        at_.next_iteration = g + 1;
        return loss;
      }
      if (!gradients_finite()) return on_non_finite(g, NAN);
      return apply_update(g, loss);
    }
  }

  // Device engines: reads the losses of this epoch's micro-batches [settled, count) into the epoch's
  // sums; a non-finite one stops the run.
  void settle_losses(std::int64_t count) {
    for (; settled_ < count; ++settled_) {
      const double loss = engine_.loss(settled_);
      if (!std::isfinite(loss)) throw_deferred_non_finite(epoch_start_g_ + settled_);
      at_.progress.loss_sum += loss, ++at_.progress.losses;
      last_settled_loss_ = loss;
    }
  }

  [[noreturn]] void throw_deferred_non_finite(std::int64_t g) const {
    throw NumericError("non-finite loss at iteration " + std::to_string(g) + " (this engine's losses are read every " +
                       std::to_string(options_.log_every) +
                       " iterations and at each epoch's end, so later steps already ran: resume from the newest "
                       "checkpoint, which was saved after all its losses were read)");
  }

  // The update at the end of an accumulation window: AdamW on the active units at their LRs.
  double apply_update(std::int64_t g, double loss) {
    for (int u = 0; u < units_.count(); ++u) {
      if (!controller_.is_active(u)) continue;
      const double lr = controller_.lr(u);
      for (auto* p : units_.unit(u)) optimizer_.update(*p, lr);
    }
    for (auto* p : units_.always_trained()) optimizer_.update(*p, controller_.global_lr());
    zero_gradients();
    at_.next_iteration = g + 1;
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
      at_.next_iteration = g + 1;
      return loss;
    }
    nn::ParameterList<T> active;
    for (int u = 0; u < units_.count(); ++u)
      if (controller_.is_active(u)) active.insert(active.end(), units_.unit(u).begin(), units_.unit(u).end());
    active.insert(active.end(), units_.always_trained().begin(), units_.always_trained().end());
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
    replicas_->check_identical(all_parameters(), at_.next_iteration, "after " + what);
  }

  void zero_gradients() {
    for (auto* p : all_parameters()) p->zero_grad();
  }

  void restore(const io::SafetensorsReader& r) {
    std::vector<std::string> problems;
    StoredRunState stored = read_run_state(r, controller_, options_.accumulation, problems);
    std::set<const Parameter<T>*> frozen_params;
    for (int u = 0; u < controller_.units(); ++u)
      if (stored.controller.frozen[std::size_t(u)])
        for (auto* p : units_.unit(u)) frozen_params.insert(p);
    const auto params = all_parameters();
    io::check_parameters(r, params, [&](const Parameter<T>& p) { return frozen_params.count(&p) != 0; }, problems,
                         updates_before(stored.position.next_iteration));
    io::throw_if_problems(r, problems, "checkpoint does not fit this run");

    // Everything verified: from here on nothing can fail.
    controller_.restore(stored.controller);
    for (auto* p : params) {
      if (frozen_params.count(p)) p->freeze();
      else p->unfreeze(), p->zero_grad();
    }
    for (int u = 0; u < controller_.units(); ++u)
      if (stored.controller.frozen[std::size_t(u)]) drop_taps_of_unit(u);
    io::restore_parameters(r, params, optimizer_);
    if constexpr (kDeviceEngine) engine_.upload(params, optimizer_);
    at_ = std::move(stored.position);
    resumed_ = resumed_from_ = true;
    if (metrics()) {
      io::Json rec = io::Json::object();
      rec["kind"] = "resume";
      rec["iteration"] = at_.next_iteration;
      rec["file"] = r.source();
      metrics()->log(rec);
    }
  }

  // Optimiser updates the run has made before iteration `next` (one per accumulation window).
  std::int64_t updates_before(std::int64_t next) const { return next / options_.accumulation; }

  // Before a save that claims a good state: every parameter and moment finite, second moments
  // >= 0, step counts within the updates made.
  void check_state_is_good() const {
    std::vector<std::string> problems;
    io::check_values(all_parameters(), optimizer_, updates_before(at_.next_iteration), problems);
    if (problems.empty()) return;
    std::string what = "the training state is not a good one (" + std::to_string(problems.size()) + " problem" +
                       (problems.size() == 1 ? "" : "s") + "), not saved:";
    for (std::size_t i = 0; i < problems.size() && i < 5; ++i) what += "\n  " + problems[i];
    if (problems.size() > 5) what += "\n  ...";
    throw NumericError(what);
  }

  void drop_taps_of_unit(int u) {
    if constexpr (ObjectiveWithTaps<Objective, T>)
      units_.for_each_tap_of_unit(u, [&](int k) {
        if (objective_.tap_active(k)) objective_.drop_tap(k);
        engine_.drop_tap(k);
      });
  }

  // The unit stops training: no gradient buffers, no optimiser state, no backward work.
  void freeze_unit(int u) {
    drop_taps_of_unit(u);
    for (auto* p : units_.unit(u)) {
      p->freeze();
      optimizer_.release(*p);
    }
    if constexpr (kDeviceEngine)
      for (std::size_t i = 0; i < unit_of_parameter_.size(); ++i)
        if (unit_of_parameter_[i] == u) engine_.freeze(i);
    if (metrics()) metrics()->log(freeze_record(u, controller_.last_step()));
  }

  bool gradients_finite() const {
    for (const auto* p : all_parameters()) {
      if (p->grad.empty()) continue;
      for (std::int64_t i = 0; i < p->grad.numel(); ++i)
        if (!std::isfinite(double(p->grad[i]))) return false;
    }
    return true;
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
    if (options_.non_finite == NonFinitePolicy::skip &&
        (window_failed_ || ++at_.skipped_steps <= options_.max_skipped_steps)) {
      window_failed_ = !window_end;
      at_.next_iteration = g + 1;
      return loss;
    }
    if (options_.non_finite == NonFinitePolicy::skip) what += " (too many skipped steps)";
    at_.next_iteration = g - g % A;  // parameters and optimiser are still those before this window
    at_.progress = progress_at_window_start_;
    if (!options_.checkpoint_dir.empty()) {
      try {
        what += "; last good state saved to " + save_checkpoint().string();
      } catch (const NumericError& e) {  // an earlier update already diverged: nothing good to save
        what += std::string("; no good state to save (resume from the newest checkpoint instead): ") + e.what();
      } catch (const Error& e) {
        what += std::string("; saving the last good state failed: ") + e.what();
      }
    }
    throw NumericError(what);
  }

  void log_step(int epoch, std::int64_t g, double loss) { metrics()->log(step_record(epoch, g, loss, controller_)); }

  Objective& objective_;
  Masking masking_;
  freeze::FreezeController& controller_;
  optim::AdamW<T>& optimizer_;
  PretrainOptions options_;
  UnitMap<Encoder, Objective, T> units_;
  Engine engine_;
  std::vector<int> unit_of_parameter_;  // per all_parameters() entry; -1: trains at the global LR
  std::vector<double> lrs_;             // device engines: the update's per-parameter LRs
  std::optional<io::MetricsLog> metrics_;
  std::optional<io::RunCheckpoints> checkpoints_;  // when options.checkpoint_dir is set
  std::optional<dist::ReplicaGroup<T>> replicas_;
  std::int64_t window_samples_ = 0;  // data parallel: this rank's samples in the current window
  bool window_failed_ = false;       // a micro-batch of the current accumulation window was non-finite
  RunPosition at_;
  EpochProgress progress_at_window_start_;
  std::int64_t epoch_start_g_ = 0, settled_ = 0;  // device engines: the epoch's losses read so far
  double last_settled_loss_ = NAN;
  bool resumed_ = false;       // fit() starts at the restored position
  bool resumed_from_ = false;  // a checkpoint was loaded (metrics append)
  bool dumped_ = false;
};

}  // namespace vitfreeze::train
