// vitfreeze_pretrain: self-supervised pretraining on Fashion-MNIST (default) with progressive layer
// freezing, then a linear probe on the frozen encoder; prints test top-1 / top-5 and writes
// metrics.jsonl, summary.json and loss.png to --out. The GPU build of the same job is
// vitfreeze_pretrain_cuda; what the two share is in pretrain_common.hpp.
//
// Built with VITFREEZE_WITH_MPI this file is vitfreeze_pretrain_mpi: started by mpiexec, the ranks
// pretrain one model data parallel (each --batch samples of its shard per step, gradients summed
// over the ranks, the LR scaled to the global batch), and rank 0 alone writes files and evaluates.
#include <iostream>
#include <optional>
#include <string>

#include "cpu_models.hpp"
#include "vitfreeze/core/parallel.hpp"
#ifdef VITFREEZE_WITH_MPI
#include "vitfreeze/dist/mpi.hpp"
#endif

namespace vf = vitfreeze;
namespace ex = vitfreeze::examples;

namespace {

std::string data_parallel_banner(int ranks, const ex::RunBasics& b) {
  if (ranks == 1) return "";
  return ", data parallel over " + std::to_string(ranks) + " ranks x batch " + std::to_string(b.batch) + " (global " +
         std::to_string(b.batch * ranks) + ")";
}

#ifdef VITFREEZE_WITH_MPI
constexpr const char* kProgram = "vitfreeze_pretrain_mpi";
#else
constexpr const char* kProgram = "vitfreeze_pretrain";
#endif

template <vf::ViTSpec S, class Objective>
int run(const ex::PretrainFlags& flags, vf::dist::Communicator* group) {
  const int rank = group ? group->rank() : 0, ranks = group ? group->world() : 1;
  const auto b = ex::RunBasics::read(flags, ranks, rank == 0);
  const auto d = ex::PretrainData::load(flags, b, S.image);
  auto loader = ex::pretrain_loader<S>(d, b, rank, ranks);

  vf::nn::ViT<S, float> encoder(b.seed);
  ex::PretrainOutcome pre(flags);
  if (b.epochs > 0) {
    const auto fs = ex::FreezeSetup::read(flags, S.depth, b, loader.batches_per_epoch());
    pre.mode = fs.mode;
    vf::freeze::FreezeController controller = fs.controller(b);

    vf::train::PretrainOptions opt = fs.options(b);
    ex::set_checkpoint_options(flags, b, d, Objective::name, opt);
    opt.communicator = group;
    if (ranks > 1) opt.recipe.set("ranks", ranks);  // the shards, and so the data order, depend on it
    opt.non_finite = flags.skip_non_finite ? vf::train::NonFinitePolicy::skip : vf::train::NonFinitePolicy::stop;
    opt.max_skipped_steps = flags.max_skipped_steps;
    opt.dump_step = flags.dump_step.value_or("");
    Objective objective(b.seed + 1);
    if constexpr (requires { objective.teacher; }) {  // MAE-lite's distillation: the frozen teacher's weights
      vf::io::import_encoder(objective.teacher, *flags.teacher);
      if (rank == 0)
        std::cout << "distilling the last-block attention of " << *flags.teacher << " (ViT " << Objective::teacher_spec.dim
                  << "x" << Objective::teacher_spec.depth << ", " << Objective::teacher_spec.heads << " heads), frozen\n";
    }
    vf::optim::AdamW<float> adam({.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.05});
    vf::train::Pretrainer trainer(encoder, objective, ex::masking_for<Objective>(flags), controller,
                                  adam, opt);

    if (rank == 0) std::cout << fs.banner(S, Objective::name, d.train.count, b) << data_parallel_banner(ranks, b) << "\n";
    ex::resume_if_asked(flags, trainer, opt);
    pre.record(trainer.fit(loader));
    if (rank != 0) return 0;  // the model is the same on every rank: rank 0 reports on it
    if (const auto* replicas = trainer.replicas())
      std::cout << "gradient allreduce: " << replicas->updates() << " updates, "
                << double(replicas->gradient_elements_sent()) * sizeof(float) / 1e6 << " MB sent per rank, "
                << replicas->allreduce_seconds() << " s\n";
    ex::write_pretrain_figures(flags, b, d, encoder, objective, pre.reports);
  } else {
    if (rank != 0) return 0;
    std::cout << "no pretraining (--epochs 0): probing the randomly initialised encoder\n";
  }
  vf::io::Json extra = vf::io::Json::object();
  if (ranks > 1) extra["ranks"] = ranks;
  return ex::evaluate_and_summarise(flags, b, d, encoder, Objective::name, pre, extra);
}

}  // namespace

int main(int argc, char** argv) {
#ifdef VITFREEZE_WITH_MPI
  std::optional<vf::dist::MpiSession> session;
  std::optional<vf::dist::MpiCommunicator> world;
#endif
  try {
    vf::dist::Communicator* group = nullptr;
#ifdef VITFREEZE_WITH_MPI
    session.emplace(argc, argv);
    group = &world.emplace();
#endif
    std::string help;
    const auto flags = ex::parse_pretrain_flags(
        argc, argv, ex::Backend::cpu,
        std::string(kProgram) + ": self-supervised pretraining of a ViT (LocalMIM, MAE, MAE-lite or MiCL) with "
                                "progressive layer freezing, then a linear probe and an optional fine-tune (LoMaR and MAE-lite's "
                                "distillation as well).",
        &help);
    if (!flags) {
      std::cout << help;
      return 0;
    }
    if (flags->threads) vf::cpu::set_thread_count(*flags->threads);
    return ex::with_cpu_model(*flags, [&]<vf::ViTSpec S, class Objective>() { return run<S, Objective>(*flags, group); });
  } catch (const std::exception& e) {
    std::cerr << kProgram << ": " << e.what() << "\n";
#ifdef VITFREEZE_WITH_MPI
    // A rank that fails alone would leave the others waiting in a collective: end the whole job.
    if (world && world->world() > 1) MPI_Abort(MPI_COMM_WORLD, 2);
#endif
    return 2;
  }
}
