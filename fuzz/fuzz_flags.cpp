// Fuzz target: the example executables' flag parsers (examples/pretrain_flags.hpp, schedule_flags.hpp,
// on CLI11). The input is split at NUL bytes into argv words and given to each parser (the first
// byte picks the backend of vitfreeze_pretrain's). A ConfigError is the parser doing its job;
// anything else escaping (another exception type, a sanitizer report) is a finding, and so is a
// result the parser accepted outside the ranges it promises.
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "pretrain_flags.hpp"
#include "schedule_flags.hpp"

namespace {
using namespace vitfreeze;
using namespace vitfreeze::examples;

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz: accepted flags break a promise: %s\n", what);
  std::abort();
}

void check(const PretrainFlags& f) {
  require(f.epochs >= 0 && f.epochs <= 100000 && (f.epochs == 0 || f.warmup < f.epochs), "epochs, warmup");
  require(f.batch >= 1 && f.accumulation >= 1 && f.checkpoint_every_steps % f.accumulation == 0, "batch, accumulation");
  require(f.blr > 0 && f.blr <= 10 && f.finetune_lr > 0 && f.finetune_lr <= 1, "learning rates");
  require(f.seed >= 0 && f.keep_checkpoints >= 1 && f.checkpoint_every_epochs >= 0, "seed, checkpoints");
  require(!f.threads || (*f.threads >= 1 && *f.threads <= detail::hardware_threads()), "threads");
  require(!f.steps_per_epoch || *f.steps_per_epoch >= f.accumulation, "steps per epoch");
  require(f.finetune_epochs == 0 || f.finetune_subset == 0 || f.finetune_subset >= kFinetuneBatch, "fine-tune subset");
  const double t0 = f.freeze_schedule().t0, ratio = f.resolved_mask_ratio();
  require(t0 >= freeze::kMinT0 && t0 <= 1 && ratio >= 0.05 && ratio <= 0.95, "t0, mask ratio");
  require(f.semantics == "truncate" || f.semantics == "vitfreeze", "semantics");
  require(f.max_skipped_steps >= 0 && !f.out.empty() && !f.data.empty(), "non-finite, paths");
}

void check(const ScheduleFlags& o) {
  require(o.warmup < o.epochs && o.iters_per_epoch >= 1 && (!o.units || (*o.units >= 1 && *o.units <= 1000)),
          "run length, units");
  require(o.image % o.patch == 0 && std::int64_t(o.image / o.patch) * (o.image / o.patch) <= kMaxScheduleTokens,
          "geometry");
  require(o.tau >= 0 && o.tau <= 1 && o.freeze_schedule().t0 >= freeze::kMinT0, "tau, t0");
}

template <class Parse>
void parse_or_refuse(Parse&& parse) {
  try {
    check(parse());
  } catch (const ConfigError&) {
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const Backend backend = data[0] & 1 ? Backend::gpu : Backend::cpu;
  std::vector<std::string> words{"prog"};
  std::string word;
  for (std::size_t i = 1; i < size; ++i) {
    if (data[i] == 0) words.push_back(std::move(word)), word.clear();
    else word.push_back(char(data[i]));
  }
  words.push_back(word);
  std::vector<const char*> argv;
  for (const auto& w : words) argv.push_back(w.c_str());
  const int argc = int(argv.size());
  std::string help;
  parse_or_refuse([&] {
    auto f = parse_pretrain_flags(argc, argv.data(), backend, "fuzz", &help);
    return f ? *f : PretrainFlags{};
  });
  parse_or_refuse([&] {
    auto o = parse_schedule_flags(argc, argv.data(), &help);
    return o ? *o : ScheduleFlags{};
  });
  return 0;
}
