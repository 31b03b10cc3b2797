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
#include "vitfreeze/mim/mae.hpp"
#include "vitfreeze/train/linear_probe.hpp"
#include "vitfreeze/train/pretrainer.hpp"

namespace vf = vitfreeze;

namespace {

const char* kHelp = R"(vitfreeze_pretrain: MAE pretraining of a ViT with progressive layer freezing, then a linear probe.

  --objective mae            reconstruction objective (LocalMIM: not in this build yet)
  --model tiny|mini          tiny: ViT-Ti (192 wide, 12 blocks, 3 heads); mini: 128 wide, 6 blocks, 4 heads
  --mask-ratio R             fraction of patches removed (default 0.75)
  --epochs E --warmup W      pretraining epochs and warmup epochs (default 4, 1)
  --batch B                  batch size (default 128)
  --blr X                    base LR; lr = blr * batch / 256 (default 1.5e-3)
  --schedule S               none|linear|squared|cubic|vit-tailored (default cubic)
  --t0 X                     schedule t0 (default 0.8)
  --lr-mode M                scaled|unscaled|global|vit-tailored (default: vit-tailored for that schedule, else global)
  --semantics S              truncate|vitfreeze (default truncate)
  --data DIR                 Fashion-MNIST directory (default /usr/share/datasets/fashion-mnist)
  --train-subset N           pretrain on the first N training images (default 20000; 0 = all 60000)
  --probe-subset N           linear-probe training features from the first N images (default 20000; 0 = all)
  --probe-epochs N           linear-probe epochs (default 10)
  --steps-per-epoch N        cut each epoch short (smoke tests)
  --out DIR                  output directory (default runs/pretrain)
  --seed N --threads N       seed (default 0); threads (default: all cores)
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
                                "steps-per-epoch", "probe-subset", "out", "seed", "threads"};
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

template <vf::ViTSpec S>
int run(const Args& args) {
  using Objective = vf::mim::Mae<S, vf::mim::DecoderSpec{.dim = 128, .depth = 2, .heads = 4}>;
  const std::filesystem::path out = args.get("out", "runs/pretrain");
  const std::string data_dir = args.get("data", "/usr/share/datasets/fashion-mnist");
  const int epochs = int(args.num("epochs", 4)), warmup = int(args.num("warmup", 1));
  const std::int64_t batch = std::int64_t(args.num("batch", 128));
  const std::uint64_t seed = std::uint64_t(args.num("seed", 0));
  const double lr = args.num("blr", 1.5e-3) * double(batch) / 256.0;

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
    const int units = S.depth + 1;
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
    const std::int64_t iters = steps_cap > 0 ? std::min(steps_cap, loader.batches_per_epoch()) : loader.batches_per_epoch();
    vf::freeze::FreezeController controller(rs.fractions(units), {epochs, warmup, iters}, lrs);

    vf::train::PretrainOptions opt;
    opt.epochs = epochs;
    opt.warmup_epochs = warmup;
    opt.seed = seed;
    opt.out_dir = out;
    opt.max_steps_per_epoch = steps_cap;
    opt.semantics = args.get("semantics", "truncate") == "vitfreeze" ? vf::freeze::FreezeSemantics::vitfreeze
                                                                     : vf::freeze::FreezeSemantics::truncate;
    Objective objective(seed + 1);
    vf::optim::AdamW<float> adam({.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.05});
    const int ratio = int(std::lround(args.num("mask-ratio", 0.75) * 1000));
    vf::train::Pretrainer trainer(encoder, objective, vf::mim::RandomRatio{ratio}, controller, adam, opt);

    std::cout << "pretraining " << Objective::name << " on " << train.count << " images, ViT " << S.dim << "x" << S.depth
              << " patch " << S.patch << ", " << epochs << " epochs x " << iters << " steps, schedule " << schedule
              << " (t0 " << rs.t0 << "), lr mode " << mode << "\n";
    const auto t0 = std::chrono::steady_clock::now();
    reports = trainer.fit(loader);
    pretrain_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } else {
    std::cout << "no pretraining (--epochs 0): probing the randomly initialised encoder\n";
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
  vf::io::Json per_epoch = vf::io::Json::array();
  vf::io::PlotSeries loss{"loss per epoch", {}, {}};
  for (auto& r : reports) {
    vf::io::Json e = vf::io::Json::object();
    e["epoch"] = r.epoch;
    e["loss"] = r.mean_loss;
    e["seconds"] = r.seconds;
    e["first_active_unit"] = r.first_active_unit;
    per_epoch.push_back(e);
    loss.x.push_back(r.epoch + 1);
    loss.y.push_back(r.mean_loss);
  }
  summary["epochs_report"] = per_epoch;
  vf::io::write_file_atomic(out / "summary.json", std::string_view(summary.dump(2) + "\n"));
  vf::io::write_line_plot((out / "loss.png").string(), {loss}, {.title = "pretraining loss", .x_label = "epoch", .y_label = "loss"});
  std::cout << "wrote " << (out / "metrics.jsonl").string() << ", summary.json, loss.png\n";
  return 0;
}

constexpr vf::ViTSpec kTiny = vf::specs::tiny(28, 1, 4);
constexpr vf::ViTSpec kMini{.image = 28, .channels = 1, .patch = 4, .dim = 128, .depth = 6, .heads = 4, .mlp_ratio = 4};

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args args = parse(argc, argv);
    if (args.values.count("help")) {
      std::cout << kHelp;
      return 0;
    }
    if (args.values.count("threads")) vf::cpu::set_thread_count(int(args.num("threads", 0)));
    if (args.get("objective", "mae") != "mae") throw vf::ConfigError("--objective: only mae is available in this build");
    const std::string model = args.get("model", "tiny");
    if (model == "tiny") return run<kTiny>(args);
    if (model == "mini") return run<kMini>(args);
    throw vf::ConfigError("--model: unknown " + model);
  } catch (const std::exception& e) {
    std::cerr << "vitfreeze_pretrain: " << e.what() << "\n";
    return 2;
  }
}
