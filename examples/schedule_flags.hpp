#pragma once
// The flags of vitfreeze_schedule, parsed and bounded before anything is computed: the run length,
// units and cost-model geometry within ranges that keep every printed number finite and every count
// inside 64 bits (a 1 G pixel image or 2 G units would overflow the token count or allocate
// gigabytes). Light on purpose: the flag fuzz target and the tests include it.
#include <cstdint>
#include <optional>
#include <string>

#include "flags.hpp"
#include "vitfreeze/freeze/runtime_schedule.hpp"

namespace vitfreeze::examples {

struct ScheduleFlags {
  std::string schedule = "cubic";
  std::optional<double> t0;  // default: the schedule's published one
  int epochs = 100, warmup = 10;
  std::int64_t iters_per_epoch = 625;
  std::optional<int> units;  // default: blocks + patch embedding
  double tau = 0.1;
  bool dont_freeze_pe = false;
  std::optional<std::string> lr_mode;  // default: the schedule's
  std::string semantics = "truncate", format = "table", model = "base";
  std::optional<std::string> plot;  // PNG of every unit's LR over the run
  int image = 224, patch = 16, channels = 3;

  freeze::RuntimeSchedule freeze_schedule() const { return freeze::named_schedule(schedule, t0); }
};

// Patch tokens the cost model accepts: a 256 x 256 grid.
inline constexpr std::int64_t kMaxScheduleTokens = 65536;

// The flags of argv, checked; nullopt when --help was asked for (then *help holds the text).
inline std::optional<ScheduleFlags> parse_schedule_flags(int argc, const char* const* argv, std::string* help = nullptr) {
  ScheduleFlags o;
  FlagSet f("vitfreeze_schedule: a progressive-freezing schedule before training: each unit's training fraction r_i, "
            "its budget J_i, the iteration and epoch at which it freezes, its LR multiplier right after warmup, and "
            "the predicted share of training FLOPs saved.");
  f.choice("--schedule", o.schedule, {"linear", "squared", "cubic", "vit-tailored", "none"},
           "spacing of freeze points (default cubic)");
  f.number("--t0", o.t0, freeze::kMinT0, 1.0, "start of the spacing (default: the published one, 0.5 for linear, else 0.8)");
  f.number("--epochs", o.epochs, 1, 100000, "total epochs (default 100)");
  f.number("--warmup", o.warmup, 0, 100000, "warmup epochs, below --epochs (default 10)");
  f.number("--iters-per-epoch", o.iters_per_epoch, std::int64_t(1), std::int64_t(100'000'000),
           "micro-batches per epoch per rank (default 625: ImageNet, 8 x 256)");
  f.number("--units", o.units, 1, 1000, "freezable units N = L + 1 (default: depth + 1, or depth with --dont-freeze-pe)");
  f.number("--tau", o.tau, 0.0, 1.0, "vit-tailored tail, fraction of the post-warmup run (default 0.1)");
  f.flag("--dont-freeze-pe", o.dont_freeze_pe, "the patch embedding is not a unit; units are the blocks");
  f.choice("--lr-mode", o.lr_mode, {"scaled", "unscaled", "global", "vit-tailored"},
           "(default: scaled; vit-tailored for that schedule, global for none)");
  f.choice("--semantics", o.semantics, {"truncate", "vitfreeze"},
           "what freezing saves, for the predicted saving (default truncate; --dont-freeze-pe implies vitfreeze: "
           "gradients must reach the patch embedding)");
  f.choice("--model", o.model, {"tiny", "small", "base"}, "cost model width (default base); depth = units - 1 "
                                                           "(units with --dont-freeze-pe)");
  f.number("--image", o.image, 1, 4096, "cost model image side in pixels (default 224)");
  f.number("--patch", o.patch, 1, 4096, "cost model patch side, dividing --image (default 16)");
  f.number("--channels", o.channels, 1, 64, "cost model image channels (default 3)");
  f.choice("--format", o.format, {"table", "json", "csv"}, "output (default table); predicted_saving is null if depth < 4");
  f.text("--plot", o.plot, "also write a PNG of every unit's learning rate over the run");
  if (!f.parse(argc, argv)) {
    if (help) *help = f.help();
    return std::nullopt;
  }
  if (o.warmup >= o.epochs)
    throw ConfigError("--warmup " + std::to_string(o.warmup) + " must be below --epochs " + std::to_string(o.epochs));
  if (o.image % o.patch != 0)
    throw ConfigError("--patch " + std::to_string(o.patch) + " must divide --image " + std::to_string(o.image));
  const std::int64_t grid = o.image / o.patch;
  if (grid * grid > kMaxScheduleTokens)
    throw ConfigError("--image " + std::to_string(o.image) + " / --patch " + std::to_string(o.patch) + " gives " +
                      std::to_string(grid * grid) + " tokens, above the cost model's " + std::to_string(kMaxScheduleTokens));
  (void)o.freeze_schedule();
  return o;
}

}  // namespace vitfreeze::examples
