#pragma once
// What vitfreeze_pretrain (CPU) and vitfreeze_pretrain_cuda (GPU) share, so that both read the same
// flags (pretrain_flags.hpp), build the same models from the same seeds, see the same data in the
// same order, freeze on the same schedule, and evaluate the encoder the same way (export, linear
// probe, optional fine-tune, summary.json): their printed top-1 numbers are then comparable.
//
// Nothing is left to fail late: the flags are checked when parsed, and before the first step the
// output directory is locked (a second run on it stops at once, naming the holder) and proven
// writable, the export and dump paths are checked, and the data must give every phase at least
// one step.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

// GCC 12 with -march=native reports its own AVX-512 intrinsics (the `__Y = __Y` idiom in
// avx512fintrin.h, reached through Eigen's pexp) as uninitialised, depending on inlining; the
// location is the intrinsics header, first included here, so the warning is silenced there only.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include "pretrain_flags.hpp"
#include "vitfreeze/data/idx.hpp"
#include "vitfreeze/data/loader.hpp"
#include "vitfreeze/freeze/freeze.hpp"
#include "vitfreeze/io/checksum.hpp"
#include "vitfreeze/io/dir_lock.hpp"
#include "vitfreeze/io/plot.hpp"
#include "vitfreeze/io/png.hpp"
#include "vitfreeze/io/weights.hpp"
#include "vitfreeze/data/resize.hpp"
#include "vitfreeze/mim/localmim.hpp"
#include "vitfreeze/mim/lomar.hpp"
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/mim/mae_lite.hpp"
#include "vitfreeze/mim/micl.hpp"
#include "vitfreeze/mim/reconstruction.hpp"
#include "vitfreeze/train/finetune.hpp"
#include "vitfreeze/train/linear_probe.hpp"
#include "vitfreeze/train/pretrainer.hpp"
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#pragma GCC diagnostic pop
#endif

namespace vitfreeze::examples {

inline data::Dataset head_of(data::Dataset d, std::int64_t n) {
  if (n <= 0 || n >= d.count) return d;
  const std::int64_t per = std::int64_t(d.channels) * d.height * d.width;
  d.pixels.resize(std::size_t(n * per));
  d.labels.resize(std::size_t(n));
  d.count = n;
  return d;
}

// ---- models -------------------------------------------------------------------------------------

inline constexpr ViTSpec kTiny = specs::tiny(28, 1, 4);
inline constexpr ViTSpec kMini{.image = 28, .channels = 1, .patch = 4, .dim = 128, .depth = 6, .heads = 4, .mlp_ratio = 4};
inline constexpr ViTSpec kTinyLite = mim::mae_lite_tiny(28, 1, 4);

// MAE: decoder 128 wide, 2 blocks (the machine-facts baseline). LocalMIM on the 7x7 grid of patch 4:
// scale 1/2 is infeasible (7 is odd), so the taps after blocks [1, 3, depth-3, depth-1] predict HOG
// at scales 4, 2, 1, 1 (cells of 1, 2, 4, 4 pixels); one decoder block 128 wide per tap.
template <ViTSpec S>
using MaeOf = mim::Mae<S, mim::DecoderSpec{.dim = 128, .depth = 2, .heads = 4}>;
inline constexpr mim::DecoderSpec kTapDecoder{.dim = 128, .depth = 1, .heads = 4};
using LocalMimTiny = mim::LocalMim<kTiny, mim::taps<mim::TapSpec{1, 4, 1}, mim::TapSpec{3, 2, 1},
                                                    mim::TapSpec{9, 1, 1}, mim::TapSpec{11, 1, 1}>,
                                   kTapDecoder>;
using LocalMimMini = mim::LocalMim<kMini, mim::taps<mim::TapSpec{1, 4, 1}, mim::TapSpec{3, 2, 1}, mim::TapSpec{5, 1, 1}>,
                                   kTapDecoder>;

// Calls run.template operator()<S, Objective>() for --model and --objective (checked by the parser).
template <class Run>
int with_model(const PretrainFlags& flags, Run&& run) {
  const std::string& model = flags.model;
  const std::string& objective = flags.objective;
  if (objective == "mae-lite") return run.template operator()<kTinyLite, mim::MaeLite<kTinyLite>>();
  auto with_objective = [&]<ViTSpec S, class LocalMimOfS>() -> int {
    if (objective == "mae") return run.template operator()<S, MaeOf<S>>();
    if (objective == "micl") return run.template operator()<S, mim::Micl<S>>();
    return run.template operator()<S, LocalMimOfS>();
  };
  if (model == "tiny") return with_objective.template operator()<kTiny, LocalMimTiny>();
  return with_objective.template operator()<kMini, LocalMimMini>();
}

// ---- the run's recipe ---------------------------------------------------------------------------

// The augmentation and fine-tuning numbers of a recipe: the common one, or MAE-lite's.
struct RecipeChoices {
  double crop_min_scale = 0.2;
  data::Interpolation interpolation = data::Interpolation::bicubic;
  const char* augment_text = "random-resized-crop 0.2-1 bicubic, flip 0.5, fashion-mnist normalisation";
  double finetune_layer_decay = 0.75, finetune_label_smoothing = 0.1, finetune_mixup_alpha = 0.0;

  static RecipeChoices read(const PretrainFlags& flags) {
    RecipeChoices r;
    if (flags.objective == "mae-lite") {
      using L = mim::MaeLiteRecipe;
      r = {L::crop_min_scale, L::interpolation,
           "random-resized-crop 0.08-1 random interpolation, flip 0.5, fashion-mnist normalisation",
           L::finetune_layer_decay, L::finetune_label_smoothing, L::finetune_mixup_alpha};
    }
    if (flags.mixup) r.finetune_mixup_alpha = *flags.mixup;
    return r;
  }
};

// Read before anything is built. The process that writes the files (rank 0) creates the output
// directory, locks it for the whole run and proves it writable, and checks the export and dump
// paths, so that none of them fails after the training.
struct RunBasics {
  std::filesystem::path out;
  std::string data_dir;
  int epochs = 0, warmup = 0, accumulation = 1;
  std::int64_t batch = 0;
  std::uint64_t seed = 0;
  double lr = 0;  // blr * batch * accumulation * ranks / 256 (the batch of one update)
  RecipeChoices recipe;
  std::optional<io::DirectoryLock> lock;  // held by the writing rank while the run lasts

  // `ranks`: processes training together (vitfreeze_pretrain_mpi), each with --batch samples.
  static RunBasics read(const PretrainFlags& f, int ranks = 1, bool writes_files = true) {
    RunBasics b;
    b.out = f.out;
    std::filesystem::create_directories(b.out);
    if (writes_files) {
      b.lock.emplace(b.out);
      io::check_output_file(b.out / "summary.json", true);
      for (const auto& path : {f.export_encoder, f.dump_step})
        if (path) io::check_output_file(*path, true);
    }
    b.data_dir = f.data;
    b.epochs = f.epochs, b.warmup = f.warmup;
    b.batch = f.batch;
    b.seed = std::uint64_t(f.seed);
    b.accumulation = f.accumulation;
    b.lr = f.blr * double(b.batch) * b.accumulation * ranks / 256.0;
    b.recipe = RecipeChoices::read(f);
    return b;
  }
};

// What a resume must find again besides the recipe's numbers: the training images and labels, as
// their shape and CRC-32C, so that another data set of the same size is refused.
inline std::string data_fingerprint(const data::Dataset& d) {
  std::uint32_t crc = io::crc32c(std::as_bytes(std::span(d.pixels)));
  crc = io::crc32c(std::as_bytes(std::span(d.labels)), crc);
  return std::to_string(d.count) + "x" + std::to_string(d.channels) + "x" + std::to_string(d.height) + "x" +
         std::to_string(d.width) + " crc32c " + io::detail::hex32(crc);
}

struct PretrainData {
  data::Dataset train_full, test, train;
  data::Normalize norm = data::Normalize::fashion_mnist();

  // Also checks that the fine-tuning subset holds a batch (before any training happens). image: the
  // side every phase sees (--image 56: the images upsampled once, bicubic, as Pillow).
  static PretrainData load(const PretrainFlags& f, const RunBasics& b, int image = 28) {
    PretrainData d;
    d.train_full = data::fashion_mnist(b.data_dir, data::Split::train);
    d.test = data::fashion_mnist(b.data_dir, data::Split::test);
    if (image != d.train_full.height) {
      d.train_full = data::resized(d.train_full, image);
      d.test = data::resized(d.test, image);
    }
    d.train = head_of(d.train_full, f.train_subset);
    const std::int64_t finetune_images = std::min(f.finetune_subset > 0 ? f.finetune_subset : d.train_full.count,
                                                  d.train_full.count);
    if (f.finetune_epochs > 0 && finetune_images < kFinetuneBatch)
      throw ConfigError("--finetune-subset: " + std::to_string(finetune_images) + " images hold no fine-tuning batch of " +
                        std::to_string(kFinetuneBatch));
    return d;
  }
};

// Pretraining augmentation and loader: shuffled with the run's seed, last partial batch dropped.
// Data parallel: this rank's shard of every epoch (equal shards, so every rank takes as many steps).
template <ViTSpec S>
data::Loader pretrain_loader(const PretrainData& d, const RunBasics& b, int rank = 0, int ranks = 1) {
  data::Transform augment{data::RandomResizedCrop{S.image, b.recipe.crop_min_scale, 1.0, 3.0 / 4.0, 4.0 / 3.0,
                                                  b.recipe.interpolation},
                          std::nullopt, 0.5, d.norm};
  return data::Loader(d.train, augment,
                      {.batch_size = b.batch, .shuffle = true, .last_batch = data::LastBatch::drop, .seed = b.seed,
                       .rank = rank, .world = ranks, .shard_tail = data::ShardTail::drop});
}

// The freeze schedule over the units (depth + 1, or depth with --dont-freeze-pe) and its LRs.
struct FreezeSetup {
  bool dont_freeze_pe = false;
  int units = 0;
  freeze::RuntimeSchedule rs;
  std::string schedule, mode;
  freeze::LrSettings lrs;
  std::int64_t steps_cap = -1;  // --steps-per-epoch, -1 when not set
  std::int64_t iters = 0;       // iterations per epoch, whole accumulation windows
  freeze::FreezeSemantics semantics = freeze::FreezeSemantics::truncate;

  static FreezeSetup read(const PretrainFlags& flags, int depth, const RunBasics& b, std::int64_t batches_per_epoch) {
    FreezeSetup f;
    f.dont_freeze_pe = flags.dont_freeze_pe;
    f.units = depth + (f.dont_freeze_pe ? 0 : 1);
    f.schedule = flags.schedule;
    f.rs = flags.freeze_schedule();
    f.mode = flags.resolved_lr_mode();
    f.lrs = freeze::LrSettings{.base_lr = b.lr, .min_lr = 1e-6, .tail = 0.1};
    if (f.mode == "scaled") f.lrs.mode = freeze::LrMode::scaled_layerwise;
    else if (f.mode == "unscaled") f.lrs.mode = freeze::LrMode::unscaled_layerwise;
    else if (f.mode == "global") f.lrs.mode = freeze::LrMode::global_hard_freeze;
    else f.lrs.mode = freeze::LrMode::vit_tailored;
    f.steps_cap = flags.steps_per_epoch.value_or(-1);
    f.iters = f.steps_cap > 0 ? std::min(f.steps_cap, batches_per_epoch) : batches_per_epoch;
    f.iters -= f.iters % std::max(b.accumulation, 1);  // whole accumulation windows per epoch
    if (f.iters < 1)
      throw ConfigError("--train-subset " + std::to_string(flags.train_subset) + ": " + std::to_string(batches_per_epoch) +
                        " batches of " + std::to_string(b.batch) + " per epoch (per rank), no whole window of --accumulation " +
                        std::to_string(b.accumulation) + ": pretraining would take no step");
    f.semantics = flags.semantics == "vitfreeze" ? freeze::FreezeSemantics::vitfreeze : freeze::FreezeSemantics::truncate;
    return f;
  }

  freeze::FreezeController controller(const RunBasics& b) const {
    return freeze::FreezeController(rs.fractions(units), {b.epochs, b.warmup, iters}, lrs);
  }

  // The trainer options both backends honour (the CPU adds checkpoints and the non-finite policy).
  train::PretrainOptions options(const RunBasics& b) const {
    train::PretrainOptions opt;
    opt.epochs = b.epochs;
    opt.seed = b.seed;
    opt.out_dir = b.out;
    opt.max_steps_per_epoch = steps_cap > 0 ? iters : -1;
    opt.accumulation = b.accumulation;
    opt.dont_freeze_pe = dont_freeze_pe;
    opt.semantics = semantics;
    return opt;
  }

  std::string banner(const ViTSpec& S, const char* objective, std::int64_t images, const RunBasics& b) const {
    std::ostringstream s;
    s << "pretraining " << objective << " on " << images << " images, ViT " << S.dim << "x" << S.depth << " patch "
      << S.patch << ", " << b.epochs << " epochs x " << iters << " steps, schedule " << schedule << " (t0 " << rs.t0
      << "), lr mode " << mode;
    return s.str();
  }
};

// --mask-ratio, whose default leaves MiCL's two views 8 patches each on the 7x7 grid (peers spec §7).
inline int mask_ratio_per_mille(const PretrainFlags& f) { return int(std::lround(f.resolved_mask_ratio() * 1000)); }

// The trainer's masking: random, with the keep list split into the objective's views (MiCL: 2);
// LoMaR's windows.
template <class Objective>
auto masking_for(const PretrainFlags& f) {
  if constexpr (requires { requires Objective::family == mim::ObjectiveFamily::lomar; })
    return mim::WindowRatio{f.window, f.windows, mask_ratio_per_mille(f),
                            f.window_pairing == "lomar-code" ? mim::WindowPairing::lomar_code : mim::WindowPairing::distinct};
  else if constexpr (requires { Objective::views; })
    return mim::RandomRatio{mask_ratio_per_mille(f), Objective::views};
  else
    return mim::RandomRatio{mask_ratio_per_mille(f)};
}

// Checkpoints (OUT/checkpoints, --checkpoint-every-epochs, --keep-checkpoints) and the caller's part of
// the recipe a resume must match. Both backends write the same format with the same recipe, so a
// run checkpointed on the GPU resumes on the CPU and the other way round.
inline void set_checkpoint_options(const PretrainFlags& f, const RunBasics& b, const PretrainData& d,
                                   const char* objective, train::PretrainOptions& opt) {
  opt.checkpoint_dir = b.out / "checkpoints";
  opt.checkpoint_every_epochs = f.checkpoint_every_epochs;
  opt.checkpoint_every_steps = f.checkpoint_every_steps;
  opt.keep_checkpoints = f.keep_checkpoints;
  opt.recipe.set("model", f.model);
  opt.recipe.set("objective", objective);
  opt.recipe.set("batch", b.batch);
  opt.recipe.set("blr", f.blr);
  opt.recipe.set("mask_ratio", f.resolved_mask_ratio());
  opt.recipe.set("train_subset", d.train.count);
  opt.recipe.set("data_fingerprint", data_fingerprint(d.train));
  opt.recipe.set("augment", b.recipe.augment_text);
  // Only where they differ from what every run had before, so older checkpoints still resume.
  if (f.other_geometry()) opt.recipe.set("image", f.image), opt.recipe.set("patch", f.patch);
  if (f.objective == "lomar") {
    opt.recipe.set("window", f.window);
    opt.recipe.set("windows", f.windows);
    opt.recipe.set("window_pairing", f.window_pairing);
  }
  if (f.teacher) opt.recipe.set("teacher", *f.teacher);
}

// --resume auto|PATH on either backend's trainer (both have resume() and next_iteration()).
template <class Trainer>
void resume_if_asked(const PretrainFlags& f, Trainer& trainer, const train::PretrainOptions& opt) {
  if (!f.resume) return;
  const auto from = trainer.resume(*f.resume);
  if constexpr (requires { trainer.is_root(); })
    if (!trainer.is_root()) return;  // data parallel: every rank resumed, rank 0 says so
  if (from)
    std::cout << "resuming from " << from->string() << " at iteration " << trainer.next_iteration() << "\n";
  else
    std::cout << "no checkpoint in " << opt.checkpoint_dir.string() << ": starting fresh\n";
}

// ---- after pretraining --------------------------------------------------------------------------

inline void write_loss_plot(const std::filesystem::path& out, const std::vector<train::EpochReport>& reports) {
  io::PlotSeries loss{"mean loss per epoch", {}, {}};
  for (auto& r : reports) loss.x.push_back(r.epoch + 1), loss.y.push_back(r.mean_loss);
  io::write_line_plot((out / "loss.png").string(), {loss}, {.title = "pretraining loss", .x_label = "epoch", .y_label = "loss"});
}

// Writes original / masked / reconstruction rows for the first test images (MAE only: LocalMIM
// predicts HOG features, not pixels). Runs the host models on the CPU.
template <ViTSpec S, class Objective>
void write_reconstructions(nn::ViT<S, float>& encoder, Objective& objective, const PretrainData& d, int ratio,
                           const std::filesystem::path& path) {
  data::Transform plain{std::nullopt, std::nullopt, 0.0, d.norm};
  data::Loader loader(d.test, plain, {.batch_size = 8, .shuffle = false, .workers = 0});
  loader.start_epoch(0);
  auto batch = loader.next();
  const auto masks = mim::RandomRatio{ratio}.make(8, S.grid(), S.grid(), 12345, 0);
  Tape<float> tape;
  NoGrad<float> no_grad(tape);
  auto out = objective.forward(tape, encoder, batch->images, masks);
  auto panels = mim::reconstruction_panels(batch->images, tape.value(out.prediction), masks, S.patch,
                                           Objective::TargetType::normalized, d.norm);
  io::write_image_grid(path, panels, 3, 2);
}

// The loss plot and (MAE) reconstructions of a finished pretraining.
template <ViTSpec S, class Objective>
void write_pretrain_figures(const PretrainFlags& f, const RunBasics& b, const PretrainData& d, nn::ViT<S, float>& encoder,
                            Objective& objective, const std::vector<train::EpochReport>& reports) {
  write_loss_plot(b.out, reports);
  constexpr bool mae_family = requires {  // a decoder over every patch, pixel targets
    requires Objective::family == mim::ObjectiveFamily::mae || Objective::family == mim::ObjectiveFamily::mae_distill;
    Objective::TargetType::normalized;
  };
  if constexpr (mae_family) {
    write_reconstructions(encoder, objective, d, mask_ratio_per_mille(f), b.out / "reconstructions.png");
    std::cout << "wrote " << (b.out / "reconstructions.png").string() << "\n";
  }
}

// What the pretraining part reports to the summary: the whole run's epochs (those before a resume
// come from the checkpoint) and their seconds.
struct PretrainOutcome {
  explicit PretrainOutcome(const PretrainFlags& f) : schedule(f.schedule), t0(f.freeze_schedule().t0) {}
  std::vector<train::EpochReport> reports;
  double seconds = 0;
  std::string schedule, mode = "none";  // mode: set when pretraining runs
  double t0 = 0;

  void record(std::vector<train::EpochReport> run) {
    reports = std::move(run);
    seconds = 0;
    for (const auto& r : reports) seconds += r.seconds;
  }
};

// The fine-tuning recipe of the flags: MAE's regularisation parts (drop path, mixup/cutmix,
// RandAugment or colour jitter, random erasing) on top of the crop and flip.
inline data::Transform finetune_augment(const PretrainFlags& f, int image, const data::Normalize& norm) {
  data::Transform t{data::RandomResizedCrop{image, 0.5, 1.0, 3.0 / 4.0, 4.0 / 3.0, data::Interpolation::bicubic},
                    std::nullopt, 0.5, norm};
  if (f.rand_augment) t.rand_augment = data::RandAugment::parse(*f.rand_augment);
  if (f.color_jitter > 0) t.color_jitter = data::ColorJitter::uniform(f.color_jitter);
  if (f.reprob > 0) t.random_erasing = data::RandomErasing{.probability = f.reprob};
  return t;
}

struct FinetuneOutcome {
  train::Accuracy accuracy;
  double seconds = 0;
  std::int64_t images = 0;
};

// End-to-end fine-tuning of `encoder` on `train_set`, tested on `test_set` (both at its image side).
template <ViTSpec S>
FinetuneOutcome finetune_and_test(const PretrainFlags& f, const RunBasics& b, const data::Dataset& train_set,
                                  const data::Dataset& test_set, nn::ViT<S, float>& encoder, const data::Normalize& norm) {
  data::Loader ft_loader(train_set, finetune_augment(f, S.image, norm),
                         {.batch_size = kFinetuneBatch, .last_batch = data::LastBatch::drop, .seed = b.seed + 7});
  data::Loader test_eval(test_set, data::Transform{std::nullopt, std::nullopt, 0.0, norm},
                         {.batch_size = 256, .shuffle = false, .last_batch = data::LastBatch::keep});
  train::Classifier classifier(encoder, 10, b.seed + 3);
  const auto start = std::chrono::steady_clock::now();
  train::finetune(classifier, ft_loader,
                  {.epochs = f.finetune_epochs, .warmup_epochs = std::min(1, f.finetune_epochs - 1), .base_lr = f.finetune_lr,
                   .layer_decay = b.recipe.finetune_layer_decay, .label_smoothing = b.recipe.finetune_label_smoothing,
                   .mixup_alpha = b.recipe.finetune_mixup_alpha, .cutmix_alpha = f.cutmix,
                   .mix_switch_probability = f.mix_switch_prob, .drop_path = f.drop_path, .seed = b.seed});
  FinetuneOutcome out;
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  out.accuracy = train::evaluate_classifier(classifier, test_eval);
  out.images = train_set.count;
  return out;
}

// --finetune-image: the same weights in the same network at the other side (a relative encoder has no
// parameter that depends on it), fine-tuned and tested on the images resampled to that side.
template <ViTSpec S>
FinetuneOutcome finetune_at_other_size(const PretrainFlags& f, const RunBasics& b, const data::Dataset& train_set,
                                       const data::Dataset& test_set, nn::ViT<S, float>& encoder, const data::Normalize& norm) {
  if constexpr (S.relative_position() && (S.image == 28 || S.image == 56)) {
    constexpr ViTSpec other = specs::at_image(S, S.image == 28 ? 56 : 28);
    nn::ViT<other, float> moved(b.seed);
    const auto from = encoder.parameters(), to = moved.parameters();
    for (std::size_t i = 0; i < from.size(); ++i) to[i]->value.copy_from(from[i]->value);
    std::cout << "fine-tuning at " << other.image << "x" << other.image << " with the weights pretrained at " << S.image
              << "x" << S.image << " (relative positions: nothing resized)\n";
    return finetune_and_test(f, b, data::resized(train_set, other.image), data::resized(test_set, other.image), moved, norm);
  } else {
    throw ConfigError("--finetune-image: only a relative-position encoder (LoMaR) changes resolution as it is");
  }
}

// Export (--export-encoder), linear probe on the frozen encoder, optional fine-tuning, summary.json.
// `extra` fields go into the summary as well (the GPU's device and precision).
template <ViTSpec S>
int evaluate_and_summarise(const PretrainFlags& f, const RunBasics& b, const PretrainData& d, nn::ViT<S, float>& encoder,
                           const char* objective_name, const PretrainOutcome& pre, const io::Json& extra = io::Json::object()) {
  if (f.export_encoder) {
    io::export_encoder(encoder, *f.export_encoder);
    std::cout << "wrote the encoder (timm names) to " << *f.export_encoder << "\n";
  }

  // Linear probe on the frozen encoder (no augmentation).
  data::Transform plain{std::nullopt, std::nullopt, 0.0, d.norm};
  auto probe_train = head_of(d.train_full, f.probe_subset);
  data::Loader train_eval(probe_train, plain, {.batch_size = 256, .shuffle = false, .last_batch = data::LastBatch::keep});
  data::Loader test_eval(d.test, plain, {.batch_size = 256, .shuffle = false, .last_batch = data::LastBatch::keep});
  const auto t1 = std::chrono::steady_clock::now();
  const auto pool = f.probe_pool == "cls" ? train::FeaturePool::cls : train::FeaturePool::mean_patches;
  auto ftrain = train::extract_features(encoder, train_eval, probe_train.count, pool, &std::cout, "probe features (train)");
  auto ftest = train::extract_features(encoder, test_eval, d.test.count, pool, &std::cout, "probe features (test)");
  auto probe = train::train_linear_probe(std::move(ftrain), std::move(ftest),
                                         {.epochs = f.probe_epochs, .batch = f.probe_batch, .seed = b.seed,
                                          .method = f.probe == "mae" ? train::ProbeMethod::mae : train::ProbeMethod::adamw,
                                          .blr = f.probe_blr, .warmup_epochs = f.probe_warmup, .progress = &std::cout});
  const double probe_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();

  std::cout << "pretraining time " << pre.seconds << " s; linear probe " << probe_s << " s\n"
            << "linear probe: train top-1 " << 100 * probe.train.top1 << " %, test top-1 " << 100 * probe.test.top1
            << " %, test top-5 " << 100 * probe.test.top5 << " %\n";

  // Optional end-to-end fine-tuning of the (pretrained) encoder.
  const int ft_epochs = f.finetune_epochs;
  FinetuneOutcome ft;
  if (ft_epochs > 0) {
    const auto ft_train = head_of(d.train_full, f.finetune_subset);
    ft = f.resolved_finetune_image() == S.image ? finetune_and_test(f, b, ft_train, d.test, encoder, d.norm)
                                                : finetune_at_other_size(f, b, ft_train, d.test, encoder, d.norm);
    std::cout << "fine-tune (" << ft_epochs << " epochs on " << ft.images << " images at " << f.resolved_finetune_image()
              << "x" << f.resolved_finetune_image() << ", " << ft.seconds << " s): test top-1 " << 100 * ft.accuracy.top1
              << " %, top-5 " << 100 * ft.accuracy.top5 << " %\n";
  }

  io::Json summary = io::Json::object();
  summary["objective"] = objective_name;
  summary["schedule"] = pre.schedule;
  summary["t0"] = pre.t0;
  summary["lr_mode"] = pre.mode;
  summary["epochs"] = b.epochs;
  summary["pretrain_seconds"] = pre.seconds;
  summary["probe_test_top1"] = probe.test.top1;
  summary["probe_test_top5"] = probe.test.top5;
  summary["probe_train_top1"] = probe.train.top1;
  summary["probe_seconds"] = probe_s;
  summary["semantics"] = f.semantics;
  summary["finetune_epochs"] = ft_epochs;
  summary["image"] = S.image;
  summary["patch"] = S.patch;
  summary["probe"] = f.probe;
  if (ft_epochs > 0) {
    summary["finetune_test_top1"] = ft.accuracy.top1;
    summary["finetune_test_top5"] = ft.accuracy.top5;
    summary["finetune_seconds"] = ft.seconds;
    summary["finetune_image"] = f.resolved_finetune_image();
  }
  io::Json per_epoch = io::Json::array();
  for (auto& r : pre.reports) {
    io::Json e = io::Json::object();
    e["epoch"] = r.epoch;
    e["loss"] = r.mean_loss;
    e["seconds"] = r.seconds;
    e["first_active_unit"] = r.first_active_unit;
    per_epoch.push_back(e);
  }
  summary["epochs_report"] = per_epoch;
  for (const auto& [k, v] : extra.as_object()) summary[k] = v;
  io::write_file_atomic(b.out / "summary.json", std::string_view(summary.dump(2) + "\n"));
  std::cout << "wrote " << (b.out / "summary.json").string() << "\n";
  return 0;
}

}  // namespace vitfreeze::examples
