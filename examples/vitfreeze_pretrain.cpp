// vitfreeze_pretrain: self-supervised pretraining on Fashion-MNIST (default) with progressive layer
// freezing, then a linear probe on the frozen encoder; prints test top-1 / top-5 and writes
// metrics.jsonl, summary.json and loss.png to --out.
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>

#include "vitfreeze/backend/cpu/parallel.hpp"
#include "vitfreeze/data/idx.hpp"
#include "vitfreeze/data/loader.hpp"
#include "vitfreeze/freeze/freeze.hpp"
#include "vitfreeze/io/plot.hpp"
#include "vitfreeze/io/weights.hpp"
#include "vitfreeze/io/png.hpp"
#include "vitfreeze/mim/localmim.hpp"
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/mim/reconstruction.hpp"
#include "vitfreeze/train/finetune.hpp"
#include "vitfreeze/train/linear_probe.hpp"
#include "vitfreeze/train/pretrainer.hpp"

namespace vf = vitfreeze;

namespace {

const char* kHelp = R"(vitfreeze_pretrain: MAE pretraining of a ViT with progressive layer freezing, then a linear probe.

  --objective localmim|mae   LocalMIM (multi-scale HOG at 4 taps; default) or MAE (normalised pixels)
  --model tiny|mini          tiny: ViT-Ti (192 wide, 12 blocks, 3 heads); mini: 128 wide, 6 blocks, 4 heads
  --mask-ratio R             fraction of patches removed (default 0.75)
  --epochs E --warmup W      pretraining epochs and warmup epochs (default 4, 1)
  --batch B                  micro-batch size (default 128)
  --accumulation A           micro-batches per optimiser step (default 1); lr = blr * B * A / 256
  --blr X                    base LR; lr = blr * batch / 256 (default 1.5e-3)
  --schedule S               none|linear|squared|cubic|vit-tailored (default cubic)
  --t0 X                     schedule t0 (default 0.8)
  --lr-mode M                scaled|unscaled|global|vit-tailored (default: vit-tailored for that schedule, else global)
  --semantics S              truncate|vitfreeze (default truncate)
  --dont-freeze-pe 1         keep the patch embedding and cls token training (blocks are the only units)
  --data DIR                 Fashion-MNIST directory (default /usr/share/datasets/fashion-mnist)
  --train-subset N           pretrain on the first N training images (default 20000; 0 = all 60000)
  --probe-subset N           linear-probe training features from the first N images (default 20000; 0 = all)
  --probe-epochs N           linear-probe epochs (default 10)
  --finetune-epochs N        then fine-tune end to end for N epochs (default 0: off) and report test top-1/top-5
  --finetune-subset N        fine-tune on the first N training images (default 10000)
  --finetune-lr X            fine-tuning peak LR (default 1e-3; layer decay 0.75, label smoothing 0.1)
  --steps-per-epoch N        cut each epoch short (smoke tests)
  --out DIR                  output directory (default runs/pretrain)
  --seed N --threads N       seed (default 0); threads (default: all cores)

  Checkpoints and reliability (checkpoints go to OUT/checkpoints/ckpt-<iteration>.safetensors):
  --resume auto|PATH         auto: continue from the newest intact checkpoint in OUT/checkpoints (start
                             fresh if there is none); PATH: from that checkpoint file. The model and
                             recipe must match (else an error lists every difference)
  --checkpoint-every-epochs N  save every N epochs and at the end (default 1; 0 = never)
  --keep-checkpoints K       keep the newest K checkpoints (default 2)
  --non-finite stop|skip[:N] on a NaN/Inf loss or gradient: stop (default; saves the last good state
                             first) or skip the step, at most N times (default 10)
  --dump-step PATH           write the first training step (input, mask, loss, parameters, gradients)
                             to PATH as safetensors, for comparison with PyTorch
  --export-encoder PATH      after pretraining, write the encoder with timm names (loads into
                             timm's VisionTransformer with load_state_dict)
  --help
)";

struct Args {
  std::map<std::string, std::string> values;
  std::string get(const std::string& k, const std::string& d) const {
    auto it = values.find(k);
    return it == values.end() ? d : it->second;
  }
  double num(const std::string& k, double d) const {
    auto it = values.find(k);
    if (it == values.end()) return d;
    char* end = nullptr;
    const double v = std::strtod(it->second.c_str(), &end);
    if (end == it->second.c_str() || *end) throw vf::ConfigError("--" + k + ": not a number: " + it->second);
    return v;
  }
};

Args parse(int argc, char** argv) {
  static const char* known[] = {"objective", "model", "mask-ratio", "epochs", "warmup", "batch", "blr", "schedule",
                                "t0", "lr-mode", "semantics", "data", "train-subset", "probe-epochs",
                                "steps-per-epoch", "accumulation", "dont-freeze-pe", "probe-subset", "finetune-epochs", "finetune-subset", "finetune-lr", "out", "seed", "threads", "resume",
                                "checkpoint-every-epochs", "keep-checkpoints", "non-finite", "dump-step",
                                "export-encoder"};
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "--help" || k == "-h") {
      a.values["help"] = "1";
      continue;
    }
    if (k.rfind("--", 0) != 0) throw vf::ConfigError("unexpected argument " + k);
    k = k.substr(2);
    if (std::find(std::begin(known), std::end(known), k) == std::end(known)) throw vf::ConfigError("unknown flag --" + k);
    if (i + 1 >= argc) throw vf::ConfigError("--" + k + " needs a value");
    a.values[k] = argv[++i];
  }
  return a;
}

vf::data::Dataset head_of(vf::data::Dataset d, std::int64_t n) {
  if (n <= 0 || n >= d.count) return d;
  const std::int64_t per = std::int64_t(d.channels) * d.height * d.width;
  d.pixels.resize(std::size_t(n * per));
  d.labels.resize(std::size_t(n));
  d.count = n;
  return d;
}

vf::io::PlotSeries loss_curve(const std::vector<vf::train::EpochReport>& reports) {
  vf::io::PlotSeries loss{"mean loss per epoch", {}, {}};
  for (auto& r : reports) loss.x.push_back(r.epoch + 1), loss.y.push_back(r.mean_loss);
  return loss;
}

// Writes original / masked / reconstruction rows for the first test images (MAE only: LocalMIM
// predicts HOG features, not pixels).
template <vf::ViTSpec S, class Objective>
void write_reconstructions(vf::nn::ViT<S, float>& encoder, Objective& objective, const vf::data::Dataset& test,
                           const vf::data::Normalize& norm, int ratio, const std::filesystem::path& path) {
  vf::data::Transform plain{std::nullopt, std::nullopt, 0.0, norm};
  vf::data::Loader loader(test, plain, {.batch_size = 8, .shuffle = false, .workers = 0});
  loader.start_epoch(0);
  auto batch = loader.next();
  const auto masks = vf::mim::RandomRatio{ratio}.make(8, S.grid(), S.grid(), 12345, 0);
  vf::Tape<float> tape;
  vf::NoGrad<float> no_grad(tape);
  auto out = objective.forward(tape, encoder, batch->images, masks);
  auto panels = vf::mim::reconstruction_panels(batch->images, tape.value(out.prediction), masks, S.patch,
                                               Objective::norm_pix, norm);
  vf::io::write_image_grid(path, panels, 3, 2);
}

template <vf::ViTSpec S, class Objective>
int run(const Args& args) {
  const std::filesystem::path out = args.get("out", "runs/pretrain");
  std::filesystem::create_directories(out);
  const std::string data_dir = args.get("data", "/usr/share/datasets/fashion-mnist");
  const int epochs = int(args.num("epochs", 4)), warmup = int(args.num("warmup", 1));
  const std::int64_t batch = std::int64_t(args.num("batch", 128));
  const std::uint64_t seed = std::uint64_t(args.num("seed", 0));
  const int accumulation = int(args.num("accumulation", 1));
  const double lr = args.num("blr", 1.5e-3) * double(batch) * accumulation / 256.0;

  auto train_full = vf::data::fashion_mnist(data_dir, vf::data::Split::train);
  auto test = vf::data::fashion_mnist(data_dir, vf::data::Split::test);
  auto train = head_of(train_full, std::int64_t(args.num("train-subset", 20000)));
  const auto norm = vf::data::Normalize::fashion_mnist();
  vf::data::Transform augment{vf::data::RandomResizedCrop{S.image, 0.2, 1.0, 3.0 / 4.0, 4.0 / 3.0,
                                                          vf::data::Interpolation::bicubic},
                              std::nullopt, 0.5, norm};
  vf::data::Loader loader(train, augment, {.batch_size = batch, .shuffle = true, .last_batch = vf::data::LastBatch::drop, .seed = seed});

  vf::nn::ViT<S, float> encoder(seed);
  std::vector<vf::train::EpochReport> reports;
  double pretrain_s = 0;
  std::string schedule = args.get("schedule", "cubic"), mode = "none";
  double t0_value = args.num("t0", 0.8);
  if (epochs > 0) {
    // Freeze schedule over depth + 1 units.
    const bool dont_freeze_pe = args.num("dont-freeze-pe", 0) != 0;
    const int units = S.depth + (dont_freeze_pe ? 0 : 1);
    vf::freeze::RuntimeSchedule rs{vf::freeze::Spacing::cubic, t0_value, schedule != "none"};
    if (schedule == "linear") rs.spacing = vf::freeze::Spacing::linear;
    else if (schedule == "squared") rs.spacing = vf::freeze::Spacing::squared;
    else if (schedule != "cubic" && schedule != "vit-tailored" && schedule != "none")
      throw vf::ConfigError("--schedule: unknown " + schedule);
    mode = args.get("lr-mode", schedule == "vit-tailored" ? "vit-tailored" : "global");
    vf::freeze::LrSettings lrs{.base_lr = lr, .min_lr = 1e-6, .tail = 0.1};
    if (mode == "scaled") lrs.mode = vf::freeze::LrMode::scaled_layerwise;
    else if (mode == "unscaled") lrs.mode = vf::freeze::LrMode::unscaled_layerwise;
    else if (mode == "global") lrs.mode = vf::freeze::LrMode::global_hard_freeze;
    else if (mode == "vit-tailored") lrs.mode = vf::freeze::LrMode::vit_tailored;
    else throw vf::ConfigError("--lr-mode: unknown " + mode);
    const std::int64_t steps_cap = std::int64_t(args.num("steps-per-epoch", -1));
    std::int64_t iters = steps_cap > 0 ? std::min(steps_cap, loader.batches_per_epoch()) : loader.batches_per_epoch();
    iters -= iters % std::max(accumulation, 1);  // whole accumulation windows per epoch
    vf::freeze::FreezeController controller(rs.fractions(units), {epochs, warmup, iters}, lrs);

    vf::train::PretrainOptions opt;
    opt.epochs = epochs;
    opt.seed = seed;
    opt.out_dir = out;
    opt.max_steps_per_epoch = steps_cap > 0 ? iters : -1;
    opt.accumulation = accumulation;
    opt.dont_freeze_pe = dont_freeze_pe;
    opt.semantics = args.get("semantics", "truncate") == "vitfreeze" ? vf::freeze::FreezeSemantics::vitfreeze
                                                                     : vf::freeze::FreezeSemantics::truncate;
    opt.checkpoint_dir = out / "checkpoints";
    opt.checkpoint_every_epochs = int(args.num("checkpoint-every-epochs", 1));
    opt.keep_checkpoints = int(args.num("keep-checkpoints", 2));
    if (opt.checkpoint_every_epochs < 0 || opt.keep_checkpoints < 1)
      throw vf::ConfigError("--checkpoint-every-epochs must be >= 0 and --keep-checkpoints >= 1");
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
    // The caller's part of the recipe: a resume must use the same values.
    opt.recipe.set("model", args.get("model", "tiny"));
    opt.recipe.set("objective", Objective::name);
    opt.recipe.set("batch", batch);
    opt.recipe.set("blr", args.num("blr", 1.5e-3));
    opt.recipe.set("mask_ratio", args.num("mask-ratio", 0.75));
    opt.recipe.set("train_subset", train.count);
    opt.recipe.set("augment", "random-resized-crop 0.2-1 bicubic, flip 0.5, fashion-mnist normalisation");
    Objective objective(seed + 1);
    vf::optim::AdamW<float> adam({.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.05});
    const int ratio = int(std::lround(args.num("mask-ratio", 0.75) * 1000));
    vf::train::Pretrainer trainer(encoder, objective, vf::mim::RandomRatio{ratio}, controller, adam, opt);

    std::cout << "pretraining " << Objective::name << " on " << train.count << " images, ViT " << S.dim << "x" << S.depth
              << " patch " << S.patch << ", " << epochs << " epochs x " << iters << " steps, schedule " << schedule
              << " (t0 " << rs.t0 << "), lr mode " << mode << "\n";
    if (args.values.count("resume")) {
      const auto from = trainer.resume(args.get("resume", "auto"));
      if (from)
        std::cout << "resuming from " << from->string() << " at iteration " << trainer.next_iteration() << "\n";
      else
        std::cout << "no checkpoint in " << opt.checkpoint_dir.string() << ": starting fresh\n";
    }
    const auto t0 = std::chrono::steady_clock::now();
    reports = trainer.fit(loader);
    pretrain_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    vf::io::write_line_plot((out / "loss.png").string(), {loss_curve(reports)},
                            {.title = "pretraining loss", .x_label = "epoch", .y_label = "loss"});
    if constexpr (requires { Objective::norm_pix; }) {
      write_reconstructions(encoder, objective, test, norm, ratio, out / "reconstructions.png");
      std::cout << "wrote " << (out / "reconstructions.png").string() << "\n";
    }
  } else {
    std::cout << "no pretraining (--epochs 0): probing the randomly initialised encoder\n";
  }

  if (args.values.count("export-encoder")) {
    vf::io::export_encoder(encoder, args.get("export-encoder", ""));
    std::cout << "wrote the encoder (timm names) to " << args.get("export-encoder", "") << "\n";
  }

  // Linear probe on the frozen encoder (no augmentation).
  vf::data::Transform plain{std::nullopt, std::nullopt, 0.0, norm};
  auto probe_train = head_of(train_full, std::int64_t(args.num("probe-subset", 20000)));
  vf::data::Loader train_eval(probe_train, plain, {.batch_size = 256, .shuffle = false, .last_batch = vf::data::LastBatch::keep});
  vf::data::Loader test_eval(test, plain, {.batch_size = 256, .shuffle = false, .last_batch = vf::data::LastBatch::keep});
  const auto t1 = std::chrono::steady_clock::now();
  auto ftrain = vf::train::extract_features(encoder, train_eval, probe_train.count, vf::train::FeaturePool::mean_patches);
  auto ftest = vf::train::extract_features(encoder, test_eval, test.count, vf::train::FeaturePool::mean_patches);
  auto probe = vf::train::train_linear_probe(std::move(ftrain), std::move(ftest),
                                             {.epochs = int(args.num("probe-epochs", 10)), .seed = seed});
  const double probe_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();

  std::cout << "pretraining time " << pretrain_s << " s; linear probe " << probe_s << " s\n"
            << "linear probe: train top-1 " << 100 * probe.train.top1 << " %, test top-1 " << 100 * probe.test.top1
            << " %, test top-5 " << 100 * probe.test.top5 << " %\n";

  // Optional end-to-end fine-tuning of the (pretrained) encoder.
  const int ft_epochs = int(args.num("finetune-epochs", 0));
  vf::train::Accuracy ft_acc;
  double ft_s = 0;
  if (ft_epochs > 0) {
    auto ft_train = head_of(train_full, std::int64_t(args.num("finetune-subset", 10000)));
    vf::data::Transform ft_augment{vf::data::RandomResizedCrop{S.image, 0.5, 1.0, 3.0 / 4.0, 4.0 / 3.0,
                                                              vf::data::Interpolation::bicubic},
                                   std::nullopt, 0.5, norm};
    vf::data::Loader ft_loader(ft_train, ft_augment, {.batch_size = 128, .last_batch = vf::data::LastBatch::drop, .seed = seed + 7});
    vf::train::Classifier classifier(encoder, 10, seed + 3);
    const auto t2 = std::chrono::steady_clock::now();
    vf::train::finetune(classifier, ft_loader,
                        {.epochs = ft_epochs, .warmup_epochs = std::min(1, ft_epochs - 1), .base_lr = args.num("finetune-lr", 1e-3),
                         .layer_decay = 0.75, .label_smoothing = 0.1, .seed = seed});
    ft_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t2).count();
    ft_acc = vf::train::evaluate_classifier(classifier, test_eval);
    std::cout << "fine-tune (" << ft_epochs << " epochs on " << ft_train.count << " images, " << ft_s
              << " s): test top-1 " << 100 * ft_acc.top1 << " %, top-5 " << 100 * ft_acc.top5 << " %\n";
  }

  vf::io::Json summary = vf::io::Json::object();
  summary["objective"] = Objective::name;
  summary["schedule"] = schedule;
  summary["t0"] = t0_value;
  summary["lr_mode"] = mode;
  summary["epochs"] = epochs;
  summary["pretrain_seconds"] = pretrain_s;
  summary["probe_test_top1"] = probe.test.top1;
  summary["probe_test_top5"] = probe.test.top5;
  summary["probe_train_top1"] = probe.train.top1;
  summary["probe_seconds"] = probe_s;
  summary["semantics"] = args.get("semantics", "truncate");
  summary["finetune_epochs"] = ft_epochs;
  if (ft_epochs > 0) {
    summary["finetune_test_top1"] = ft_acc.top1;
    summary["finetune_test_top5"] = ft_acc.top5;
    summary["finetune_seconds"] = ft_s;
  }
  vf::io::Json per_epoch = vf::io::Json::array();
  for (auto& r : reports) {
    vf::io::Json e = vf::io::Json::object();
    e["epoch"] = r.epoch;
    e["loss"] = r.mean_loss;
    e["seconds"] = r.seconds;
    e["first_active_unit"] = r.first_active_unit;
    per_epoch.push_back(e);
  }
  summary["epochs_report"] = per_epoch;
  vf::io::write_file_atomic(out / "summary.json", std::string_view(summary.dump(2) + "\n"));
  std::cout << "wrote " << (out / "summary.json").string() << "\n";
  return 0;
}

constexpr vf::ViTSpec kTiny = vf::specs::tiny(28, 1, 4);
constexpr vf::ViTSpec kMini{.image = 28, .channels = 1, .patch = 4, .dim = 128, .depth = 6, .heads = 4, .mlp_ratio = 4};

// MAE: decoder 128 wide, 2 blocks (the machine-facts baseline). LocalMIM on the 7x7 grid of patch 4:
// scale 1/2 is infeasible (7 is odd), so the taps after blocks [1, 3, depth-3, depth-1] predict HOG
// at scales 4, 2, 1, 1 (cells of 1, 2, 4, 4 pixels); one decoder block 128 wide per tap.
template <vf::ViTSpec S>
using MaeOf = vf::mim::Mae<S, vf::mim::DecoderSpec{.dim = 128, .depth = 2, .heads = 4}>;
constexpr vf::mim::DecoderSpec kTapDecoder{.dim = 128, .depth = 1, .heads = 4};
using LocalMimTiny = vf::mim::LocalMim<kTiny, vf::mim::taps<vf::mim::TapSpec{1, 4, 1}, vf::mim::TapSpec{3, 2, 1},
                                                            vf::mim::TapSpec{9, 1, 1}, vf::mim::TapSpec{11, 1, 1}>,
                                       kTapDecoder>;
using LocalMimMini = vf::mim::LocalMim<kMini, vf::mim::taps<vf::mim::TapSpec{1, 4, 1}, vf::mim::TapSpec{3, 2, 1},
                                                            vf::mim::TapSpec{5, 1, 1}>,
                                       kTapDecoder>;

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args args = parse(argc, argv);
    if (args.values.count("help")) {
      std::cout << kHelp;
      return 0;
    }
    if (args.values.count("threads")) vf::cpu::set_thread_count(int(args.num("threads", 0)));
    const std::string model = args.get("model", "tiny"), objective = args.get("objective", "localmim");
    if (objective != "mae" && objective != "localmim") throw vf::ConfigError("--objective: mae or localmim, not " + objective);
    const bool mae = objective == "mae";
    if (model == "tiny") return mae ? run<kTiny, MaeOf<kTiny>>(args) : run<kTiny, LocalMimTiny>(args);
    if (model == "mini") return mae ? run<kMini, MaeOf<kMini>>(args) : run<kMini, LocalMimMini>(args);
    throw vf::ConfigError("--model: unknown " + model);
  } catch (const std::exception& e) {
    std::cerr << "vitfreeze_pretrain: " << e.what() << "\n";
    return 2;
  }
}
