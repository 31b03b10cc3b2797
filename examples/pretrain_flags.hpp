#pragma once
// The flags of vitfreeze_pretrain (and its MPI build) and vitfreeze_pretrain_cuda, parsed and
// checked as a whole before anything runs: every number against its range, every choice against
// its names, and the flags that depend on each other (warmup below the epochs, checkpoint steps on
// window boundaries, a fine-tune subset that holds a batch). What needs the data (the subsets' sizes)
// or the file system (output paths, the lock on --out) is checked in pretrain_common.hpp, still
// before the first step. Light on purpose (CLI11 and the freeze schedules): the flag fuzz target
// and the tests include it.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "flags.hpp"
#include "vitfreeze/freeze/runtime_schedule.hpp"

namespace vitfreeze::examples {

enum class Backend { cpu, gpu };

// Fine-tuning steps on batches of this many images (the last partial batch dropped).
inline constexpr std::int64_t kFinetuneBatch = 128;

struct PretrainFlags {
  std::string objective = "localmim", model = "tiny";
  std::optional<double> mask_ratio;  // default: 0.75 (MiCL 0.65, LoMaR 0.8)
  int image = 28, patch = 4;         // MAE and LoMaR may change them (CPU)
  int window = 7, windows = 4;       // LoMaR
  std::string window_pairing = "distinct";
  std::optional<std::string> teacher;  // MAE-lite's attention distillation
  int epochs = 4, warmup = 1;
  std::int64_t batch = 128;
  int accumulation = 1;
  double blr = 1.5e-3;
  std::string schedule = "cubic";
  std::optional<double> t0;  // default: the schedule's published one
  std::optional<std::string> lr_mode;  // default: vit-tailored for that schedule, else global
  std::string semantics = "truncate";
  bool dont_freeze_pe = false;
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::int64_t train_subset = 20000, probe_subset = 20000, finetune_subset = 10000;  // 0: all
  int probe_epochs = 10, finetune_epochs = 0;
  double finetune_lr = 1e-3;
  std::string probe = "adamw", probe_pool = "mean";
  double probe_blr = 0.1;
  int probe_warmup = 10;
  std::int64_t probe_batch = 256;
  int finetune_image = 0;  // 0: the pretraining size
  double drop_path = 0.0, cutmix = 0.0, mix_switch_prob = 0.5, color_jitter = 0.0, reprob = 0.0;
  std::optional<double> mixup;  // default: the recipe's (MAE-lite 0.2, else 0)
  std::optional<std::string> rand_augment;
  std::optional<std::int64_t> steps_per_epoch;
  std::string out = "runs/pretrain";
  std::int64_t seed = 0;
  std::optional<int> threads;
  std::optional<std::string> resume;
  int checkpoint_every_epochs = 1, keep_checkpoints = 2;
  std::int64_t checkpoint_every_steps = 0;
  std::string non_finite = "stop";
  bool skip_non_finite = false;
  int max_skipped_steps = 10;
  std::optional<std::string> dump_step, export_encoder;
  int device = 0;                  // GPU only
  std::string precision = "bf16";  // GPU only

  double resolved_mask_ratio() const {
    return mask_ratio.value_or(objective == "micl" ? 0.65 : objective == "lomar" ? 0.8 : 0.75);
  }
  int resolved_finetune_image() const { return finetune_image > 0 ? finetune_image : image; }
  // The image geometry is not the default one (28x28 at patch 4): only MAE and LoMaR take another.
  bool other_geometry() const { return image != 28 || patch != 4; }
  freeze::RuntimeSchedule freeze_schedule() const { return freeze::named_schedule(schedule, t0); }
  std::string resolved_lr_mode() const { return lr_mode.value_or(schedule == "vit-tailored" ? "vit-tailored" : "global"); }
};

namespace detail {
inline int hardware_threads() { return int(std::max(1u, std::thread::hardware_concurrency())); }

inline void register_pretrain_flags(FlagSet& f, PretrainFlags& p, Backend backend) {
  constexpr std::int64_t kMaxImages = 1'000'000'000;
  if (backend == Backend::gpu) {
    f.group("GPU");
    f.number("--device", p.device, 0, 63, "CUDA device (default 0)");
    f.choice("--precision", p.precision, {"bf16", "fp16", "fp32"},
             "bf16: bf16 activations, fp32 master weights, moments and accumulation (default); fp16: the same "
             "with fp16 activations and dynamic loss scaling (2^16 at the start, halved on NaN/Inf gradients "
             "and that step skipped, doubled after 2000 clean steps; the scale and skipped steps go to the epoch "
             "records of metrics.jsonl); fp32: fp32 throughout (matches the CPU to rounding, slower)");
  }
  f.group("Model and objective");
  f.choice("--objective", p.objective, {"localmim", "mae", "mae-lite", "micl", "lomar"},
           "LocalMIM (multi-scale HOG at 4 taps; default), MAE (normalised pixels), MAE-lite (MAE's ViT-Tiny "
           "recipe: 12 heads, 96-wide 1-block decoder, crops 0.08-1 with random interpolation, fine-tune layer "
           "decay 0.85 + mixup 0.2; tiny model only; attention distillation with --teacher on the CPU only) or MiCL (two disjoint views of the visible patches, "
           "t-vMF InfoNCE) or LoMaR (the encoder on --windows windows of --window x --window patches, 80 % "
           "masked inside each with mask tokens in place, relative position attention, no absolute position; CPU only)");
  f.choice("--model", p.model, {"tiny", "mini", "small"},
           "tiny: ViT-Ti (192 wide, 12 blocks, 3 heads; default); mini: 128 wide, 6 blocks, 4 heads; small: ViT-S "
           "(384 wide, 12 blocks, 6 heads; MAE only, CPU: a teacher for --teacher)");
  f.number("--image", p.image, 28, 56,
           "image side: 56 upsamples Fashion-MNIST (bicubic) for every phase (default 28; MAE and LoMaR, CPU)");
  f.number("--patch", p.patch, 2, 4, "patch side (default 4; 2: the 14x14 token grid of ViT-B/16 at 224; MAE and "
                                             "LoMaR, CPU)");
  f.number("--window", p.window, 1, 64, "LoMaR: window side in patches (default 7)");
  f.number("--windows", p.windows, 1, 64, "LoMaR: windows per step (default 4)");
  f.choice("--window-pairing", p.window_pairing, {"distinct", "lomar-code"},
           "LoMaR: distinct (every image gets all windows; default) or lomar-code (the released code's pairing: "
           "image n gets window n mod M, M times)");
  f.text("--teacher", p.teacher,
         "MAE-lite with attention distillation from this frozen encoder (a safetensors file with timm names, e.g. "
         "--export-encoder of an --objective mae --model small run; CPU)");
  f.number("--mask-ratio", p.mask_ratio, 0.05, 0.95,
           "fraction of patches removed (default 0.75; micl 0.65: 8 patches per view)");
  f.group("Pretraining");
  f.number("--epochs", p.epochs, 0, 100000, "pretraining epochs (default 4; 0: probe the untrained encoder)");
  f.number("--warmup", p.warmup, 0, 100000, "warmup epochs, below --epochs (default 1)");
  f.number("--batch", p.batch, std::int64_t(1), std::int64_t(65536), "micro-batch size (default 128)");
  f.number("--accumulation", p.accumulation, 1, 1024,
           "micro-batches per optimiser step (default 1); lr = blr * batch * accumulation / 256");
  f.number("--blr", p.blr, 1e-9, 10.0, "base LR; lr = blr * batch * accumulation / 256 (default 1.5e-3)");
  f.choice("--schedule", p.schedule, {"none", "linear", "squared", "cubic", "vit-tailored"},
           "freeze schedule (default cubic)");
  f.number("--t0", p.t0, freeze::kMinT0, 1.0,
           "schedule t0 (default: the published one, 0.5 for linear, else 0.8)");
  f.choice("--lr-mode", p.lr_mode, {"scaled", "unscaled", "global", "vit-tailored"},
           "per-unit LRs (default: vit-tailored for that schedule, else global)");
  f.choice("--semantics", p.semantics, {"truncate", "vitfreeze"}, "what a frozen unit still computes (default truncate)");
  f.flag("--dont-freeze-pe", p.dont_freeze_pe, "keep the patch embedding and cls token training (blocks are the only units)");
  f.number("--steps-per-epoch", p.steps_per_epoch, std::int64_t(1), kMaxImages, "cut each epoch short (smoke tests)");
  f.number("--seed", p.seed, std::int64_t(0), std::numeric_limits<std::int64_t>::max(), "seed (default 0)");
  f.number("--threads", p.threads, 1, hardware_threads(), "threads (default: all cores)");
  f.group("Data and evaluation");
  f.text("--data", p.data, "Fashion-MNIST directory (default /usr/share/datasets/fashion-mnist)", "DIR");
  f.number("--train-subset", p.train_subset, std::int64_t(0), kMaxImages,
           "pretrain on the first N training images (default 20000; 0: all 60000)");
  f.number("--probe-subset", p.probe_subset, std::int64_t(0), kMaxImages,
           "linear-probe training features from the first N images (default 20000; 0: all)");
  f.number("--probe-epochs", p.probe_epochs, 1, 10000, "linear-probe epochs (default 10)");
  f.number("--finetune-epochs", p.finetune_epochs, 0, 10000,
           "then fine-tune end to end for N epochs (default 0: off) and report test top-1/top-5");
  f.number("--finetune-subset", p.finetune_subset, std::int64_t(0), kMaxImages,
           "fine-tune on the first N training images (default 10000; 0: all; at least one batch of 128)");
  f.number("--finetune-lr", p.finetune_lr, 1e-9, 1.0,
           "fine-tuning peak LR (default 1e-3; layer decay 0.75, label smoothing 0.1)");
  f.number("--finetune-image", p.finetune_image, 28, 56,
           "fine-tune and test at this side on upsampled images with the same weights (LoMaR: relative positions, "
           "nothing to interpolate; default: the pretraining side)");
  f.number("--drop-path", p.drop_path, 0.0, 0.99, "fine-tuning stochastic depth of the last block (default 0; MAE ViT-B 0.1)");
  f.number("--mixup", p.mixup, 0.0, 100.0, "fine-tuning mixup alpha (default 0; MAE-lite 0.2; MAE 0.8)");
  f.number("--cutmix", p.cutmix, 0.0, 100.0, "fine-tuning cutmix alpha (default 0; MAE 1.0)");
  f.number("--mix-switch-prob", p.mix_switch_prob, 0.0, 1.0,
           "with mixup and cutmix: chance of cutmix for a batch (default 0.5)");
  f.text("--rand-augment", p.rand_augment,
         "fine-tuning RandAugment, timm's syntax (MAE: rand-m9-mstd0.5-inc1; MAE-lite: rand-m10-mstd0.5-inc1)", "CONFIG");
  f.number("--color-jitter", p.color_jitter, 0.0, 1.0,
           "fine-tuning colour jitter (brightness, contrast, saturation; skipped under --rand-augment, as timm)");
  f.number("--reprob", p.reprob, 0.0, 1.0, "fine-tuning random erasing probability (default 0; MAE 0.25)");
  f.choice("--probe", p.probe, {"adamw", "mae"},
           "linear probe: adamw (standardised features, AdamW 1e-3, cosine; default) or mae (BatchNorm without affine "
           "+ LARS, lr = --probe-blr x batch / 256, warmup --probe-warmup epochs, cosine)");
  f.choice("--probe-pool", p.probe_pool, {"mean", "cls"}, "probe features: mean of the patch tokens (default) or cls");
  f.number("--probe-blr", p.probe_blr, 1e-6, 1e4, "mae probe: base LR (default 0.1, MAE's)");
  f.number("--probe-warmup", p.probe_warmup, 0, 10000, "mae probe: warmup epochs (default 10)");
  f.number("--probe-batch", p.probe_batch, std::int64_t(1), std::int64_t(1) << 20, "probe batch (default 256)");
  f.text("--out", p.out, "output directory (default runs/pretrain); locked while the run lasts", "DIR");
  f.text("--export-encoder", p.export_encoder,
         "after pretraining, write the encoder with timm names (loads into timm's VisionTransformer)");
  f.group("Checkpoints and reliability (OUT/checkpoints/ckpt-<iteration>.safetensors)");
  f.text("--resume", p.resume,
         "auto: continue from the newest checkpoint of this run in OUT/checkpoints (start fresh if there is "
         "none); PATH: from that file. The model and recipe must match (else an error lists every difference)",
         "auto|PATH");
  f.number("--checkpoint-every-epochs", p.checkpoint_every_epochs, 0, 100000,
           "save every N epochs and at the end (default 1; 0: never)");
  f.number("--checkpoint-every-steps", p.checkpoint_every_steps, std::int64_t(0), kMaxImages,
           "also save every N iterations, a multiple of --accumulation (default 0: never)");
  f.number("--keep-checkpoints", p.keep_checkpoints, 1, 100000,
           "keep the newest K checkpoints of this run (default 2; other files are left alone)");
  f.text("--non-finite", p.non_finite,
         "on a NaN/Inf loss or gradient: stop (default; saves the last good state first) or skip the step, at "
         "most N times (default 10)",
         "stop|skip[:N]");
  f.text("--dump-step", p.dump_step,
         "write the first training step (input, mask, loss, parameters, gradients) to PATH as safetensors, for "
         "comparison with PyTorch");
}

// What depends on more than one flag, and what a backend cannot do.
inline void check_pretrain_flags(PretrainFlags& p, Backend backend) {
  if (p.epochs > 0 && p.warmup >= p.epochs)
    throw ConfigError("--warmup " + std::to_string(p.warmup) + " must be below --epochs " + std::to_string(p.epochs));
  if (p.objective == "mae-lite" && p.model != "tiny")
    throw ConfigError("--objective mae-lite is a ViT-Tiny recipe: use --model tiny");
  if ((p.image != 28 && p.image != 56) || (p.patch != 2 && p.patch != 4) ||
      (p.finetune_image != 0 && p.finetune_image != 28 && p.finetune_image != 56))
    throw ConfigError("--image and --finetune-image take 28 or 56, --patch 2 or 4");
  if (p.model == "small" && p.objective != "mae")
    throw ConfigError("--model small is built for --objective mae (a teacher for MAE-lite's distillation)");
  if (p.other_geometry() && (p.model != "tiny" || (p.objective != "mae" && p.objective != "lomar")))
    throw ConfigError("--image " + std::to_string(p.image) + " --patch " + std::to_string(p.patch) +
                      ": other geometries are built for --model tiny with --objective mae or lomar");
  if (p.objective == "lomar") {
    if (p.model != "tiny") throw ConfigError("--objective lomar is built for --model tiny");
    const int grid = p.image / p.patch;
    if (p.window > grid || p.windows > grid - p.window + 1)
      throw ConfigError("--objective lomar: " + std::to_string(p.windows) + " windows of " + std::to_string(p.window) +
                        "x" + std::to_string(p.window) + " need distinct tops and lefts on the " + std::to_string(grid) +
                        "x" + std::to_string(grid) + " grid (try --patch 2, or --window " +
                        std::to_string(std::max(1, grid + 1 - p.windows)) + ")");
  }
  if (p.teacher && p.objective != "mae-lite") throw ConfigError("--teacher distils into --objective mae-lite");
  if (p.teacher && p.teacher->empty()) throw ConfigError("--teacher: expected a weight file");
  if (p.resolved_finetune_image() != p.image && p.objective != "lomar")
    throw ConfigError("--finetune-image " + std::to_string(p.finetune_image) +
                      ": only a LoMaR encoder (relative positions) changes resolution without interpolation");
  if (p.checkpoint_every_steps % p.accumulation != 0)
    throw ConfigError("--checkpoint-every-steps " + std::to_string(p.checkpoint_every_steps) +
                      " must be a multiple of --accumulation " + std::to_string(p.accumulation));
  if (p.steps_per_epoch && *p.steps_per_epoch < p.accumulation)
    throw ConfigError("--steps-per-epoch " + std::to_string(*p.steps_per_epoch) + " holds no whole window of --accumulation " +
                      std::to_string(p.accumulation));
  if (p.finetune_epochs > 0 && p.finetune_subset > 0 && p.finetune_subset < kFinetuneBatch)
    throw ConfigError("--finetune-subset " + std::to_string(p.finetune_subset) + " holds no batch of " +
                      std::to_string(kFinetuneBatch) + " images: fine-tuning would take no step");
  if (p.resume && p.resume->empty()) throw ConfigError("--resume: expected auto or a checkpoint file");
  (void)p.freeze_schedule();  // t0 within the schedule's range
  if (p.non_finite == "stop") {
    p.skip_non_finite = false;
  } else if (p.non_finite == "skip") {
    p.skip_non_finite = true;
  } else if (p.non_finite.starts_with("skip:")) {
    p.skip_non_finite = true;
    p.max_skipped_steps = parse_number("--non-finite skip:N", std::string_view(p.non_finite).substr(5), 0, 1000000);
  } else {
    throw ConfigError("--non-finite: expected stop, skip or skip:N, got " + quoted_excerpt(p.non_finite));
  }
  if (backend == Backend::gpu) {
    auto refuse = [](const std::string& what) {
      throw ConfigError(what + " is not available on the GPU yet (use vitfreeze_pretrain on the CPU)");
    };
    if (p.skip_non_finite) refuse("--non-finite " + p.non_finite);
    if (p.dump_step) refuse("--dump-step");
    if (p.objective == "lomar") refuse("--objective lomar");
    if (p.teacher) refuse("--teacher");
    if (p.model == "small") refuse("--model small");
    if (p.other_geometry()) refuse("--image/--patch other than 28/4");
    if (p.finetune_image) refuse("--finetune-image");
  }
}
}  // namespace detail

// The flags of argv, checked; nullopt when --help was asked for (then *help holds the text, after
// `description`). ConfigError naming the flag for anything else that is wrong.
inline std::optional<PretrainFlags> parse_pretrain_flags(int argc, const char* const* argv, Backend backend,
                                                         const std::string& description, std::string* help = nullptr) {
  PretrainFlags p;
  FlagSet f(description);
  detail::register_pretrain_flags(f, p, backend);
  if (!f.parse(argc, argv)) {
    if (help) *help = f.help();
    return std::nullopt;
  }
  detail::check_pretrain_flags(p, backend);
  return p;
}

}  // namespace vitfreeze::examples
