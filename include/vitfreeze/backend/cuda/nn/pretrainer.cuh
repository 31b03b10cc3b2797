#pragma once
// The pretraining loop on the GPU, the device counterpart of train::Pretrainer: the CPU loader's
// batches go up each step with the masks the CPU trainer would draw (same policy, seed, window and
// sample offset), the FreezeController sets every unit's LR and freezes prefixes exactly as on the
// CPU (same units, same semantics, dont_freeze_pe), and one fused AdamW launch per optimiser step
// updates each tensor at its unit's LR. Gradient accumulation: A forward/backward calls add into the
// gradients, AdamW reads them scaled by 1/A.
//
// The loss never leaves the device inside a step: every micro-batch of an epoch has its own slot,
// read at logging points (every options.log_every iterations: progress line, metrics.jsonl step
// record, non-finite check) and all at once at the end of the epoch (exact mean loss).
//
// Checkpoints and resume go through a train::Pretrainer over the same host models, a host AdamW and
// the same controller (the "twin"): before a save the device state (values, trainability, AdamW
// moments and step counts, dropped taps) is copied into the host objects and the twin writes the
// CPU trainer's checkpoint format; a resume lets the twin verify and restore the file into the host
// objects and then uploads them. So a checkpoint is one format whichever device wrote it: a GPU run
// resumes on the CPU and the other way round (same recipe required), and every check the CPU
// trainer makes on a checkpoint (model, recipe, freeze state, checksums) applies here too. Not in a
// checkpoint: the fp16 loss scale (a resumed fp16 run starts the schedule again from its initial
// scale). A non-finite loss is seen only at the next read, after later steps changed the weights,
// so no "last good state" is saved then (the CPU trainer saves one); the newest periodic checkpoint
// is the state to go back to.
//
// Not here (the caller must refuse them): the `skip` non-finite policy and step dumps. A non-finite
// loss stops the run at the next read (NumericError); gradients are not
// checked, except under a precision policy with loss_scaling (fp16): there every optimiser step
// checks them on the device and a step with NaN/Inf gradients is skipped and the scale lowered
// (optim/loss_scaling.hpp); too many skips in a row stop the run (NumericError). The epoch records
// of metrics.jsonl then carry the loss scale and the skipped steps.
//
// DeviceObjective: made as DeviceObjective(ctx, host_encoder, host_objective), with
// forward_backward(ctx, images fp32, masks, double* loss), collect_parameters(list) and an `encoder`
// member (DeviceViT<P>). `masks` is what its upload_masks(ctx, MaskSet) returns when it has one
// (DeviceLocalMim), DeviceMasks otherwise (DeviceMae). As in train::Pretrainer: the parameters of an
// objective with per-block taps (DeviceObjectiveWithTaps, the device side of ObjectiveWithTaps)
// belong to their tap's block's unit, and the tap is dropped when that unit freezes; any other
// objective's parameters belong to the last unit (MAE's decoder).
#include <cuda_runtime.h>

#include <chrono>
#include <cmath>
#include <concepts>
#include <iostream>
#include <map>
#include <optional>
#include <vector>

#include "vitfreeze/backend/cuda/nn/mae.cuh"
#include "vitfreeze/backend/cuda/nn/optimizer.cuh"
#include "vitfreeze/freeze/controller.hpp"
#include "vitfreeze/io/metrics.hpp"
#include "vitfreeze/train/pretrainer.hpp"

namespace vitfreeze::cuda::nn {

// A device objective with per-block taps (DeviceLocalMim): train::ObjectiveWithTaps on the device.
template <class O, class T>
concept DeviceObjectiveWithTaps = requires(O& o, int k, DeviceParameterList<T>& list) {
  { o.tap_count() } -> std::convertible_to<int>;
  { o.tap_block(k) } -> std::convertible_to<int>;
  { o.tap_active(k) } -> std::convertible_to<bool>;
  o.collect_tap_parameters(k, list);
  o.drop_tap(k);
};

// One batch's masks in the form the objective's forward_backward takes: its own upload_masks when it
// has one (LocalMIM adds per-tap loss weights), the token bookkeeping of DeviceMasks otherwise.
template <class DeviceObjective>
auto upload_masks_for(CudaContext& ctx, const DeviceObjective& model, const mim::MaskSet& masks) {
  if constexpr (requires { model.upload_masks(ctx, masks); })
    return model.upload_masks(ctx, masks);
  else
    return DeviceMasks::upload(ctx, masks);
}

template <class HostEncoder, class HostObjective, class DeviceObjective, class Masking, PrecisionPolicy P>
class DevicePretrainer {
 public:
  using T = typename P::Activation;
  static constexpr ViTSpec spec = HostEncoder::spec;
  // Doubles per loss slot: the objective writes its loss at slot[0] (MAE and LocalMIM also their
  // weight sums at slot[1]); the rest is headroom for objectives that write more.
  static constexpr std::int64_t kSlotDoubles = 8;

  // loss_scaling: the dynamic loss-scaling schedule, used when P::loss_scaling (fp16).
  DevicePretrainer(CudaContext& ctx, HostEncoder& encoder, HostObjective& objective, Masking masking,
                   freeze::FreezeController& controller, optim::AdamWOptions adam, train::PretrainOptions options,
                   optim::LossScaleOptions loss_scaling = {})
      : ctx_(ctx), host_encoder_(encoder), host_objective_(objective), masking_(masking), controller_(controller),
        options_(std::move(options)), model_(ctx, encoder, objective), optimizer_(collect(model_), adam) {
    if constexpr (P::loss_scaling) optimizer_.enable_loss_scaling(ctx, loss_scaling);
    if (!options_.dump_step.empty() || options_.non_finite != train::NonFinitePolicy::stop)
      throw ConfigError("DevicePretrainer: step dumps and skipping non-finite steps are not implemented on the GPU");
    const int A = options_.accumulation;
    if (A < 1 || controller_.run().iters_per_epoch % A != 0 ||
        (options_.max_steps_per_epoch > 0 && options_.max_steps_per_epoch % A != 0))
      throw ConfigError("DevicePretrainer: accumulation " + std::to_string(A) +
                        " must be >= 1 and divide the iterations per epoch");
    build_units();
    if (!options_.out_dir.empty()) std::filesystem::create_directories(options_.out_dir);
    train::PretrainOptions twin_options = options_;
    twin_options.out_dir.clear();  // the metrics log is this trainer's alone
    twin_options.progress = false;
    twin_.emplace(host_encoder_, host_objective_, masking_, controller_, host_adam_, twin_options);
  }

  // Runs the whole schedule over `loader` (its length is the iterations per epoch).
  // After resume() it continues from the checkpoint's position. Returns the reports of every epoch
  // of the run, those before a resume included (checkpoints carry them, as on the CPU).
  std::vector<train::EpochReport> fit(data::Loader& loader) {
    io::ProgressBar bar(std::cout);
    if (!resumed_) history_.clear(), progress_ = {};
    const std::int64_t iters = controller_.run().iters_per_epoch;
    reserve_loss_slots(iters);
    std::vector<double> host_slots;
    const int first_epoch = int(next_iteration_ / iters);
    std::int64_t first_batch = next_iteration_ % iters;
    for (int epoch = first_epoch; epoch < options_.epochs; ++epoch, first_batch = 0) {
      loader.start_epoch(std::uint64_t(epoch), std::min(first_batch, loader.batches_per_epoch()));
      const std::int64_t steps = options_.max_steps_per_epoch > 0 ? std::min(options_.max_steps_per_epoch, iters) : iters;
      if (options_.progress) bar.begin_epoch(epoch + 1, options_.epochs, steps);
      const auto start = std::chrono::steady_clock::now();
      const train::EpochProgress before = progress_;  // of this epoch, before a resume
      auto elapsed = [&] {
        return before.seconds + std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      };
      std::int64_t images = 0, unreported_images = 0, done = 0;
      // Loss slot k holds the epoch's (first_batch + k)-th micro-batch.
      for (std::int64_t s = first_batch; s < steps; ++s) {
        auto batch = loader.next();
        if (!batch) break;
        const std::int64_t g = std::int64_t(epoch) * iters + s, slot = s - first_batch;
        enqueue_step(batch->images, g, slot);
        images += batch->size(), unreported_images += batch->size(), ++done;
        if (g % options_.log_every == 0) {  // the only reads inside an epoch: they wait for the GPU
          const double loss = read_loss(slot);
          if (!std::isfinite(loss)) throw_non_finite(g);
          if (options_.progress) bar.update(s + 1, loss, unreported_images), unreported_images = 0;
          if (metrics()) log_step(epoch, g, loss);
        }
        twin_->set_next_iteration(next_iteration_);
        if (s + 1 < steps && twin_->step_checkpoint_due())  // the epoch's last: below, with its report
          save_checkpoint_checked(epoch * iters + first_batch, slot + 1, before, images, elapsed());
      }
      host_slots.assign(std::size_t(kSlotDoubles * done), 0.0);
      if (done > 0)
        check(cudaMemcpyAsync(host_slots.data(), loss_slots_.data(), sizeof(double) * host_slots.size(),
                              cudaMemcpyDeviceToHost, ctx_.stream()),
              "cudaMemcpyAsync(loss slots)");
      ctx_.synchronize();
      double loss_sum = before.loss_sum;
      for (std::int64_t s = 0; s < done; ++s) {
        const double loss = host_slots[std::size_t(kSlotDoubles * s)];
        if (!std::isfinite(loss)) throw_non_finite(std::int64_t(epoch) * iters + first_batch + s);
        loss_sum += loss;
      }
      if (options_.progress) {
        if (unreported_images > 0)
          bar.update(first_batch + done, host_slots[std::size_t(kSlotDoubles * (done - 1))], unreported_images);
        bar.end_epoch();
      }
      next_iteration_ = std::int64_t(epoch + 1) * iters;  // the next epoch starts at batch 0
      const double seconds = elapsed();
      const std::int64_t losses = before.losses + done;
      const train::EpochReport r{epoch, losses ? loss_sum / double(losses) : 0.0, seconds,
                                 double(before.images + images) / seconds, controller_.first_active_unit()};
      history_.push_back(r);
      progress_ = {};
      twin_->set_next_iteration(next_iteration_);
      if (twin_->epoch_checkpoint_due(epoch) || twin_->step_checkpoint_due())
        save_checkpoint();  // every loss of the epoch was read above: the state is a good one
      if (metrics()) {
        io::Json record = train::epoch_record(r);
        if constexpr (P::loss_scaling) {
          const optim::LossScaleState scaling = optimizer_.settle_loss_scale();
          record["loss_scale"] = double(scaling.scale);
          record["skipped_steps"] = scaling.skipped_steps;
        }
        metrics()->log(record);
      }
    }
    return history_;
  }

  // One micro-batch at global iteration g, exactly as fit() runs it, for callers that drive the loop
  // themselves (tests); returns its loss, so it waits for the GPU. g must not go backwards.
  double step(const Tensor<float>& images, std::int64_t g) {
    reserve_loss_slots(1);
    enqueue_step(images, g, 0);
    const double loss = read_loss(0);
    if (!std::isfinite(loss)) throw_non_finite(g);
    return loss;
  }

  // ---- checkpoints (the twin's format; see the top of this file) --------------------------------

  // Saves into options.checkpoint_dir as ckpt-<next iteration>.safetensors (waits for the GPU) and
  // prunes old ones, as train::Pretrainer::save_checkpoint.
  std::filesystem::path save_checkpoint() {
    if (options_.checkpoint_dir.empty()) throw ConfigError("DevicePretrainer::save_checkpoint: no checkpoint_dir set");
    download();
    twin_->set_next_iteration(next_iteration_);
    twin_->set_history(history_, progress_);
    return twin_->save_checkpoint();
  }
  void save_checkpoint(const std::filesystem::path& file) {
    download();
    twin_->set_next_iteration(next_iteration_);
    twin_->set_history(history_, progress_);
    twin_->save_checkpoint(file);
  }

  // "auto": the newest intact checkpoint in options.checkpoint_dir (none: nothing changes, returns
  // nullopt); anything else is a checkpoint file. The file is verified completely before anything
  // changes; then the host models and the device take its state and fit() continues from there.
  std::optional<std::filesystem::path> resume(const std::string& what) {
    std::optional<std::filesystem::path> from = twin_->resume(what);
    if (!from) return from;
    upload_host_state();
    next_iteration_ = twin_->next_iteration();
    history_ = twin_->history();
    progress_ = twin_->epoch_progress();
    resumed_ = true;
    if (metrics()) {
      io::Json rec = io::Json::object();
      rec["kind"] = "resume";
      rec["iteration"] = next_iteration_;
      rec["file"] = from->string();
      metrics()->log(rec);
    }
    return from;
  }

  // The next global iteration (after a resume: the checkpoint's).
  std::int64_t next_iteration() const { return next_iteration_; }

  // Copies the trained values into the host encoder and objective (their parameter lists match the
  // device's one for one, by name), freezes on the host what froze on the device and drops the host
  // objective's taps the device dropped, so the host models end as train::Pretrainer leaves them.
  // The AdamW state (moments, step counts) goes to the host optimizer the checkpoints are written from.
  void download() {
    if constexpr (P::loss_scaling) optimizer_.settle_loss_scale();  // step counts of a skipped update
    const vitfreeze::nn::ParameterList<float> host = host_parameters();
    const auto& device = optimizer_.parameters();
    for (std::size_t i = 0; i < host.size(); ++i) {
      device[i]->values_to_host(ctx_, *host[i]);
      if (!device[i]->trainable()) {
        host[i]->freeze();
        host_adam_.release(*host[i]);
        continue;
      }
      host[i]->unfreeze();
      if (device[i]->step == 0) {
        host_adam_.release(*host[i]);
        continue;
      }
      auto& state = host_adam_.mutable_state(*host[i]);
      if (state.m.empty() || state.m.shape() != host[i]->value.shape()) {
        state.m = Tensor<float>(host[i]->value.shape());
        state.v = Tensor<float>(host[i]->value.shape());
      }
      device[i]->moments_to_host(ctx_, state.m, state.v);
      state.step = device[i]->step;
    }
    if constexpr (kHasTaps && train::ObjectiveWithTaps<HostObjective, float>)
      for (int k = 0; k < model_.tap_count(); ++k)
        if (!model_.tap_active(k) && host_objective_.tap_active(k)) host_objective_.drop_tap(k);
  }

  DeviceObjective& model() { return model_; }
  // The host optimizer the checkpoints are written from (filled by download()).
  const optim::AdamW<float>& host_optimizer() const { return host_adam_; }
  // fp16: the loss-scaling state once the queued steps are done (waits for the GPU).
  optim::LossScaleState loss_scale_state() { return optimizer_.settle_loss_scale(); }
  // Every device tensor the optimizer holds, in the host models' parameter order.
  const DeviceParameterList<T>& parameters() const { return optimizer_.parameters(); }
  // Unit of every device tensor (optimizer order); -1: trains to the end at the global LR.
  const std::vector<int>& unit_of_parameter() const { return unit_of_; }

 private:
  // The host models' parameters, checked one for one (by name) against the device's tensors.
  vitfreeze::nn::ParameterList<float> host_parameters() const {
    vitfreeze::nn::ParameterList<float> host;
    host_encoder_.collect_parameters(host);
    host_objective_.collect_parameters(host);
    const auto& device = optimizer_.parameters();
    if (host.size() != device.size())
      throw ConfigError("DevicePretrainer: " + std::to_string(device.size()) + " device tensors for " +
                        std::to_string(host.size()) + " host parameters");
    for (std::size_t i = 0; i < host.size(); ++i)
      if (host[i]->name != device[i]->name)
        throw ConfigError("DevicePretrainer: device tensor " + device[i]->name + " where the host has " + host[i]->name);
    return host;
  }

  // After the twin restored a checkpoint into the host objects: the device takes values, state and
  // the frozen prefix from them, and drops the taps of frozen units (as the twin did on the host).
  void upload_host_state() {
    const vitfreeze::nn::ParameterList<float> host = host_parameters();
    const auto& device = optimizer_.parameters();
    for (std::size_t i = 0; i < host.size(); ++i) {
      const auto* s = host_adam_.state(*host[i]);
      const bool has_state = s && !s->m.empty();
      device[i]->assign_from_host(ctx_, *host[i], has_state ? &s->m : nullptr, has_state ? &s->v : nullptr,
                                  has_state ? s->step : 0);
    }
    apply_freezing();
    for (int u = 0; u < controller_.first_active_unit(); ++u) drop_taps_of_unit(u);
  }

  // A checkpoint in the middle of an epoch: the losses of the slots [first, first + count) of this
  // epoch are read first, so that a non-finite one stops the run before it is saved; with what the
  // epoch held before (a resume) they are the epoch's progress the checkpoint records.
  void save_checkpoint_checked(std::int64_t first_g, std::int64_t count, const train::EpochProgress& before,
                               std::int64_t images, double seconds) {
    std::vector<double> slots(std::size_t(kSlotDoubles * count));
    check(cudaMemcpyAsync(slots.data(), loss_slots_.data(), sizeof(double) * slots.size(), cudaMemcpyDeviceToHost,
                          ctx_.stream()),
          "cudaMemcpyAsync(loss slots)");
    ctx_.synchronize();
    progress_ = before;
    for (std::int64_t k = 0; k < count; ++k) {
      const double loss = slots[std::size_t(kSlotDoubles * k)];
      if (!std::isfinite(loss)) throw_non_finite(first_g + k);
      progress_.loss_sum += loss, ++progress_.losses;
    }
    progress_.images = before.images + images, progress_.seconds = seconds;
    save_checkpoint();
  }

  // Opened on first use: appended to after a resume, started afresh otherwise.
  io::MetricsLog* metrics() {
    if (options_.out_dir.empty()) return nullptr;
    if (!metrics_)
      metrics_.emplace(options_.out_dir / "metrics.jsonl", resumed_ ? io::MetricsLog::Mode::append
                                                                     : io::MetricsLog::Mode::truncate);
    return &*metrics_;
  }

  static DeviceParameterList<T> collect(DeviceObjective& m) {
    DeviceParameterList<T> out;
    m.collect_parameters(out);
    return out;
  }

  static constexpr bool kHasTaps = DeviceObjectiveWithTaps<DeviceObjective, T>;

  // Unit of block b: b + 1, or b when the patch embedding is not a unit (dont_freeze_pe).
  int unit_of_block(int b) const { return b + (options_.dont_freeze_pe ? 0 : 1); }

  // train::Pretrainer::build_units over the device tensors.
  void build_units() {
    const int last = unit_of_block(spec.depth - 1);
    if (controller_.units() != last + 1)
      throw ConfigError("DevicePretrainer: the schedule has " + std::to_string(controller_.units()) + " units, the model " +
                        std::to_string(last + 1));
    const bool truncate = options_.semantics == freeze::FreezeSemantics::truncate;
    auto& e = model_.encoder;
    std::map<const DeviceParameter<T>*, int> unit;
    unit[&e.patch_embed.weight] = unit[&e.patch_embed.bias] = options_.dont_freeze_pe ? -1 : 0;
    unit[&e.cls_token] = !options_.dont_freeze_pe && truncate ? 0 : -1;
    for (int b = 0; b < spec.depth; ++b) {
      DeviceParameterList<T> ps;
      e.blocks[std::size_t(b)].collect_parameters(ps);
      for (auto* p : ps) unit[p] = unit_of_block(b);
    }
    if constexpr (kHasTaps) {
      // A tap's norm, decoder and head share its block's unit and freeze (are dropped) with it.
      for (int k = 0; k < model_.tap_count(); ++k) {
        DeviceParameterList<T> ps;
        model_.collect_tap_parameters(k, ps);
        for (auto* p : ps) unit[p] = unit_of_block(model_.tap_block(k));
      }
    }
    // The final norm and any other tensor of the objective: the last unit (absent from the map).
    const auto& params = optimizer_.parameters();
    unit_of_.assign(params.size(), last);
    for (std::size_t i = 0; i < params.size(); ++i)
      if (auto it = unit.find(params[i]); it != unit.end()) unit_of_[i] = it->second;
    lrs_.assign(params.size(), 0.0);
  }

  // The device encoder's frozen prefix after the controller froze units: truncate semantics
  // freezes whole units (the backward stops at the first trained block); otherwise the cls token
  // (vitfreeze semantics) or the patch embedding and cls token (dont_freeze_pe) still train and the
  // gradient passes through the frozen blocks.
  void apply_freezing() {
    const int f = controller_.first_active_unit();
    auto& e = model_.encoder;
    if (options_.dont_freeze_pe) e.freeze_prefix(f, false, false);
    else if (options_.semantics == freeze::FreezeSemantics::truncate) e.freeze_units(f);
    else if (f > 0) e.freeze_prefix(f - 1, true, false);
  }

  // train::Pretrainer::drop_taps_of_unit: the taps reading a block of unit u stop with it.
  void drop_taps_of_unit(int u) {
    if constexpr (kHasTaps)
      for (int k = 0; k < model_.tap_count(); ++k)
        if (unit_of_block(model_.tap_block(k)) == u && model_.tap_active(k)) model_.drop_tap(k);
  }

  // Room for the losses of `slots` micro-batches (kept when already large enough).
  void reserve_loss_slots(std::int64_t slots) {
    const std::size_t bytes = sizeof(double) * std::size_t(kSlotDoubles * slots);
    if (loss_slots_.empty() || loss_slots_.bytes() < bytes) loss_slots_ = ctx_.allocator().allocate(bytes);
  }

  // Queues one micro-batch (freezing, upload, forward/backward, the window's AdamW step); its loss
  // goes to loss slot `slot`, nothing is read back.
  void enqueue_step(const Tensor<float>& images, std::int64_t g, std::int64_t slot) {
    const int A = options_.accumulation;
    const std::int64_t window = g / A, offset = g % A;
    if (offset == 0) {
      const std::vector<int> froze = controller_.step(g);
      if (!froze.empty()) {
        apply_freezing();
        for (int u : froze) {
          drop_taps_of_unit(u);
          log_freeze(u);
        }
      }
    }
    const int B = int(images.dim(0));
    const mim::MaskSet masks = masking_.make(B, spec.grid(), spec.grid(), options_.seed, std::uint64_t(window),
                                             std::uint32_t(offset * B));
    // Pageable sources: both copies are staged before the calls return, so the host batch may go.
    DeviceBuffer device_images = ctx_.allocator().allocate(images.bytes());
    check(cudaMemcpyAsync(device_images.data(), images.data(), images.bytes(), cudaMemcpyHostToDevice, ctx_.stream()),
          "cudaMemcpyAsync(images)");
    const auto device_masks = upload_masks_for(ctx_, model_, masks);
    model_.forward_backward(ctx_, data_of<float>(device_images), device_masks,
                            loss_slots_.as<double>() + kSlotDoubles * slot, optimizer_.loss_scale_device());
    next_iteration_ = g + 1;
    if (offset + 1 < A) return;  // gradients keep accumulating until the window's last micro-batch
    const auto& params = optimizer_.parameters();
    for (std::size_t i = 0; i < params.size(); ++i)
      lrs_[i] = unit_of_[i] < 0 ? controller_.global_lr() : controller_.lr(unit_of_[i]);
    optimizer_.step(ctx_, lrs_, 1.0 / A);
    optimizer_.zero_grad(ctx_);
  }

  double read_loss(std::int64_t slot) {
    double loss = 0;
    check(cudaMemcpyAsync(&loss, loss_slots_.as<double>() + kSlotDoubles * slot, sizeof(double), cudaMemcpyDeviceToHost,
                          ctx_.stream()),
          "cudaMemcpyAsync(loss)");
    ctx_.synchronize();
    return loss;
  }

  [[noreturn]] void throw_non_finite(std::int64_t g) const {
    throw NumericError("non-finite loss at iteration " + std::to_string(g) +
                       " (the GPU run reads its losses every " + std::to_string(options_.log_every) +
                       " iterations and at each epoch's end, so later steps already ran: resume from the newest "
                       "checkpoint, which was saved after all its losses were read)");
  }

  void log_step(int epoch, std::int64_t g, double loss) { metrics()->log(train::step_record(epoch, g, loss, controller_)); }
  void log_freeze(int u) {
    if (metrics()) metrics()->log(train::freeze_record(u, controller_.last_step()));
  }

  CudaContext& ctx_;
  HostEncoder& host_encoder_;
  HostObjective& host_objective_;
  Masking masking_;
  freeze::FreezeController& controller_;
  train::PretrainOptions options_;
  DeviceObjective model_;
  DeviceAdamW<T> optimizer_;
  std::vector<int> unit_of_;
  std::vector<double> lrs_;
  DeviceBuffer loss_slots_;
  std::optional<io::MetricsLog> metrics_;
  optim::AdamW<float> host_adam_{optimizer_.options()};  // the twin's optimizer: state copied in by download()
  std::optional<train::Pretrainer<HostEncoder, HostObjective, Masking, float>> twin_;
  std::int64_t next_iteration_ = 0;
  std::vector<train::EpochReport> history_;  // the run's finished epochs (from a checkpoint after a resume)
  train::EpochProgress progress_;            // the epoch in progress, as of the last save or resume
  bool resumed_ = false;
};

}  // namespace vitfreeze::cuda::nn
