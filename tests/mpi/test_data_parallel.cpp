// Data-parallel pretraining over MPI; CTest runs this under mpiexec with 2 and with 3 ranks. In
// double precision, W ranks of B samples must make the update one process makes on the W*B samples
// stacked in rank order (with freezing and gradient accumulation), frozen units must send nothing,
// a non-finite loss on one rank must make every rank skip (or stop) together, checkpoints written by
// rank 0 must resume on every rank exactly, and replicas or recipes that differ must be refused.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>

#include "vitfreeze/core/rng.hpp"
#include "vitfreeze/dist/mpi.hpp"
#include "vitfreeze/freeze/freeze.hpp"
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/testing/temp_dir.hpp"
#include "vitfreeze/train/pretrainer.hpp"

using namespace vitfreeze;

namespace {

dist::Communicator* group = nullptr;  // set by main() for the whole run

constexpr ViTSpec kSpec{.image = 8, .channels = 1, .patch = 2, .dim = 16, .depth = 3, .heads = 2, .mlp_ratio = 2};
using Objective = mim::Mae<kSpec, mim::DecoderSpec{.dim = 8, .depth = 1, .heads = 2, .mlp_ratio = 2}, mim::NormalizedPixels, double>;
constexpr int kLocalBatch = 3;
constexpr int kEpochs = 3, kIters = 4;  // 12 steps; linear t0 0.5 over 4 units freezes units 0 and 1 on the way

// Global batch g: world * kLocalBatch images, the same on every rank; rank r's shard is rows
// [r * kLocalBatch, (r + 1) * kLocalBatch).
Tensor<double> global_batch(std::int64_t g) {
  Tensor<double> t(Shape{std::int64_t(group->world()) * kLocalBatch, 1, kSpec.image, kSpec.image});
  RandomStream rng(77, RngPurpose::test, std::uint64_t(g));
  for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = rng.normal();
  return t;
}
Tensor<double> shard(const Tensor<double>& full) {
  const std::int64_t r = group->rank();
  Tensor<double> s(full.slice(r * kLocalBatch, (r + 1) * kLocalBatch).shape());
  s.copy_from(full.slice(r * kLocalBatch, (r + 1) * kLocalBatch));
  return s;
}

// One model with its optimiser, controller and trainer; `communicator` null: a single process.
struct Run {
  nn::ViT<kSpec, double> encoder{1};
  Objective objective{2};
  // A large eps makes AdamW's step depend on the gradient's scale, so a wrong average would show.
  optim::AdamW<double> adam{{.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-3, .weight_decay = 0.05}};
  freeze::FreezeController controller;
  std::optional<train::Pretrainer<nn::ViT<kSpec, double>, Objective, mim::Random<750>, double>> trainer;

  explicit Run(dist::Communicator* communicator, int accumulation = 1, train::PretrainOptions opt = {})
      : controller(freeze::RuntimeSchedule{freeze::Spacing::linear, 0.5, true}.fractions(kSpec.depth + 1),
                   {kEpochs, 1, kIters}, {.mode = freeze::LrMode::global_hard_freeze, .base_lr = 3e-3, .min_lr = 1e-5}) {
    opt.epochs = kEpochs, opt.progress = false, opt.accumulation = accumulation, opt.seed = 5;
    opt.communicator = communicator;
    trainer.emplace(encoder, objective, mim::Random<750>{}, controller, adam, opt);
  }
  nn::ParameterList<double> parameters() const { return trainer->all_parameters(); }
};

double max_abs_difference(const nn::ParameterList<double>& a, const nn::ParameterList<double>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (std::size_t k = 0; k < a.size(); ++k)
    for (std::int64_t i = 0; i < a[k]->value.numel(); ++i)
      worst = std::max(worst, std::abs(a[k]->value[i] - b[k]->value[i]));
  return worst;
}

std::int64_t trainable_elements(const nn::ParameterList<double>& ps) {
  std::int64_t n = 0;
  for (auto* p : ps)
    if (p->trainable) n += p->value.numel();
  return n;
}

// A directory every rank sees: rank 0 makes it and tells the others its name.
struct SharedDir {
  std::optional<testing::TempDir> owned;
  std::filesystem::path path;
  SharedDir() {
    std::array<char, 512> name{};
    if (group->is_root()) {
      owned.emplace("dp");
      std::strncpy(name.data(), owned->path().c_str(), name.size() - 1);
    }
    group->broadcast(std::as_writable_bytes(std::span(name)), 0);
    path = name.data();
  }
};

}  // namespace

TEST_CASE("W ranks of B samples make the same updates as one process on the W*B samples stacked by rank") {
  for (int accumulation : {1, 2}) {
    CAPTURE(accumulation);
    Run single(nullptr, accumulation), parallel(group, accumulation);
    const auto* replicas = parallel.trainer->replicas();
    REQUIRE(replicas != nullptr);
    std::int64_t sent_before = 0, first_traffic = -1, last_traffic = -1;
    for (std::int64_t g = 0; g < kEpochs * kIters; ++g) {
      const auto full = global_batch(g);
      const double expected = single.trainer->step(full, g);
      const double got = parallel.trainer->step(shard(full), g);
      if ((g + 1) % accumulation == 0) {
        CHECK(got == doctest::Approx(expected).epsilon(1e-12));  // the window's last loss is global
        // The allreduce carried exactly the parameters still training: frozen units send nothing.
        const std::int64_t traffic = replicas->gradient_elements_sent() - sent_before;
        CHECK(traffic == trainable_elements(parallel.parameters()));
        sent_before = replicas->gradient_elements_sent();
        if (first_traffic < 0) first_traffic = traffic;
        last_traffic = traffic;
      }
    }
    CHECK(parallel.controller.first_active_unit() >= 2);  // units froze on the way
    CHECK(last_traffic < first_traffic);
    CHECK(replicas->updates() == kEpochs * kIters / accumulation);
    // Same parameters up to summation order (double), after a run that moved them.
    Run initial(nullptr);
    const double moved = max_abs_difference(single.parameters(), initial.parameters());
    CHECK(moved > 1e-3);
    CHECK(max_abs_difference(single.parameters(), parallel.parameters()) < 1e-11 * std::max(1.0, moved));
  }
}

TEST_CASE("a non-finite loss on one rank makes every rank skip the step, or every rank stop") {
  const auto poisoned = [](std::int64_t g) {
    auto mine = shard(global_batch(g));
    if (group->rank() == group->world() - 1) mine[0] = std::nan("");
    return mine;
  };
  SUBCASE("skip") {
    train::PretrainOptions opt;
    opt.non_finite = train::NonFinitePolicy::skip;
    Run run(group, 1, opt);
    run.trainer->step(shard(global_batch(0)), 0);
    Run before(nullptr);
    for (std::size_t k = 0; k < before.parameters().size(); ++k)
      before.parameters()[k]->value.copy_from(run.parameters()[k]->value);
    run.trainer->step(poisoned(1), 1);
    CHECK(run.trainer->skipped_steps() == 1);
    CHECK(max_abs_difference(run.parameters(), before.parameters()) == 0.0);
    const double next = run.trainer->step(shard(global_batch(2)), 2);
    CHECK(std::isfinite(next));
    CHECK(max_abs_difference(run.parameters(), before.parameters()) > 0.0);
  }
  SUBCASE("stop, rank 0 saving the state from before the step") {
    SharedDir dir;
    train::PretrainOptions opt;
    opt.checkpoint_dir = dir.path;
    Run run(group, 1, opt);
    run.trainer->step(shard(global_batch(0)), 0);
    CHECK_THROWS_AS(run.trainer->step(poisoned(1), 1), NumericError);
    if (group->is_root()) CHECK(std::filesystem::exists(dir.path / io::checkpoint_file_name(1)));
  }
}

TEST_CASE("checkpoints: rank 0 writes, every rank resumes, and the run goes on as if uninterrupted") {
  SharedDir dir;
  train::PretrainOptions opt;
  opt.checkpoint_dir = dir.path;
  opt.keep_checkpoints = 5;
  Run uninterrupted(group, 1, opt);
  std::filesystem::path saved;
  for (std::int64_t g = 0; g < 8; ++g) {
    uninterrupted.trainer->step(shard(global_batch(g)), g);
    if (g == 4) saved = uninterrupted.trainer->save_checkpoint();
  }
  CHECK(std::filesystem::exists(saved));
  Run resumed(group, 1, opt);
  resumed.trainer->load_checkpoint(saved);
  REQUIRE(resumed.trainer->next_iteration() == 5);
  for (std::int64_t g = 5; g < 8; ++g) resumed.trainer->step(shard(global_batch(g)), g);
  CHECK(max_abs_difference(resumed.parameters(), uninterrupted.parameters()) == 0.0);

  SUBCASE("a replica that drifted is found before the next save") {
    if (group->rank() == group->world() - 1) resumed.parameters()[3]->value[0] += 1e-9;
    CHECK_THROWS_AS(resumed.trainer->save_checkpoint(), DistributedError);
  }
  SUBCASE("a checkpoint that one rank cannot read fails on every rank") {
    const auto missing = group->rank() == group->world() - 1 ? dir.path / "nowhere.safetensors" : saved;
    Run other(group, 1, opt);
    CHECK_THROWS_AS(other.trainer->load_checkpoint(missing), Error);
  }
}

TEST_CASE("ranks started with different recipes are refused on every rank") {
  train::PretrainOptions opt;
  opt.recipe.set("batch", group->is_root() ? 64 : 32);
  CHECK_THROWS_AS(Run(group, 1, opt), DistributedError);
}

int main(int argc, char** argv) {
  dist::MpiSession session(argc, argv);
  int failed = 0;
  {
    dist::MpiCommunicator world;
    group = &world;
    doctest::Context context(argc, argv);
    failed = context.run() != 0 ? 1 : 0;
    // Every rank's verdict counts: mpiexec reports the first non-zero exit, but make it explicit.
    failed = int(world.min_max(std::uint64_t(failed)).second);
    group = nullptr;
  }
  return failed;
}
