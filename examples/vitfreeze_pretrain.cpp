// vitfreeze_pretrain: self-supervised pretraining on Fashion-MNIST (default) with progressive layer
// freezing, then a linear probe on the frozen encoder; prints test top-1 / top-5 and writes
// metrics.jsonl, summary.json and loss.png to --out. The GPU build of the same job is
// vitfreeze_pretrain_cuda; what the two share is in pretrain_common.hpp.
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>

#include "pretrain_common.hpp"
#include "vitfreeze/backend/cpu/parallel.hpp"

namespace vf = vitfreeze;
namespace ex = vitfreeze::examples;

namespace {

template <vf::ViTSpec S, class Objective>
int run(const ex::Args& args) {
  const auto b = ex::RunBasics::read(args);
  const auto d = ex::PretrainData::load(args, b);
  auto loader = ex::pretrain_loader<S>(d, b);

  vf::nn::ViT<S, float> encoder(b.seed);
  ex::PretrainOutcome pre(args);
  if (b.epochs > 0) {
    const auto fs = ex::FreezeSetup::read(args, S.depth, b, loader.batches_per_epoch());
    pre.mode = fs.mode;
    vf::freeze::FreezeController controller = fs.controller(b);

    vf::train::PretrainOptions opt = fs.options(b);
    ex::set_checkpoint_options(args, b, d, Objective::name, opt);
    const std::string non_finite = args.get("non-finite", "stop");
    if (non_finite == "stop") {
      opt.non_finite = vf::train::NonFinitePolicy::stop;
    } else if (non_finite == "skip" || non_finite.rfind("skip:", 0) == 0) {
      opt.non_finite = vf::train::NonFinitePolicy::skip;
      if (non_finite.size() > 5) {
        char* end = nullptr;
        opt.max_skipped_steps = int(std::strtol(non_finite.c_str() + 5, &end, 10));
        if (*end || opt.max_skipped_steps < 0) throw vf::ConfigError("--non-finite: bad skip count in " + non_finite);
      }
    } else {
      throw vf::ConfigError("--non-finite: stop, skip or skip:N, not " + non_finite);
    }
    opt.dump_step = args.get("dump-step", "");
    Objective objective(b.seed + 1);
    vf::optim::AdamW<float> adam({.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.05});
    vf::train::Pretrainer trainer(encoder, objective, vf::mim::RandomRatio{ex::mask_ratio_per_mille(args)}, controller,
                                  adam, opt);

    std::cout << fs.banner(S, Objective::name, d.train.count, b) << "\n";
    ex::resume_if_asked(args, trainer, opt);
    const auto t0 = std::chrono::steady_clock::now();
    pre.reports = trainer.fit(loader);
    pre.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ex::write_pretrain_figures(args, b, d, encoder, objective, pre.reports);
  } else {
    std::cout << "no pretraining (--epochs 0): probing the randomly initialised encoder\n";
  }
  return ex::evaluate_and_summarise(args, b, d, encoder, Objective::name, pre);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const ex::Args args = ex::parse_args(argc, argv);
    if (args.has("help")) {
      std::cout << "vitfreeze_pretrain: MAE pretraining of a ViT with progressive layer freezing, then a linear probe.\n"
                << ex::kPretrainFlagsHelp;
      return 0;
    }
    if (args.has("threads")) vf::cpu::set_thread_count(int(args.num("threads", 0)));
    return ex::with_model(args, [&]<vf::ViTSpec S, class Objective>() { return run<S, Objective>(args); });
  } catch (const std::exception& e) {
    std::cerr << "vitfreeze_pretrain: " << e.what() << "\n";
    return 2;
  }
}
