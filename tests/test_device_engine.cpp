// The trainer's path for engines that keep their own parameter copies and read losses late (the
// GPU's), run on the CPU through testing::MirroredEngine: the same run as the host-gradient engine,
// bit for bit (losses, reports, final weights), with freezing, LocalMIM taps dropped with their
// blocks, gradient accumulation, and a checkpoint written from the copies and resumed into them.
#include <doctest/doctest.h>

#include <filesystem>

#include "vitfreeze/data/loader.hpp"
#include "vitfreeze/freeze/freeze.hpp"
#include "vitfreeze/mim/localmim.hpp"
#include "vitfreeze/testing/mirrored_engine.hpp"
#include "vitfreeze/testing/synthetic.hpp"
#include "vitfreeze/testing/temp_dir.hpp"
#include "vitfreeze/train/pretrainer.hpp"

using namespace vitfreeze;

namespace {

constexpr ViTSpec kSpec{.image = 28, .channels = 1, .patch = 7, .dim = 32, .depth = 4, .heads = 2, .mlp_ratio = 2};
// Taps on blocks 0 and 2 (units 1 and 3), dropped as the schedule freezes their blocks, and on the
// last block (never frozen).
using Objective = mim::LocalMim<kSpec, mim::taps<mim::TapSpec{0, 1, 1}, mim::TapSpec{2, 1, 1}, mim::TapSpec{3, 1, 1}>,
                                mim::DecoderSpec{.dim = 16, .depth = 1, .heads = 2}>;
using Encoder = nn::ViT<kSpec, float>;
using Masking = mim::Random<750>;
constexpr optim::AdamWOptions kAdam{.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.05};
constexpr int kEpochs = 4, kSteps = 4, kBatch = 8;

struct Run {
  data::Dataset data = testing::stripes(kSteps * kBatch * 2, 3);
  data::Loader loader{data,
                      data::Transform{data::RandomResizedCrop{28, 0.5, 1.0, 3.0 / 4.0, 4.0 / 3.0, data::Interpolation::bilinear},
                                      std::nullopt, 0.5, data::Normalize::fashion_mnist()},
                      {.batch_size = kBatch, .last_batch = data::LastBatch::drop, .seed = 11, .workers = 0}};
  // linear t0 0.3 over 5 units (12 post-warmup iterations, windows of 2): units 0..3 freeze during
  // the run (unit 3 at iteration 14), taps 0 and 1 with units 1 and 3.
  freeze::FreezeController controller{freeze::RuntimeSchedule{freeze::Spacing::linear, 0.3, true}.fractions(5),
                                      {kEpochs, 1, kSteps / 2 * 2},
                                      {.mode = freeze::LrMode::scaled_layerwise, .base_lr = 3e-3, .min_lr = 1e-5}};
  Encoder encoder{1};
  Objective objective{2};
  optim::AdamW<float> adam{kAdam};

  static train::PretrainOptions options(const std::filesystem::path& dir = {}) {
    train::PretrainOptions o;
    o.epochs = kEpochs;
    o.seed = 5;
    o.progress = false;
    o.accumulation = 2;
    o.log_every = 3;
    o.max_steps_per_epoch = kSteps;
    o.checkpoint_dir = dir;
    return o;
  }
  nn::ParameterList<float> parameters() {
    auto ps = encoder.parameters();
    objective.collect_parameters(ps);
    return ps;
  }
};

using HostTrainer = train::Pretrainer<Encoder, Objective, Masking>;
using MirroredTrainer =
    train::Pretrainer<Encoder, Objective, Masking, float, testing::MirroredEngine<Encoder, Objective, float>>;

void check_same_weights(Run& a, Run& b) {
  const auto pa = a.parameters(), pb = b.parameters();
  REQUIRE(pa.size() == pb.size());
  std::int64_t differing = 0;
  for (std::size_t i = 0; i < pa.size(); ++i) {
    CHECK(pa[i]->trainable == pb[i]->trainable);
    for (std::int64_t k = 0; k < pa[i]->value.numel(); ++k) differing += pa[i]->value[k] != pb[i]->value[k];
  }
  CHECK(differing == 0);
}

}  // namespace

TEST_CASE("a device engine (mirrored on the CPU) trains bit for bit as the host engine: freezing, taps, accumulation") {
  Run host, mirrored;
  HostTrainer a(host.encoder, host.objective, Masking{}, host.controller, host.adam, Run::options());
  MirroredTrainer b(mirrored.encoder, mirrored.objective, Masking{}, mirrored.controller, mirrored.adam, Run::options(), kAdam);
  const auto ra = a.fit(host.loader), rb = b.fit(mirrored.loader);
  REQUIRE(ra.size() == rb.size());
  for (std::size_t e = 0; e < ra.size(); ++e) {
    CHECK(ra[e].mean_loss == rb[e].mean_loss);
    CHECK(ra[e].first_active_unit == rb[e].first_active_unit);
  }
  CHECK(ra.back().first_active_unit == 4);  // units 0..3 froze
  CHECK_FALSE(host.objective.tap_active(0));
  CHECK_FALSE(host.objective.tap_active(1));
  CHECK_FALSE(mirrored.objective.tap_active(0));
  CHECK_FALSE(mirrored.objective.tap_active(1));
  check_same_weights(host, mirrored);
  CHECK(b.engine().forward_backward_calls == kEpochs * kSteps);
  CHECK(b.engine().downloads == 1);  // at the end of fit: the host models hold the result
}

TEST_CASE("a device engine's checkpoint is written from its copies and a resume uploads them again") {
  testing::TempDir dir("device_engine");
  Run whole, first, second;
  HostTrainer reference(whole.encoder, whole.objective, Masking{}, whole.controller, whole.adam, Run::options());
  reference.fit(whole.loader);

  {  // a checkpoint every epoch; those after epoch 2 are then removed, as if the run had died there
    auto options = Run::options(dir.path());
    options.keep_checkpoints = kEpochs;
    MirroredTrainer part(first.encoder, first.objective, Masking{}, first.controller, first.adam, options, kAdam);
    part.fit(first.loader);
    for (int epoch = 3; epoch <= kEpochs; ++epoch)
      REQUIRE(std::filesystem::remove(dir.path() / io::checkpoint_file_name(std::int64_t(epoch) * kSteps)));
  }
  MirroredTrainer rest(second.encoder, second.objective, Masking{}, second.controller, second.adam,
                       Run::options(dir.path()), kAdam);
  REQUIRE(rest.resume("auto"));
  CHECK(rest.next_iteration() == 2 * kSteps);
  const auto reports = rest.fit(second.loader);
  CHECK(reports.size() == std::size_t(kEpochs));  // the history came with the checkpoint
  check_same_weights(whole, second);
}

TEST_CASE("a device engine refuses what needs host gradients: skipping non-finite steps, step dumps") {
  Run run;
  auto options = Run::options();
  options.non_finite = train::NonFinitePolicy::skip;
  CHECK_THROWS_AS(MirroredTrainer(run.encoder, run.objective, Masking{}, run.controller, run.adam, options, kAdam),
                  ConfigError);
  options = Run::options();
  options.dump_step = "never-written.safetensors";
  CHECK_THROWS_AS(MirroredTrainer(run.encoder, run.objective, Masking{}, run.controller, run.adam, options, kAdam),
                  ConfigError);
}
