// Data-parallel MAE pretraining step on CPUs: the same global batch split over the ranks of an MPI
// job (mpiexec -n W, OMP_NUM_THREADS threads per rank), every step a full training step (forward,
// backward, gradient allreduce, AdamW) on random images rotated over 4 batches. Model: MAE ViT-Ti,
// 32x32x3, patch 4 (64 patches, 16 kept), decoder 128 x 2 blocks, 4 heads: the shapes that
// bench/data_parallel_bench_torch.py runs in PyTorch with DistributedDataParallel.
//   mpiexec -n W data_parallel_bench [global_batch=128] [steps=10] [repeats=3] [warmup=3]
// Prints (rank 0) the median ms per step, images/s, the share of the step in the allreduce and its size.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "vitfreeze/core/parallel.hpp"
#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/dist/mpi.hpp"
#include "vitfreeze/freeze/freeze.hpp"
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/train/pretrainer.hpp"

namespace vf = vitfreeze;
constexpr vf::ViTSpec kSpec{.image = 32, .channels = 3, .patch = 4, .dim = 192, .depth = 12, .heads = 3, .mlp_ratio = 4};
using Objective = vf::mim::Mae<kSpec, vf::mim::DecoderSpec{.dim = 128, .depth = 2, .heads = 4}>;

int main(int argc, char** argv) {
  vf::dist::MpiSession session(argc, argv);
  vf::dist::MpiCommunicator group;
  const int global_batch = argc > 1 ? std::atoi(argv[1]) : 128, steps = argc > 2 ? std::atoi(argv[2]) : 10;
  const int repeats = argc > 3 ? std::atoi(argv[3]) : 3, warmup = argc > 4 ? std::atoi(argv[4]) : 3;
  const int ranks = group.world(), batch = global_batch / ranks;
  if (batch * ranks != global_batch) {
    if (group.is_root()) std::fprintf(stderr, "global batch %d is not a multiple of %d ranks\n", global_batch, ranks);
    return 2;
  }
  std::vector<vf::Tensor<float>> batches;
  vf::RandomStream rng(3, vf::RngPurpose::test, std::uint64_t(group.rank()));
  for (int k = 0; k < 4; ++k) {
    batches.emplace_back(vf::Shape{batch, kSpec.channels, kSpec.image, kSpec.image});
    for (std::int64_t i = 0; i < batches.back().numel(); ++i) batches.back()[i] = float(rng.normal());
  }

  const int total = warmup + repeats * steps;
  vf::nn::ViT<kSpec, float> encoder(1);
  Objective objective(2);
  vf::optim::AdamW<float> adam({.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.05});
  vf::freeze::FreezeController controller(vf::freeze::RuntimeSchedule{vf::freeze::Spacing::cubic, 0.8, false}.fractions(kSpec.depth + 1),
                                          {1, 0, total}, {.mode = vf::freeze::LrMode::global_hard_freeze, .base_lr = 1.5e-4});
  vf::train::PretrainOptions opt;
  opt.epochs = 1, opt.progress = false;
  opt.communicator = ranks > 1 ? &group : nullptr;
  vf::train::Pretrainer trainer(encoder, objective, vf::mim::Random<750>{}, controller, adam, opt);

  std::int64_t g = 0;
  for (; g < warmup; ++g) trainer.step(batches[std::size_t(g % 4)], g);
  std::vector<double> step_ms, allreduce_share;
  for (int r = 0; r < repeats; ++r) {
    const double allreduce_before = trainer.replicas() ? trainer.replicas()->allreduce_seconds() : 0.0;
    const auto start = std::chrono::steady_clock::now();
    for (int s = 0; s < steps; ++s, ++g) trainer.step(batches[std::size_t(g % 4)], g);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    step_ms.push_back(1e3 * seconds / steps);
    const double allreduce = trainer.replicas() ? trainer.replicas()->allreduce_seconds() - allreduce_before : 0.0;
    allreduce_share.push_back(100 * allreduce / seconds);
  }
  std::sort(step_ms.begin(), step_ms.end());
  std::sort(allreduce_share.begin(), allreduce_share.end());
  const double median = step_ms[step_ms.size() / 2];
  const auto* replicas = trainer.replicas();
  const double mb_per_update =
      replicas ? double(replicas->gradient_elements_sent()) * sizeof(float) / 1e6 / double(replicas->updates()) : 0.0;
  if (group.is_root())
    std::printf("vitfreeze  ranks %d x threads %d  batch %d (%d per rank)  %8.1f ms/step  %7.1f img/s  allreduce %4.1f %% "
                "(%.1f MB per update)\n",
                ranks, vf::cpu::thread_count(), global_batch, batch, median, global_batch / (median / 1e3),
                allreduce_share[allreduce_share.size() / 2], mb_per_update);
  return 0;
}
