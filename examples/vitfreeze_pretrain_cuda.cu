// vitfreeze_pretrain_cuda: vitfreeze_pretrain with the pretraining on a GPU. Same flags, models,
// seeds, data order, masks and freeze schedule (pretrain_common.hpp); the trained weights come back
// into the host encoder, and the export, linear probe and fine-tuning then run on the CPU exactly as
// in vitfreeze_pretrain, so the printed top-1 numbers are comparable.
#include <cuda_runtime.h>

#include <chrono>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

#include "pretrain_common.hpp"
#include "vitfreeze/core/parallel.hpp"
#include "vitfreeze/train/cuda_step_engine.cuh"

namespace vf = vitfreeze;
namespace vc = vitfreeze::cuda;
namespace ex = vitfreeze::examples;

namespace {

const char* kDescription =
    "vitfreeze_pretrain_cuda: vitfreeze_pretrain with the pretraining on a GPU (same flags, models, data order, "
    "masks and freeze schedule); the linear probe and fine-tuning then run on the CPU as there.\n\n"
    "Every objective runs on the GPU, through the same trainer as on the CPU: localmim (the default; a tap is "
    "dropped when its block's unit freezes), mae, mae-lite and micl (whose contrastive loss is computed on the host). "
    "Checkpoints and --resume as on the CPU, in the same format and with the same recipe: a GPU run resumes on the "
    "CPU and the other way round (the fp16 loss scale is not stored: a resumed fp16 run starts it again). Not on the "
    "GPU yet, refused with an error: --non-finite skip, --dump-step. The loss is read at logging points (every 50 "
    "iterations) and at each epoch's end; a non-finite loss stops the run there (no last-good-state checkpoint: "
    "later steps already ran).";

// A context on --device, or a clear error where there is no usable GPU.
void open_device(std::optional<vc::CudaContext>& ctx, int device) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0)
    throw vf::ConfigError(std::string("no CUDA device available (") + (e != cudaSuccess ? cudaGetErrorString(e) : "0 devices") +
                          "); vitfreeze_pretrain_cuda needs a GPU, vitfreeze_pretrain runs on the CPU");
  if (device < 0 || device >= count)
    throw vf::ConfigError("--device " + std::to_string(device) + ": this machine has devices 0.." + std::to_string(count - 1));
  ctx.emplace(device);
}

template <vf::ViTSpec S, class Objective, vf::PrecisionPolicy P>
int run(const ex::PretrainFlags& flags) {
  const auto b = ex::RunBasics::read(flags);
  std::optional<vc::CudaContext> ctx;
  if (b.epochs > 0) {
    open_device(ctx, flags.device);
    std::cout << "GPU " << ctx->device() << ": " << ctx->properties().name << ", precision " << P::name << "\n";
  }
  const auto d = ex::PretrainData::load(flags, b);
  auto loader = ex::pretrain_loader<S>(d, b);

  using Encoder = vf::nn::ViT<S, float>;
  Encoder encoder(b.seed);  // initialised on the host from the seed, as on the CPU
  ex::PretrainOutcome pre(flags);
  if (b.epochs > 0) {
    const auto fs = ex::FreezeSetup::read(flags, S.depth, b, loader.batches_per_epoch());
    pre.mode = fs.mode;
    vf::freeze::FreezeController controller = fs.controller(b);
    Objective objective(b.seed + 1);
    vf::train::PretrainOptions opt = fs.options(b);
    ex::set_checkpoint_options(flags, b, d, Objective::name, opt);
    const vf::optim::AdamWOptions adam_options{.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.05};
    vf::optim::AdamW<float> adam(adam_options);  // the host side of checkpoints: the engine keeps the live state
    using Engine = vf::train::CudaStepEngine<Encoder, Objective, P>;
    vf::train::Pretrainer<Encoder, Objective, vf::mim::RandomRatio, float, Engine> trainer(
        encoder, objective, ex::masking_for<Objective>(flags), controller, adam, opt, *ctx, adam_options);
    std::cout << fs.banner(S, Objective::name, d.train.count, b) << ", on the GPU\n";
    ex::resume_if_asked(flags, trainer, opt);
    pre.record(trainer.fit(loader));  // leaves the trained values in the host models
    ex::write_pretrain_figures(flags, b, d, encoder, objective, pre.reports);
  } else {
    std::cout << "no pretraining (--epochs 0): probing the randomly initialised encoder\n";
  }
  vf::io::Json extra = vf::io::Json::object();
  extra["backend"] = "cuda";
  extra["precision"] = P::name;
  extra["device"] = ctx ? std::string(ctx->properties().name) : std::string("none");
  return ex::evaluate_and_summarise(flags, b, d, encoder, Objective::name, pre, extra);
}

// --precision picks the policy the model runs in.
template <vf::ViTSpec S, class Objective>
int run_with_precision(const ex::PretrainFlags& flags) {
  if (flags.precision == "fp32") return run<S, Objective, vf::Fp32>(flags);
  if (flags.precision == "fp16") return run<S, Objective, vf::Fp16Mixed>(flags);
  return run<S, Objective, vf::Bf16Mixed>(flags);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string help;
    const auto flags = ex::parse_pretrain_flags(argc, argv, ex::Backend::gpu, kDescription, &help);
    if (!flags) {
      std::cout << help;
      return 0;
    }
    if (flags->threads) vf::cpu::set_thread_count(*flags->threads);
    return ex::with_model(*flags, [&]<vf::ViTSpec S, class Objective>() { return run_with_precision<S, Objective>(*flags); });
  } catch (const std::exception& e) {
    std::cerr << "vitfreeze_pretrain_cuda: " << e.what() << "\n";
    return 2;
  }
}
