#pragma once
// The trainer's step engine on the GPU (nvcc only): train::Pretrainer<Encoder, Objective, Masking,
// float, CudaStepEngine<Encoder, Objective, P>> trains the explicit model of the host objective
// (model::ExplicitOf<Objective, Cuda, P>: MAE, MAE-lite, LocalMIM, MiCL) on a CUDA device. It is a
// DeviceStepEngine (train/step_engine.hpp): the trainer decides masks, freezing, LRs and
// checkpoints; the engine keeps the device copies of the parameters and the AdamW state.
//
//   forward_backward  uploads the micro-batch (images, masks) and queues its forward and backward;
//                     nothing waits for the GPU, the loss lands in a device loss slot
//   loss(slot)        reads the slots written since the last read in one copy (waits for the GPU)
//   update(lrs, s)    one fused AdamW launch, every trained tensor at its own LR (the trainer's
//                     all_parameters() order); fp16 (P::loss_scaling): dynamic loss scaling on the
//                     device, the skipped steps and the scale reported by epoch_record
//   freeze(i), drop_tap(k), zero_grad()
//   download/upload   device state <-> the host objects (checkpoints, the end of fit)
//
// Whole-step CUDA graphs (CudaEngineOptions::step_graphs): each micro-batch's forward and backward is
// captured and replayed (inputs copied into fixed buffers first), the update (gradient check, AdamW,
// scaler, zeroing) likewise. A new set of trained tensors, dropped tap or gradient weight runs its
// first step eagerly and is captured on its second, so matmul plans, cuDNN graphs and the
// allocator's cache are built outside any capture. Not for MiCL: its contrastive loss runs on the
// host in this version (backend/cuda/backend.cuh), which a capture cannot contain.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vitfreeze/backend/cuda/backend.cuh"
#include "vitfreeze/backend/cuda/parameter_adamw.cuh"
#include "vitfreeze/backend/cuda/step_graph.hpp"
#include "vitfreeze/io/json.hpp"
#include "vitfreeze/mim/masking.hpp"
#include "vitfreeze/model/explicit_of.hpp"
#include "vitfreeze/nn/module.hpp"
#include "vitfreeze/optim/adamw.hpp"

namespace vitfreeze::train {

struct CudaEngineOptions {
  LossScaleOptions loss_scaling;  // used when the policy asks for it (fp16)
  bool step_graphs = false;       // capture and replay each step as CUDA graphs (see above)
};

template <class HostEncoder, class HostObjective, PrecisionPolicy P>
  requires BackendFor<Cuda, P>
class CudaStepEngine {
 public:
  using Model = model::ExplicitOf<HostObjective, Cuda, P>;
  using DeviceParameter = Cuda::Parameter<P>;
  static constexpr bool immediate_losses = false;
  static constexpr bool host_gradients = false;
  // Doubles per loss slot: the model writes its loss at [0] and (MAE, LocalMIM) its weight sum at [1].
  static constexpr std::int64_t kSlotDoubles = 2;

  // host: the trainer's all_parameters(); the device copies are made from the host modules (values,
  // trainability, dropped taps) and ordered as that list. Device tensors the list does not name
  // never train.
  CudaStepEngine(HostEncoder& encoder, HostObjective& objective, const nn::ParameterList<float>& host,
                 cuda::CudaContext& ctx, const optim::AdamWOptions& adam, CudaEngineOptions options = {})
      : ctx_(ctx), options_(options), model_(ctx, encoder, objective), optimizer_(in_host_order(model_, host), adam) {
    if constexpr (P::loss_scaling) optimizer_.enable_loss_scaling(ctx, options.loss_scaling);
    if (options.step_graphs && kContrastiveOnHost)
      throw ConfigError("CudaStepEngine: whole-step CUDA graphs are not available for " + std::string(Model::name) +
                        " (its contrastive loss runs on the host)");
    captured_loss_ = ctx.empty<double>(Shape{kSlotDoubles});
  }

  void forward_backward(const Tensor<float>& images, const mim::MaskSet& masks, double weight, std::int64_t slot) {
    reserve_loss_slots(slot + 1);
    double* loss = loss_slots_.data() + kSlotDoubles * slot;
    if (!options_.step_graphs) {
      const cuda::DeviceTensor<float> device_images = cuda::to_device(ctx_, images);
      const auto buffers = model_.upload_masks(ctx_, masks);
      model_.forward_backward(ctx_, device_images, buffers, loss, optimizer_.loss_scale_device(), weight);
    } else {
      forward_backward_captured(images, masks, weight);
      cuda::check(cudaMemcpyAsync(loss, captured_loss_.data(), sizeof(double) * kSlotDoubles, cudaMemcpyDeviceToDevice,
                                  ctx_.stream()),
                  "cudaMemcpyAsync(loss slot)");
    }
    written_end_ = slot + 1;
    read_end_ = std::min(read_end_, slot);
  }

  double loss(std::int64_t slot) {
    if (slot < 0 || slot >= written_end_) throw ConfigError("CudaStepEngine::loss: slot " + std::to_string(slot) + " not written");
    if (slot >= read_end_) {  // everything written since the last read, in one copy
      host_losses_.resize(std::size_t(kSlotDoubles * written_end_));
      cuda::check(cudaMemcpyAsync(host_losses_.data() + kSlotDoubles * read_end_, loss_slots_.data() + kSlotDoubles * read_end_,
                                  sizeof(double) * std::size_t(kSlotDoubles * (written_end_ - read_end_)),
                                  cudaMemcpyDeviceToHost, ctx_.stream()),
                  "cudaMemcpyAsync(loss slots)");
      ctx_.synchronize();
      read_end_ = written_end_;
    }
    return host_losses_[std::size_t(kSlotDoubles * slot)];
  }

  // Room for n slots; growing drops unread losses (the trainer reserves at epoch starts).
  void reserve_loss_slots(std::int64_t n) {
    if (loss_slots_.numel() >= kSlotDoubles * n) return;
    loss_slots_ = ctx_.empty<double>(Shape{kSlotDoubles * n});
    written_end_ = read_end_ = 0;
  }

  void drop_tap(int k) {
    if constexpr (requires { model_.drop_tap(k); })
      if (model_.tap_active(k)) model_.drop_tap(k);
  }

  void update(std::span<const double> lrs, double grad_scale) {
    optimizer_.stage(ctx_, lrs, grad_scale);
    if (!options_.step_graphs) return optimizer_.launch(ctx_);
    update_graph_.run(ctx_, trained_signature(), [&] {
      optimizer_.launch(ctx_);
      optimizer_.zero_grad(ctx_);
    });
    optimizer_.launched_by_replay();
    gradients_zeroed_ = true;
  }
  void zero_grad() {
    if (gradients_zeroed_) {
      gradients_zeroed_ = false;  // the update graph did it
      return;
    }
    optimizer_.zero_grad(ctx_);
  }
  void freeze(std::size_t i) { parameters().at(i)->freeze(); }

  // Values, trainability and AdamW state (moments, step counts) into the host objects, one for one
  // with the trainer's list (waits for the GPU).
  void download(const nn::ParameterList<float>& host, optim::AdamW<float>& adam) {
    if constexpr (P::loss_scaling) optimizer_.settle_loss_scale();  // step counts of a skipped update
    expect_host_list(host);
    for (std::size_t i = 0; i < host.size(); ++i) {
      const DeviceParameter& d = *parameters()[i];
      vitfreeze::Parameter<float>& h = *host[i];
      d.values_to_host(ctx_, h);
      if (!d.trainable()) {
        h.freeze();
        adam.release(h);
        continue;
      }
      h.unfreeze();
      h.zero_grad();
      if (d.step == 0) {
        adam.release(h);
        continue;
      }
      auto& state = adam.mutable_state(h);
      if (state.m.empty() || state.m.shape() != h.value.shape()) {
        state.m = Tensor<float>(h.value.shape());
        state.v = Tensor<float>(h.value.shape());
      }
      d.moments_to_host(ctx_, state.m, state.v);
      state.step = d.step;
    }
  }
  // The reverse, after a checkpoint was restored into the host objects.
  void upload(const nn::ParameterList<float>& host, const optim::AdamW<float>& adam) {
    expect_host_list(host);
    for (std::size_t i = 0; i < host.size(); ++i) {
      const auto* s = adam.state(*host[i]);
      const bool has_state = s && !s->m.empty();
      parameters()[i]->assign_from_host(ctx_, *host[i], has_state ? &s->m : nullptr, has_state ? &s->v : nullptr,
                                        has_state ? s->step : 0);
    }
  }

  void epoch_record(io::Json& record) {
    if constexpr (P::loss_scaling) {
      const LossScaleState scaling = optimizer_.settle_loss_scale();
      record["loss_scale"] = double(scaling.scale);
      record["skipped_steps"] = scaling.skipped_steps;
    }
  }

  Model& model() { return model_; }
  cuda::CudaContext& context() { return ctx_; }
  // The device tensors in the trainer's all_parameters() order.
  const std::vector<DeviceParameter*>& parameters() const { return optimizer_.parameters(); }
  // fp16: the loss-scaling state once the queued steps are done (waits for the GPU).
  LossScaleState loss_scale_state() { return optimizer_.settle_loss_scale(); }
  // Whole-step graphs: captures so far (micro-batch, update).
  std::size_t step_captures() const { return step_graph_.graph.captures(); }
  std::size_t update_captures() const { return update_graph_.graph.captures(); }

 private:
  static constexpr bool kContrastiveOnHost = HostObjective::family == mim::ObjectiveFamily::micl;

  // A StepGraph whose signatures run once eagerly before they are captured.
  struct WarmedGraph {
    cuda::StepGraph graph;
    std::optional<std::uint64_t> seen;  // the last signature run

    template <class Enqueue>
    void run(cuda::CudaContext& ctx, std::uint64_t signature, Enqueue&& enqueue) {
      if (seen != signature) {
        seen = signature;
        enqueue();
        return;
      }
      graph.run(ctx, signature, enqueue);
    }
  };

  // The model's tensors in the host list's order, matched by name; the rest freeze.
  static std::vector<DeviceParameter*> in_host_order(Model& model, const nn::ParameterList<float>& host) {
    model::ParameterRefs<Cuda, P> mine;
    model.collect_parameters(mine);
    std::map<std::string, DeviceParameter*> by_name;
    for (DeviceParameter* p : mine) by_name[p->name()] = p;
    std::vector<DeviceParameter*> ordered;
    for (const auto* h : host) {
      const auto it = by_name.find(h->name);
      if (it == by_name.end()) throw ConfigError("CudaStepEngine: the model has no tensor " + h->name);
      ordered.push_back(it->second);
      by_name.erase(it);
    }
    for (auto& [name, p] : by_name) p->freeze();
    return ordered;
  }

  void expect_host_list(const nn::ParameterList<float>& host) const {
    if (host.size() != parameters().size())
      throw ConfigError("CudaStepEngine: " + std::to_string(host.size()) + " host parameters for " +
                        std::to_string(parameters().size()) + " device tensors");
    for (std::size_t i = 0; i < host.size(); ++i)
      if (host[i]->name != parameters()[i]->name())
        throw ConfigError("CudaStepEngine: host parameter " + host[i]->name + " where the device has " +
                          parameters()[i]->name());
  }

  // Inputs into the fixed buffers the captured step reads, then one replay (a capture first, when
  // the step's work changed).
  void forward_backward_captured(const Tensor<float>& images, const mim::MaskSet& masks, double weight) {
    if (static_images_.shape() != images.shape()) {  // a batch of another size: new buffers, new capture
      step_graph_.graph.reset(ctx_);
      step_graph_.seen.reset();
      static_images_ = ctx_.empty<float>(images.shape());
      static_masks_.reset();
    }
    cuda::copy_to_device(ctx_, images, static_images_);
    if (static_masks_)
      model_.assign_masks(ctx_, *static_masks_, masks);
    else
      static_masks_.emplace(model_.upload_masks(ctx_, masks));
    step_graph_.run(ctx_, step_signature(weight), [&] {
      model_.forward_backward(ctx_, static_images_, *static_masks_, captured_loss_.data(), optimizer_.loss_scale_device(),
                              weight);
    });
  }

  // What changes the enqueued work of both graphs: which tensors train, which taps run.
  std::uint64_t trained_signature() const {
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (const DeviceParameter* p : parameters()) h = mix(h, p->trainable());  // the rest never train
    if constexpr (requires { model_.tap_count(); })
      for (int k = 0; k < model_.tap_count(); ++k) h = mix(h, model_.tap_active(k));
    return h;
  }
  // ... and of the forward/backward: the gradient weight too.
  std::uint64_t step_signature(double weight) const {
    std::uint64_t bits = 0;
    std::memcpy(&bits, &weight, sizeof bits);
    return mix(trained_signature(), bits);
  }
  static std::uint64_t mix(std::uint64_t h, std::uint64_t x) { return (h ^ x) * 1099511628211ull; }

  cuda::CudaContext& ctx_;
  CudaEngineOptions options_;
  Model model_;
  cuda::ParameterAdamW<P> optimizer_;
  cuda::DeviceTensor<double> loss_slots_;
  std::vector<double> host_losses_;
  std::int64_t written_end_ = 0, read_end_ = 0;  // slots [0, written_end_) written, [0, read_end_) on the host
  // Whole-step graphs.
  WarmedGraph step_graph_, update_graph_;
  cuda::DeviceTensor<float> static_images_;
  std::optional<typename Model::MaskBuffers> static_masks_;
  cuda::DeviceTensor<double> captured_loss_;
  bool gradients_zeroed_ = false;
};

}  // namespace vitfreeze::train
