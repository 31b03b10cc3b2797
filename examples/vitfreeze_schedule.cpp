// vitfreeze_schedule: print a progressive-freezing schedule before training: each unit's training
// fraction r_i, its budget J_i, the iteration and epoch at which it freezes, its LR multiplier right
// after warmup, and the predicted share of training FLOPs saved.
//
//   vitfreeze_schedule --schedule cubic --t0 0.8 --epochs 100 --warmup 10 --iters-per-epoch 625 --units 13
//
// The cost model is the library's for LocalMIM (train/cost_model.hpp, spec §2.2-2.3): encoder of the
// chosen width on the 25 % visible tokens + cls, four tap decoders (embed -> 256, one 256-wide block
// on all tokens, scale head 4, 2, 1, 0.5) after blocks 2, 4, depth-2 and depth, each dropped with its block.
#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include "schedule_flags.hpp"
#include "vitfreeze/core/error.hpp"
#include "vitfreeze/freeze/freeze.hpp"
#include "vitfreeze/io/atomic_file.hpp"
#include "vitfreeze/io/plot.hpp"
#include "vitfreeze/nn/vit_spec.hpp"
#include "vitfreeze/train/cost_model.hpp"

namespace {

namespace vf = vitfreeze;
namespace fz = vitfreeze::freeze;
// The cost model of LocalMIM as published, at the encoder the flags describe (train/cost_model.hpp).
using vitfreeze::train::localmim_unit_costs;

// What the model predicts for the published setting (ViT-B/16 at 224 px, cubic t0 0.8, E 100, W 10,
// ViTFreeze semantics), checked at compile time: about 9.6 % of training FLOPs. The logged wall-clock
// saving of that run is 12.6 % (spec §4.2); the gap is work this GEMM-only count leaves out (the
// dropped taps' HOG targets, LayerNorm2d and memory traffic at 56x56: dropping the 56x56 decoder
// cut the logged epoch time by 14 % for 4.6 % of the FLOPs, spec §3.8 profile).
constexpr double published_setting_saving(fz::FreezeSemantics semantics) {
  constexpr vf::ViTSpec spec = vf::specs::base();
  std::array<double, 13> forward{}, dropped{};
  const double untracked = localmim_unit_costs(spec, true, forward, dropped);
  constexpr auto r = fz::fraction_table<fz::Cubic<800>, 13>();
  return fz::predicted_saving({forward, dropped, untracked}, r, semantics, 100, 10);
}
static_assert(published_setting_saving(fz::FreezeSemantics::vitfreeze) > 0.08 &&
                  published_setting_saving(fz::FreezeSemantics::vitfreeze) < 0.13,
              "FLOP model for ViT-B cubic 0.8 should sit a little below the logged 12.6 % wall-clock saving");
static_assert(published_setting_saving(fz::FreezeSemantics::truncate) >
                  published_setting_saving(fz::FreezeSemantics::vitfreeze),
              "truncating the graph must save more than ViTFreeze's weight-gradient-only freezing");

// ---- command line (schedule_flags.hpp) -----------------------------------------------------------

using Options = vitfreeze::examples::ScheduleFlags;

fz::LrMode lr_mode_of(const Options& o) {
  if (!o.lr_mode)
    return o.schedule == "vit-tailored" ? fz::LrMode::vit_tailored
           : o.schedule == "none"       ? fz::LrMode::global_hard_freeze
                                        : fz::LrMode::scaled_layerwise;
  if (*o.lr_mode == "scaled") return fz::LrMode::scaled_layerwise;
  if (*o.lr_mode == "unscaled") return fz::LrMode::unscaled_layerwise;
  if (*o.lr_mode == "global") return fz::LrMode::global_hard_freeze;
  return fz::LrMode::vit_tailored;  // the flag parser admits no other name
}

const char* lr_mode_name(fz::LrMode m) {
  switch (m) {
    case fz::LrMode::scaled_layerwise: return "scaled";
    case fz::LrMode::unscaled_layerwise: return "unscaled";
    case fz::LrMode::global_hard_freeze: return "global";
    case fz::LrMode::vit_tailored: return "vit-tailored";
  }
  return "?";
}

// The encoder for the cost model; nullopt when the depth cannot hold the four taps.
std::optional<vf::ViTSpec> model_of(const Options& o, int depth) {
  vf::ViTSpec s;
  if (o.model == "tiny") s = vf::specs::tiny(o.image, o.channels, o.patch);
  else if (o.model == "small") s = vf::specs::small(o.image, o.channels, o.patch);
  else s = vf::specs::base(o.image, o.channels, o.patch);  // geometry bounded by parse_schedule_flags
  if (depth < 4) return std::nullopt;
  s.depth = depth;
  return s;
}

// ---- output --------------------------------------------------------------------------------------

struct Row {
  int unit;
  double r, J;
  std::optional<std::int64_t> first_frozen;
  std::optional<double> freeze_epoch;
  double lr_multiplier;
};

// Shortest text that reads back as the same double.
std::string num(double v) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, ec == std::errc{} ? end : buf);
}
// JSON has no NaN or infinity: a number that is not finite is written as null.
std::string json_num(double v) { return fz::detail::is_finite(v) ? num(v) : "null"; }
template <class T>
std::string json_opt(const std::optional<T>& v) {
  if (!v) return "null";
  if constexpr (std::is_same_v<T, double>) return json_num(*v);
  else return std::to_string(*v);
}

// Runs the controller over the whole schedule (about 2000 sampled iterations) and draws each unit's
// LR; a frozen unit's curve ends at its freeze point.
void plot_learning_rates(const std::string& path, const std::vector<double>& r, const fz::RunLength& run,
                         fz::LrMode mode, double tau) {
  fz::FreezeController controller(r, run, {.mode = mode, .base_lr = 1.0, .min_lr = 1e-3, .tail = tau});
  std::vector<vf::io::PlotSeries> series(r.size());
  for (std::size_t u = 0; u < r.size(); ++u) series[u].label = "unit " + std::to_string(u);
  const std::int64_t total = run.total_iterations(), stride = std::max<std::int64_t>(1, total / 2000);
  for (std::int64_t g = 0; g < total; g += stride) {
    controller.step(g);
    const double epoch = double(g) / double(run.iters_per_epoch);
    for (std::size_t u = 0; u < r.size(); ++u)
      if (controller.is_active(int(u))) {
        series[u].x.push_back(epoch);
        series[u].y.push_back(controller.lr(int(u)));
      }
  }
  vf::io::write_line_plot(path, series, {.title = "learning rate per unit (base lr = 1)", .x_label = "epoch", .y_label = "lr / base lr"});
}

int run(int argc, char** argv) {
  std::string help;
  const std::optional<Options> parsed = vitfreeze::examples::parse_schedule_flags(argc, argv, &help);
  if (!parsed) {
    std::fputs(help.c_str(), stdout);
    return 0;
  }
  const Options& o = *parsed;
  if (o.plot) vf::io::check_output_file(*o.plot, true);
  const fz::RuntimeSchedule schedule = o.freeze_schedule();
  const fz::LrMode mode = lr_mode_of(o);
  const fz::RunLength run{o.epochs, o.warmup, o.iters_per_epoch};
  run.validate();
  const int units = o.units.value_or(o.dont_freeze_pe ? 12 : 13);
  const std::vector<double> r = schedule.fractions(units);

  std::vector<Row> rows;
  for (int i = 0; i < units; ++i) {
    const double ri = r[static_cast<std::size_t>(i)];
    rows.push_back({i, ri, fz::freeze_iteration(run, ri), fz::first_frozen_iteration(run, ri),
                    fz::freeze_epoch(run, ri), fz::initial_lr_multiplier(mode, ri)});
  }

  // With a trainable patch embedding in front of the frozen blocks, gradients must still flow
  // through them: only the weight-gradient half is saved, whatever --semantics says.
  fz::FreezeSemantics semantics = o.semantics == "vitfreeze" ? fz::FreezeSemantics::vitfreeze : fz::FreezeSemantics::truncate;
  if (o.dont_freeze_pe) semantics = fz::FreezeSemantics::vitfreeze;
  const int depth = o.dont_freeze_pe ? units : units - 1;
  const std::optional<vf::ViTSpec> spec = model_of(o, depth);
  std::optional<double> saving;
  if (spec) {
    std::vector<double> forward(static_cast<std::size_t>(units)), dropped(static_cast<std::size_t>(units));
    const double untracked = localmim_unit_costs(*spec, !o.dont_freeze_pe, forward, dropped);
    saving = fz::predicted_saving({forward, dropped, untracked}, r, semantics, o.epochs, o.warmup);
  }
  const char* semantics_name = semantics == fz::FreezeSemantics::truncate ? "truncate" : "vitfreeze";
  if (o.plot) plot_learning_rates(*o.plot, r, run, mode, o.tau);

  if (o.format == "json") {
    std::printf("{\"schedule\":\"%s\",\"t0\":%s,\"lr_mode\":\"%s\",\"tau\":%s,\"epochs\":%d,\"warmup\":%d,"
                "\"iters_per_epoch\":%lld,\"dont_freeze_pe\":%s,\"units\":[",
                o.schedule.c_str(), schedule.freezes ? json_num(schedule.t0).c_str() : "null", lr_mode_name(mode),
                json_num(o.tau).c_str(), o.epochs, o.warmup, static_cast<long long>(o.iters_per_epoch),
                o.dont_freeze_pe ? "true" : "false");
    for (const Row& row : rows)
      std::printf("%s{\"unit\":%d,\"r\":%s,\"J\":%s,\"first_frozen_iteration\":%s,\"freeze_epoch\":%s,"
                  "\"initial_lr_multiplier\":%s}",
                  row.unit ? "," : "", row.unit, json_num(row.r).c_str(), json_num(row.J).c_str(),
                  json_opt(row.first_frozen).c_str(), json_opt(row.freeze_epoch).c_str(),
                  json_num(row.lr_multiplier).c_str());
    std::printf("],\"cost_model\":{\"model\":\"%s\",\"image\":%d,\"patch\":%d,\"channels\":%d,\"depth\":%d,"
                "\"semantics\":\"%s\"},\"predicted_saving\":%s}\n",
                o.model.c_str(), o.image, o.patch, o.channels, depth, semantics_name, json_opt(saving).c_str());
  } else if (o.format == "csv") {
    std::printf("unit,r,J,first_frozen_iteration,freeze_epoch,initial_lr_multiplier\n");
    for (const Row& row : rows)
      std::printf("%d,%s,%s,%s,%s,%s\n", row.unit, num(row.r).c_str(), num(row.J).c_str(),
                  row.first_frozen ? std::to_string(*row.first_frozen).c_str() : "",
                  row.freeze_epoch ? num(*row.freeze_epoch).c_str() : "", num(row.lr_multiplier).c_str());
    std::printf("# predicted_saving,%s\n", saving ? num(*saving).c_str() : "");
  } else {
    std::printf("schedule %s, t0 %s, LR mode %s, E %d, W %d, I %lld, %d units%s\n", o.schedule.c_str(),
                schedule.freezes ? num(schedule.t0).c_str() : "-", lr_mode_name(mode), o.epochs, o.warmup,
                static_cast<long long>(o.iters_per_epoch), units, o.dont_freeze_pe ? " (patch embedding not a unit)" : "");
    std::printf("%5s %8s %12s %14s %8s %8s\n", "unit", "r", "J", "first frozen g", "epoch", "lr x");
    for (const Row& row : rows) {
      const std::string g = row.first_frozen ? std::to_string(*row.first_frozen) : "never";
      char epoch[32] = "never";
      if (row.freeze_epoch) std::snprintf(epoch, sizeof epoch, "%.1f", *row.freeze_epoch);
      std::printf("%5d %8.4f %12.2f %14s %8s %8.3f\n", row.unit, row.r, row.J, g.c_str(), epoch, row.lr_multiplier);
    }
    if (saving)
      std::printf("predicted saving of training FLOPs: %.1f %% (ViT-%s/%d at %d px, %d ch, depth %d, %s semantics)\n",
                  100.0 * *saving, o.model.c_str(), o.patch, o.image, o.channels, depth, semantics_name);
    else
      std::printf("predicted saving: none (the cost model needs at least 4 blocks for its 4 taps)\n");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const vitfreeze::Error& e) {
    std::fprintf(stderr, "vitfreeze_schedule: %s\n(see --help)\n", e.what());
    return 2;
  } catch (const std::exception& e) {  // out of memory, or a library outside vitfreeze
    std::fprintf(stderr, "vitfreeze_schedule: %s\n", e.what());
    return 2;
  }
}
